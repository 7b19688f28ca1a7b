"""Shoplazza product inventory against its documented payloads.

`shoplazza_inventory.json` is the documented success example verbatim, with the uint64 location
id 327627904831724000 that a double cannot hold; `shoplazza_errors.json` and
`shoplazza_error.json` are the two documented error shapes verbatim.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from engine.availability.record import StockRecord
from engine.availability.source import (
    BadPayload,
    NotAuthorised,
    RequestRejected,
    SourceAnswer,
    UpstreamUnavailable,
)
from engine.sources.shoplazza import Shoplazza
from tests.test_adapters import BASE, TOKEN, Build, answering, payload, run

PRODUCT = "f854e9a2-986d-4e2b-9df0-8e4c139ae80e"
VARIANT = "5723299f-238a-4491-8b42-a187462e748a"
LOCATION = "327627904831724000"


def shop(
    items: Mapping[str, tuple[str, str]],
    locations: Mapping[str, str] | None = None,
    *,
    max_concurrency: int = 8,
) -> Build:
    def build(client: httpx.AsyncClient) -> Shoplazza:
        return Shoplazza(
            "shoplazza",
            client,
            base_url=BASE,
            token=TOKEN,
            items=items,
            locations={LOCATION: "sg-wh"} if locations is None else locations,
            max_concurrency=max_concurrency,
        )

    return build


def inventory(product: str, *variants: tuple[str, list[tuple[Any, int]]]) -> httpx.Response:
    body = {
        "product_id": product,
        "variants": [
            {
                "variant_id": variant,
                "location_items": [{"location_id": loc, "stock": stock} for loc, stock in items],
            }
            for variant, items in variants
        ],
    }
    return httpx.Response(200, content=json.dumps(body).encode())


def test_documented_example() -> None:
    answer, requests = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}),
        answering(200, payload("shoplazza_inventory.json")),
        ["TEE-M"],
    )
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="TEE-M",
                location_id="sg-wh",
                atp=1,
                source="shoplazza",
                on_hand=1,
                reserved=None,
                short=None,
                unlimited=False,
                backorderable=None,
                restock_time=None,
                updated_time=None,
                upstream_item=VARIANT,
                upstream_location="327627904831724000",
                upstream_status=None,
            ),
        )
    )
    (request,) = requests
    assert request.method == "GET"
    assert request.url.path == f"/openapi/2022-01/products/{PRODUCT}/inventory"
    assert request.url.query == b""
    assert request.headers["access-token"] == TOKEN
    assert request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers


def test_the_uint64_location_id_never_passes_through_a_float() -> None:
    assert str(int(float(LOCATION))) != LOCATION, "the trap: a double cannot hold this id"
    wider = "18446744073709551615"
    answer, _ = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}, {wider: "far-wh", LOCATION: "sg-wh"}),
        lambda _request: httpx.Response(
            200,
            content=(
                b'{"variants": [{"variant_id": "' + VARIANT.encode() + b'", "location_items": ['
                b'{"location_id": 18446744073709551615, "stock": 4},'
                b'{"location_id": 327627904831724000, "stock": 1}]}]}'
            ),
        ),
        ["TEE-M"],
    )
    assert sorted((r.location_id, r.upstream_location, r.atp) for r in answer.records) == [
        ("far-wh", wider, 4),
        ("sg-wh", LOCATION, 1),
    ]


def test_a_location_id_sent_as_a_string_is_accepted() -> None:
    answer, _ = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}),
        lambda _request: inventory(PRODUCT, (VARIANT, [(LOCATION, 3)])),
        ["TEE-M"],
    )
    assert [(r.location_id, r.upstream_location, r.atp) for r in answer.records] == [
        ("sg-wh", LOCATION, 3)
    ]


def test_a_location_id_as_a_float_is_bad_payload() -> None:
    answer, _ = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}),
        answering(
            200,
            b'{"variants": [{"variant_id": "' + VARIANT.encode() + b'", '
            b'"location_items": [{"location_id": 3.27627904831724e17, "stock": 1}]}]}',
        ),
        ["TEE-M"],
    )
    assert answer.unknown_skus == {"TEE-M"}
    assert [type(error) for error in answer.errors] == [BadPayload]


def test_one_request_per_product_and_variants_matched() -> None:
    items = {
        "TEE-S": ("p1", "v-s"),
        "TEE-M": ("p1", "v-m"),
        "TEE-GONE": ("p1", "v-gone"),
        "CAP": ("p2", "v-cap"),
        "UNMAPPED-SKU": ("p3", "v-x"),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/p1/inventory"):
            return inventory(
                "p1",
                ("v-s", [(327627904831724000, 5), (111, 40)]),
                ("v-m", [(327627904831724000, -2)]),
                ("v-other", [(327627904831724000, 9)]),
            )
        return inventory("p2", ("v-cap", []))

    answer, requests = run(
        shop(items, {LOCATION: "sg-wh", "111": "kl-wh"}),
        handler,
        ["TEE-S", "TEE-M", "TEE-GONE", "CAP", "NOT-CARRIED"],
    )
    assert sorted(request.url.path for request in requests) == [
        "/openapi/2022-01/products/p1/inventory",
        "/openapi/2022-01/products/p2/inventory",
    ]
    assert sorted(
        (r.sku, r.location_id, r.atp, r.on_hand, r.upstream_item, r.upstream_location)
        for r in answer.records
    ) == [
        ("TEE-M", "sg-wh", 0, -2, "v-m", LOCATION),
        ("TEE-S", "kl-wh", 40, 40, "v-s", "111"),
        ("TEE-S", "sg-wh", 5, 5, "v-s", LOCATION),
    ]
    assert answer.unknown_skus == {"TEE-GONE"}
    assert answer.missing_skus == {"TEE-GONE"}
    assert answer.errors == ()


def test_unmapped_locations_are_skipped() -> None:
    answer, _ = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}),
        lambda _request: inventory(PRODUCT, (VARIANT, [(999, 7)])),
        ["TEE-M"],
    )
    assert answer == SourceAnswer(records=())


def test_null_location_items_means_nothing_stocked() -> None:
    answer, _ = run(
        shop({"TEE-M": (PRODUCT, VARIANT)}),
        answering(
            200,
            b'{"variants": [{"variant_id": "' + VARIANT.encode() + b'", "location_items": null}]}',
        ),
        ["TEE-M"],
    )
    assert answer == SourceAnswer(records=())


def test_product_404_is_all_its_skus_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/p1/" in request.url.path:
            return httpx.Response(404, content=payload("shoplazza_errors.json"))
        return inventory("p2", ("v-cap", [(LOCATION, 2)]))

    answer, _ = run(
        shop({"TEE-S": ("p1", "v-s"), "TEE-M": ("p1", "v-m"), "CAP": ("p2", "v-cap")}),
        handler,
        ["TEE-S", "TEE-M", "CAP"],
    )
    assert [(r.sku, r.atp) for r in answer.records] == [("CAP", 2)]
    assert answer.unknown_skus == answer.missing_skus == {"TEE-S", "TEE-M"}
    assert answer.errors == ()


@pytest.mark.parametrize(
    ("status", "body", "error_class", "said"),
    [
        pytest.param(
            500,
            payload("shoplazza_errors.json"),
            RequestRejected,
            "invalid UUID length: 10",
            id="500-errors-shape-invalid-uuid",
        ),
        pytest.param(
            500,
            b'{"error": "invalid UUID length: 10"}',
            RequestRejected,
            "invalid UUID length: 10",
            id="500-error-shape-invalid-uuid",
        ),
        pytest.param(
            500,
            b'{"errors": ["collect_id has an invalid UUID"]}',
            RequestRejected,
            "collect_id has an invalid UUID",
            id="500-invalid-collect-id",
        ),
        pytest.param(
            500,
            b'{"errors": ["Invalid product_id"]}',
            RequestRejected,
            "Invalid product_id",
            id="500-invalid-product-id",
        ),
        pytest.param(
            500,
            b'{"errors": ["database unavailable"]}',
            UpstreamUnavailable,
            "database unavailable",
            id="500-other",
        ),
        pytest.param(
            500,
            b"Internal Server Error",
            UpstreamUnavailable,
            "Internal Server Error",
            id="500-text",
        ),
        pytest.param(
            401,
            payload("shoplazza_error.json"),
            NotAuthorised,
            "store is not active",
            id="401-error-shape",
        ),
        pytest.param(
            403,
            payload("shoplazza_errors.json"),
            NotAuthorised,
            "invalid UUID length: 10",
            id="403-errors-shape",
        ),
        pytest.param(
            400,
            b'{"errors": ["ProductId is required"]}',
            RequestRejected,
            "ProductId is required",
            id="400-errors-shape",
        ),
        pytest.param(
            200,
            payload("shoplazza_error.json"),
            BadPayload,
            "store is not active",
            id="200-error-shape",
        ),
        pytest.param(
            200,
            payload("shoplazza_errors.json"),
            BadPayload,
            "invalid UUID length: 10",
            id="200-errors-shape",
        ),
    ],
)
def test_error_shapes(status: int, body: bytes, error_class: type, said: str) -> None:
    answer, requests = run(
        shop({"TEE-S": ("p1", "v-s"), "TEE-M": ("p1", "v-m")}),
        answering(status, body),
        ["TEE-S", "TEE-M"],
    )
    assert len(requests) == 1
    assert answer.records == ()
    assert answer.unknown_skus == {"TEE-S", "TEE-M"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is error_class
    assert error.status == status
    assert said in error.message
    assert error.message.startswith(f"HTTP {status} from /openapi/2022-01/products/p1/inventory")


def test_concurrency_is_bounded() -> None:
    in_flight = 0
    most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        product = request.url.path.split("/")[-2]
        return inventory(product, (f"v-{product}", [(LOCATION, 1)]))

    items = {f"SKU-{n}": (f"p{n}", f"v-p{n}") for n in range(7)}
    answer, requests = run(shop(items, max_concurrency=2), handler, list(items))
    assert len(requests) == 7
    assert most == 2
    assert len(answer.records) == 7


def test_product_ids_are_escaped_in_the_path() -> None:
    _, requests = run(shop({"ODD": ("a/b c", "v")}), answering(404), ["ODD"])
    assert requests[0].url.raw_path == b"/openapi/2022-01/products/a%2Fb%20c/inventory"
