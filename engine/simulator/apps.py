"""One Litestar app per upstream API, serving the data file exactly as each API documents it,
and the control app that sets faults and reads counters.

Handlers read the raw query (`request.query_params`) rather than declaring parameters, because
the upstreams accept spellings Litestar would not (`inventoryItemIds[]=a`, `productId=1,2`,
repeated keys) and answer a bad one with their own error shape, not Litestar's. Every error,
including an unknown path or method, is written in the API's own style.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar, MediaType, Request, Response, delete, get, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.types import ExceptionHandlersMap

from engine.simulator.data import (
    APIS,
    UINT64_MAX,
    Api,
    CatalogData,
    DrLevel,
    DrLevelsData,
    DrShopperData,
    ShoplazzaData,
    ShopperProduct,
    as_api,
)
from engine.simulator.faults import ApiCounters, Fault
from engine.simulator.payloads import (
    ENCODER,
    DrError,
    DrErrors,
    InventoryLevel,
    InventoryLevels,
    ItemInventory,
    LocationItem,
    ProductInventory,
    Quantity,
    ShoplazzaErrors,
    ShopperInventoryStatus,
    ShopperProductRef,
    ShopperProducts,
    ShopperProductsPage,
    ShopperSingle,
    VariantInventory,
    bool_text,
    error_body,
    iso_utc,
)

__all__ = (
    "LEVELS_PATH",
    "Controller",
    "catalog_app",
    "control_app",
    "dr_levels_app",
    "dr_shopper_app",
    "shoplazza_app",
)

AnyRequest = Request[Any, Any, Any]

log = logging.getLogger(__name__)

LEVELS_PATH: Final = "/inventory-levels"
SHOPPER_PRODUCTS: Final = "/v1/shoppers/me/products"
UNTRACKED_QUANTITY: Final = 2147483647
"""What Digital River reports as the quantity of a product whose stock is not tracked."""
CATALOG_INCLUDES: Final = ("on_hand", "reserved", "available_to_promise", "short")
_COUNTRY: Final = re.compile(r"^[A-Za-z]{2}$")
_UUID_LENGTHS: Final = (32, 36, 38, 45)
"""Lengths a UUID may be written in (bare, hyphenated, braced, `urn:uuid:`)."""


def _json(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response[bytes]:
    return _raw(ENCODER.encode(payload), status, headers)


def _raw(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response[bytes]:
    return Response(
        body, status_code=status, media_type=MediaType.JSON, headers=dict(headers or {})
    )


def _error(api: Api, status: int, message: str, code: str | None = None) -> Response[bytes]:
    headers = {"www-authenticate": "Bearer"} if status == 401 and api != "shoplazza" else None
    return _raw(error_body(api, status, message, code), status, headers)


def _values(request: AnyRequest, *names: str) -> list[str]:
    """Every value of the named query keys, repeated or comma-joined, in the order sent, once
    each."""
    found: dict[str, None] = {}
    query = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
    for name, value in query:
        if name in names:
            for part in value.split(","):
                if part.strip():
                    found[part.strip()] = None
    return list(found)


def _bearer_denied(api: Api, request: AnyRequest, tokens: frozenset[str]) -> Response[bytes] | None:
    """401 unless `Authorization: Bearer <token>` carries an accepted token."""
    header = request.headers.get("authorization")
    if header is None:
        return _error(api, 401, "No credentials: send `Authorization: Bearer <token>`.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in tokens:
        return _error(api, 401, "The bearer token is not valid.")
    return None


def _exception_handlers(api: Api) -> ExceptionHandlersMap:
    """Unknown paths, wrong methods and anything unexpected, in the API's own error style."""

    def http_error(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
        return _error(api, exc.status_code, str(exc.detail))

    def server_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
        log.error("%s: %s %s failed", api, request.method, request.url.path, exc_info=exc)
        return _error(api, 500, "Internal Server Error")

    return {HTTPException: http_error, Exception: server_error}


def _app(api: Api, handlers: Iterable[Any]) -> Litestar:
    return Litestar(
        route_handlers=list(handlers),
        exception_handlers=_exception_handlers(api),
        openapi_config=None,
        logging_config=None,
    )


# --- dr-levels ----------------------------------------------------------------------------------


def _level(level: DrLevel) -> InventoryLevel:
    available = level.available_quantity > 0
    assert level.updated_time is not None  # loading gives every level one
    return InventoryLevel(
        location_id=level.location_id,
        inventory_item_id=level.inventory_item_id,
        available=available,
        available_quantity=level.available_quantity,
        available_time=(
            iso_utc(level.available_time)
            if not available and level.available_time is not None
            else msgspec.UNSET
        ),
        live_mode=False,
        updated_time=iso_utc(level.updated_time),
    )


def dr_levels_app(data: DrLevelsData) -> Litestar:
    """`GET /inventory-levels` of Digital River (API 2021-03-23)."""
    tokens = frozenset(data.tokens)
    ships_to: dict[str, frozenset[str]] = {}
    for location in data.locations:
        countries: set[str] = set()
        for code in location.ships_to:
            countries.update(data.country_groups.get(code, (code,)))
        ships_to[location.location_id] = frozenset(countries)
    order = {location.location_id: i for i, location in enumerate(data.locations)}
    by_item: dict[str, list[InventoryLevel]] = {}
    for level in sorted(data.levels, key=lambda level: order[level.location_id]):
        by_item.setdefault(level.inventory_item_id, []).append(_level(level))

    def bad_parameter(parameter: str, code: str, message: str) -> Response[bytes]:
        error = DrError(code=code, message=message, parameter=parameter)
        return _json(DrErrors(errors=(error,)), 400)

    @get(LEVELS_PATH, sync_to_thread=False)
    def inventory_levels(request: AnyRequest) -> Response[bytes]:
        denied = _bearer_denied("dr-levels", request, tokens)
        if denied is not None:
            return denied
        ids = _values(request, "inventoryItemIds", "inventoryItemIds[]")
        if not ids:
            return bad_parameter(
                "inventoryItemIds", "missing_parameter", "inventoryItemIds is required."
            )
        country = request.query_params.get("shipToCountry")
        if country is not None and not _COUNTRY.fullmatch(country):
            return bad_parameter(
                "shipToCountry",
                "invalid_parameter",
                "shipToCountry must be an ISO 3166-1 alpha-2 country code.",
            )
        available = request.query_params.get("available")
        if available is not None and available.lower() not in ("true", "false"):
            return bad_parameter("available", "invalid_parameter", "available must be a boolean.")
        levels = [level for item in ids for level in by_item.get(item, ())]
        if country is not None:
            levels = [level for level in levels if country.upper() in ships_to[level.location_id]]
        if available is not None and available.lower() == "true":
            levels = [level for level in levels if level.available_quantity > 0]
        return _json(InventoryLevels(data=tuple(levels)))

    return _app("dr-levels", [inventory_levels])


# --- dr-shopper ---------------------------------------------------------------------------------


def _shopper_status(product: ShopperProduct, base: str) -> ShopperInventoryStatus:
    product_uri = f"{base}{SHOPPER_PRODUCTS}/{product.id}"
    quantity = product.available_quantity if product.tracked else UNTRACKED_QUANTITY
    assert quantity is not None  # a tracked product has one (checked on loading)
    in_stock = not product.tracked or quantity > 0
    status = product.status
    if status is None:
        if in_stock:
            status = "PRODUCT_INVENTORY_IN_STOCK"
        elif product.allows_backorders:
            status = "PRODUCT_INVENTORY_BACKORDERED"
        else:
            status = "PRODUCT_INVENTORY_OUT_OF_STOCK"
    expected = product.expected_in_stock_date
    message = product.custom_stock_message
    return ShopperInventoryStatus(
        uri=f"{product_uri}/inventory-status",
        product=(
            ShopperProductRef(
                uri=product_uri,
                id=product.id,
                external_reference_id=product.external_reference_id,
                company_id=product.company_id,
            ),
        ),
        available_quantity=quantity,
        available_quantity_is_estimated="false",
        product_is_in_stock=bool_text(in_stock),
        product_is_allows_backorders=bool_text(product.allows_backorders),
        product_is_tracked=bool_text(product.tracked),
        requested_quantity_available=bool_text(in_stock),
        status=status,
        status_is_estimated="false",
        expected_in_stock_date=iso_utc(expected) if expected is not None else msgspec.UNSET,
        custom_stock_message=message if message is not None else msgspec.UNSET,
    )


def _base_url(request: AnyRequest) -> str:
    return str(request.base_url).rstrip("/")


def dr_shopper_app(data: DrShopperData) -> Litestar:
    """Digital River Commerce Shopper inventory status: many products, and one."""
    tokens = frozenset(data.tokens)
    by_id = {str(product.id): product for product in data.products}
    by_erid = {product.external_reference_id: product for product in data.products}

    @get(f"{SHOPPER_PRODUCTS}/inventory-status", sync_to_thread=False)
    def many(request: AnyRequest) -> Response[bytes]:
        denied = _bearer_denied("dr-shopper", request, tokens)
        if denied is not None:
            return denied
        found: dict[int, ShopperProduct] = {}
        for product_id in _values(request, "productId"):
            product = by_id.get(product_id)
            if product is not None:  # an invalid identifier is ignored, as documented
                found.setdefault(product.id, product)
        for erid in _values(request, "externalReferenceId"):
            product = by_erid.get(erid)
            if product is not None:
                found.setdefault(product.id, product)
        base = _base_url(request)
        page = ShopperProducts(
            uri=f"{base}{SHOPPER_PRODUCTS}/inventory-status",
            inventory_status=tuple(_shopper_status(p, base) for p in found.values()),
        )
        return _json(ShopperProductsPage(products=page))

    @get(f"{SHOPPER_PRODUCTS}/{{product_id:str}}/inventory-status", sync_to_thread=False)
    def one(request: AnyRequest, product_id: FromPath[str]) -> Response[bytes]:
        denied = _bearer_denied("dr-shopper", request, tokens)
        if denied is not None:
            return denied
        product = by_id.get(product_id)
        if product is None:
            return _error("dr-shopper", 404, f"Product {product_id} was not found.", "not_found")
        return _json(ShopperSingle(inventory_status=_shopper_status(product, _base_url(request))))

    return _app("dr-shopper", [many, one])


# --- shoplazza ----------------------------------------------------------------------------------


def _uuid_problem(text: str) -> str | None:
    """What Shoplazza says of an id that is not a UUID (its 500 message), None for a UUID."""
    if len(text) not in _UUID_LENGTHS:
        return f"invalid UUID length: {len(text)}"
    try:
        uuid.UUID(text)
    except ValueError:
        return "invalid UUID format"
    return None


def shoplazza_app(data: ShoplazzaData) -> Litestar:
    """Shoplazza OpenAPI 2022-01 product inventory, per variant per store location."""
    tokens = frozenset(data.tokens)
    products = {product.product_id: product for product in data.products}

    @get("/openapi/2022-01/products/{product_id:str}/inventory", sync_to_thread=False)
    def inventory(request: AnyRequest, product_id: FromPath[str]) -> Response[bytes]:
        if request.headers.get("access-token", "").strip() not in tokens:
            return _error("shoplazza", 401, "store is not active")
        problem = _uuid_problem(product_id)
        if problem is not None:
            return _json(ShoplazzaErrors(errors=(problem,)), 500)
        location_filter = request.query_params.get("location_id")
        wanted: int | None = None
        if location_filter is not None:
            # `isdigit` alone takes "²", which `int` then refuses: ASCII digits only.
            digits = location_filter.isascii() and location_filter.isdigit()
            if not digits or int(location_filter) > UINT64_MAX:
                return _json(ShoplazzaErrors(errors=("invalid location_id",)), 400)
            wanted = int(location_filter)
        product = products.get(uuid.UUID(product_id))
        if product is None:
            return _json(ShoplazzaErrors(errors=("product not found",)), 404)
        variants = tuple(
            VariantInventory(
                variant_id=str(variant.variant_id),
                location_items=tuple(
                    LocationItem(location_id=item.location_id, stock=item.stock)
                    for item in variant.location_items
                    if wanted is None or item.location_id == wanted
                ),
            )
            for variant in product.variants
        )
        return _json(ProductInventory(product_id=str(product.product_id), variants=variants))

    return _app("shoplazza", [inventory])


# --- catalog ------------------------------------------------------------------------------------


def _quantity(item_id: str, kind: str, value: Decimal) -> Quantity:
    return Quantity(
        id=f"qty_{item_id.removeprefix('item_')}_{kind}",
        value=format(value, "f"),
        display_value=format(value, ",f"),
    )


def catalog_app(data: CatalogData) -> Litestar:
    """Catalog API `GET /v1/catalog/items/{id}/inventory`: decimal quantities, expandable."""
    tokens = frozenset(data.tokens)
    items = {item.id: item for item in data.items}

    @get("/v1/catalog/items/{item_id:str}/inventory", sync_to_thread=False)
    def inventory(request: AnyRequest, item_id: FromPath[str]) -> Response[bytes]:
        denied = _bearer_denied("catalog", request, tokens)
        if denied is not None:
            return denied
        include = _values(request, "include[]", "include")
        unknown = [name for name in include if name not in CATALOG_INCLUDES]
        if unknown:
            return _error(
                "catalog",
                400,
                f"include[] may be {', '.join(CATALOG_INCLUDES)}; not {', '.join(unknown)}.",
                "invalid_request",
            )
        item = items.get(item_id)
        if item is None:
            return _error("catalog", 404, f"No item with id `{item_id}`.", "not_found")
        values = item.quantities()
        shown = {
            kind: _quantity(item.id, kind, values[kind]) if kind in include else None
            for kind in CATALOG_INCLUDES
        }
        return _json(
            ItemInventory(
                on_hand=shown["on_hand"],
                reserved=shown["reserved"],
                available_to_promise=shown["available_to_promise"],
                short=shown["short"],
            )
        )

    return _app("catalog", [inventory])


# --- control ------------------------------------------------------------------------------------


class Controller(Protocol):
    """What the control app drives: the running simulator."""

    async def apply_fault(self, api: Api, fault: Fault) -> None: ...

    async def clear_faults(self) -> None: ...

    def faults(self) -> Mapping[str, Fault]: ...

    def counters(self) -> Mapping[str, ApiCounters]: ...

    def reset_counters(self) -> None: ...

    def urls(self) -> Mapping[str, str]: ...


class ControlError(msgspec.Struct, frozen=True):
    error: str


class Health(msgspec.Struct, frozen=True):
    status: str
    apis: dict[str, str]


_FAULT_DECODER: Final = msgspec.json.Decoder(Fault)


def control_app(controller: Controller) -> Litestar:
    """`GET /faults`, `PUT /faults/{api}` (a `Fault` as JSON; `{}` clears it), `DELETE /faults`,
    `GET /counters`, `DELETE /counters`, `GET /health`."""

    @get("/faults")
    async def faults() -> Response[bytes]:
        return _json(controller.faults())

    @put("/faults/{api:str}", status_code=200)
    async def set_fault(request: AnyRequest, api: FromPath[str]) -> Response[bytes]:
        name = as_api(api)
        if name is None:
            return _json(ControlError(f"no API `{api}`: one of {', '.join(APIS)}"), 404)
        try:
            fault = _FAULT_DECODER.decode(await request.body())
        except msgspec.DecodeError as exc:
            return _json(ControlError(f"not a fault: {exc}"), 400)
        try:
            await controller.apply_fault(name, fault)
        except OSError as exc:
            return _json(ControlError(f"{api}: cannot listen again: {exc}"), 500)
        return _json(controller.faults())

    @delete("/faults", status_code=200)
    async def clear_faults() -> Response[bytes]:
        await controller.clear_faults()
        return _json(controller.faults())

    @get("/counters")
    async def counters() -> Response[bytes]:
        return _json(controller.counters())

    @delete("/counters", status_code=200)
    async def reset_counters() -> Response[bytes]:
        controller.reset_counters()
        return _json(controller.counters())

    @get("/health")
    async def health() -> Response[bytes]:
        return _json(Health(status="ok", apis=dict(controller.urls())))

    def http_error(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
        return _json(ControlError(str(exc.detail)), exc.status_code)

    return Litestar(
        route_handlers=[faults, set_fault, clear_faults, counters, reset_counters, health],
        exception_handlers={HTTPException: http_error},
        openapi_config=None,
        logging_config=None,
    )
