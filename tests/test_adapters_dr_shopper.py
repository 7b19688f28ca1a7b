"""Digital River Commerce Shopper inventory status against its documented payloads.

`dr_shopper_many.json` and `dr_shopper_one.json` are the documentation's two examples verbatim:
an untracked product (`productIsTracked: "false"`, the 2147483647 sentinel) whose booleans are
strings and whose `expectedInStockDate` is the placeholder "string".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest

from engine.availability.record import StockRecord
from engine.availability.source import BadPayload, NotAuthorised, SourceAnswer
from engine.sources.dr_shopper import DigitalRiverShopper, restock_time
from tests.test_adapters import BASE, TOKEN, Build, answering, payload, run

MANY_PATH = "/v1/shoppers/me/products/inventory-status"

UNTRACKED = StockRecord(
    sku="COFFEE-1",
    location_id="dub-dc",
    atp=0,
    source="dr-shopper",
    on_hand=None,
    reserved=None,
    short=None,
    unlimited=True,
    backorderable=True,
    restock_time=None,
    updated_time=None,
    upstream_item="64578500",
    upstream_location=None,
    upstream_status="PRODUCT_INVENTORY_IN_STOCK",
)
"""What both documented examples say of product 64578500."""


def shopper(
    items: Mapping[str, str],
    *,
    lookup: Literal["product_id", "external_reference_id"] = "product_id",
    batch_size: int = 50,
) -> Build:
    def build(client: httpx.AsyncClient) -> DigitalRiverShopper:
        return DigitalRiverShopper(
            "dr-shopper",
            client,
            base_url=BASE,
            token=TOKEN,
            items=items,
            location="dub-dc",
            lookup=lookup,
            batch_size=batch_size,
        )

    return build


def status(product_id: int, **fields: Any) -> dict[str, Any]:
    return {"product": [{"id": product_id, "companyId": "demosft1"}], **fields}


def many(*statuses: dict[str, Any]) -> httpx.Response:
    body = {"products": {"uri": "https://x.test", "inventoryStatus": list(statuses)}}
    return httpx.Response(200, content=json.dumps(body).encode())


def one(inventory_status: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=json.dumps({"inventoryStatus": inventory_status}).encode())


def test_many_example_and_an_ignored_id_asked_alone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == MANY_PATH:
            return httpx.Response(200, content=payload("dr_shopper_many.json"))
        return httpx.Response(404, content=b'{"errors": {"error": [{"code": "not-found"}]}}')

    answer, requests = run(
        shopper({"COFFEE-1": "64578500", "GHOST-1": "99999999"}),
        handler,
        ["GHOST-1", "COFFEE-1"],
    )
    assert answer == SourceAnswer(
        records=(UNTRACKED,),
        unknown_skus=frozenset({"GHOST-1"}),
        missing_skus=frozenset({"GHOST-1"}),
    )
    batch, alone = requests
    assert batch.url.path == MANY_PATH
    assert batch.url.query == b"productId=64578500,99999999"
    assert batch.url.params.multi_items() == [("productId", "64578500,99999999")]
    assert alone.url.path == "/v1/shoppers/me/products/99999999/inventory-status"
    assert alone.url.query == b""
    for request in requests:
        assert request.method == "GET"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/json"


def test_one_example() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == MANY_PATH:
            return many()
        return httpx.Response(200, content=payload("dr_shopper_one.json"))

    answer, requests = run(shopper({"COFFEE-1": "64578500"}), handler, ["COFFEE-1"])
    assert answer == SourceAnswer(records=(UNTRACKED,))
    assert [request.url.path for request in requests] == [
        MANY_PATH,
        "/v1/shoppers/me/products/64578500/inventory-status",
    ]


def test_external_reference_lookup() -> None:
    answer, requests = run(
        shopper(
            {"COFFEE-1": "Test External Reference Number", "GHOST-1": "Nobody"},
            lookup="external_reference_id",
        ),
        answering(200, payload("dr_shopper_many.json")),
        ["COFFEE-1", "GHOST-1"],
    )
    assert answer == SourceAnswer(
        records=(UNTRACKED,),
        unknown_skus=frozenset({"GHOST-1"}),
        missing_skus=frozenset({"GHOST-1"}),
    )
    (request,) = requests
    assert request.url.path == MANY_PATH
    assert request.url.params.multi_items() == [
        ("externalReferenceId", "Test External Reference Number,Nobody")
    ]
    assert request.url.query == b"externalReferenceId=Test%20External%20Reference%20Number,Nobody"


def test_tracked_product_with_json_booleans_and_a_date() -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many(
            status(
                1001,
                availableQuantity=7,
                productIsInStock="true",
                productIsAllowsBackorders=False,
                productIsTracked=True,
                status="PRODUCT_INVENTORY_IN_STOCK",
                expectedInStockDate="2026-12-01",
            )
        ),
        ["KETTLE-1"],
    )
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="KETTLE-1",
                location_id="dub-dc",
                atp=7,
                source="dr-shopper",
                unlimited=False,
                backorderable=False,
                restock_time=datetime(2026, 12, 1, tzinfo=UTC),
                upstream_item="1001",
                upstream_status="PRODUCT_INVENTORY_IN_STOCK",
            ),
        )
    )


def test_out_of_stock_without_a_quantity() -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many(
            status(
                1001,
                productIsInStock="false",
                productIsAllowsBackorders="false",
                productIsTracked="true",
                status="PRODUCT_INVENTORY_OUT_OF_STOCK",
                expectedInStockDate="2026-12-01T09:30:00Z",
            )
        ),
        ["KETTLE-1"],
    )
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="KETTLE-1",
                location_id="dub-dc",
                atp=0,
                source="dr-shopper",
                backorderable=False,
                restock_time=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
                upstream_item="1001",
                upstream_status="PRODUCT_INVENTORY_OUT_OF_STOCK",
            ),
        )
    )


def test_sentinel_is_unlimited_even_when_said_to_be_tracked() -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many(
            status(1001, availableQuantity=2147483647, productIsTracked="true", status="X")
        ),
        ["KETTLE-1"],
    )
    (record,) = answer.records
    assert (record.unlimited, record.atp, record.backorderable) == (True, 0, None)


def test_untracked_without_quantity_is_unlimited() -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many(status(1001, productIsTracked="false")),
        ["KETTLE-1"],
    )
    (record,) = answer.records
    assert (record.unlimited, record.atp) == (True, 0)


def test_in_stock_without_a_quantity_is_unknown() -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001", "MUG-1": "1002"}),
        lambda _request: many(
            status(1001, productIsInStock="true", productIsTracked="true"),
            status(1002, availableQuantity=3, productIsTracked="true"),
        ),
        ["KETTLE-1", "MUG-1"],
    )
    assert [(r.sku, r.atp) for r in answer.records] == [("MUG-1", 3)]
    assert answer.unknown_skus == {"KETTLE-1"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is BadPayload
    assert error.message == (
        f"HTTP 200 from {MANY_PATH}: no availableQuantity for tracked, in-stock product(s) 1001"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("string", None),
        ("", None),
        ("soon", None),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T09:30:00.250+02:00", datetime(2026, 12, 1, 7, 30, 0, 250000, tzinfo=UTC)),
        ("2026-12-01T09:30:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        (None, None),
        (1764547200, None),
    ],
)
def test_expected_in_stock_date(text: str | int | None, expected: datetime | None) -> None:
    assert restock_time(text) == expected


@pytest.mark.parametrize(
    ("value", "backorderable"),
    [
        ("true", True),
        ("false", False),
        ("TRUE", True),
        (True, True),
        (False, False),
        ("maybe", None),
    ],
)
def test_string_booleans(value: str | bool, backorderable: bool | None) -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many(status(1001, availableQuantity=1, productIsAllowsBackorders=value)),
        ["KETTLE-1"],
    )
    assert answer.records[0].backorderable is backorderable


def test_single_objects_where_lists_are_documented() -> None:
    body = {
        "products": {
            "inventoryStatus": {
                "product": {"id": 1001},
                "availableQuantity": 4,
                "productIsTracked": "true",
            }
        }
    }
    answer, requests = run(
        shopper({"KETTLE-1": "1001"}),
        answering(200, json.dumps(body).encode()),
        ["KETTLE-1"],
    )
    assert [(r.sku, r.atp, r.upstream_item) for r in answer.records] == [("KETTLE-1", 4, "1001")]
    assert len(requests) == 1


def test_ids_are_compared_as_strings() -> None:
    answer, requests = run(
        shopper({"KETTLE-1": "1001"}),
        lambda _request: many({"product": [{"id": "1001"}], "availableQuantity": 2}),
        ["KETTLE-1"],
    )
    assert [(r.sku, r.atp) for r in answer.records] == [("KETTLE-1", 2)]
    assert len(requests) == 1


def test_batches() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = request.url.params["productId"].split(",")
        return many(*(status(int(i), availableQuantity=int(i) - 1000) for i in ids))

    answer, requests = run(
        shopper({"A": "1001", "B": "1002", "C": "1003"}, batch_size=2), handler, ["A", "B", "C"]
    )
    assert sorted(request.url.params["productId"] for request in requests) == [
        "1001,1002",
        "1003",
    ]
    assert sorted((r.sku, r.atp) for r in answer.records) == [("A", 1), ("B", 2), ("C", 3)]


def test_empty_collection_then_each_alone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == MANY_PATH:
            return httpx.Response(200, content=b'{"products": {"uri": "https://x.test"}}')
        if "1001" in request.url.path:
            return one(status(1001, availableQuantity=5))
        return httpx.Response(401, content=b'{"errors": {"error": [{"description": "no"}]}}')

    answer, requests = run(shopper({"A": "1001", "B": "1002"}), handler, ["A", "B"])
    assert len(requests) == 3
    assert [(r.sku, r.atp) for r in answer.records] == [("A", 5)]
    assert answer.unknown_skus == {"B"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is NotAuthorised
    assert error.message == "HTTP 401 from /v1/shoppers/me/products/1002/inventory-status: no"


def test_single_form_of_the_wrong_shape_is_bad_payload() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == MANY_PATH:
            return many()
        return httpx.Response(200, content=b'{"inventoryStatus": []}')

    answer, _ = run(shopper({"A": "1001"}), handler, ["A"])
    assert answer.unknown_skus == {"A"}
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [BadPayload]
