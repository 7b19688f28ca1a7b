"""The one normalised availability record every source produces, and the view `decide` reads.

Sources differ (per-location levels, product-level status, decimal quantities, sentinels for
"not tracked"); the engine sees only `StockRecord`. Keeping what a record came from (`source`,
`on_hand`, `reserved`, `short`) lets an explanation say where a number was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from msgspec import Meta, Struct

__all__ = ("Availability", "StockRecord")

Count = Annotated[int, Meta(ge=0)]


class StockRecord(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Availability of one SKU at one location, as last reported by its source."""

    sku: str
    location_id: str
    atp: Count
    """Available to promise: on hand - reserved - short, as the source reports or we compute."""
    source: str = "snapshot"
    on_hand: int | None = None
    reserved: int | None = None
    short: int | None = None
    unlimited: bool = False
    """The source does not track this item's stock (sells without limit)."""
    backorderable: bool | None = None
    """What the source says of backorders; None when it says nothing."""
    restock_time: datetime | None = None
    updated_time: datetime | None = None
    upstream_item: str | None = None
    """The id the source knows the item by (inventory item, product, variant, catalog item)."""
    upstream_location: str | None = None
    """The source's own id of the location, when it reports per location."""
    upstream_status: str | None = None
    """A status word the source gave with the number (e.g. `PRODUCT_INVENTORY_IN_STOCK`)."""


class Availability(Struct, frozen=True):
    """What the gather step knows for one cart: records per SKU and location, and what it could
    not learn. A location of a SKU with no record and not listed as unknown holds no stock."""

    stock: Mapping[str, Mapping[str, StockRecord]]
    """SKU -> location id -> record."""
    unknown: Mapping[str, frozenset[str]] = {}
    """SKU -> location ids whose source gave no answer for it."""
    stale: bool = False
    """Some of the records were served past their source's fresh time (the source failed, was
    backed off from, or was late)."""
    oldest_age: float | None = None
    """Seconds since the oldest upstream data used was fetched; None when no source said."""
    oldest_fetched: datetime | None = None
    """When that oldest data was fetched (wall clock)."""

    @classmethod
    def from_records(
        cls, records: list[StockRecord], unknown: Mapping[str, frozenset[str]] | None = None
    ) -> Availability:
        stock: dict[str, dict[str, StockRecord]] = {}
        for record in records:
            stock.setdefault(record.sku, {})[record.location_id] = record
        return cls(stock=stock, unknown=dict(unknown or {}))
