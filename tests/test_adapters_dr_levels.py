"""Digital River inventory levels against its documented payloads (`tests/payloads/dr_levels_*`).

`dr_levels_reference.json` is the API reference's example verbatim. The guide gives its two
examples as fragments (`"data": [` followed by the fields of one level, unclosed);
`dr_levels_guide.json` and `dr_levels_guide_se.json` are those fragments with only the braces and
brackets added that make them JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest

from engine.availability.record import StockRecord
from engine.availability.source import SourceAnswer, UpstreamUnavailable
from engine.sources.dr_levels import DigitalRiverLevels
from tests.test_adapters import BASE, TOKEN, Build, answering, payload, run

REFERENCE_ITEM = "ce4ce2de-530c-4da2-bf8a-f0f8cf059095"
REFERENCE_LOCATION = "afe95639-8181-4b66-86a6-1a9493d5419d"
SE_ITEM = "310abe81-69f6-44e5-85df-2674045e5460"


def levels(
    items: Mapping[str, str],
    locations: Mapping[str, str],
    *,
    batch_size: int = 50,
    array_style: Literal["repeat", "comma"] = "repeat",
) -> Build:
    def build(client: httpx.AsyncClient) -> DigitalRiverLevels:
        return DigitalRiverLevels(
            "dr-levels",
            client,
            base_url=BASE,
            token=TOKEN,
            items=items,
            locations=locations,
            batch_size=batch_size,
            array_style=array_style,
        )

    return build


def level(item: str, location: str = "wh-1", **fields: Any) -> dict[str, Any]:
    return {"locationId": location, "inventoryItemId": item, **fields}


def data(*elements: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=json.dumps({"data": list(elements)}).encode())


def asked(request: httpx.Request) -> list[str]:
    return request.url.params.get_list("inventoryItemIds")


def test_reference_example() -> None:
    answer, requests = run(
        levels({"COFFEE-1": REFERENCE_ITEM}, {REFERENCE_LOCATION: "dub-dc"}),
        answering(200, payload("dr_levels_reference.json")),
        ["COFFEE-1"],
    )
    moment = datetime(2025, 5, 9, 5, 24, 42, 378000, tzinfo=UTC)
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="COFFEE-1",
                location_id="dub-dc",
                atp=6,
                source="dr-levels",
                on_hand=None,
                reserved=None,
                short=None,
                unlimited=False,
                backorderable=None,
                restock_time=moment,
                updated_time=moment,
                upstream_item=REFERENCE_ITEM,
                upstream_location=REFERENCE_LOCATION,
                upstream_status=None,
            ),
        )
    )
    (request,) = requests
    assert request.method == "GET"
    assert request.url.scheme == "http"
    assert request.url.host == "upstream.test"
    assert request.url.path == "/inventory-levels"
    assert request.url.params.multi_items() == [("inventoryItemIds", REFERENCE_ITEM)]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"


def test_guide_example() -> None:
    answer, _ = run(
        levels({"COFFEE-1": REFERENCE_ITEM}, {REFERENCE_LOCATION: "dub-dc"}),
        answering(200, payload("dr_levels_guide.json")),
        ["COFFEE-1"],
    )
    assert answer.records == (
        StockRecord(
            sku="COFFEE-1",
            location_id="dub-dc",
            atp=6,
            source="dr-levels",
            updated_time=datetime(2018, 4, 25, 20, 36, tzinfo=UTC),
            upstream_item=REFERENCE_ITEM,
            upstream_location=REFERENCE_LOCATION,
        ),
    )
    assert answer.records[0].restock_time is None
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )


def test_guide_sweden_example_numeric_location_id() -> None:
    answer, requests = run(
        levels({"MACHINE-1": SE_ITEM}, {"20045": "sto-dc"}),
        answering(200, payload("dr_levels_guide_se.json")),
        ["MACHINE-1"],
    )
    assert answer == SourceAnswer(
        records=(
            StockRecord(
                sku="MACHINE-1",
                location_id="sto-dc",
                atp=995,
                source="dr-levels",
                updated_time=datetime(2021, 1, 12, 6, 55, 14, tzinfo=UTC),
                upstream_item=SE_ITEM,
                upstream_location="20045",
            ),
        )
    )
    (request,) = requests
    assert "shipToCountry" not in request.url.params
    assert "available" not in request.url.params


def test_a_cart_of_twenty_skus_is_one_request() -> None:
    items = {f"SKU-{n:02}": f"item-{n:02}" for n in range(20)}

    def handler(request: httpx.Request) -> httpx.Response:
        return data(
            *(
                level(item, available=True, availableQuantity=int(item[-2:]))
                for item in asked(request)
            )
        )

    answer, requests = run(levels(items, {"wh-1": "dub-dc"}), handler, list(items))
    (request,) = requests
    assert request.url.path == "/inventory-levels"
    assert request.url.params.multi_items() == [
        ("inventoryItemIds", f"item-{n:02}") for n in range(20)
    ]
    assert request.url.query.decode() == "&".join(
        f"inventoryItemIds=item-{n:02}" for n in range(20)
    )
    assert {(r.sku, r.atp) for r in answer.records} == {(f"SKU-{n:02}", n) for n in range(20)}
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )


def test_batches_of_batch_size() -> None:
    items = {f"SKU-{n:02}": f"item-{n:02}" for n in range(20)}

    def handler(request: httpx.Request) -> httpx.Response:
        return data(*(level(item, available=True, availableQuantity=1) for item in asked(request)))

    answer, requests = run(levels(items, {"wh-1": "dub-dc"}, batch_size=8), handler, list(items))
    assert sorted(len(asked(request)) for request in requests) == [4, 8, 8]
    assert sorted(item for request in requests for item in asked(request)) == sorted(items.values())
    assert len(answer.records) == 20


def test_comma_array_style() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return data(*(level(item, available=True, availableQuantity=2) for item in ("a", "b")))

    answer, requests = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}, array_style="comma"),
        handler,
        ["SKU-B", "SKU-A"],
    )
    (request,) = requests
    assert request.url.query == b"inventoryItemIds=a,b"
    assert request.url.params.multi_items() == [("inventoryItemIds", "a,b")]
    assert sorted((r.sku, r.atp) for r in answer.records) == [("SKU-A", 2), ("SKU-B", 2)]


def test_an_item_left_out_is_asked_for_alone() -> None:
    """As a server that reads only the first of the repeated parameters would answer."""

    def handler(request: httpx.Request) -> httpx.Response:
        first = asked(request)[0]
        return data(level(first, available=True, availableQuantity=3))

    answer, requests = run(
        levels({"SKU-A": "a", "SKU-B": "b", "SKU-C": "c"}, {"wh-1": "dub-dc"}),
        handler,
        ["SKU-A", "SKU-B", "SKU-C"],
    )
    assert asked(requests[0]) == ["a", "b", "c"]
    assert sorted(asked(request)[0] for request in requests[1:]) == ["b", "c"]
    assert all(len(asked(request)) == 1 for request in requests[1:])
    assert sorted((r.sku, r.atp) for r in answer.records) == [
        ("SKU-A", 3),
        ("SKU-B", 3),
        ("SKU-C", 3),
    ]
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )


def test_an_item_still_left_out_alone_is_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if asked(request) == ["b"]:
            return data()
        return data(level("a", available=True, availableQuantity=3))

    answer, requests = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}), handler, ["SKU-A", "SKU-B"]
    )
    assert [asked(request) for request in requests] == [["a", "b"], ["b"]]
    assert [r.sku for r in answer.records] == ["SKU-A"]
    assert answer.unknown_skus == {"SKU-B"}
    assert answer.missing_skus == {"SKU-B"}
    assert answer.errors == ()


def test_a_batch_of_one_left_out_is_missing_without_asking_again() -> None:
    answer, requests = run(levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}), lambda _r: data(), ["SKU-A"])
    assert len(requests) == 1
    assert answer == SourceAnswer(
        records=(), unknown_skus=frozenset({"SKU-A"}), missing_skus=frozenset({"SKU-A"})
    )


def test_an_item_asked_alone_404_is_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if asked(request) == ["b"]:
            return httpx.Response(404)
        return data(level("a", available=True, availableQuantity=3))

    answer, _ = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}), handler, ["SKU-A", "SKU-B"]
    )
    assert answer.unknown_skus == {"SKU-B"}
    assert answer.missing_skus == {"SKU-B"}
    assert answer.errors == ()


def test_an_item_asked_alone_failing_is_unknown_not_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if asked(request) == ["b"]:
            return httpx.Response(503, headers={"Retry-After": "4"})
        return data(level("a", available=True, availableQuantity=3))

    answer, _ = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}), handler, ["SKU-A", "SKU-B"]
    )
    assert [r.sku for r in answer.records] == ["SKU-A"]
    assert answer.unknown_skus == {"SKU-B"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is UpstreamUnavailable
    assert error.retry_after == 4.0


def test_404_on_a_batch_is_all_missing_without_asking_alone() -> None:
    answer, requests = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}),
        answering(404),
        ["SKU-A", "SKU-B"],
    )
    assert len(requests) == 1
    assert answer.missing_skus == answer.unknown_skus == {"SKU-A", "SKU-B"}


def test_unavailable_level_has_no_atp_but_a_restock_time() -> None:
    answer, _ = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: data(
            level(
                "a",
                available=False,
                availableQuantity=4,
                availableTime="2026-12-03T08:00:00Z",
                updatedTime="2026-11-22T10:00:00Z",
            )
        ),
        ["SKU-A"],
    )
    assert answer.records == (
        StockRecord(
            sku="SKU-A",
            location_id="dub-dc",
            atp=0,
            source="dr-levels",
            restock_time=datetime(2026, 12, 3, 8, 0, tzinfo=UTC),
            updated_time=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
            upstream_item="a",
            upstream_location="wh-1",
        ),
    )


@pytest.mark.parametrize(
    ("fields", "atp"),
    [
        pytest.param({"available": True}, 0, id="quantity-missing"),
        pytest.param({"available": True, "availableQuantity": None}, 0, id="quantity-null"),
        pytest.param({"available": True, "availableQuantity": 0}, 0, id="quantity-zero"),
        pytest.param({"available": True, "availableQuantity": -3}, 0, id="quantity-negative"),
        pytest.param({"available": False}, 0, id="not-available"),
        pytest.param({"availableQuantity": 5}, 5, id="available-missing"),
        pytest.param({"available": False, "availableTime": None}, 0, id="restock-null"),
    ],
)
def test_quantity_edges(fields: dict[str, Any], atp: int) -> None:
    answer, _ = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: data(level("a", **fields)),
        ["SKU-A"],
    )
    (record,) = answer.records
    assert record.atp == atp
    assert record.restock_time is None
    assert answer.errors == ()


def test_naive_timestamps_are_utc() -> None:
    answer, _ = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: data(level("a", available=False, availableTime="2026-12-03T08:00:00")),
        ["SKU-A"],
    )
    assert answer.records[0].restock_time == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_one_record_per_location_and_unmapped_locations_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return data(
            level("a", "wh-1", available=True, availableQuantity=2),
            level("a", "wh-2", available=True, availableQuantity=9),
            level("a", "wh-elsewhere", available=True, availableQuantity=50),
            level("b", "wh-elsewhere", available=True, availableQuantity=50),
        )

    build = levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc", "wh-2": "ams-dc"})
    with caplog.at_level(logging.DEBUG, logger="engine.sources.dr_levels"):
        answer, requests = run(build, handler, ["SKU-A", "SKU-B"])
    assert len(requests) == 1
    assert sorted((r.sku, r.location_id, r.atp, r.upstream_location) for r in answer.records) == [
        ("SKU-A", "ams-dc", 9, "wh-2"),
        ("SKU-A", "dub-dc", 2, "wh-1"),
    ]
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )
    skipped = [r.getMessage() for r in caplog.records if "wh-elsewhere" in r.getMessage()]
    assert skipped == [
        "dr-levels: upstream location wh-elsewhere is not one of ours; its levels are skipped"
    ]


def test_unmapped_location_logged_once_per_source(caplog: pytest.LogCaptureFixture) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return data(level("a", "wh-elsewhere", available=True, availableQuantity=1))

    async def twice(client: httpx.AsyncClient) -> None:
        source = levels({"SKU-A": "a"}, {"wh-1": "dub-dc"})(client)
        await source.fetch(["SKU-A"])
        await source.fetch(["SKU-A"])

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await twice(client)

    with caplog.at_level(logging.DEBUG, logger="engine.sources.dr_levels"):
        asyncio.run(main())
    assert sum("wh-elsewhere" in r.getMessage() for r in caplog.records) == 1


def test_two_skus_of_one_inventory_item_share_the_request() -> None:
    answer, requests = run(
        levels({"SKU-A": "a", "SKU-A-BUNDLE": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: data(level("a", available=True, availableQuantity=7)),
        ["SKU-A", "SKU-A-BUNDLE"],
    )
    assert [asked(request) for request in requests] == [["a"]]
    assert sorted((r.sku, r.atp) for r in answer.records) == [("SKU-A", 7), ("SKU-A-BUNDLE", 7)]


def test_extra_fields_are_accepted() -> None:
    answer, _ = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: httpx.Response(
            200,
            content=json.dumps(
                {
                    "hasMore": False,
                    "data": [level("a", available=True, availableQuantity=1, newField={"x": 1})],
                }
            ).encode(),
        ),
        ["SKU-A"],
    )
    assert [r.atp for r in answer.records] == [1]


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_must_be_positive(batch_size: int) -> None:
    client = httpx.AsyncClient()
    with pytest.raises(ValueError, match="batch_size"):
        levels({}, {}, batch_size=batch_size)(client)
    asyncio.run(client.aclose())
