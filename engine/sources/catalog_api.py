"""Catalog API (beta) item inventory: on hand, reserved, available to promise and short, per item.

One request per item, a few at a time. Quantities are decimal strings that may be fractional:
they are read as `Decimal` and floored (half a unit cannot be promised), never passed through a
float. Sub-objects are null unless asked for, so every one is asked for; when the upstream still
leaves available-to-promise out, it is computed as on hand - reserved - short.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from decimal import Decimal
from functools import partial

import httpx
import msgspec
from msgspec import Struct

from engine.availability.record import StockRecord
from engine.availability.source import BadPayload, SourceAnswer, SourceError
from engine.sources.http import (
    AnswerBuilder,
    NotFound,
    bearer_headers,
    bounded,
    get_json,
    group_skus,
    path_segment,
)

__all__ = ("INCLUDE", "CatalogApi", "ItemInventory", "Quantity")

INCLUDE = ("on_hand", "reserved", "available_to_promise", "short")
"""The sub-objects asked for (`include[]`); each is null in the answer unless asked for."""

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
        self._max_concurrency = max_concurrency
        self._timeout = timeout

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return frozenset({self._location})

    async def fetch(self, skus: Collection[str]) -> SourceAnswer:
        builder = AnswerBuilder()
        await bounded(
            self._max_concurrency,
            (
                partial(self._ask, item, for_skus, builder)
                for item, for_skus in group_skus(skus, self._items).items()
            ),
        )
        return builder.answer()

    async def _ask(self, item: str, skus: list[str], builder: AnswerBuilder) -> None:
        path = f"{self._base}/{path_segment(item)}/inventory"
        try:
            body = await get_json(
                self._client,
                path,
                _DECODER,
                source=self._name,
                headers=self._headers,
                timeout=self._timeout,
                query=[("include[]", name) for name in INCLUDE],
                secret=self._token,
            )
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

    def _records(self, body: ItemInventory, item: str, skus: list[str]) -> list[StockRecord]:
        on_hand = _value(body.on_hand, "on_hand")
        reserved = _value(body.reserved, "reserved")
        short = _value(body.short, "short")
        promised = _value(body.available_to_promise, "available_to_promise")
        if promised is None:
            if on_hand is None:
                raise _Unusable("neither `available_to_promise` nor `on_hand` is given")
            promised = on_hand - (reserved or 0) - (short or 0)
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
