"""Shoplazza OpenAPI 2022-01 product inventory: stock per variant per location.

One request per product answers for all its variants, so SKUs are grouped by product and the
products asked for concurrently, a few at a time. Location ids are uint64 values that a double
cannot hold (327627904831724000): they are decoded as integers and handled as decimal strings,
never as floats. Shoplazza answers a malformed id with a 500; that is a mapping mistake to
report, not an outage to count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from functools import partial

import httpx
import msgspec
from msgspec import Struct

from engine.availability.record import StockRecord
from engine.availability.source import SourceAnswer, SourceError
from engine.sources.http import AnswerBuilder, NotFound, bounded, get_json, group_skus, path_segment

__all__ = ("LocationItem", "ProductInventory", "Shoplazza", "Variant", "is_invalid_id")

log = logging.getLogger(__name__)

API_VERSION = "2022-01"

_INVALID_ID = re.compile(r"uuid|invalid\s+\w*id\b", re.IGNORECASE)


class LocationItem(Struct, frozen=True):
    location_id: int | str
    """A uint64: an int (exact, never a float) or, from a liberal server, its decimal string."""
    stock: int


class Variant(Struct, frozen=True):
    variant_id: str
    location_items: tuple[LocationItem, ...] | None = None


class ProductInventory(Struct, frozen=True):
    variants: tuple[Variant, ...]
    product_id: str | None = None


_DECODER = msgspec.json.Decoder(ProductInventory)


def is_invalid_id(status: int, messages: Sequence[str]) -> bool:
    """A 5xx whose error body is about a malformed id (e.g. "invalid UUID length: 10")."""
    return status >= 500 and any(_INVALID_ID.search(message) for message in messages)


class Shoplazza:
    """Availability per location from Shoplazza's product inventory API."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        token: str | None,
        items: Mapping[str, tuple[str, str]],
        locations: Mapping[str, str],
        max_concurrency: int = 8,
        timeout: float = 1.0,
    ) -> None:
        self._name = name
        self._client = client
        self._base = f"{base_url.rstrip('/')}/openapi/{API_VERSION}/products"
        self._token = token
        # The docs list Content-Type as a required header even on this GET: send it.
        self._headers = {"accept": "application/json", "content-type": "application/json"}
        if token is not None:
            self._headers["access-token"] = token
        self._items = dict(items)
        self._locations = dict(locations)
        self._ours = frozenset(self._locations.values())
        """Our location ids, read by every cart's gather: built once."""
        self._max_concurrency = max_concurrency
        self._timeout = timeout
        self._skipped_locations: set[str] = set()

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return self._ours

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        by_product: dict[str, dict[str, list[str]]] = {}
        for (product, variant), for_skus in group_skus(skus, self._items).items():
            by_product.setdefault(product, {})[variant] = for_skus
        builder = AnswerBuilder()
        await bounded(
            self._max_concurrency,
            (
                partial(self._ask, product, variants, builder, deadline)
                for product, variants in by_product.items()
            ),
        )
        return builder.answer()

    async def _ask(
        self,
        product: str,
        variants: Mapping[str, list[str]],
        builder: AnswerBuilder,
        deadline: float | None,
    ) -> None:
        skus = [sku for for_skus in variants.values() for sku in for_skus]
        # No `location_id` filter: one request answers for every location of ours.
        try:
            body = await get_json(
                self._client,
                f"{self._base}/{path_segment(product)}/inventory",
                _DECODER,
                source=self._name,
                headers=self._headers,
                timeout=self._timeout,
                secret=self._token,
                rejects=is_invalid_id,
                deadline=deadline,
            )
        except SourceError as error:
            builder.failed(skus, error)
            return
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return
        answered: set[str] = set()
        for variant in body.variants:
            for_skus = variants.get(variant.variant_id)
            if for_skus is None:
                continue
            answered.add(variant.variant_id)
            for item in variant.location_items or ():
                builder.records.extend(self._records(item, variant.variant_id, for_skus))
        builder.not_known(
            [
                sku
                for variant, for_skus in variants.items()
                if variant not in answered
                for sku in for_skus
            ]
        )

    def _records(self, item: LocationItem, variant: str, skus: list[str]) -> list[StockRecord]:
        upstream_location = str(item.location_id)
        ours = self._locations.get(upstream_location)
        if ours is None:
            if upstream_location not in self._skipped_locations:
                self._skipped_locations.add(upstream_location)
                log.debug(
                    "%s: upstream location %s is not one of ours; its stock is skipped",
                    self._name,
                    upstream_location,
                )
            return []
        return [
            StockRecord(
                sku=sku,
                location_id=ours,
                atp=max(0, item.stock),
                source=self._name,
                on_hand=item.stock,
                upstream_item=variant,
                upstream_location=upstream_location,
            )
            for sku in skus
        ]
