"""Catalog API item inventory.

The documentation gives no example body, so `catalog_item_inventory.json` is built strictly from
the documented fields (`object`, and `on_hand`, `reserved`, `available_to_promise`, `short` as
quantity objects of `id`, `object`, `value` as a decimal string, `display_value`, `unit` always
null), with fractional values that agree: 12.75 - 3 - 1.5 = 8.25.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from engine.availability.record import StockRecord
from engine.availability.source import (
    BadPayload,
    RequestRejected,
    SourceAnswer,
    UpstreamUnavailable,
)
from engine.sources.catalog_api import CatalogApi
from tests.test_adapters import BASE, TOKEN, Build, answering, payload, run, run_fetches

INCLUDE_QUERY = (
    b"include[]=on_hand&include[]=reserved&include[]=available_to_promise&include[]=short"
)
WITHOUT_SHORT_QUERY = b"include[]=on_hand&include[]=reserved&include[]=available_to_promise"


def catalog(items: dict[str, str], *, max_concurrency: int = 8) -> Build:
    def build(client: httpx.AsyncClient) -> CatalogApi:
        return CatalogApi(
            "catalog",
            client,
            base_url=BASE,
            token=TOKEN,
            items=items,
            location="bakery",
            max_concurrency=max_concurrency,
        )

    return build


def quantity(value: Any) -> dict[str, Any]:
    return {"id": "qty_1", "object": "quantity", "value": value, "display_value": str(value)}


def inventory(**values: Any) -> bytes:
    body: dict[str, Any] = {
        "object": "item_inventory",
        "on_hand": None,
        "reserved": None,
        "available_to_promise": None,
        "short": None,
    }
    body.update({name: quantity(value) for name, value in values.items()})
    return json.dumps(body).encode()


def one_record(body: bytes) -> StockRecord:
    answer, _ = run(catalog({"FLOUR-1": "item_123"}), answering(200, body), ["FLOUR-1"])
    assert answer.errors == ()
    (record,) = answer.records
    return record


def test_documented_fields() -> None:
    answer, requests = run(
        catalog({"FLOUR-1": "item_123"}),
        answering(200, payload("catalog_item_inventory.json")),
        ["FLOUR-1"],
    )
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="FLOUR-1",
                location_id="bakery",
                atp=8,
                source="catalog",
                on_hand=12,
                reserved=3,
                short=1,
                unlimited=False,
                backorderable=None,
                restock_time=None,
                updated_time=None,
                upstream_item="item_123",
                upstream_location=None,
                upstream_status=None,
            ),
        )
    )
    (request,) = requests
    assert request.method == "GET"
    assert request.url.path == "/v1/catalog/items/item_123/inventory"
    assert request.url.query == INCLUDE_QUERY
    assert request.url.params.get_list("include[]") == [
        "on_hand",
        "reserved",
        "available_to_promise",
        "short",
    ]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"


def test_fractional_quantities_and_atp_computed() -> None:
    record = one_record(inventory(on_hand="2.5", reserved="0.5"))
    assert (record.atp, record.on_hand, record.reserved, record.short) == (2, 2, 0, None)


@pytest.mark.parametrize(
    ("values", "atp"),
    [
        pytest.param({"on_hand": "10", "reserved": "3", "short": "2"}, 5, id="computed"),
        pytest.param({"on_hand": "10.9", "reserved": "0"}, 10, id="short-null-counts-as-0"),
        pytest.param({"on_hand": "1", "reserved": "4"}, 0, id="computed-below-zero"),
        pytest.param({"on_hand": "3.2", "reserved": "1.3", "short": "0.95"}, 0, id="fraction"),
        pytest.param({"available_to_promise": "7.99", "on_hand": "100"}, 7, id="atp-wins"),
        pytest.param({"available_to_promise": "-1.5"}, 0, id="atp-negative"),
        pytest.param({"available_to_promise": "0.9999999999999999999"}, 0, id="atp-below-one"),
        pytest.param({"available_to_promise": 6}, 6, id="atp-json-number"),
        pytest.param(
            {"available_to_promise": "9007199254740993"}, 9007199254740993, id="atp-beyond-double"
        ),
    ],
)
def test_atp(values: dict[str, Any], atp: int) -> None:
    assert one_record(inventory(**values)).atp == atp


def test_exact_decimal_arithmetic() -> None:
    """1.2 - 0.1 - 0.1 is 1 exactly; in floats it is 0.9999999999999999, which floors to 0."""
    assert 1.2 - 0.1 - 0.1 < 1
    record = one_record(inventory(on_hand="1.2", reserved="0.1", short="0.1"))
    assert (record.atp, record.on_hand, record.reserved, record.short) == (1, 1, 0, 0)


def test_negative_quantities_are_floored_down() -> None:
    record = one_record(inventory(on_hand="-0.5", reserved="2"))
    assert (record.atp, record.on_hand, record.reserved) == (0, -1, 2)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(inventory(), id="all-null"),
        pytest.param(inventory(reserved="1", short="1"), id="no-atp-no-on-hand"),
        pytest.param(b'{"object": "item_inventory"}', id="no-sub-objects"),
        pytest.param(inventory(on_hand="NaN"), id="nan"),
        pytest.param(inventory(available_to_promise="Infinity"), id="infinity"),
        pytest.param(inventory(on_hand="1E+999999999"), id="absurd-exponent"),
        pytest.param(inventory(on_hand="lots"), id="not-a-number"),
        pytest.param(inventory(on_hand=None), id="value-null"),
        pytest.param(b'{"on_hand": {"id": "q"}}', id="value-missing"),
        pytest.param(b'{"on_hand": "5"}', id="not-a-quantity-object"),
    ],
)
def test_unusable_body_is_bad_payload(body: bytes) -> None:
    answer, _ = run(catalog({"FLOUR-1": "item_123"}), answering(200, body), ["FLOUR-1"])
    assert answer.records == ()
    assert answer.unknown_skus == {"FLOUR-1"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is BadPayload
    assert error.message.startswith("HTTP 200 from /v1/catalog/items/item_123/inventory: ")


def test_one_request_per_item_missing_ones_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/catalog/items/item_gone/inventory":
            return httpx.Response(404)
        return httpx.Response(200, content=inventory(available_to_promise="4"))

    answer, requests = run(
        catalog({"A": "item_a", "A2": "item_a", "B": "item_b", "GONE": "item_gone"}),
        handler,
        ["A", "A2", "B", "GONE", "NOT-CARRIED"],
    )
    assert sorted(request.url.path for request in requests) == [
        "/v1/catalog/items/item_a/inventory",
        "/v1/catalog/items/item_b/inventory",
        "/v1/catalog/items/item_gone/inventory",
    ]
    assert all(request.url.query == INCLUDE_QUERY for request in requests)
    assert sorted((r.sku, r.atp, r.upstream_item) for r in answer.records) == [
        ("A", 4, "item_a"),
        ("A2", 4, "item_a"),
        ("B", 4, "item_b"),
    ]
    assert answer.unknown_skus == answer.missing_skus == {"GONE"}
    assert answer.errors == ()


def test_concurrency_is_bounded() -> None:
    in_flight = 0
    most = 0

    async def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, content=inventory(on_hand="1", reserved="0"))

    items = {f"SKU-{n}": f"item_{n}" for n in range(9)}
    answer, requests = run(catalog(items, max_concurrency=3), handler, list(items))
    assert len(requests) == 9
    assert most == 3
    assert len(answer.records) == 9


@pytest.mark.parametrize(
    ("values", "null"),
    [
        pytest.param({"on_hand": "10"}, "`reserved` is", id="reserved-null"),
        pytest.param({"reserved": "1", "short": "1"}, "`on_hand` is", id="on-hand-null"),
        pytest.param({"short": "1"}, "`on_hand` and `reserved` are", id="both-null"),
    ],
)
def test_atp_is_never_computed_from_a_null(values: dict[str, Any], null: str) -> None:
    """All of them were asked for: a null is not a zero."""
    answer, _ = run(
        catalog({"FLOUR-1": "item_123"}), answering(200, inventory(**values)), ["FLOUR-1"]
    )
    assert answer.records == ()
    assert answer.unknown_skus == {"FLOUR-1"}
    (error,) = answer.errors
    assert type(error) is BadPayload
    assert error.message == (
        f"HTTP 200 from /v1/catalog/items/item_123/inventory: no `available_to_promise`, and "
        f"{null} null although asked for: available to promise cannot be computed"
    )


def test_atp_given_needs_nothing_else() -> None:
    record = one_record(inventory(available_to_promise="4"))
    assert (record.atp, record.on_hand, record.reserved) == (4, None, None)


SHORT_REFUSED = json.dumps(
    {
        "errors": [
            {
                "code": "invalid_parameter",
                "message": "include[] may be on_hand, reserved, available_to_promise; not short.",
            }
        ]
    }
).encode()


def refuses_short(request: httpx.Request) -> httpx.Response:
    """A server that implements the reference's enum for `include[]` to the letter."""
    include = request.url.params.get_list("include[]")
    if "short" in include:
        return httpx.Response(400, content=SHORT_REFUSED)
    return httpx.Response(200, content=inventory(on_hand="10", reserved="3"))


