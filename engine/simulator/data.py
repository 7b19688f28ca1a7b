"""What the simulated upstreams hold: one JSON file, one section per API, decoded strictly.

Each section is written in the words of its API (inventory items and locations, products,
variants, catalog items) so that a record in the file reads like the record the API serves.
Restock dates may be given relative to loading (`restock_in_days`), so the demo never goes
stale: they become 00:00 UTC that many days after the day the data is loaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct, field

from engine.countries import COUNTRY_CODES
from engine.errors import AvailabilityFileError
from engine.model import whole

__all__ = (
    "APIS",
    "UINT64_MAX",
    "Api",
    "CatalogData",
    "CatalogItem",
    "DrLevel",
    "DrLevelsData",
    "DrLocation",
    "DrShopperData",
    "ShoplazzaData",
    "ShoplazzaLocationItem",
    "ShoplazzaProduct",
    "ShoplazzaVariant",
    "ShopperProduct",
    "ShopperStatus",
    "UpstreamData",
    "UpstreamFileError",
    "as_api",
    "decode_upstream",
    "load_upstream",
)

H = TypeVar("H", bound=Hashable)

Api = Literal["dr-levels", "dr-shopper", "shoplazza", "catalog"]
APIS: Final[tuple[Api, ...]] = get_args(Api)


def as_api(name: str) -> Api | None:
    """`name` as an API name, None when it is not one."""
    for api in APIS:
        if api == name:
            return api
    return None


NonEmpty = Annotated[str, Meta(min_length=1)]
Count = Annotated[int, Meta(ge=0)]
Days = Annotated[int, Meta(ge=0, le=3650)]
UtcTime = Annotated[datetime, Meta(tz=True)]
Tokens = Annotated[tuple[NonEmpty, ...], Meta(min_length=1)]
UINT64_MAX: Final = 2**64 - 1
GroupName = Annotated[str, Meta(pattern=whole(r"[A-Z][A-Z0-9_-]*"))]

ShopperStatus = Literal[
    "PRODUCT_INVENTORY_IN_STOCK",
    "PRODUCT_INVENTORY_OUT_OF_STOCK",
    "PRODUCT_INVENTORY_BACKORDERED",
    "PRODUCT_INVENTORY_PRE_ORDER",
]


class UpstreamFileError(AvailabilityFileError):
    """The simulator's data file is missing or malformed; the message names the file."""


def _one_of(first: object, second: object, names: str) -> None:
    if first is not None and second is not None:
        raise ValueError(f"give {names}, not both")


# --- dr-levels: Digital River inventory levels, per inventory item per warehouse location ------


class DrLocation(Struct, frozen=True, forbid_unknown_fields=True):
    location_id: NonEmpty
    ships_to: tuple[NonEmpty, ...]
    """ISO 3166-1 alpha-2 codes and names of `country_groups`: what `shipToCountry` matches."""


class DrLevel(Struct, frozen=True, forbid_unknown_fields=True):
    inventory_item_id: NonEmpty
    location_id: NonEmpty
    available_quantity: Count
    """`available` is `availableQuantity > 0`, as the guide defines it."""
    available_time: UtcTime | None = None
    """The estimated restock, served only while not available."""
    restock_in_days: Days | None = None
    """`available_time` relative to loading; replaced by it when the file is loaded."""
    updated_time: UtcTime | None = None
    """When absent: the section's `updated_time`, else the time the file is loaded."""

    def __post_init__(self) -> None:
        _one_of(self.available_time, self.restock_in_days, "`available_time` or `restock_in_days`")
        restock = self.available_time is not None or self.restock_in_days is not None
        if restock and self.available_quantity > 0:
            raise ValueError("a restock time is only served while `available_quantity` is 0")


class DrLevelsData(Struct, frozen=True, forbid_unknown_fields=True):
    tokens: tuple[NonEmpty, ...] = ()
    """Bearer tokens accepted; none means every request is refused with 401."""
    updated_time: UtcTime | None = None
    """The `updatedTime` of levels that give none."""
    country_groups: dict[GroupName, tuple[NonEmpty, ...]] = field(default_factory=dict)
    locations: tuple[DrLocation, ...] = ()
    levels: tuple[DrLevel, ...] = ()


# --- dr-shopper: Digital River Commerce Shopper inventory status, one per product ---------------


