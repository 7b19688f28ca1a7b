"""The shape of the rule files, as msgspec structs.

Everything a merchandiser writes is a list of named things (locations, country groups, catalog
items, rules), never a map keyed by id, so every value can be traced back to its YAML line.
A setting a rule does not write is `UNSET`, which is what lets a later setting fall through to
the next matching rule or to `defaults` (see `engine.policy.compile`).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from engine.countries import CountryCode
from engine.model import NO_SPACES, Channel, LocationId, ReasonCode, Sku, whole

__all__ = (
    "CRITERIA",
    "BackorderSpec",
    "BreakerSpec",
    "CatalogItemSpec",
    "CountryGroupSpec",
    "Criterion",
    "DefaultsSpec",
    "DenySpec",
    "LocationSpec",
    "MatchSpec",
    "RoutingSpec",
    "RuleFileSpec",
    "RuleSpec",
    "SettingsSpec",
    "ShipToSpec",
    "SourceSpec",
    "UnknownPolicy",
    "UpstreamApi",
    "VariantRef",
)

NAME_PATTERN: Final = whole(r"[a-z0-9][a-z0-9_.-]*")
Name = Annotated[str, Meta(min_length=1, max_length=80, pattern=NAME_PATTERN)]
"""Names of rules, tags and country groups: lower case, so a group never looks like a country."""
CountryRef = Annotated[str, Meta(min_length=1, max_length=80)]
"""A country code (`IE`) or the name of a country group (`eu`); resolved when compiling."""
SkuPattern = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_SPACES)]
Count = Annotated[int, Meta(ge=0, le=1_000_000_000)]
PositiveCount = Annotated[int, Meta(ge=1, le=1_000_000_000)]
Days = Annotated[int, Meta(ge=0, le=3650)]
Text = Annotated[str, Meta(max_length=500)]

Criterion = Literal[
    "single_location", "whole_line", "fewest_shipments", "same_country", "priority", "most_stock"
]
CRITERIA: Final = (
    "single_location",
    "whole_line",
    "fewest_shipments",
    "same_country",
    "priority",
    "most_stock",
)
UnknownPolicy = Literal["deny", "reserve", "allocate"]
UpstreamApi = Literal[
    "digitalriver-inventory-levels", "digitalriver-shopper", "shoplazza", "catalog"
]
PER_LOCATION_APIS: Final = frozenset({"digitalriver-inventory-levels", "shoplazza"})
"""APIs that report per warehouse location; the others report one number per product, which is
read as the stock of the one location the source serves."""
BATCH_APIS: Final = frozenset({"digitalriver-inventory-levels", "digitalriver-shopper"})
"""APIs that answer for many items in one request: misses of several carts may share one."""
Millis = Annotated[int, Meta(ge=0, le=86_400_000)]
UpstreamId = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_SPACES)]
URL_PATTERN: Final = whole(r"https?://[^\s/]+(/\S*)?")
BaseUrl = Annotated[str, Meta(max_length=300, pattern=URL_PATTERN)]


class CountryGroupSpec(Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    countries: Annotated[tuple[CountryRef, ...], Meta(min_length=1)]


class LocationSpec(Struct, frozen=True, forbid_unknown_fields=True):
    id: LocationId
    country: CountryCode
    name: Text | None = None
    ships_to: tuple[CountryRef, ...] | None = None
    """Countries and country groups this location sends to; its own country when not given."""
    priority: Count = 100
    """Lower ships first."""
    enabled: bool = True
    source: Name | None = None
    """The availability source (from `sources`) that reports this location's stock."""
    upstream_id: UpstreamId | None = None
    """The source's own id of this location (per-location APIs only)."""


class VariantRef(Struct, frozen=True, forbid_unknown_fields=True):
    """A product variant, for APIs that know an item as (product, variant)."""

    product: UpstreamId
    variant: UpstreamId


