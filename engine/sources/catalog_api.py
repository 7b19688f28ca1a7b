"""Catalog API (beta) item inventory: on hand, reserved, available to promise and short, per item.

One request per item, a few at a time. Quantities are decimal strings that may be fractional:
they are read as `Decimal` and floored (half a unit cannot be promised), never passed through a
float. Sub-objects are null unless asked for, so every one is asked for; when the upstream still
leaves available-to-promise out, it is computed as on hand - reserved - short.

The reference's enum for `include[]` lists only `on_hand`, `reserved` and `available_to_promise`
(the overview mentions `short` too), so a server may refuse `short`: a request with it answered 400
is asked again at once without it, and this adapter does not send it again. A `short` that is null
counts as 0; an `on_hand` or `reserved` that is null although asked for leaves available-to-promise
unknown (a null is not a zero).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from decimal import Decimal
from functools import partial

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
    path_segment,
)

__all__ = ("INCLUDE", "INCLUDE_WITHOUT_SHORT", "CatalogApi", "ItemInventory", "Quantity")

log = logging.getLogger(__name__)

INCLUDE = ("on_hand", "reserved", "available_to_promise", "short")
"""The sub-objects asked for (`include[]`); each is null in the answer unless asked for."""

INCLUDE_WITHOUT_SHORT = tuple(name for name in INCLUDE if name != "short")
"""What is asked for once the server has refused `short`."""

_LARGEST_EXPONENT = 18
"""A quantity with more integer digits than this is not a stock count (and flooring a value like
1E+999999999 would build an enormous integer)."""


class Quantity(Struct, frozen=True):
    value: Decimal
    """A decimal string ("2.5"); a JSON number is read exactly as well."""
    id: str | None = None
    object: str | None = None
    display_value: str | None = None


class ItemInventory(Struct, frozen=True):
    object: str | None = None
    on_hand: Quantity | None = None
    reserved: Quantity | None = None
    available_to_promise: Quantity | None = None
    short: Quantity | None = None


_DECODER = msgspec.json.Decoder(ItemInventory)


class _Unusable(ValueError):
    pass


def _value(quantity: Quantity | None, field: str) -> Decimal | None:
    if quantity is None:
        return None
    value = quantity.value
    if not value.is_finite() or value.adjusted() > _LARGEST_EXPONENT:
        raise _Unusable(f"`{field}.value` is not a quantity: {str(value)[:40]}")
    return value


def _floor(value: Decimal | None) -> int | None:
    return None if value is None else math.floor(value)


class CatalogApi:
    """Item-level availability from the Catalog API, reported at one location."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        token: str | None,
        items: Mapping[str, str],
        location: str,
        max_concurrency: int = 8,
        timeout: float = 1.0,
    ) -> None:
        self._name = name
        self._client = client
        self._base = f"{base_url.rstrip('/')}/v1/catalog/items"
        self._token = token
        self._headers = bearer_headers(token)
        self._items = dict(items)
        self._location = location
        self._locations = frozenset({location})
        self._max_concurrency = max_concurrency
        self._timeout = timeout
        self._send_short = True
        """False once the server has refused `include[]=short`."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return self._locations

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        builder = AnswerBuilder()
        await bounded(
            self._max_concurrency,
            (
                partial(self._ask, item, for_skus, builder, deadline)
                for item, for_skus in group_skus(skus, self._items).items()
            ),
        )
        return builder.answer()

    async def _ask(
        self, item: str, skus: list[str], builder: AnswerBuilder, deadline: float | None
    ) -> None:
        path = f"{self._base}/{path_segment(item)}/inventory"
        include = INCLUDE if self._send_short else INCLUDE_WITHOUT_SHORT
        try:
            try:
                body = await self._get(path, include, deadline)
            except RequestRejected as error:
                if error.status != 400 or "short" not in include:
                    raise
                body = await self._get(path, INCLUDE_WITHOUT_SHORT, deadline)
                self._short_refused(error)
        except SourceError as error:
            builder.failed(skus, error)
            return
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return
        try:
            builder.records.extend(self._records(body, item, skus))
        except _Unusable as exc:
            builder.failed(
                skus,
                BadPayload(self._name, f"HTTP 200 from {httpx.URL(path).path}: {exc}", status=200),
            )

    async def _get(
        self, path: str, include: tuple[str, ...], deadline: float | None
    ) -> ItemInventory | NotFound:
        return await get_json(
            self._client,
            path,
            _DECODER,
            source=self._name,
            headers=self._headers,
            timeout=self._timeout,
            query=[("include[]", name) for name in include],
            secret=self._token,
            deadline=deadline,
        )

    def _short_refused(self, error: RequestRejected) -> None:
        """A request with `include[]=short` was answered 400 and the same without it was not."""
        if self._send_short:
            self._send_short = False
            log.warning(
                "%s: the server refused include[]=short (%s) and answered without it; short is "
                "no longer asked for and counts as 0",
                self._name,
                error.message,
            )

    def _records(self, body: ItemInventory, item: str, skus: list[str]) -> list[StockRecord]:
        on_hand = _value(body.on_hand, "on_hand")
        reserved = _value(body.reserved, "reserved")
        short = _value(body.short, "short")
        promised = _value(body.available_to_promise, "available_to_promise")
        if promised is None:
            if on_hand is None or reserved is None:
                null = [
                    f"`{name}`"
                    for name, value in (("on_hand", on_hand), ("reserved", reserved))
                    if value is None
                ]
                raise _Unusable(
                    f"no `available_to_promise`, and {' and '.join(null)} "
                    f"{'is' if len(null) == 1 else 'are'} null although asked for: "
                    "available to promise cannot be computed"
                )
            promised = on_hand - reserved - (short or 0)
        atp = max(0, math.floor(promised))
        return [
            StockRecord(
                sku=sku,
                location_id=self._location,
                atp=atp,
                source=self._name,
                on_hand=_floor(on_hand),
                reserved=_floor(reserved),
                short=_floor(short),
                upstream_item=item,
            )
            for sku in skus
        ]
