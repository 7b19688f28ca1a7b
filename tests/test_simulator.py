"""The upstream simulator over real HTTP on 127.0.0.1: each API's documented payloads for the demo
data, every parameter spelling, auth failures, every fault, counters, the data file's errors,
and starting and stopping cleanly.

Expected bodies are written out in full: a field that appears or disappears is a change in what
the adapters are tested against.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from engine.simulator import APIS, ApiCounters, Fault, Simulator, UpstreamFileError, main
from engine.simulator.data import load_upstream
from engine.simulator.payloads import (
    InventoryLevels,
    ItemInventory,
    ProductInventory,
    ShopperProductsPage,
    ShopperSingle,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "upstream.json"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
"""Relative dates in the demo data are anchored here: restock in 21 days is 2026-12-13."""

AFE = "afe95639-8181-4b66-86a6-1a9493d5419d"
DUB = "20045"
TEE_BLK = "ce4ce2de-530c-4da2-bf8a-f0f8cf059095"
TEE_WHT = "310abe81-69f6-44e5-85df-2674045e5460"
HOODIE = "6b0e9f7c-2d4a-4f1e-8c3b-5a7d9e1f2c40"
SNEAKER = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
POWERBANK = "9d3c1b2a-7e6f-4a5b-8c9d-0e1f2a3b4c5d"
KNIFE = "c4a1e2b3-5d6f-4a7b-8c9d-2e3f4a5b6c7d"
VINYL = "e5f6a7b8-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
LAMP = "0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
"""Deliberately not in the data."""
UPDATED = "2026-11-21T06:00:00Z"

TEE_PRODUCT = "f854e9a2-986d-4e2b-9df0-8e4c139ae80e"
KNIFE_PRODUCT = "a3c5e7f9-1b2d-4e6f-8a0c-2d4f6a8c0e1f"
STORE = 327627904831724000
STORE_2 = 327627904831724001

TOKENS = {
    "dr-levels": "demo-dr-levels-token",
    "dr-shopper": "demo-dr-shopper-token",
    "shoplazza": "demo-shoplazza-token",
    "catalog": "demo-catalog-token",
}
SHOPPER = "/v1/shoppers/me/products"
LEVELS = "/inventory-levels"
SAMPLE_PATH = {
    "dr-levels": f"{LEVELS}?inventoryItemIds={TEE_BLK}",
    "dr-shopper": f"{SHOPPER}/64578600/inventory-status",
    "shoplazza": f"/openapi/2022-01/products/{TEE_PRODUCT}/inventory",
    "catalog": "/v1/catalog/items/item_tee_blk_m/inventory?include[]=on_hand",
}
DOCUMENTED_SHAPES: dict[str, tuple[type[msgspec.Struct], ...]] = {
    "dr-levels": (InventoryLevels,),
    "dr-shopper": (ShopperSingle, ShopperProductsPage),
    "shoplazza": (ProductInventory,),
    "catalog": (ItemInventory,),
}
"""The payload Structs the simulator encodes; the first is the shape of `SAMPLE_PATH`."""


def auth(api: str) -> dict[str, str]:
    if api == "shoplazza":
        return {"access-token": TOKENS[api]}
    return {"Authorization": f"Bearer {TOKENS[api]}"}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(DEMO, now=NOW) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test that uses the shared simulator starts with no faults and zero counters."""
    if "sim" not in request.fixturenames:
        yield
        return
    running: Simulator = request.getfixturevalue("sim")
    running.clear_faults()
    running.reset_counters()
    yield
    running.clear_faults()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for the module: making one costs ~0.1 s (its TLS context)."""
    with httpx.Client(timeout=5.0) as http:
        yield http


def get(client: httpx.Client, sim: Simulator, api: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", auth(api))
    return client.get(sim.url(api) + path, headers=headers, **kwargs)


# --- dr-levels ----------------------------------------------------------------------------------


def level(
    item: str, location: str, quantity: int, *, updated: str = UPDATED, restock: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "locationId": location,
        "inventoryItemId": item,
        "available": quantity > 0,
        "availableQuantity": quantity,
    }
    if restock is not None:
        body["availableTime"] = restock
    body |= {"liveMode": False, "updatedTime": updated}
    return body


ALL_LEVELS = [
    level(TEE_BLK, AFE, 40, updated="2026-11-20T08:00:00Z"),
    level(TEE_BLK, DUB, 25),
    level(TEE_WHT, AFE, 3),
    level(TEE_WHT, DUB, 12),
    level(HOODIE, AFE, 7),
    level(HOODIE, DUB, 6),
    level(SNEAKER, AFE, 0, restock="2026-12-13T00:00:00Z"),
    level(SNEAKER, DUB, 1),
    level(POWERBANK, AFE, 15),
    level(KNIFE, AFE, 10),
    level(VINYL, AFE, 3),
]
ALL_ITEMS = [TEE_BLK, TEE_WHT, HOODIE, SNEAKER, POWERBANK, KNIFE, VINYL]


def test_levels_payload_for_every_demo_item(sim: Simulator, client: httpx.Client) -> None:
    response = get(
        client, sim, "dr-levels", LEVELS, params={"inventoryItemIds": ",".join([*ALL_ITEMS, LAMP])}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": ALL_LEVELS}
    # `availableTime` is left out, not null, wherever there is nothing to say.
    assert response.text.count('"availableTime"') == 1
    assert "null" not in response.text


@pytest.mark.parametrize(
    "query",
    [
        [("inventoryItemIds", TEE_BLK), ("inventoryItemIds", SNEAKER)],
        [("inventoryItemIds", f"{TEE_BLK},{SNEAKER}")],
        [("inventoryItemIds[]", TEE_BLK), ("inventoryItemIds[]", SNEAKER)],
        [("inventoryItemIds[]", TEE_BLK), ("inventoryItemIds", f"{SNEAKER},{TEE_BLK}")],
    ],
    ids=["repeated", "comma-joined", "brackets", "mixed"],
)
def test_levels_item_id_spellings(
    sim: Simulator, client: httpx.Client, query: list[tuple[str, str]]
) -> None:
    response = get(client, sim, "dr-levels", LEVELS, params=query)
    assert response.status_code == 200
    assert response.json() == {"data": [ALL_LEVELS[0], ALL_LEVELS[1], ALL_LEVELS[6], ALL_LEVELS[7]]}


def test_levels_brackets_written_raw(sim: Simulator, client: httpx.Client) -> None:
    response = get(client, sim, "dr-levels", f"{LEVELS}?inventoryItemIds[]={POWERBANK}")
    assert response.json() == {"data": [level(POWERBANK, AFE, 15)]}


def test_levels_unknown_items_are_absent(sim: Simulator, client: httpx.Client) -> None:
    response = get(client, sim, "dr-levels", LEVELS, params={"inventoryItemIds": LAMP})
    assert response.status_code == 200
    assert response.json() == {"data": []}


@pytest.mark.parametrize(
    ("country", "locations"),
    [("GB", [AFE]), ("gb", [AFE]), ("NO", [AFE, DUB]), ("SE", [AFE, DUB]), ("US", [])],
)
def test_levels_ship_to_country(
    sim: Simulator, client: httpx.Client, country: str, locations: list[str]
) -> None:
    response = get(
        client,
        sim,
        "dr-levels",
        LEVELS,
        params={"inventoryItemIds": TEE_BLK, "shipToCountry": country},
    )
    assert response.status_code == 200
    assert [row["locationId"] for row in response.json()["data"]] == locations


@pytest.mark.parametrize(
    ("available", "expected"),
    [("true", [ALL_LEVELS[7]]), ("false", [ALL_LEVELS[6], ALL_LEVELS[7]])],
)
def test_levels_available_filter(
    sim: Simulator, client: httpx.Client, available: str, expected: list[dict[str, Any]]
) -> None:
    params = {"inventoryItemIds": SNEAKER, "available": available}
    response = get(client, sim, "dr-levels", LEVELS, params=params)
    assert response.json() == {"data": expected}


def test_levels_filters_combine(sim: Simulator, client: httpx.Client) -> None:
    params = {"inventoryItemIds": SNEAKER, "available": "true", "shipToCountry": "GB"}
    response = get(client, sim, "dr-levels", LEVELS, params=params)
    assert response.json() == {"data": []}


@pytest.mark.parametrize(
    ("query", "parameter", "code"),
    [
        ("", "inventoryItemIds", "missing_parameter"),
        ("?inventoryItemIds=", "inventoryItemIds", "missing_parameter"),
        (
            f"?inventoryItemIds={TEE_BLK}&shipToCountry=Ireland",
            "shipToCountry",
            "invalid_parameter",
        ),
        (
            f"?inventoryItemIds={TEE_BLK}&shipToCountry=GB%0A",
            "shipToCountry",
            "invalid_parameter",
        ),
        (f"?inventoryItemIds={TEE_BLK}&available=yes", "available", "invalid_parameter"),
    ],
)
def test_levels_bad_parameters(
    sim: Simulator, client: httpx.Client, query: str, parameter: str, code: str
) -> None:
    response = get(client, sim, "dr-levels", LEVELS + query)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == code
    assert error["parameter"] == parameter
    assert parameter in error["message"]


# --- dr-shopper ---------------------------------------------------------------------------------


def shopper_status(base: str, product_id: int, erid: str, **fields: Any) -> dict[str, Any]:
    product_uri = f"{base}{SHOPPER}/{product_id}"
    return {
        "uri": f"{product_uri}/inventory-status",
        "product": [
            {
                "uri": product_uri,
                "id": product_id,
                "externalReferenceId": erid,
                "companyId": "demosft1",
            }
        ],
        **fields,
    }


def powerbank(base: str) -> dict[str, Any]:
    return shopper_status(
        base,
        64578600,
        "POWERBANK-20K",
        availableQuantity=10,
        availableQuantityIsEstimated="false",
        productIsInStock="true",
        productIsAllowsBackorders="false",
        productIsTracked="true",
        requestedQuantityAvailable="true",
        status="PRODUCT_INVENTORY_IN_STOCK",
        statusIsEstimated="false",
        customStockMessage="In stock",
    )


def sneaker(base: str) -> dict[str, Any]:
    return shopper_status(
        base,
        64578700,
        "SNEAKER-RUN-42",
        availableQuantity=0,
        availableQuantityIsEstimated="false",
        productIsInStock="false",
        productIsAllowsBackorders="true",
        productIsTracked="true",
        requestedQuantityAvailable="false",
        status="PRODUCT_INVENTORY_BACKORDERED",
        statusIsEstimated="false",
        expectedInStockDate="2026-12-06T00:00:00Z",
        customStockMessage="Backordered: ships when restocked",
    )


def giftcard(base: str) -> dict[str, Any]:
    return shopper_status(
        base,
        64578500,
        "GIFTCARD-50",
        availableQuantity=2147483647,
        availableQuantityIsEstimated="false",
        productIsInStock="true",
        productIsAllowsBackorders="false",
        productIsTracked="false",
        requestedQuantityAvailable="true",
        status="PRODUCT_INVENTORY_IN_STOCK",
        statusIsEstimated="false",
        customStockMessage="Delivered by email",
    )


def shopper_page(base: str, *statuses: dict[str, Any]) -> dict[str, Any]:
    return {
        "products": {"uri": f"{base}{SHOPPER}/inventory-status", "inventoryStatus": list(statuses)}
    }


def test_shopper_many_by_product_id(sim: Simulator, client: httpx.Client) -> None:
    base = sim.url("dr-shopper")
    response = get(
        client,
        sim,
        "dr-shopper",
        f"{SHOPPER}/inventory-status?productId=64578600,64578700,64578500",
    )
    assert response.status_code == 200
    assert response.json() == shopper_page(base, powerbank(base), sneaker(base), giftcard(base))
    assert response.text.count('"expectedInStockDate"') == 1


@pytest.mark.parametrize(
    "query",
    [
        "productId=64578700&productId=64578500",
        "productId=64578700,64578500",
        "externalReferenceId=SNEAKER-RUN-42,GIFTCARD-50",
        "externalReferenceId=SNEAKER-RUN-42&externalReferenceId=GIFTCARD-50",
        "productId=64578700,999,not-a-number&externalReferenceId=GIFTCARD-50,NOPE",
        "productId=64578700&externalReferenceId=SNEAKER-RUN-42&externalReferenceId=GIFTCARD-50",
    ],
)
def test_shopper_many_spellings(sim: Simulator, client: httpx.Client, query: str) -> None:
    base = sim.url("dr-shopper")
    response = get(client, sim, "dr-shopper", f"{SHOPPER}/inventory-status?{query}")
    assert response.status_code == 200
    assert response.json() == shopper_page(base, sneaker(base), giftcard(base))


@pytest.mark.parametrize("query", ["", "?productId=", "?productId=1,2&externalReferenceId=X"])
def test_shopper_nothing_asked_or_found_is_an_empty_collection(
    sim: Simulator, client: httpx.Client, query: str
) -> None:
    base = sim.url("dr-shopper")
    response = get(client, sim, "dr-shopper", f"{SHOPPER}/inventory-status{query}")
    assert response.status_code == 200
    assert response.json() == shopper_page(base)


def test_shopper_one_product(sim: Simulator, client: httpx.Client) -> None:
    base = sim.url("dr-shopper")
    for product_id, expected in [
        (64578600, powerbank(base)),
        (64578700, sneaker(base)),
        (64578500, giftcard(base)),
    ]:
        response = get(client, sim, "dr-shopper", f"{SHOPPER}/{product_id}/inventory-status")
        assert response.status_code == 200
        assert response.json() == {"inventoryStatus": expected}
        flags = {k: v for k, v in expected.items() if k.endswith("Estimated") or "Is" in k}
        assert all(value in ("true", "false") for value in flags.values())


@pytest.mark.parametrize("product_id", ["12345", "not-a-number", "POWERBANK-20K"])
def test_shopper_one_unknown_product_is_404(
    sim: Simulator, client: httpx.Client, product_id: str
) -> None:
    response = get(client, sim, "dr-shopper", f"{SHOPPER}/{product_id}/inventory-status")
    assert response.status_code == 404
    assert response.json() == {
        "errors": [{"code": "not_found", "message": f"Product {product_id} was not found."}]
    }


# --- shoplazza ----------------------------------------------------------------------------------


def test_shoplazza_payload_keeps_uint64_exact(sim: Simulator, client: httpx.Client) -> None:
    response = get(client, sim, "shoplazza", SAMPLE_PATH["shoplazza"])
    assert response.status_code == 200
    assert response.json() == {
        "product_id": TEE_PRODUCT,
        "variants": [
            {
                "variant_id": "5723299f-238a-4491-8b42-a187462e748a",
                "location_items": [
                    {"location_id": STORE, "stock": 5},
                    {"location_id": STORE_2, "stock": 9},
                ],
            },
            {
                "variant_id": "8e1c2f4a-0b7d-4c55-9a51-3d6f0e2b7c10",
                "location_items": [{"location_id": STORE, "stock": 2}],
            },
        ],
    }
    assert '"location_id":327627904831724000,' in response.text
    assert '"location_id":327627904831724001,' in response.text
    assert float(STORE) != STORE  # the reason it must never pass through a double


def test_shoplazza_second_product(sim: Simulator, client: httpx.Client) -> None:
    path = f"/openapi/2022-01/products/{KNIFE_PRODUCT}/inventory"
    response = get(client, sim, "shoplazza", path)
    assert response.json() == {
        "product_id": KNIFE_PRODUCT,
        "variants": [
            {
                "variant_id": "b4d6f8a0-2c4e-4f6a-9b1d-3e5f7a9c1e3a",
                "location_items": [{"location_id": STORE, "stock": 4}],
            }
        ],
    }


def test_shoplazza_location_filter(sim: Simulator, client: httpx.Client) -> None:
    path = SAMPLE_PATH["shoplazza"]
    response = get(client, sim, "shoplazza", path, params={"location_id": str(STORE_2)})
    assert response.json() == {
        "product_id": TEE_PRODUCT,
        "variants": [
            {
                "variant_id": "5723299f-238a-4491-8b42-a187462e748a",
                "location_items": [{"location_id": STORE_2, "stock": 9}],
            },
            {"variant_id": "8e1c2f4a-0b7d-4c55-9a51-3d6f0e2b7c10", "location_items": []},
        ],
    }
    for location in ("store-1", "\u00b2", "\u0661"):  # "²" and Arabic-Indic one are not ids
        bad = get(client, sim, "shoplazza", path, params={"location_id": location})
        assert bad.status_code == 400, location
        assert bad.json() == {"errors": ["invalid location_id"]}


@pytest.mark.parametrize(
    ("product_id", "message"),
    [
        ("a1b2c3d4-e", "invalid UUID length: 10"),
        ("a1b2c3d4-e5f6-7g8h", "invalid UUID length: 18"),
        ("zzzzzzzz-986d-4e2b-9df0-8e4c139ae80e", "invalid UUID format"),
    ],
)
def test_shoplazza_not_a_uuid_is_500(
    sim: Simulator, client: httpx.Client, product_id: str, message: str
) -> None:
    response = get(client, sim, "shoplazza", f"/openapi/2022-01/products/{product_id}/inventory")
    assert response.status_code == 500
    assert response.json() == {"errors": [message]}


def test_shoplazza_unknown_product_is_404(sim: Simulator, client: httpx.Client) -> None:
    path = "/openapi/2022-01/products/00000000-0000-4000-8000-000000000000/inventory"
    response = get(client, sim, "shoplazza", path)
    assert response.status_code == 404
    assert response.json() == {"errors": ["product not found"]}


@pytest.mark.parametrize(
    "headers",
    [{}, {"access-token": "wrong"}, {"Authorization": "Bearer demo-shoplazza-token"}],
    ids=["missing", "wrong", "bearer-instead"],
)
def test_shoplazza_bad_access_token(
    sim: Simulator, client: httpx.Client, headers: dict[str, str]
) -> None:
    response = get(client, sim, "shoplazza", SAMPLE_PATH["shoplazza"], headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "store is not active"}


# --- catalog ------------------------------------------------------------------------------------


def quantity(item: str, kind: str, value: str) -> dict[str, Any]:
    return {
        "id": f"qty_{item.removeprefix('item_')}_{kind}",
        "object": "quantity",
        "value": value,
        "display_value": value,
        "unit": None,
    }


EVERYTHING = "?include[]=on_hand&include[]=reserved&include[]=available_to_promise&include[]=short"


@pytest.mark.parametrize(
    ("item", "on_hand", "reserved", "atp", "short"),
    [
        ("item_tee_blk_m", "30", "0", "30", "0"),
        ("item_tee_wht_m", "0", "0", "0", "0"),
        ("item_hoodie_gry_l", "3", "0.5", "2.5", "0"),
        ("item_powerbank_20k", "32", "2", "30", "0"),
    ],
)
def test_catalog_everything_included(
    sim: Simulator,
    client: httpx.Client,
    item: str,
    on_hand: str,
    reserved: str,
    atp: str,
    short: str,
) -> None:
    response = get(client, sim, "catalog", f"/v1/catalog/items/{item}/inventory{EVERYTHING}")
    assert response.status_code == 200
    assert response.json() == {
        "object": "item_inventory",
        "on_hand": quantity(item, "on_hand", on_hand),
        "reserved": quantity(item, "reserved", reserved),
        "available_to_promise": quantity(item, "available_to_promise", atp),
        "short": quantity(item, "short", short),
    }


def test_catalog_sub_objects_are_null_unless_included(sim: Simulator, client: httpx.Client) -> None:
    path = "/v1/catalog/items/item_hoodie_gry_l/inventory"
    bare = get(client, sim, "catalog", path)
    assert bare.json() == {
        "object": "item_inventory",
        "on_hand": None,
        "reserved": None,
        "available_to_promise": None,
        "short": None,
    }
    some = get(client, sim, "catalog", path, params=[("include[]", "available_to_promise")])
    assert some.json() == {
        "object": "item_inventory",
        "on_hand": None,
        "reserved": None,
        "available_to_promise": quantity("item_hoodie_gry_l", "available_to_promise", "2.5"),
        "short": None,
    }
    assert '"value":"2.5"' in some.text  # a decimal string, never a number


def test_catalog_bad_include_and_unknown_item(sim: Simulator, client: httpx.Client) -> None:
    bad = get(client, sim, "catalog", "/v1/catalog/items/item_tee_blk_m/inventory?include[]=price")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request"
    assert "price" in bad.json()["error"]["message"]
    missing = get(client, sim, "catalog", "/v1/catalog/items/item_nothing/inventory")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"type": "not_found", "message": "No item with id `item_nothing`."}
    }


# --- auth and unknown paths ---------------------------------------------------------------------


def unauthorised(api: str, message: str) -> dict[str, Any]:
    if api == "catalog":
        return {"error": {"type": "unauthorized", "message": message}}
    return {"errors": [{"code": "unauthorized", "message": message}]}


NO_CREDENTIALS = "No credentials: send `Authorization: Bearer <token>`."
BAD_TOKEN = "The bearer token is not valid."


@pytest.mark.parametrize("api", ["dr-levels", "dr-shopper", "catalog"])
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, NO_CREDENTIALS),
        ({"Authorization": "Bearer nope"}, BAD_TOKEN),
        ({"Authorization": "Basic ZGVtbzpkZW1v"}, BAD_TOKEN),
        ({"Authorization": "Bearer demo-shoplazza-token"}, BAD_TOKEN),
    ],
    ids=["missing", "wrong", "basic", "other-api-token"],
)
def test_bearer_auth_failures(
    sim: Simulator, client: httpx.Client, api: str, headers: dict[str, str], message: str
) -> None:
    response = get(client, sim, api, SAMPLE_PATH[api], headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == unauthorised(api, message)


def test_bearer_scheme_is_case_insensitive(sim: Simulator, client: httpx.Client) -> None:
    headers = {"authorization": f"bearer {TOKENS['dr-levels']}"}
    response = get(client, sim, "dr-levels", SAMPLE_PATH["dr-levels"], headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("api", "body"),
    [
        ("dr-levels", {"errors": [{"code": "not_found", "message": "Not Found"}]}),
        ("dr-shopper", {"errors": [{"code": "not_found", "message": "Not Found"}]}),
        ("shoplazza", {"errors": ["Not Found"]}),
        ("catalog", {"error": {"type": "not_found", "message": "Not Found"}}),
    ],
)
def test_unknown_paths_answer_in_the_api_style(
    sim: Simulator, client: httpx.Client, api: str, body: dict[str, Any]
) -> None:
    response = get(client, sim, api, "/nowhere")
    assert response.status_code == 404
    assert response.json() == body


# --- faults -------------------------------------------------------------------------------------


def status_body(api: str, status: int, phrase: str, code: str) -> dict[str, Any]:
    message = f"{phrase} (simulated fault)"
    if api in ("dr-levels", "dr-shopper"):
        return {"errors": [{"code": code, "message": message}]}
    if api == "shoplazza":
        return {"error": "store is not active"} if status == 401 else {"errors": [message]}
    return {"error": {"type": code, "message": message}}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("fault", "phrase", "code"),
    [
        (Fault(status=503, retry_after=7), "Service Unavailable", "service_unavailable"),
        (Fault(status=429, retry_after=2), "Too Many Requests", "too_many_requests"),
        (Fault(status=500), "Internal Server Error", "internal_server_error"),
        (Fault(status=401), "Unauthorized", "unauthorized"),
        (Fault(status=403), "Forbidden", "forbidden"),
    ],
    ids=["503", "429", "500", "401", "403"],
)
def test_status_fault(
    sim: Simulator, client: httpx.Client, api: str, fault: Fault, phrase: str, code: str
) -> None:
    assert fault.status is not None
    sim.set_fault(api, fault)
    response = get(client, sim, api, SAMPLE_PATH[api])
    assert response.status_code == fault.status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == status_body(api, fault.status, phrase, code)
    if fault.retry_after is None:
        assert "retry-after" not in response.headers
    else:
        assert response.headers["retry-after"] == str(fault.retry_after)
    # Every request, whatever its path or credentials.
    assert get(client, sim, api, "/nowhere", headers={}).status_code == fault.status


@pytest.mark.parametrize("api", APIS)
def test_malformed_fault(sim: Simulator, client: httpx.Client, api: str) -> None:
    sim.set_fault(api, Fault(malformed=True))
    response = get(client, sim, api, SAMPLE_PATH[api])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("api", APIS)
def test_wrong_shape_fault(sim: Simulator, client: httpx.Client, api: str) -> None:
    shapes = DOCUMENTED_SHAPES[api]
    good = get(client, sim, api, SAMPLE_PATH[api])
    msgspec.json.decode(good.content, type=shapes[0])  # the documented shape decodes
    sim.set_fault(api, Fault(wrong_shape=True))
    response = get(client, sim, api, SAMPLE_PATH[api])
    assert response.status_code == 200
    assert isinstance(response.json(), dict)
    for shape in shapes:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(response.content, type=shape)


def read_into(response: httpx.Response, received: bytearray) -> None:
    for chunk in response.iter_raw():
        received += chunk


@pytest.mark.parametrize("api", APIS)
def test_reset_fault_cuts_the_body(sim: Simulator, client: httpx.Client, api: str) -> None:
    whole = get(client, sim, api, SAMPLE_PATH[api])
    sim.set_fault(api, Fault(reset=True))
    received = bytearray()
    with client.stream("GET", sim.url(api) + SAMPLE_PATH[api], headers=auth(api)) as response:
        assert response.status_code == whole.status_code
        assert response.headers["content-length"] == str(len(whole.content))
        with pytest.raises(httpx.RemoteProtocolError, match="without sending complete"):
            read_into(response, received)
    assert received == whole.content[: len(whole.content) // 2]
    sim.clear_faults()
    assert get(client, sim, api, SAMPLE_PATH[api]).content == whole.content


def test_latency_fault(sim: Simulator, client: httpx.Client) -> None:
    started = time.monotonic()
    assert get(client, sim, "catalog", SAMPLE_PATH["catalog"]).status_code == 200
    fast = time.monotonic() - started
    sim.set_fault("catalog", Fault(latency_ms=300))
    started = time.monotonic()
    response = get(client, sim, "catalog", SAMPLE_PATH["catalog"])
    slow = time.monotonic() - started
    assert response.status_code == 200
    assert slow >= 0.3 > fast
    with pytest.raises(httpx.ReadTimeout):
        client.get(
            sim.url("catalog") + SAMPLE_PATH["catalog"], headers=auth("catalog"), timeout=0.1
        )


def test_latency_combines_with_a_status(sim: Simulator, client: httpx.Client) -> None:
    sim.set_fault("dr-shopper", Fault(latency_ms=200, status=503, retry_after=1))
    started = time.monotonic()
    response = get(client, sim, "dr-shopper", SAMPLE_PATH["dr-shopper"])
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def connect(url: str) -> None:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    with socket.create_connection((host, port), timeout=2):
        pass


@pytest.mark.parametrize("api", APIS)
def test_refuse_fault_closes_the_port_until_cleared(
    sim: Simulator, client: httpx.Client, api: str
) -> None:
    url = sim.url(api)
    assert get(client, sim, api, SAMPLE_PATH[api]).status_code == 200  # a kept-alive connection
    sim.set_fault(api, Fault(refuse=True))
    with pytest.raises(ConnectionRefusedError):
        connect(url)
    with pytest.raises(httpx.ConnectError):
        get(client, sim, api, SAMPLE_PATH[api])
    others = [other for other in APIS if other != api]
    for other in others:
        assert get(client, sim, other, SAMPLE_PATH[other]).status_code == 200
    sim.clear_faults()
    assert sim.url(api) == url  # the same port listens again
    assert get(client, sim, api, SAMPLE_PATH[api]).status_code == 200
    assert sim.counters()[api].total == 2  # refused connections never reach the API


def test_faults_through_the_control_app(sim: Simulator, client: httpx.Client) -> None:
    control = sim.url("control")
    assert client.get(f"{control}/faults").json() == {api: {} for api in APIS}
    put = client.put(f"{control}/faults/shoplazza", json={"status": 429, "retry_after": 3})
    assert put.status_code == 200
    assert put.json()["shoplazza"] == {"status": 429, "retry_after": 3}
    assert sim.faults()["shoplazza"] == Fault(status=429, retry_after=3)
    response = get(client, sim, "shoplazza", SAMPLE_PATH["shoplazza"])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"

    assert client.put(f"{control}/faults/catalog", json={"refuse": True}).status_code == 200
    with pytest.raises(ConnectionRefusedError):
        connect(sim.url("catalog"))

    cleared = client.delete(f"{control}/faults")
    assert cleared.status_code == 200
    assert cleared.json() == {api: {} for api in APIS}
    assert get(client, sim, "shoplazza", SAMPLE_PATH["shoplazza"]).status_code == 200
    assert get(client, sim, "catalog", SAMPLE_PATH["catalog"]).status_code == 200

    client.put(f"{control}/faults/dr-levels", json={"malformed": True})
    assert client.put(f"{control}/faults/dr-levels", json={}).json()["dr-levels"] == {}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"retry_after": 5}, "`retry_after` goes with `status` 429 or 503"),
        ({"status": 500, "retry_after": 5}, "`retry_after` goes with `status` 429 or 503"),
        ({"status": 200}, "`status` must be 400 to 599"),
        ({"status": 599}, "not a known HTTP status"),
        ({"malformed": True, "reset": True}, "choose one of malformed, reset"),
        ({"refuse": True, "latency_ms": 10}, "`refuse` takes no `latency_ms`"),
        ({"latency_ms": -1}, "`latency_ms` must be 0 to 60000"),
        ({"slow": True}, "unknown field `slow`"),
        ({"status": "503"}, "Expected `int | null`, got `str`"),
    ],
)
def test_bad_faults_are_refused(
    sim: Simulator, client: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    response = client.put(f"{sim.url('control')}/faults/dr-levels", json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert sim.faults()["dr-levels"] == Fault()


def test_bad_faults_in_python() -> None:
    with pytest.raises(ValueError, match="retry_after"):
        Fault(retry_after=5)
    with pytest.raises(ValueError, match="choose one of status, wrong_shape"):
        Fault(status=503, wrong_shape=True)


def test_unknown_api(sim: Simulator, client: httpx.Client) -> None:
    response = client.put(f"{sim.url('control')}/faults/erp", json={"status": 503})
    assert response.status_code == 404
    assert "dr-levels" in response.json()["error"]
    with pytest.raises(ValueError, match="no API `erp`"):
        sim.set_fault("erp", Fault(status=503))
    with pytest.raises(ValueError, match="no API `erp`"):
        sim.url("erp")


# --- counters -----------------------------------------------------------------------------------


def test_counters_move_exactly(sim: Simulator, client: httpx.Client) -> None:
    assert sim.counters() == dict.fromkeys(APIS, ApiCounters())
    for _ in range(3):
        get(client, sim, "dr-levels", SAMPLE_PATH["dr-levels"])
    get(client, sim, "dr-levels", LEVELS, headers={})  # refused for credentials: still counted
    get(client, sim, "dr-shopper", f"{SHOPPER}/64578600/inventory-status")
    get(client, sim, "dr-shopper", f"{SHOPPER}/64578700/inventory-status")
    sim.set_fault("catalog", Fault(status=503))
    get(client, sim, "catalog", SAMPLE_PATH["catalog"])  # a faulted answer: still counted
    control = sim.url("control")
    client.get(f"{control}/health")  # the control app is not counted
    expected = {
        "dr-levels": {"total": 4, "paths": {LEVELS: 4}},
        "dr-shopper": {
            "total": 2,
            "paths": {
                f"{SHOPPER}/64578600/inventory-status": 1,
                f"{SHOPPER}/64578700/inventory-status": 1,
            },
        },
        "shoplazza": {"total": 0, "paths": {}},
        "catalog": {"total": 1, "paths": {"/v1/catalog/items/item_tee_blk_m/inventory": 1}},
    }
    assert client.get(f"{control}/counters").json() == expected
    assert msgspec.to_builtins(sim.counters()) == expected
    assert client.delete(f"{control}/counters").json() == {
        api: {"total": 0, "paths": {}} for api in APIS
    }
    assert sim.counters() == dict.fromkeys(APIS, ApiCounters())
    get(client, sim, "shoplazza", SAMPLE_PATH["shoplazza"])
    assert sim.counters()["shoplazza"].total == 1
    sim.reset_counters()
    assert sim.counters()["shoplazza"] == ApiCounters()


def test_health(sim: Simulator, client: httpx.Client) -> None:
    response = client.get(f"{sim.url('control')}/health")
    assert response.json() == {
        "status": "ok",
        "apis": {name: sim.url(name) for name in ("control", *APIS)},
    }


# --- the data file ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "upstream.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "Input data was truncated"),
        ('{"erp": {}}', "Object contains unknown field `erp`"),
        ('{"catalog": {"items": [{"id": "x", "on_hand": 3}], "x": 1}}', "unknown field `x`"),
        (
            '{"dr-levels": {"levels": [{"inventory_item_id": "i", "location_id": "nowhere", '
            '"available_quantity": 1}]}}',
            "location `nowhere` is not in `locations` - at `$.dr-levels.levels[0].location_id`",
        ),
        (
            '{"dr-levels": {"locations": [{"location_id": "l", "ships_to": ["EU"]}]}}',
            "`EU` is neither an ISO 3166-1 alpha-2 country code nor a name in `country_groups`",
        ),
        (
            '{"dr-levels": {"locations": [{"location_id": "l", "ships_to": []}], "levels": '
            '[{"inventory_item_id": "i", "location_id": "l", "available_quantity": 2, '
            '"restock_in_days": 3}]}}',
            "a restock time is only served while `available_quantity` is 0",
        ),
        (
            '{"dr-levels": {"updated_time": "2026-11-21T06:00:00"}}',
            "Expected `datetime` with a timezone component - at `$.dr-levels.updated_time`",
        ),
        (
            '{"dr-shopper": {"products": [{"id": 1, "external_reference_id": "X", '
            '"company_id": "c"}]}}',
            "a tracked product needs `available_quantity`",
        ),
        (
            '{"shoplazza": {"products": [{"product_id": "not-a-uuid"}]}}',
            "Invalid UUID - at `$.shoplazza.products[0].product_id`",
        ),
        (
            '{"shoplazza": {"products": [{"product_id": "f854e9a2-986d-4e2b-9df0-8e4c139ae80e", '
            '"variants": [{"variant_id": "5723299f-238a-4491-8b42-a187462e748a", '
            '"location_items": [{"location_id": 18446744073709551616, "stock": 1}]}]}]}}',
            "$.shoplazza.products[0].variants[0].location_items[0]",
        ),
        (
            '{"catalog": {"items": [{"id": "x"}, {"id": "x"}]}}',
            "item `x` is given twice - at `$.catalog.items`",
        ),
    ],
)
def test_data_file_errors_name_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UpstreamFileError) as caught:
        load_upstream(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert fragment in str(caught.value)


def test_missing_data_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(UpstreamFileError, match=r"absent\.json: cannot be read"):
        Simulator(path)


def test_relative_dates_follow_the_day_of_loading() -> None:
    data = load_upstream(DEMO, datetime(2027, 1, 31, 23, 59, tzinfo=UTC))
    restocks = [lv.available_time for lv in data.dr_levels.levels if lv.available_time]
    assert restocks == [datetime(2027, 2, 21, tzinfo=UTC)]
    [sneaker_product] = [p for p in data.dr_shopper.products if p.expected_in_stock_date]
    assert sneaker_product.expected_in_stock_date == datetime(2027, 2, 14, tzinfo=UTC)


def test_main_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[]")
    assert main(["--data", str(path), "--port", "0"]) == 1
    assert capsys.readouterr().err.startswith(f"{path}: Expected `object`, got `array`")


# --- starting and stopping ----------------------------------------------------------------------


def open_fds() -> int | None:
    fds = Path("/proc/self/fd")
    return len(list(fds.iterdir())) if fds.exists() else None


def test_start_and_stop_are_quick_and_leave_nothing_behind() -> None:
    data = load_upstream(DEMO, NOW)
    threads = set(threading.enumerate())
    fds = open_fds()
    started = time.monotonic()
    sim = Simulator(data).start()
    assert time.monotonic() - started < 1.0
    urls = sim.urls()
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
    assert len({httpx.URL(url).port for url in urls.values()}) == 5
    with httpx.Client(timeout=5.0) as own:
        assert own.get(urls["control"] + "/health").status_code == 200
        assert get(own, sim, "catalog", SAMPLE_PATH["catalog"]).status_code == 200
    stopping = time.monotonic()
    sim.stop()
    assert time.monotonic() - stopping < 1.0
    sim.stop()  # idempotent
    assert set(threading.enumerate()) == threads
    for url in urls.values():
        with pytest.raises(ConnectionRefusedError):
            connect(url)
    assert open_fds() == fds
    with pytest.raises(RuntimeError, match="not running"):
        sim.counters()


def test_stop_while_refusing() -> None:
    with Simulator(DEMO, now=NOW) as sim:
        sim.set_fault("dr-levels", Fault(refuse=True))
        url = sim.url("dr-levels")
    with pytest.raises(ConnectionRefusedError):
        connect(url)


def test_base_port_puts_the_apis_on_the_next_four() -> None:
    for _ in range(20):
        base = random.randrange(20000, 60000)
        try:
            sim = Simulator(DEMO, port=base).start()
        except OSError:
            continue
        with sim:
            assert sim.urls() == {
                name: f"http://127.0.0.1:{base + offset}"
                for offset, name in enumerate(("control", *APIS))
            }
        return
    pytest.fail("no five free consecutive ports found")


def test_a_taken_port_is_an_error_and_releases_the_others() -> None:
    threads = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        base = taken.getsockname()[1] - 3  # the port shoplazza would take is in use
        with pytest.raises(OSError):
            Simulator(DEMO, port=base).start()
    assert set(threading.enumerate()) == threads
    for offset in range(3):
        with socket.socket() as free:
            free.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                free.bind(("127.0.0.1", base + offset))
            except OSError as exc:  # someone else's meanwhile: not ours to judge
                pytest.skip(str(exc))


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_command_line(how: signal.Signals) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(
        [sys.executable, "-m", "engine.simulator", "--port", "0", "--data", str(DEMO)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        watchdog = threading.Timer(30, process.kill)  # a hung server fails the test, not the run
        watchdog.start()
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(6)]
            assert lines[0].startswith(f"Upstream simulator, data from {DEMO}")
            urls = dict(line.split() for line in lines[1:])
            assert list(urls) == ["control", *APIS]
            with httpx.Client(timeout=5.0) as client:
                health = client.get(urls["control"] + "/health").json()
                assert health["apis"] == urls
                response = client.get(
                    urls["dr-levels"] + LEVELS,
                    params={"inventoryItemIds": TEE_BLK},
                    headers=auth("dr-levels"),
                )
                assert response.json()["data"][0]["availableQuantity"] == 40
            process.send_signal(how)
            out, err = process.communicate(timeout=10)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert out.rstrip().endswith("Upstream simulator stopped.")
    assert err == ""
