"""The documented payloads of the four APIs, field for field, and each API's error style.

Written as Structs so that a field name, an order or a type (a boolean that is the *string*
`"true"`, a uint64 that must stay an exact integer) is fixed in one place. Optional fields the
documentation says are "not returned" are `UNSET`, so the key is left out, never `null`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from engine.simulator.data import Api

__all__ = (
    "WRONG_SHAPE",
    "BoolText",
    "CatalogError",
    "CatalogErrorDetail",
    "DrError",
    "DrErrors",
    "InventoryLevel",
    "InventoryLevels",
    "ItemInventory",
    "LocationItem",
    "ProductInventory",
    "Quantity",
    "ShoplazzaError",
    "ShoplazzaErrors",
    "ShopperInventoryStatus",
    "ShopperProductRef",
    "ShopperProducts",
    "ShopperProductsPage",
    "ShopperSingle",
    "VariantInventory",
    "bool_text",
    "error_body",
    "iso_utc",
    "status_code_word",
)

ENCODER: Final = msgspec.json.Encoder()

BoolText = Literal["true", "false"]


def bool_text(value: bool) -> BoolText:
    return "true" if value else "false"


def iso_utc(moment: datetime) -> str:
    """`2026-11-20T08:00:00Z`; milliseconds only when there are any."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def status_code_word(status: int) -> str:
    """`429` -> `too_many_requests`: the error code a status stands for."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return phrase.lower().replace("-", "_").replace(" ", "_").replace("'", "")


# --- dr-levels ----------------------------------------------------------------------------------


class InventoryLevel(Struct, frozen=True, rename="camel", kw_only=True):
    location_id: str
    inventory_item_id: str
    available: bool
    available_quantity: int
    available_time: str | UnsetType = UNSET
    """Only when not available and a restock time is known; "null and not returned" otherwise."""
    live_mode: bool
    updated_time: str


class InventoryLevels(Struct, frozen=True):
    data: tuple[InventoryLevel, ...]


class DrError(Struct, frozen=True):
    code: str
    message: str
    parameter: str | UnsetType = UNSET


class DrErrors(Struct, frozen=True):
    errors: tuple[DrError, ...]


# --- dr-shopper ---------------------------------------------------------------------------------


class ShopperProductRef(Struct, frozen=True, rename="camel"):
    uri: str
    id: int
    external_reference_id: str
    company_id: str


class ShopperInventoryStatus(Struct, frozen=True, rename="camel", kw_only=True):
    uri: str
    product: tuple[ShopperProductRef, ...]
    available_quantity: int
    available_quantity_is_estimated: BoolText
    product_is_in_stock: BoolText
    product_is_allows_backorders: BoolText
    product_is_tracked: BoolText
    requested_quantity_available: BoolText
    status: str
    status_is_estimated: BoolText
    expected_in_stock_date: str | UnsetType = UNSET
    custom_stock_message: str | UnsetType = UNSET


class ShopperProducts(Struct, frozen=True, rename="camel"):
    uri: str
    inventory_status: tuple[ShopperInventoryStatus, ...]


class ShopperProductsPage(Struct, frozen=True):
    products: ShopperProducts


class ShopperSingle(Struct, frozen=True, rename="camel"):
    inventory_status: ShopperInventoryStatus


# --- shoplazza ----------------------------------------------------------------------------------


class LocationItem(Struct, frozen=True):
    location_id: int
    """uint64: msgspec writes a Python int exactly, never through a float."""
    stock: int


class VariantInventory(Struct, frozen=True):
    variant_id: str
    location_items: tuple[LocationItem, ...]


class ProductInventory(Struct, frozen=True):
    product_id: str
    variants: tuple[VariantInventory, ...]


class ShoplazzaErrors(Struct, frozen=True):
    errors: tuple[str, ...]


class ShoplazzaError(Struct, frozen=True):
    error: str


# --- catalog ------------------------------------------------------------------------------------


class Quantity(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["quantity"] = "quantity"
    value: str
    """A decimal, as a string to keep its precision."""
    display_value: str
    unit: None = None
    """Always null in this endpoint."""


class ItemInventory(Struct, frozen=True, kw_only=True):
    object: Literal["item_inventory"] = "item_inventory"
    on_hand: Quantity | None
    reserved: Quantity | None
    available_to_promise: Quantity | None
    short: Quantity | None


class CatalogErrorDetail(Struct, frozen=True):
    type: str
    message: str


class CatalogError(Struct, frozen=True):
    error: CatalogErrorDetail


# --- error bodies and wrong shapes, per API -----------------------------------------------------


def error_body(api: Api, status: int, message: str, code: str | None = None) -> bytes:
    """A JSON error body in the API's own style. Shoplazza answers a bad access token with
    `{"error": "store is not active"}` and everything else with `{"errors": [...]}`."""
    word = code or status_code_word(status)
    if api in ("dr-levels", "dr-shopper"):
        return ENCODER.encode(DrErrors(errors=(DrError(code=word, message=message),)))
    if api == "shoplazza":
        if status == 401:
            return ENCODER.encode(ShoplazzaError(error="store is not active"))
        return ENCODER.encode(ShoplazzaErrors(errors=(message,)))
    return ENCODER.encode(CatalogError(error=CatalogErrorDetail(type=word, message=message)))


WRONG_SHAPE: Final[dict[Api, bytes]] = {
    "dr-levels": b'{"data": {"inventoryLevels": [{"locationId": 20045, '
    b'"available": "true", "availableQuantity": "40"}]}}',
    "dr-shopper": b'{"products": {"inventoryStatus": {"product": "64578600", '
    b'"availableQuantity": "ten", "productIsInStock": true}}}',
    "shoplazza": b'{"product_id": 12345, "variants": {"location_items": '
    b'[{"location_id": "everywhere", "stock": "5"}]}}',
    "catalog": b'{"object": "item_inventory", "on_hand": 30, "reserved": "0", '
    b'"available_to_promise": {"value": 30}}',
}
"""Valid JSON, plausible at a glance, not the documented shape: nested where a list belongs,
numbers as strings and strings as numbers, required fields missing."""