class ShopperProduct(Struct, frozen=True, forbid_unknown_fields=True):
    id: Annotated[int, Meta(ge=1)]
    external_reference_id: NonEmpty
    company_id: NonEmpty
    tracked: bool = True
    """An untracked product reports the sentinel quantity 2147483647."""
    available_quantity: Count | None = None
    """Required when tracked, not allowed when not."""
    allows_backorders: bool = False
    status: ShopperStatus | None = None
    """When absent: in stock (untracked or quantity > 0), else backordered when backorders are
    allowed, else out of stock."""
    expected_in_stock_date: UtcTime | None = None
    restock_in_days: Days | None = None
    """`expected_in_stock_date` relative to loading; replaced by it when the file is loaded."""
    custom_stock_message: str | None = None

    def __post_init__(self) -> None:
        if self.tracked and self.available_quantity is None:
            raise ValueError("a tracked product needs `available_quantity`")
        if not self.tracked and self.available_quantity is not None:
            raise ValueError("an untracked product has no `available_quantity`")
        _one_of(
            self.expected_in_stock_date,
            self.restock_in_days,
            "`expected_in_stock_date` or `restock_in_days`",
        )


class DrShopperData(Struct, frozen=True, forbid_unknown_fields=True):
    tokens: tuple[NonEmpty, ...] = ()
    products: tuple[ShopperProduct, ...] = ()


# --- shoplazza: product inventory per variant per store location --------------------------------


class ShoplazzaLocationItem(Struct, frozen=True, forbid_unknown_fields=True):
    location_id: Count
    """A uint64, served as an exact JSON integer (it does not fit a double)."""
    stock: int

    def __post_init__(self) -> None:
        if self.location_id > UINT64_MAX:
            raise ValueError("`location_id` must fit in a uint64")


class ShoplazzaVariant(Struct, frozen=True, forbid_unknown_fields=True):
    variant_id: uuid.UUID
    location_items: tuple[ShoplazzaLocationItem, ...] = ()


