"""Digital River Commerce Shopper inventory status: one number per product, no location.

The many-products form answers a batch in one request but silently ignores ids it does not know,
and the documentation does not say how the list is spelt (it is sent comma-joined, `productId=1,2`),
so a server may read it another way. Hence what is left out of a batch answer is asked again before
it is reported missing: by product id, in the single-product form; by external reference id, which
has no single form, one value per request in the many form (a one-value query is unambiguous), and
only when the batch looks misread (two or more asked, at most one answered), since a known id left
out of a batch that was otherwise answered is simply not known upstream.

The payload has traps: booleans are the strings "true"/"false", an untracked product reports the
sentinel 2147483647 rather than a count, `expectedInStockDate` may be placeholder text, and
`productIsInStock: "false"` wins over a positive `availableQuantity` (nothing is promised).
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
from engine.availability.source import BadPayload, SourceAnswer, SourceError
from engine.sources.http import (
    AnswerBuilder,
    NotFound,
    bearer_headers,
    bounded,
    get_json,
    group_skus,
    path_segment,
    utc,
)

__all__ = (
    "UNLIMITED_QUANTITY",
    "DigitalRiverShopper",
    "InventoryStatus",
    "ManyInventoryStatus",
    "OneInventoryStatus",
    "ProductRef",
    "flag",
    "restock_time",
)

log = logging.getLogger(__name__)

UNLIMITED_QUANTITY = 2147483647
"""What `availableQuantity` says for a product whose stock is not tracked: never a count."""

SINGLE_CHECKS_AT_ONCE = 8
"""At most this many products left out of a batch answer are asked for alone at the same time."""

Flag = bool | str
"""A boolean the API writes as the string "true" or "false" (a JSON boolean is accepted too)."""


class ProductRef(Struct, frozen=True, rename="camel"):
    id: int | str | None = None
    external_reference_id: str | None = None
    uri: str | None = None


class InventoryStatus(Struct, frozen=True, rename="camel"):
    product: tuple[ProductRef, ...] | ProductRef = ()
    available_quantity: int | None = None
    available_quantity_is_estimated: Flag | None = None
    product_is_in_stock: Flag | None = None
    product_is_allows_backorders: Flag | None = None
    product_is_tracked: Flag | None = None
    requested_quantity_available: Flag | None = None
    status: str | None = None
    status_is_estimated: Flag | None = None
    expected_in_stock_date: str | int | float | None = None
    custom_stock_message: str | None = None

    def first_product(self) -> ProductRef | None:
        if isinstance(self.product, ProductRef):
            return self.product
        return self.product[0] if self.product else None


class Products(Struct, frozen=True, rename="camel"):
    inventory_status: tuple[InventoryStatus, ...] | InventoryStatus = ()
    uri: str | None = None


class ManyInventoryStatus(Struct, frozen=True):
    """`GET /v1/shoppers/me/products/inventory-status`."""

    products: Products | None


class OneInventoryStatus(Struct, frozen=True, rename="camel"):
    """`GET /v1/shoppers/me/products/{productId}/inventory-status`."""

    inventory_status: InventoryStatus


_MANY = msgspec.json.Decoder(ManyInventoryStatus)
_ONE = msgspec.json.Decoder(OneInventoryStatus)


def flag(value: Flag | None) -> bool | None:
    """ "true"/"false" (any case) or a JSON boolean; None for anything else."""
    if value is None or isinstance(value, bool):
        return value
    word = value.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    return None


def restock_time(value: str | float | None) -> datetime | None:
    """An ISO date (00:00 UTC that day) or datetime; None for anything else ("string")."""
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


class DigitalRiverShopper:
    """Product-level availability from the Commerce Shopper API, reported at one location."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        token: str | None,
        items: Mapping[str, str],
        location: str,
        lookup: Literal["product_id", "external_reference_id"] = "product_id",
        batch_size: int = 50,
        timeout: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be at least 1, not {batch_size}")
        if lookup not in ("product_id", "external_reference_id"):
            raise ValueError(
                f"{name}: lookup must be `product_id` or `external_reference_id`, not {lookup}"
            )
        self._name = name
        self._client = client
        self._base = f"{base_url.rstrip('/')}/v1/shoppers/me/products"
        self._token = token
        self._headers = bearer_headers(token)
        self._items = dict(items)
        self._location = location
        self._locations = frozenset({location})
        self._lookup = lookup
        self._batch_size = batch_size
        self._timeout = timeout

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return self._locations

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        wanted = group_skus(skus, self._items)
        ids = list(wanted)
        builder = AnswerBuilder()
        batches = [
            ids[start : start + self._batch_size] for start in range(0, len(ids), self._batch_size)
        ]
        left_out = await asyncio.gather(
            *(self._ask_many(batch, wanted, builder, deadline) for batch in batches)
        )
        found: set[str] = set()
        if self._lookup == "product_id":
            again = [key for keys in left_out if keys is not None for key in keys]
            await bounded(
                SINGLE_CHECKS_AT_ONCE,
                (
                    partial(self._ask_one, product, wanted, builder, found, deadline)
                    for product in again
                ),
            )
        else:
            again = []
            for batch, keys in zip(batches, left_out, strict=True):
                if keys is None:
                    continue
                if len(batch) >= 2 and len(batch) - len(keys) <= 1:
                    again.extend(keys)
                else:
                    builder.not_known([sku for key in keys for sku in wanted[key]])
            await bounded(
                SINGLE_CHECKS_AT_ONCE,
                (
                    partial(self._ask_reference, key, wanted, builder, found, deadline)
                    for key in again
                ),
            )
        if again:
            log.info(
                "%s: %d product(s) left out of a batch answer asked for one per request; %d found",
                self._name,
                len(again),
                len(found),
            )
        return builder.answer()

    async def _ask_many(
        self,
        batch: list[str],
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        deadline: float | None,
    ) -> list[str] | None:
        """Ask for `batch` in the many-products form; add what it says to `builder` and return
        the keys it left out; None when it failed or was answered 404 (already accounted for)."""
        skus = [sku for key in batch for sku in wanted[key]]
        parameter = "productId" if self._lookup == "product_id" else "externalReferenceId"
        url = f"{self._base}/inventory-status"
        try:
            body = await get_json(
                self._client,
                url,
                _MANY,
                source=self._name,
                headers=self._headers,
                timeout=self._timeout,
                query=[(parameter, ",".join(batch))],
                secret=self._token,
                deadline=deadline,
            )
        except SourceError as error:
            builder.failed(skus, error)
            return None
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return None
        statuses = body.products.inventory_status if body.products is not None else ()
        if isinstance(statuses, InventoryStatus):
            statuses = (statuses,)
        asked = set(batch)
        seen: set[str] = set()
        unusable: list[str] = []
        for status in statuses:
            product = status.first_product()
            if product is None:
                continue
            key = product.id if self._lookup == "product_id" else product.external_reference_id
            if key is None or str(key) not in asked or str(key) in seen:
                continue
            seen.add(str(key))
            upstream_item = str(product.id) if product.id is not None else str(key)
            if not self._add(status, wanted[str(key)], upstream_item, builder):
                unusable.append(str(key))
        self._unusable(unusable, wanted, builder, url)
        return [key for key in batch if key not in seen]

    async def _ask_reference(
        self,
        reference: str,
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        found: set[str],
        deadline: float | None,
    ) -> None:
        """Ask for one external reference id alone, in the many form; missing if left out."""
        left_out = await self._ask_many([reference], wanted, builder, deadline)
        if left_out:
            builder.not_known(wanted[reference])
        elif left_out is not None:
            found.add(reference)

    async def _ask_one(
        self,
        product: str,
        wanted: Mapping[str, list[str]],
        builder: AnswerBuilder,
        found: set[str],
        deadline: float | None,
    ) -> None:
        skus = wanted[product]
        url = f"{self._base}/{path_segment(product)}/inventory-status"
        try:
            body = await get_json(
                self._client,
                url,
                _ONE,
                source=self._name,
                headers=self._headers,
                timeout=self._timeout,
                secret=self._token,
                deadline=deadline,
            )
        except SourceError as error:
            builder.failed(skus, error)
            return
        if body is NotFound.NOT_FOUND:
            builder.not_known(skus)
            return
        found.add(product)
        if not self._add(body.inventory_status, skus, product, builder):
            self._unusable([product], wanted, builder, url)

    def _unusable(
        self, products: list[str], wanted: Mapping[str, list[str]], builder: AnswerBuilder, url: str
    ) -> None:
        if products:
            builder.failed(
                [sku for product in products for sku in wanted[product]],
                BadPayload(
                    self._name,
                    f"HTTP 200 from {httpx.URL(url).path}: no availableQuantity for tracked, "
                    f"in-stock product(s) {', '.join(products)}",
                    status=200,
                ),
            )

    def _add(
        self, status: InventoryStatus, skus: list[str], upstream_item: str, builder: AnswerBuilder
    ) -> bool:
        """Add the records `status` gives; False when it gives no usable number."""
        quantity = status.available_quantity
        unlimited = flag(status.product_is_tracked) is False or quantity == UNLIMITED_QUANTITY
        if unlimited or flag(status.product_is_in_stock) is False:
            atp = 0
        elif quantity is not None:
            atp = max(0, quantity)
        else:
            return False
        builder.records.extend(
            StockRecord(
                sku=sku,
                location_id=self._location,
                atp=atp,
                source=self._name,
                unlimited=unlimited,
                backorderable=flag(status.product_is_allows_backorders),
                restock_time=restock_time(status.expected_in_stock_date),
                upstream_item=upstream_item,
                upstream_status=status.status,
            )
            for sku in skus
        )
        return True
