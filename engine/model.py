"""The engine's vocabulary as msgspec structs: what a checkout sends and what it gets back.

Every request struct is frozen, forbids unknown fields and bounds every number, so a malformed
cart is rejected at the edge with the path of the offending field. The names here are the names
of the API, the YAML and the docs alike (location, ATP, allocatable, restock time, reason code).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from msgspec import Meta, Struct

from engine.countries import CountryCode

__all__ = (
    "CHANNEL_PATTERN",
    "MAX_LINES",
    "MAX_QUANTITY",
    "NO_SPACES",
    "PATTERN_WORDS",
    "REGEX_MESSAGE",
    "Allocation",
    "AvailabilityAnswer",
    "Cart",
    "CartExplanation",
    "CartLine",
    "Channel",
    "Decision",
    "Freshness",
    "LineDecision",
    "LineExplanation",
    "LineStatus",
    "LocationExplanation",
    "LocationId",
    "LocationVerdict",
    "Outcome",
    "ReasonCode",
    "Reservation",
    "SettingOrigin",
    "Shipment",
    "ShipmentLine",
    "Sku",
    "SkuAvailability",
    "in_words",
    "schema_pattern",
    "whole",
)

MAX_LINES: Final = 500
"""Lines in one cart. Far above any real basket; it bounds the work one request can ask for."""

MAX_QUANTITY: Final = 100_000
"""Units on one line. A cart asking for more is a client bug, not a purchase."""


_FINAL_NEWLINE: Final = "(?!\\n)"


def whole(pattern: str) -> str:
    """A pattern the whole string must match. `^…$` alone lets a final newline through: msgspec
    checks patterns with Python's `re.search`, whose `$` also matches just before one, so
    `"web\n"` would pass for a channel and then match no rule. `(?!\n)` shuts that out.
    `schema_pattern` gives the same pattern for JSON Schema, where `$` is the end already."""
    return f"^(?:{pattern})${_FINAL_NEWLINE}"


def schema_pattern(pattern: str) -> str:
    """`pattern` as the OpenAPI document gives it: without `whole`'s lookahead, which JSON
    Schema does not need and some of its validators do not accept."""
    return pattern.removesuffix(_FINAL_NEWLINE)


NO_SPACES: Final = whole(r"\S+")
"""SKUs, location ids, upstream ids: any text without spaces or line breaks."""
REGEX_MESSAGE: Final = "Expected `str` matching regex "
"""How msgspec starts the message for a value its pattern refused; the pattern follows."""
Sku = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_SPACES)]
LocationId = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_SPACES)]
CHANNEL_PATTERN: Final = whole(r"[a-z0-9][a-z0-9_-]*")
Channel = Annotated[str, Meta(min_length=1, max_length=40, pattern=CHANNEL_PATTERN)]
PATTERN_WORDS: Final = {
    repr(NO_SPACES): "Expected text without spaces or line breaks",
    repr(CHANNEL_PATTERN): "Expected lower-case letters, digits, `-` and `_`, starting with a "
    "letter or digit",
}
"""What a request's patterns ask for, keyed as msgspec quotes them after `REGEX_MESSAGE`."""


def in_words(message: str) -> str:
    """A msgspec validation message in words where it would show a regular expression."""
    if message.startswith(REGEX_MESSAGE):
        return PATTERN_WORDS.get(message.removeprefix(REGEX_MESSAGE), message)
    return message


Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
CartId = Annotated[str, Meta(min_length=1, max_length=200)]


class ReasonCode(StrEnum):
    """Why a line was not simply allocated: a closed set, so a shopper-facing message can be
    built from the code alone."""

    UNKNOWN_SKU = "UNKNOWN_SKU"
    """The SKU is not in the catalog."""
    DENIED_BY_RULE = "DENIED_BY_RULE"
    """A merchandiser's rule denies this SKU for this destination or channel."""
    NOT_SHIPPABLE = "NOT_SHIPPABLE"
    """No location may send this SKU to the destination."""
    QUANTITY_LIMIT = "QUANTITY_LIMIT"
    """The line asks for more than the per-line maximum."""
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
    """Not enough stock at the locations that may serve the line."""
    BELOW_SAFETY_STOCK = "BELOW_SAFETY_STOCK"
    """Stock exists, but what is left after safety stock and minimum ATP cannot cover the line."""
    BACKORDER_NOT_ALLOWED = "BACKORDER_NOT_ALLOWED"
    """The rules allow a backorder but the source says the item cannot be backordered."""
    BACKORDER_LIMIT = "BACKORDER_LIMIT"
    """The shortfall exceeds the most the rules allow to be reserved on one line."""
    RESTOCK_UNKNOWN = "RESTOCK_UNKNOWN"
    """A backorder needs a known restock time and none is known."""
    RESTOCK_TOO_LATE = "RESTOCK_TOO_LATE"
    """The restock is further away than the rules allow a backorder to wait."""
    SPLIT_LIMIT = "SPLIT_LIMIT"
    """Stock exists but only across more locations or shipments than the rules allow."""
    AVAILABILITY_UNKNOWN = "AVAILABILITY_UNKNOWN"
    """The availability of the SKU could not be determined."""


