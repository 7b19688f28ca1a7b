"""Digital River inventory levels (`GET /inventory-levels`, API 2021-03-23): stock per inventory
item per warehouse location.

One request answers a whole batch of items, so a cart costs one request. The documentation leaves
three things open, and a faithful server may take any reading of them:

- How the array parameter is spelt. The reference lists `inventoryItemIds` as `string[]`, the
  README writes `inventoryItemIds[]`; a server may read repeated `inventoryItemIds=a&...=b`,
  comma-joined `inventoryItemIds=a,b` or bracketed `inventoryItemIds[]=a&...`. The configured
  spelling is tried first; a batch answered 400 is asked again in the other spellings (each once),
  and the one that is taken is kept for later fetches. A spelling the server takes but reads as
  fewer items (a batch answered for only some items, the others then found alone) is replaced by
  the next one for later fetches. With one id, `repeat` and `comma` are the same text.
- What an item it does not know yields: nothing at all. An item left out of a batch answer is
  asked for alone before it is reported missing.
- Paging. It is not documented for this endpoint, but Digital River lists may say `hasMore`: a
  batch answer that says so may be cut short, so its items are asked for alone; an item whose own
  answer still says so is unknown (never partial data: a missing location would read as no stock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from functools import partial
from typing import Final, Literal

import httpx
import msgspec
from msgspec import Struct

from engine.availability.record import StockRecord
from engine.availability.source import BadPayload, RequestRejected, SourceAnswer, SourceError
from engine.sources.http import (
    AnswerBuilder,
    NotFound,
    bearer_headers,
    bounded,
    get_json,
    group_skus,
    utc,
)

__all__ = (
    "ARRAY_STYLES",
    "ArrayStyle",
    "DigitalRiverLevels",
    "InventoryLevel",
    "InventoryLevels",
    "item_query",
)

log = logging.getLogger(__name__)

ArrayStyle = Literal["repeat", "comma", "brackets"]
"""How `inventoryItemIds` is spelt: `inventoryItemIds=a&inventoryItemIds=b` (repeat),
`inventoryItemIds=a,b` (comma) or `inventoryItemIds[]=a&inventoryItemIds[]=b` (brackets)."""

ARRAY_STYLES: Final[tuple[ArrayStyle, ...]] = ("repeat", "comma", "brackets")

SINGLE_CHECKS_AT_ONCE = 8
"""At most this many items are asked for alone at the same time."""

_PATH = "/inventory-levels"

Query = tuple[tuple[str, str], ...]


class InventoryLevel(Struct, frozen=True, rename="camel"):
    """One element of `data`: one inventory item at one location."""

    location_id: str | int
    inventory_item_id: str
    available: bool | None = None
    available_quantity: int | None = None
    available_time: datetime | None = None
    """The estimated restock time when not available; absent when the fulfiller gave none."""
    updated_time: datetime | None = None
    live_mode: bool | None = None


class InventoryLevels(Struct, frozen=True, rename="camel"):
    data: tuple[InventoryLevel, ...]
    has_more: bool | None = None
    """Not documented for this endpoint; true would mean `data` is one page of a longer list."""


_DECODER = msgspec.json.Decoder(InventoryLevels)


def item_query(style: ArrayStyle, items: Collection[str]) -> Query:
    """The query that asks for `items` with `inventoryItemIds` spelt as `style`."""
    if style == "brackets":
        return tuple(("inventoryItemIds[]", item) for item in items)
    if style == "comma":
        return (("inventoryItemIds", ",".join(items)),)
    return tuple(("inventoryItemIds", item) for item in items)


class _Asked(Struct):
    """What one batch request found, for the single checks that follow it."""

    batch: list[str]
    style: ArrayStyle
    """The spelling the server took."""
    left_out: list[str]
    """Items the answer said nothing of."""
    cut_short: bool
    """The answer said `hasMore`: none of its levels are used."""


class DigitalRiverLevels:
    """Availability per warehouse from Digital River's inventory levels API."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        token: str | None,
        items: Mapping[str, str],
        locations: Mapping[str, str],
        batch_size: int = 50,
        array_style: ArrayStyle = "repeat",
        timeout: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be at least 1, not {batch_size}")
        if array_style not in ARRAY_STYLES:
            raise ValueError(
                f"{name}: array_style must be `repeat`, `comma` or `brackets`, not {array_style}"
            )
        self._name = name
        self._client = client
        self._url = f"{base_url.rstrip('/')}{_PATH}"
        self._token = token
        self._headers = bearer_headers(token)
        self._items = dict(items)
        self._locations = dict(locations)
        self._ours = frozenset(self._locations.values())
        """Our location ids, read by every cart's gather: built once."""
        self._batch_size = batch_size
        self._timeout = timeout
        self._skipped_locations: set[str] = set()
        self._styles: tuple[ArrayStyle, ...] = (
            array_style,
            *(style for style in ARRAY_STYLES if style != array_style),
        )
        """Every spelling, the configured one first: the order they are tried in."""
        self._style: ArrayStyle = array_style
        """The spelling asked with first: the configured one until the server shows otherwise."""
        self._rejected: set[ArrayStyle] = set()
        """Spellings answered 400 where another spelling of the same request was taken."""
        self._misread: set[ArrayStyle] = set()
        """Spellings the server took but read as fewer items than were sent."""
        self._said_no_spelling_reads_all = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return self._ours

    @property
    def array_style(self) -> ArrayStyle:
        """The spelling of `inventoryItemIds` the next request starts with."""
        return self._style

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        wanted = group_skus(skus, self._items)
        ids = list(wanted)
        builder = AnswerBuilder()
        batches = [
            ids[start : start + self._batch_size] for start in range(0, len(ids), self._batch_size)
        ]
        asked = await asyncio.gather(
            *(self._ask_batch(batch, wanted, builder, deadline) for batch in batches)
        )
        left_out: list[str] = []
        cut_short: list[str] = []
        for outcome in asked:
            if outcome is None:
                continue
            if len(outcome.batch) == 1:
                # Already asked alone: nothing more to learn by asking again.
                if outcome.cut_short:
                    self._cut_short(outcome.batch[0], wanted, builder)
                elif outcome.left_out:
                    builder.not_known(wanted[outcome.batch[0]])
            elif outcome.cut_short:
                cut_short.extend(outcome.batch)
            else:
                left_out.extend(outcome.left_out)
        if not left_out and not cut_short:
            return builder.answer()
        found: set[str] = set()
        await bounded(
            SINGLE_CHECKS_AT_ONCE,
            (
                partial(self._ask_alone, item, wanted, builder, found, deadline)
                for item in left_out + cut_short
            ),
        )
        log.info(
            "%s: %d item(s) asked for alone (%d left out of a batch answer, %d in a batch answer "
            "cut short by hasMore); %d found",
            self._name,
            len(left_out) + len(cut_short),
            len(left_out),
            len(cut_short),
            len(found),
        )
        for style in dict.fromkeys(
            outcome.style
            for outcome in asked
            if outcome is not None and not found.isdisjoint(outcome.left_out)
        ):
            self._read_as_fewer(style)
        return builder.answer()

    async def _ask_batch(
        self,
        batch: list[str],
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        deadline: float | None,
    ) -> _Asked | None:
        """Ask for `batch`; add its records to `builder`. None when there is nothing to follow up
        (it failed, or the upstream answered 404)."""
        skus = [sku for item in batch for sku in wanted[item]]
        try:
            body, style = await self._get(batch, deadline)
        except SourceError as error:
            builder.failed(skus, error)
            return None
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return None
        if body.has_more:
            return _Asked(batch=batch, style=style, left_out=[], cut_short=True)
        seen = self._take(body, batch, wanted, builder)
        left_out = [item for item in batch if item not in seen]
        return _Asked(batch=batch, style=style, left_out=left_out, cut_short=False)

    async def _ask_alone(
        self,
        item: str,
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        found: set[str],
        deadline: float | None,
    ) -> None:
        try:
            body, _ = await self._get([item], deadline)
        except SourceError as error:
            builder.failed(wanted[item], error)
            return
        if body is NotFound.NOT_FOUND:
            builder.not_known(wanted[item])
        elif body.has_more:
            self._cut_short(item, wanted, builder)
        elif self._take(body, [item], wanted, builder):
            found.add(item)
        else:
            builder.not_known(wanted[item])

    def _cut_short(
        self, item: str, wanted: Mapping[str, list[str]], builder: AnswerBuilder
    ) -> None:
        builder.failed(
            wanted[item],
            BadPayload(
                self._name,
                f"HTTP 200 from {_PATH}: hasMore is true although item {item} was asked for "
                "alone: its levels may be cut short, and no way to page is documented",
                status=200,
            ),
        )

    def _order(self) -> list[ArrayStyle]:
        """The spellings to try: the current one, then the others, those known not to work last."""
        bad = self._rejected | self._misread
        rest = [style for style in self._styles if style != self._style]
        return [
            self._style,
            *(style for style in rest if style not in bad),
            *(style for style in rest if style in bad),
        ]

    async def _get(
        self, items: list[str], deadline: float | None
    ) -> tuple[InventoryLevels | NotFound, ArrayStyle]:
        """GET the levels of `items` and the spelling the server took. A 400 is asked again in
        each other spelling (once per distinct query: with one id, `repeat` and `comma` are the
        same) before it is raised; any other failure is raised at once."""
        # Neither `shipToCountry` nor `available` is sent: the engine applies its own ship-to
        # rules, and needs the restock time of items that are not available.
        started = self._style
        rejected: list[ArrayStyle] = []
        rejected_queries: set[Query] = set()
        first_rejection: RequestRejected | None = None
        for style in self._order():
            query = item_query(style, items)
            if query in rejected_queries:
                rejected.append(style)
                continue
            try:
                body = await get_json(
                    self._client,
                    self._url,
                    _DECODER,
                    source=self._name,
                    headers=self._headers,
                    timeout=self._timeout,
                    query=query,
                    secret=self._token,
                    deadline=deadline,
                )
            except RequestRejected as error:
                if error.status != 400:
                    raise
                first_rejection = first_rejection or error
                rejected.append(style)
                rejected_queries.add(query)
                continue
            if first_rejection is not None:
                self._taken(style, rejected, started, first_rejection)
            return body, style
        assert first_rejection is not None
        raise RequestRejected(
            self._name,
            f"{first_rejection.message} (inventoryItemIds was rejected in every spelling: "
            f"{', '.join(rejected)})",
            status=first_rejection.status,
        )

    def _taken(
        self,
        style: ArrayStyle,
        rejected: list[ArrayStyle],
        started: ArrayStyle,
        rejection: RequestRejected,
    ) -> None:
        """`style` was taken where the spellings `rejected` were answered 400."""
        self._rejected.update(rejected)
        self._rejected.discard(style)
        if self._style == started and started in rejected:
            self._style = style
            log.info(
                "%s: the server rejected inventoryItemIds spelt `%s` and took it spelt `%s`; "
                "asking with `%s` from now on (%s)",
                self._name,
                started,
                style,
                style,
                rejection.message,
            )

    def _read_as_fewer(self, style: ArrayStyle) -> None:
        """Items left out of a batch asked with `style` were found when asked alone: the server
        reads that spelling as fewer items than were sent. Move on to the next spelling."""
        self._misread.add(style)
        if self._style != style:
            return  # already moved on
        at = self._styles.index(style)
        bad = self._rejected | self._misread
        following = [s for s in self._styles[at + 1 :] + self._styles[:at] if s not in bad]
        if not following:
            if not self._said_no_spelling_reads_all:
                self._said_no_spelling_reads_all = True
                log.info(
                    "%s: no spelling of inventoryItemIds gets a whole batch read; keeping `%s`, "
                    "items left out of a batch answer are asked for alone",
                    self._name,
                    style,
                )
            return
        self._style = following[0]
        log.info(
            "%s: the server reads inventoryItemIds spelt `%s` as fewer items than sent (items "
            "left out of a batch answer were found alone); asking with `%s` from now on",
            self._name,
            style,
            self._style,
        )

    def _take(
        self,
        body: InventoryLevels,
        asked: list[str],
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
    ) -> set[str]:
        """Add the records `body` gives of the items `asked` to `builder`; return those items it
        has levels for (at any location, ours or not)."""
        seen: set[str] = set()
        for level in body.data:
            if level.inventory_item_id in asked:
                seen.add(level.inventory_item_id)
                builder.records.extend(self._records(level, wanted[level.inventory_item_id]))
        return seen

    def _records(self, level: InventoryLevel, skus: list[str]) -> list[StockRecord]:
        upstream_location = str(level.location_id)
        ours = self._locations.get(upstream_location)
        if ours is None:
            if upstream_location not in self._skipped_locations:
                self._skipped_locations.add(upstream_location)
                log.debug(
                    "%s: upstream location %s is not one of ours; its levels are skipped",
                    self._name,
                    upstream_location,
                )
            return []
        quantity = max(0, level.available_quantity or 0)
        available = level.available if level.available is not None else quantity > 0
        return [
            StockRecord(
                sku=sku,
                location_id=ours,
                atp=quantity if available else 0,
                source=self._name,
                backorderable=None,
                restock_time=utc(level.available_time),
                updated_time=utc(level.updated_time),
                upstream_item=level.inventory_item_id,
                upstream_location=upstream_location,
            )
            for sku in skus
        ]