async def refuses_short_slowly(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.01)
    return refuses_short(request)


def test_short_refused_is_asked_again_without_it_and_not_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both items are in flight with `short` before either is refused: each is asked again, and
    the warning is given once."""
    items = {"A": "item_a", "B": "item_b"}
    with caplog.at_level(logging.INFO, logger="engine.sources.catalog_api"):
        (first, learning), (second, learnt) = run_fetches(
            catalog(items), refuses_short_slowly, [list(items)] * 2
        )
    for answer in (first, second):
        assert sorted((r.sku, r.atp, r.on_hand, r.reserved, r.short) for r in answer.records) == [
            ("A", 7, 10, 3, None),
            ("B", 7, 10, 3, None),
        ]
        assert (answer.unknown_skus, answer.errors) == (frozenset(), ())
    assert sorted((r.url.path, r.url.query) for r in learning) == [
        ("/v1/catalog/items/item_a/inventory", WITHOUT_SHORT_QUERY),
        ("/v1/catalog/items/item_a/inventory", INCLUDE_QUERY),
        ("/v1/catalog/items/item_b/inventory", WITHOUT_SHORT_QUERY),
        ("/v1/catalog/items/item_b/inventory", INCLUDE_QUERY),
    ]
    assert [r.url.query for r in learnt] == [WITHOUT_SHORT_QUERY] * 2
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "catalog: the server refused include[]=short (HTTP 400 from "
            "/v1/catalog/items/item_a/inventory: include[] may be on_hand, reserved, "
            "available_to_promise; not short.) and answered without it; short is no longer "
            "asked for and counts as 0",
        )
    ]


def test_a_400_that_is_not_about_short_is_reported_and_short_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "bad" in request.url.path:
            return httpx.Response(400, content=b'{"errors": ["invalid item id"]}')
        return httpx.Response(200, content=inventory(on_hand="2", reserved="0"))

    build = catalog({"A": "item_a", "BAD": "bad id"}, max_concurrency=1)
    (answer, requests), (_, again) = run_fetches(build, handler, [["BAD"], ["A"]])
    assert [(r.url.path, r.url.query) for r in requests] == [
        ("/v1/catalog/items/bad id/inventory", INCLUDE_QUERY),
        ("/v1/catalog/items/bad id/inventory", WITHOUT_SHORT_QUERY),
    ]
    assert answer.unknown_skus == {"BAD"}
    (error,) = answer.errors
    assert type(error) is RequestRejected
    assert error.message == "HTTP 400 from /v1/catalog/items/bad id/inventory: invalid item id"
    assert [r.url.query for r in again] == [INCLUDE_QUERY]


def test_an_outage_on_the_second_ask_keeps_short() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(400, content=SHORT_REFUSED)
        if calls == 2:
            return httpx.Response(503)
        return httpx.Response(200, content=inventory(available_to_promise="1"))

    (answer, requests), (_, again) = run_fetches(catalog({"A": "item_a"}), handler, [["A"], ["A"]])
    assert [r.url.query for r in requests] == [INCLUDE_QUERY, WITHOUT_SHORT_QUERY]
    assert [type(error) for error in answer.errors] == [UpstreamUnavailable]
    assert [r.url.query for r in again] == [INCLUDE_QUERY]


@pytest.mark.parametrize("status", [403, 404, 405, 500])
def test_only_a_400_is_asked_again_without_short(status: int) -> None:
    _, requests = run(catalog({"A": "item_a"}), answering(status), ["A"])
    assert [r.url.query for r in requests] == [INCLUDE_QUERY]
