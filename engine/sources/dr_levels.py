"""Digital River inventory levels (`GET /inventory-levels`, API 2021-03-23): stock per inventory
item per warehouse location.

One request answers a whole batch of items, so a cart costs one request. The upstream says nothing
about an item it does not know, and a server may read the array parameter differently from how it
is sent; so an item left out of a batch answer is asked for alone before it is reported missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from functools import partial
from typing import Literal

import httpx
import msgspec
from msgspec import Struct

from engine.availability.record import StockRecord
from engine.availability.source import SourceAnswer, SourceError
from engine.sources.http import (
    AnswerBuilder,
    NotFound,
    bearer_headers,
    bounded,
    get_json,
    group_skus,
    utc,
)

__all__ = ("DigitalRiverLevels", "InventoryLevel", "InventoryLevels")

log = logging.getLogger(__name__)

SINGLE_CHECKS_AT_ONCE = 8
"""At most this many items left out of a batch answer are asked for alone at the same time."""


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


class InventoryLevels(Struct, frozen=True):
    data: tuple[InventoryLevel, ...]


_DECODER = msgspec.json.Decoder(InventoryLevels)


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
        array_style: Literal["repeat", "comma"] = "repeat",
        timeout: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be at least 1, not {batch_size}")
        if array_style not in ("repeat", "comma"):
            raise ValueError(f"{name}: array_style must be `repeat` or `comma`, not {array_style}")
        self._name = name
        self._client = client
        self._url = f"{base_url.rstrip('/')}/inventory-levels"
        self._token = token
        self._headers = bearer_headers(token)
        self._items = dict(items)
        self._locations = dict(locations)
        self._batch_size = batch_size
        self._array_style = array_style
        self._timeout = timeout
        self._skipped_locations: set[str] = set()

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return frozenset(self._locations.values())

    async def fetch(self, skus: Collection[str]) -> SourceAnswer:
        wanted = group_skus(skus, self._items)
        ids = list(wanted)
        builder = AnswerBuilder()
        batches = [
            ids[start : start + self._batch_size] for start in range(0, len(ids), self._batch_size)
        ]
        absent: list[str] = []
        await asyncio.gather(*(self._ask(batch, wanted, builder, absent) for batch in batches))
        asked_alone = {batch[0] for batch in batches if len(batch) == 1}
        still_absent = [item for item in absent if item in asked_alone]
        await bounded(
            SINGLE_CHECKS_AT_ONCE,
            (
                partial(self._ask, [item], wanted, builder, still_absent)
                for item in absent
                if item not in asked_alone
            ),
        )
        builder.not_known([sku for item in still_absent for sku in wanted[item]])
        return builder.answer()

    async def _ask(
        self,
        batch: list[str],
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        absent: list[str],
    ) -> None:
        """Ask for `batch`; add its records to `builder` and the items left out to `absent`."""
        skus = [sku for item in batch for sku in wanted[item]]
        # Neither `shipToCountry` nor `available` is sent: the engine applies its own ship-to
        # rules, and needs the restock time of items that are not available.
        if self._array_style == "comma":
            query = [("inventoryItemIds", ",".join(batch))]
        else:
            query = [("inventoryItemIds", item) for item in batch]
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
            )
        except SourceError as error:
            builder.failed(skus, error)
            return
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return
        seen: set[str] = set()
        for level in body.data:
            seen.add(level.inventory_item_id)
            for_skus = wanted.get(level.inventory_item_id)
            if for_skus is not None:
                builder.records.extend(self._records(level, for_skus))
        absent.extend(item for item in batch if item not in seen)

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
