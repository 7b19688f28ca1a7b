"""Digital River Commerce Shopper inventory status against its documented payloads.

`dr_shopper_many.json` and `dr_shopper_one.json` are the documentation's two examples verbatim:
an untracked product (`productIsTracked: "false"`, the 2147483647 sentinel) whose booleans are
strings and whose `expectedInStockDate` is the placeholder "string".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest

from engine.availability.record import StockRecord
from engine.availability.source import (
    BadPayload,
    NotAuthorised,
    SourceAnswer,
    UpstreamUnavailable,
)
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
    """Two asked and one answered could be a server reading the list as one value: the other is
    asked for alone (there is no single form by reference id) before it is reported missing."""
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
    request, alone = requests
    assert request.url.path == MANY_PATH
    assert request.url.params.multi_items() == [
        ("externalReferenceId", "Test External Reference Number,Nobody")
    ]
    assert request.url.query == b"externalReferenceId=Test%20External%20Reference%20Number,Nobody"
    assert alone.url.path == MANY_PATH
    assert alone.url.query == b"externalReferenceId=Nobody"


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


# -- contradictory data --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "atp", "unlimited"),
    [
        pytest.param(
            {"availableQuantity": 5, "productIsInStock": "false", "productIsTracked": "true"},
            0,
            False,
            id="out-of-stock-wins-over-a-quantity",
        ),
        pytest.param(
            {"availableQuantity": 5, "productIsInStock": False}, 0, False, id="json-false"
        ),
        pytest.param({"availableQuantity": 5, "productIsInStock": "true"}, 5, False, id="in-stock"),
        pytest.param(
            {"availableQuantity": 5, "productIsInStock": "maybe"}, 5, False, id="in-stock-unclear"
        ),
        pytest.param(
            {"availableQuantity": 5, "productIsInStock": "false", "productIsTracked": "false"},
            0,
            True,
            id="not-tracked-is-unlimited",
        ),
        pytest.param(
            {"availableQuantity": 2147483647, "productIsInStock": "false"},
            0,
            True,
            id="sentinel-is-unlimited",
        ),
    ],
)
def test_in_stock_false_promises_nothing(fields: dict[str, Any], atp: int, unlimited: bool) -> None:
    answer, _ = run(
        shopper({"KETTLE-1": "1001"}), lambda _request: many(status(1001, **fields)), ["KETTLE-1"]
    )
    (record,) = answer.records
    assert (record.atp, record.unlimited) == (atp, unlimited)
    assert answer.errors == ()


# -- external reference ids: a batch that looks misread ------------------------------------------


def with_reference(reference: str, quantity: int) -> dict[str, Any]:
    return {
        "product": [{"id": 1000 + quantity, "externalReferenceId": reference}],
        "availableQuantity": quantity,
        "productIsTracked": "true",
    }


REFERENCES = {"ERID-A": 1, "ERID-B": 2, "ERID-C": 3}
BY_REFERENCE = {"A": "ERID-A", "B": "ERID-B", "C": "ERID-C"}


def references(request: httpx.Request) -> list[str]:
    return request.url.params.get_list("externalReferenceId")


def reads_one_value(request: httpx.Request) -> httpx.Response:
    """Takes the whole parameter as one reference id (it reads no list)."""
    (value,) = references(request)
    return many(*([with_reference(value, REFERENCES[value])] if value in REFERENCES else []))


def reads_first_value(request: httpx.Request) -> httpx.Response:
    """Reads the first of the comma-joined values only."""
    first = references(request)[0].split(",")[0]
    return many(*([with_reference(first, REFERENCES[first])] if first in REFERENCES else []))


@pytest.mark.parametrize("handler", [reads_one_value, reads_first_value])
def test_references_of_a_misread_batch_are_asked_one_per_request(
    handler: Callable[[httpx.Request], httpx.Response], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="engine.sources.dr_shopper"):
        answer, requests = run(
            shopper(BY_REFERENCE, lookup="external_reference_id"), handler, list(BY_REFERENCE)
        )
    assert sorted((r.sku, r.atp) for r in answer.records) == [("A", 1), ("B", 2), ("C", 3)]
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )
    assert {request.url.path for request in requests} == {MANY_PATH}
    assert references(requests[0]) == ["ERID-A,ERID-B,ERID-C"]
    alone = sorted(value for request in requests[1:] for value in references(request))
    found = 3 if handler is reads_one_value else 2
    assert alone == sorted(BY_REFERENCE.values())[3 - found :]
    assert [r.getMessage() for r in caplog.records] == [
        f"dr-shopper: {found} product(s) left out of a batch answer asked for one per request; "
        f"{found} found"
    ]


def test_a_reference_still_left_out_alone_is_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if references(request) == ["ERID-B"]:
            return httpx.Response(503)
        return many()

    answer, requests = run(
        shopper({"A": "ERID-A", "B": "ERID-B"}, lookup="external_reference_id"),
        handler,
        ["A", "B"],
    )
    assert sorted(references(request)[0] for request in requests) == [
        "ERID-A",
        "ERID-A,ERID-B",
        "ERID-B",
    ]
    assert answer.records == ()
    assert answer.unknown_skus == {"A", "B"}
    assert answer.missing_skus == {"A"}
    assert [type(error) for error in answer.errors] == [UpstreamUnavailable]


def test_a_reference_left_out_of_a_batch_otherwise_answered_is_missing() -> None:
    """Two of three answered: the server reads the list, it does not know the third."""

    def handler(request: httpx.Request) -> httpx.Response:
        asked = references(request)[0].split(",")
        return many(*(with_reference(value, REFERENCES[value]) for value in asked[:2]))

    answer, requests = run(
        shopper({**BY_REFERENCE, "GHOST-1": "ERID-Z"}, lookup="external_reference_id"),
        handler,
        ["A", "B", "GHOST-1"],
    )
    assert len(requests) == 1
    assert sorted((r.sku, r.atp) for r in answer.records) == [("A", 1), ("B", 2)]
    assert answer.unknown_skus == answer.missing_skus == {"GHOST-1"}


def test_a_batch_of_one_reference_left_out_is_missing_at_once() -> None:
    answer, requests = run(
        shopper({"A": "ERID-A"}, lookup="external_reference_id"),
        lambda _request: many(),
        ["A"],
    )
    assert len(requests) == 1
    assert answer.unknown_skus == answer.missing_skus == {"A"}


def test_products_asked_alone_are_logged_once_per_fetch(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == MANY_PATH:
            return many(status(1001, availableQuantity=1))
        if "1002" in request.url.path:
            return one(status(1002, availableQuantity=2))
        return httpx.Response(404)

    with caplog.at_level(logging.INFO, logger="engine.sources.dr_shopper"):
        answer, requests = run(
            shopper({"A": "1001", "B": "1002", "C": "1003"}), handler, ["A", "B", "C"]
        )
    assert len(requests) == 3
    assert answer.missing_skus == {"C"}
    assert [r.getMessage() for r in caplog.records] == [
        "dr-shopper: 2 product(s) left out of a batch answer asked for one per request; 1 found"
    ]


def test_nothing_left_out_nothing_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="engine.sources.dr_shopper"):
        run(
            shopper({"A": "1001"}),
            lambda _request: many(status(1001, availableQuantity=1)),
            ["A"],
        )
    assert caplog.records == []