class ShoplazzaProduct(Struct, frozen=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    variants: tuple[ShoplazzaVariant, ...] = ()


class ShoplazzaData(Struct, frozen=True, forbid_unknown_fields=True):
    tokens: tuple[NonEmpty, ...] = ()
    """Accepted `access-token` header values."""
    products: tuple[ShoplazzaProduct, ...] = ()


# --- catalog: item inventory as decimal quantities ----------------------------------------------


class CatalogItem(Struct, frozen=True, forbid_unknown_fields=True):
    id: NonEmpty
    on_hand: Decimal | None = None
    reserved: Decimal | None = None
    short: Decimal | None = None
    available_to_promise: Decimal | None = None
    """When absent: on_hand - reserved - short (each absent one counting as 0)."""

    def __post_init__(self) -> None:
        for name in ("on_hand", "reserved", "short", "available_to_promise"):
            value = getattr(self, name)
            if value is not None and not value.is_finite():
                raise ValueError(f"`{name}` must be a finite decimal, not {value}")

    def quantities(self) -> dict[str, Decimal]:
        """Each of the four quantities, absent ones as 0 and ATP computed when not given."""
        on_hand = self.on_hand or Decimal(0)
        reserved = self.reserved or Decimal(0)
        short = self.short or Decimal(0)
        atp = self.available_to_promise
        return {
            "on_hand": on_hand,
            "reserved": reserved,
            "available_to_promise": on_hand - reserved - short if atp is None else atp,
            "short": short,
        }


class CatalogData(Struct, frozen=True, forbid_unknown_fields=True):
    tokens: tuple[NonEmpty, ...] = ()
    items: tuple[CatalogItem, ...] = ()


# --- the file -----------------------------------------------------------------------------------


class UpstreamData(Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    """The whole data file. Once loaded, every relative date has been made absolute."""

    dr_levels: DrLevelsData = field(default_factory=DrLevelsData)
    dr_shopper: DrShopperData = field(default_factory=DrShopperData)
    shoplazza: ShoplazzaData = field(default_factory=ShoplazzaData)
    catalog: CatalogData = field(default_factory=CatalogData)

    def tokens(self, api: Api) -> frozenset[str]:
        tokens: dict[Api, tuple[str, ...]] = {
            "dr-levels": self.dr_levels.tokens,
            "dr-shopper": self.dr_shopper.tokens,
            "shoplazza": self.shoplazza.tokens,
            "catalog": self.catalog.tokens,
        }
        return frozenset(tokens[api])


def _days_after(day_of: datetime, days: int) -> datetime:
    midnight = day_of.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=days)


def _duplicates(values: Iterable[H]) -> list[H]:
    seen: set[H] = set()
    repeated: list[H] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def _check(data: UpstreamData) -> None:
    """What the Structs cannot say alone: references between records, and unique ids."""
    levels = data.dr_levels
    for name, members in levels.country_groups.items():
        if name in COUNTRY_CODES:
            raise ValueError(
                f"`{name}` is a country code, not a name for a group"
                " - at `$.dr-levels.country_groups`"
            )
        for i, code in enumerate(members):
            if code not in COUNTRY_CODES:
                raise ValueError(
                    f"`{code}` is not an ISO 3166-1 alpha-2 country code"
                    f" - at `$.dr-levels.country_groups.{name}[{i}]`"
                )
    for i, location in enumerate(levels.locations):
        for j, code in enumerate(location.ships_to):
            if code not in COUNTRY_CODES and code not in levels.country_groups:
                raise ValueError(
                    f"`{code}` is neither an ISO 3166-1 alpha-2 country code nor a name in "
                    f"`country_groups` - at `$.dr-levels.locations[{i}].ships_to[{j}]`"
                )
    location_ids = [location.location_id for location in levels.locations]
    for location_id in _duplicates(location_ids):
        raise ValueError(f"location `{location_id}` is listed twice - at `$.dr-levels.locations`")
    for i, level in enumerate(levels.levels):
        if level.location_id not in location_ids:
            raise ValueError(
                f"location `{level.location_id}` is not in `locations`"
                f" - at `$.dr-levels.levels[{i}].location_id`"
            )
    pairs = [(level.inventory_item_id, level.location_id) for level in levels.levels]
    for item_id, location_id in _duplicates(pairs):
        raise ValueError(
            f"inventory item `{item_id}` at location `{location_id}` "
            "is given twice - at `$.dr-levels.levels`"
        )
    products = data.dr_shopper.products
    for number in _duplicates(product.id for product in products):
        raise ValueError(f"product id {number} is given twice - at `$.dr-shopper.products`")
    for erid in _duplicates(product.external_reference_id for product in products):
        raise ValueError(
            f"external reference id `{erid}` is given twice - at `$.dr-shopper.products`"
        )
    for product_id in _duplicates(product.product_id for product in data.shoplazza.products):
        raise ValueError(f"product `{product_id}` is given twice - at `$.shoplazza.products`")
    for catalog_id in _duplicates(item.id for item in data.catalog.items):
        raise ValueError(f"item `{catalog_id}` is given twice - at `$.catalog.items`")


def _resolve(data: UpstreamData, loaded_at: datetime) -> UpstreamData:
    """Relative dates made absolute against the day of `loaded_at`; every level given an
    `updated_time`."""
    updated = data.dr_levels.updated_time or loaded_at
    levels = tuple(
        msgspec.structs.replace(
            level,
            available_time=level.available_time
            if level.restock_in_days is None
            else _days_after(loaded_at, level.restock_in_days),
            restock_in_days=None,
            updated_time=level.updated_time or updated,
        )
        for level in data.dr_levels.levels
    )
    products = tuple(
        msgspec.structs.replace(
            product,
            expected_in_stock_date=_days_after(loaded_at, product.restock_in_days),
            restock_in_days=None,
        )
        if product.restock_in_days is not None
        else product
        for product in data.dr_shopper.products
    )
    return msgspec.structs.replace(
        data,
        dr_levels=msgspec.structs.replace(data.dr_levels, levels=levels),
        dr_shopper=msgspec.structs.replace(data.dr_shopper, products=products),
    )


def decode_upstream(raw: bytes | str, now: datetime | None = None) -> UpstreamData:
    """Decode and check data file text; raises `msgspec.ValidationError`/`DecodeError` or
    `ValueError`. `now` anchors relative dates (default: the current time)."""
    data = msgspec.json.decode(raw, type=UpstreamData)
    _check(data)
    return _resolve(data, now or datetime.now(UTC))


def load_upstream(path: Path | str, now: datetime | None = None) -> UpstreamData:
    """Read, validate and resolve a data file; any problem raises `UpstreamFileError` naming
    the file (and, for a bad value, the JSON path of it)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UpstreamFileError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        return decode_upstream(raw, now)
    except (msgspec.DecodeError, ValueError) as exc:
        raise UpstreamFileError(f"{path}: {exc}") from exc