class CatalogItemSpec(Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    name: Text | None = None
    tags: tuple[Name, ...] = ()
    upstream: dict[Name, UpstreamId | VariantRef] = {}
    """Source name -> the id that source knows this SKU by. A source not listed does not carry
    the SKU: its locations hold none of it."""


class BreakerSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """When to stop calling a failing source: open when at least `failure_rate` of the last
    `window` calls failed (with at least `min_calls` of them), stay open `open_ms`, then probe."""

    failure_rate: Annotated[float, Meta(gt=0, le=1)] = 0.5
    window: Annotated[int, Meta(ge=1, le=1000)] = 20
    min_calls: Annotated[int, Meta(ge=1, le=1000)] = 5
    open_ms: Annotated[int, Meta(ge=1, le=3_600_000)] = 5000


class SourceSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """An upstream inventory API. Credentials never live here: they come from the environment
    (`ENGINE_SOURCE_<NAME>_TOKEN`) or a secrets file; `url` may be overridden the same way."""

    name: Name
    api: UpstreamApi
    url: BaseUrl
    lookup: Literal["product_id", "external_reference_id"] = "product_id"
    """How `digitalriver-shopper` looks products up; the catalog's ids are of this kind."""
    timeout_ms: Annotated[int, Meta(ge=1, le=60_000)] = 1000
    batch_size: Annotated[int, Meta(ge=1, le=500)] = 50
    max_concurrency: Annotated[int, Meta(ge=1, le=256)] = 8
    array_style: Literal["repeat", "comma", "brackets"] = "repeat"
    """How a list travels in a query string, tried first: `ids=a&ids=b`, `ids=a,b` or
    `ids[]=a&ids[]=b` (the adapter learns another spelling if the server reads lists otherwise)."""
    fresh_for_ms: Millis = 5000
    """How long an answer is served from the cache without asking the source again."""
    stale_for_ms: Millis = 300_000
    """How long an answer may still be served, flagged stale, while the source cannot give a
    fresh one (RFC 5861 stale-if-error); at least `fresh_for_ms`."""
    refresh_after_ms: Millis | None = None
    """An answer a cart uses once it is this old (still fresh) is also asked again in the
    background, so that no cart waits when it expires; by default four fifths of
    `fresh_for_ms`; `fresh_for_ms` turns it off."""
    batch_window_ms: Annotated[int, Meta(ge=0, le=1000)] = 2
    """How long a miss waits for others to share one batched request (batching APIs only)."""
    breaker: BreakerSpec = field(default_factory=BreakerSpec)


class MatchSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """All given criteria must hold (and); within one list any entry may (or)."""

    skus: tuple[SkuPattern, ...] = ()
    tags: tuple[Name, ...] = ()
    countries: tuple[CountryRef, ...] = ()
    channels: tuple[Channel, ...] = ()
    locations: tuple[LocationId, ...] = ()


class ShipToSpec(Struct, frozen=True, forbid_unknown_fields=True):
    allow: tuple[CountryRef, ...] | UnsetType = UNSET
    """Only these destinations; unset means any the locations ship to."""
    deny: tuple[CountryRef, ...] | UnsetType = UNSET


class BackorderSpec(Struct, frozen=True, forbid_unknown_fields=True):
    allowed: bool | UnsetType = UNSET
    max_quantity: Count | UnsetType | None = UNSET
    """Most units one line may reserve; null for no limit."""
    restock_required: bool | UnsetType = UNSET
    """Reserve only against a known restock time."""
    within_days: Days | UnsetType | None = UNSET
    """Reserve only when the restock is at most this many days away; null for no limit."""
    split: bool | UnsetType = UNSET
    """May a line be part allocated and part reserved?"""


class RoutingSpec(Struct, frozen=True, forbid_unknown_fields=True):
    criteria: Annotated[tuple[Criterion, ...], Meta(min_length=1)] | UnsetType = UNSET
    max_shipments: PositiveCount | UnsetType | None = UNSET
    max_locations_per_line: PositiveCount | UnsetType | None = UNSET


class DenySpec(Struct, frozen=True, forbid_unknown_fields=True):
    code: ReasonCode = ReasonCode.DENIED_BY_RULE
    message: Text | None = None
    """A sentence the checkout may show the shopper."""


class SettingsSpec(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ship_to: ShipToSpec | UnsetType = UNSET
    safety_stock: Count | UnsetType = UNSET
    min_atp: Count | UnsetType = UNSET
    low_stock_threshold: Count | UnsetType = UNSET
    max_quantity: PositiveCount | UnsetType | None = UNSET
    backorder: BackorderSpec | UnsetType = UNSET
    routing: RoutingSpec | UnsetType = UNSET
    unknown_availability: UnknownPolicy | UnsetType = UNSET
    partial_cart: bool | UnsetType = UNSET


class DefaultsSpec(SettingsSpec, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class RuleSpec(SettingsSpec, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name
    match: MatchSpec
    description: Text | None = None
    enabled: bool = True
    deny: DenySpec | UnsetType = UNSET


class RuleFileSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One YAML file; a rule set is every file of a folder, read in file-name order."""

    country_groups: tuple[CountryGroupSpec, ...] = ()
    sources: tuple[SourceSpec, ...] = ()
    locations: tuple[LocationSpec, ...] = ()
    catalog: tuple[CatalogItemSpec, ...] = ()
    defaults: DefaultsSpec | None = None
    rules: tuple[RuleSpec, ...] = ()