class LineStatus(StrEnum):
    ALLOCATED = "allocated"
    RESERVED = "reserved"
    DENIED = "denied"


class Outcome(StrEnum):
    """The cart decision: `allocate` if every line is allocated, `reserve` if some line is reserved
    and none denied, `deny` if any line is denied (unless the rules allow partial carts)."""

    ALLOCATE = "allocate"
    RESERVE = "reserve"
    DENY = "deny"


class LocationVerdict(StrEnum):
    USED = "used"
    PASSED_OVER = "passed_over"
    EXCLUDED = "excluded"


# --- requests -----------------------------------------------------------------------------------


class CartLine(Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity


class Cart(Struct, frozen=True, forbid_unknown_fields=True):
    """One checkout call: the lines and where they go."""

    country: CountryCode
    lines: Annotated[tuple[CartLine, ...], Meta(min_length=1, max_length=MAX_LINES)]
    cart_id: CartId | None = None
    channel: Channel | None = None
    pickup_location: LocationId | None = None
    """Click and collect: only this location may serve the cart."""


# --- decisions ----------------------------------------------------------------------------------


class Allocation(Struct, frozen=True):
    location_id: str
    quantity: int


class Reservation(Struct, frozen=True, omit_defaults=True):
    """The part of a line sold against a restock (a backorder or pre-order)."""

    quantity: int
    location_id: str | None = None
    restock_time: datetime | None = None


class SettingOrigin(Struct, frozen=True, omit_defaults=True):
    """Which rule set a setting, for explanations: `defaults` or a named rule, with its place."""

    setting: str
    value: Any
    rule: str
    file: str | None = None
    line: int | None = None
    location_id: str | None = None


class LocationExplanation(Struct, frozen=True, omit_defaults=True):
    location_id: str
    verdict: LocationVerdict
    detail: str
    atp: int | None = None
    safety_stock: int | None = None
    allocatable: int | None = None
    allocated: int = 0
    reserved: int = 0


class LineExplanation(Struct, frozen=True):
    settings: tuple[SettingOrigin, ...]
    locations: tuple[LocationExplanation, ...]
    summary: str


class CartExplanation(Struct, frozen=True):
    settings: tuple[SettingOrigin, ...]
    summary: str


class LineDecision(Struct, frozen=True, omit_defaults=True):
    line: int
    """Index of the line in the cart, from 0."""
    sku: str
    quantity: int
    status: LineStatus
    allocated: int
    reserved: int
    allocations: tuple[Allocation, ...]
    reasons: tuple[ReasonCode, ...]
    reservation: Reservation | None = None
    message: str | None = None
    """A shopper-facing sentence set by a deny rule."""
    available: int | None = None
    """On a line denied for stock: how many could have been allocated."""
    explanation: LineExplanation | None = None


class ShipmentLine(Struct, frozen=True):
    line: int
    sku: str
    quantity: int


class Shipment(Struct, frozen=True):
    location_id: str
    lines: tuple[ShipmentLine, ...]


class Freshness(Struct, frozen=True):
    """How current the upstream data behind an answer was. Absent when no upstream data was
    used (a snapshot, or no line needed any)."""

    stale: bool
    """True when any of it was served past its source's `fresh_for_ms`: the source failed, was
    being backed off from, or had not answered within the time budget."""
    oldest_age_ms: int
    """Age of the oldest of it, in milliseconds."""


class Decision(Struct, frozen=True, omit_defaults=True):
    decision: Outcome
    rule_set: str
    lines: tuple[LineDecision, ...]
    shipments: tuple[Shipment, ...]
    cart_id: str | None = None
    explanation: CartExplanation | None = None
    freshness: Freshness | None = None


# --- availability answers -----------------------------------------------------------------------


class SkuAvailability(Struct, frozen=True, omit_defaults=True):
    """What a product or cart page needs to know about one SKU for one destination."""

    sku: str
    known: bool
    """False when the SKU is not in the catalog."""
    shippable: bool
    orderable: bool
    """Would a line of one be accepted (allocated or reserved)? What "Add to cart" needs."""
    sellable: int
    """Units one order can have allocated now: after safety stock and minimum ATP, within the
    per-order maximum and the routing caps."""
    low_stock: bool
    backorderable: bool
    availability_unknown: bool = False
    restock_time: datetime | None = None
    reasons: tuple[ReasonCode, ...] = ()


class AvailabilityAnswer(Struct, frozen=True, omit_defaults=True):
    country: str
    rule_set: str
    items: tuple[SkuAvailability, ...]
    freshness: Freshness | None = None
