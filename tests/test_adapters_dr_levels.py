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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
from engine.sources.dr_levels import ARRAY_STYLES, ArrayStyle, DigitalRiverLevels
from tests.test_adapters import BASE, TOKEN, Build, answering, payload, run, run_fetches

REFERENCE_ITEM = "ce4ce2de-530c-4da2-bf8a-f0f8cf059095"
REFERENCE_LOCATION = "afe95639-8181-4b66-86a6-1a9493d5419d"
SE_ITEM = "310abe81-69f6-44e5-85df-2674045e5460"


def levels(
    items: Mapping[str, str],
    locations: Mapping[str, str],
    *,
    batch_size: int = 50,
    array_style: ArrayStyle = "repeat",
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


def test_array_style_must_be_known() -> None:
    client = httpx.AsyncClient()
    with pytest.raises(ValueError, match="array_style"):
        levels({}, {}, array_style="pipes")(client)  # type: ignore[arg-type]
    asyncio.run(client.aclose())


# -- servers that read `inventoryItemIds` one way only ------------------------------------------
#
# The docs spell the parameter `inventoryItemIds` (reference) and `inventoryItemIds[]` (README),
# so a faithful server may read any one of these. Each reader returns the ids it sees, or None
# when it finds no parameter it knows (and the server answers 400, as the reference documents).

Reader = Callable[[httpx.Request], list[str] | None]


def reads_repeated(request: httpx.Request) -> list[str] | None:
    """`getlist("inventoryItemIds")`: `a,b` is one (unknown) id."""
    return request.url.params.get_list("inventoryItemIds") or None


def reads_comma_joined(request: httpx.Request) -> list[str] | None:
    """`get("inventoryItemIds").split(",")`: of repeated values only the first is read."""
    value = request.url.params.get("inventoryItemIds")
    return value.split(",") if value else None


def reads_brackets(request: httpx.Request) -> list[str] | None:
    """`getlist("inventoryItemIds[]")`: without brackets the required parameter is missing."""
    return request.url.params.get_list("inventoryItemIds[]") or None


def reads_first_id_only(request: httpx.Request) -> list[str] | None:
    """Reads one unbracketed id and refuses a comma in it (not a valid id)."""
    value = request.url.params.get("inventoryItemIds")
    if value is None or "," in value:
        return None
    return [value]


READERS: dict[ArrayStyle, Reader] = {
    "repeat": reads_repeated,
    "comma": reads_comma_joined,
    "brackets": reads_brackets,
}

MISSING_PARAMETER = json.dumps(
    {
        "type": "bad_request",
        "errors": [
            {
                "code": "missing_parameter",
                "parameter": "inventoryItemIds",
                "message": "inventoryItemIds is required.",
            }
        ],
    }
).encode()


def server(reader: Reader, stock: Mapping[str, int]) -> Callable[[httpx.Request], httpx.Response]:
    """Levels at wh-1 of the items in `stock` it reads from the query; nothing of others."""

    def handler(request: httpx.Request) -> httpx.Response:
        ids = reader(request)
        if ids is None:
            return httpx.Response(400, content=MISSING_PARAMETER)
        return data(
            *(
                level(item, available=True, availableQuantity=stock[item])
                for item in ids
                if item in stock
            )
        )

    return handler


def spelling(request: httpx.Request) -> list[tuple[str, str]]:
    return request.url.params.multi_items()


ABC = {"SKU-A": "a", "SKU-B": "b", "SKU-C": "c"}
ABC_STOCK = {"a": 1, "b": 2, "c": 3}
ABC_RECORDS = [("SKU-A", 1), ("SKU-B", 2), ("SKU-C", 3)]
EXPECTED_QUERY: dict[ArrayStyle, list[tuple[str, str]]] = {
    "repeat": [("inventoryItemIds", "a"), ("inventoryItemIds", "b"), ("inventoryItemIds", "c")],
    "comma": [("inventoryItemIds", "a,b,c")],
    "brackets": [
        ("inventoryItemIds[]", "a"),
        ("inventoryItemIds[]", "b"),
        ("inventoryItemIds[]", "c"),
    ],
}


@pytest.mark.parametrize("configured", ARRAY_STYLES)
@pytest.mark.parametrize("server_reads", ARRAY_STYLES)
def test_the_spelling_the_server_reads_is_learnt(
    configured: ArrayStyle, server_reads: ArrayStyle
) -> None:
    """Whatever is configured, the first fetch is answered in full and the next costs one
    request, spelt the way the server reads it."""
    build = levels(ABC, {"wh-1": "dub-dc"}, array_style=configured)
    (first, first_requests), (second, second_requests) = run_fetches(
        build, server(READERS[server_reads], ABC_STOCK), [list(ABC), list(ABC)]
    )
    for answer in (first, second):
        assert sorted((r.sku, r.atp) for r in answer.records) == ABC_RECORDS
        assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
            frozenset(),
            frozenset(),
            (),
        )
    assert spelling(first_requests[0]) == EXPECTED_QUERY[configured]
    if configured == server_reads:
        assert len(first_requests) == 1
    (request,) = second_requests
    assert spelling(request) == EXPECTED_QUERY[server_reads]


def test_a_batch_answered_400_is_asked_in_the_other_spellings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = levels(ABC, {"wh-1": "dub-dc"})
    with caplog.at_level(logging.INFO, logger="engine.sources.dr_levels"):
        answer, requests = run(build, server(reads_brackets, ABC_STOCK), list(ABC))
    assert [spelling(request) for request in requests] == [
        EXPECTED_QUERY["repeat"],
        EXPECTED_QUERY["comma"],
        EXPECTED_QUERY["brackets"],
    ]
    assert sorted((r.sku, r.atp) for r in answer.records) == ABC_RECORDS
    assert answer.errors == ()
    assert [r.getMessage() for r in caplog.records] == [
        "dr-levels: the server rejected inventoryItemIds spelt `repeat` and took it spelt "
        "`brackets`; asking with `brackets` from now on (HTTP 400 from /inventory-levels: "
        "inventoryItemIds is required.)"
    ]


def test_items_asked_alone_use_the_spelling_learnt() -> None:
    """With one id `repeat` and `comma` are the same text, `brackets` is not: once brackets are
    learnt, an item left out of a batch is asked for alone with brackets, and is missing (not
    rejected) when the server does not know it."""
    build = levels({"SKU-A": "a", "GHOST-1": "ghost"}, {"wh-1": "dub-dc"})
    handler = server(reads_brackets, {"a": 4})
    (_, learning), (answer, requests) = run_fetches(
        build, handler, [["SKU-A"], ["SKU-A", "GHOST-1"]]
    )
    assert [spelling(request) for request in learning] == [
        [("inventoryItemIds", "a")],
        [("inventoryItemIds[]", "a")],
    ]
    assert [spelling(request) for request in requests] == [
        [("inventoryItemIds[]", "ghost"), ("inventoryItemIds[]", "a")],
        [("inventoryItemIds[]", "ghost")],
    ]
    assert [(r.sku, r.atp) for r in answer.records] == [("SKU-A", 4)]
    assert answer.unknown_skus == answer.missing_skus == {"GHOST-1"}
    assert answer.errors == ()


def test_one_item_answered_400_is_asked_once_more_with_brackets() -> None:
    answer, requests = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}, array_style="comma"),
        server(reads_brackets, {"a": 4}),
        ["SKU-A"],
    )
    assert [spelling(request) for request in requests] == [
        [("inventoryItemIds", "a")],
        [("inventoryItemIds[]", "a")],
    ]
    assert [(r.sku, r.atp) for r in answer.records] == [("SKU-A", 4)]
    assert answer.errors == ()


def test_rejected_in_every_spelling_is_one_error_and_nothing_learnt() -> None:
    build = levels(ABC, {"wh-1": "dub-dc"})
    results = run_fetches(
        build, answering(400, b'{"errors": ["invalid inventory item id"]}'), [list(ABC)] * 2
    )
    for answer, requests in results:
        assert [spelling(request) for request in requests] == [
            EXPECTED_QUERY["repeat"],
            EXPECTED_QUERY["comma"],
            EXPECTED_QUERY["brackets"],
        ]
        assert answer.records == ()
        assert answer.unknown_skus == set(ABC)
        assert answer.missing_skus == frozenset()
        (error,) = answer.errors
        assert type(error) is RequestRejected
        assert error.status == 400
        assert error.message == (
            "HTTP 400 from /inventory-levels: invalid inventory item id (inventoryItemIds was "
            "rejected in every spelling: repeat, comma, brackets)"
        )


def test_an_outage_while_trying_another_spelling_stops_the_trying() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "inventoryItemIds" in request.url.params:
            return httpx.Response(400, content=MISSING_PARAMETER)
        return httpx.Response(503, headers={"Retry-After": "3"})

    build = levels(ABC, {"wh-1": "dub-dc"}, array_style="comma")
    (answer, requests), (_, again) = run_fetches(build, handler, [list(ABC)] * 2)
    assert [spelling(request) for request in requests] == [
        EXPECTED_QUERY["comma"],
        EXPECTED_QUERY["repeat"],
        EXPECTED_QUERY["brackets"],
    ]
    (error,) = answer.errors
    assert type(error) is UpstreamUnavailable
    assert error.retry_after == 3.0
    assert answer.unknown_skus == set(ABC)
    assert spelling(again[0]) == EXPECTED_QUERY["comma"]


def test_a_batch_read_as_fewer_items_moves_to_the_next_spelling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = levels(ABC, {"wh-1": "dub-dc"})
    with caplog.at_level(logging.INFO, logger="engine.sources.dr_levels"):
        (first, learning), (_, learnt), (_, still) = run_fetches(
            build, server(reads_comma_joined, ABC_STOCK), [list(ABC)] * 3
        )
    assert [spelling(request) for request in learning] == [
        EXPECTED_QUERY["repeat"],
        [("inventoryItemIds", "b")],
        [("inventoryItemIds", "c")],
    ]
    assert sorted((r.sku, r.atp) for r in first.records) == ABC_RECORDS
    assert first.errors == ()
    assert [spelling(request) for request in learnt + still] == [EXPECTED_QUERY["comma"]] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "dr-levels: 2 item(s) asked for alone (2 left out of a batch answer, 0 in a batch answer "
        "cut short by hasMore); 2 found",
        "dr-levels: the server reads inventoryItemIds spelt `repeat` as fewer items than sent "
        "(items left out of a batch answer were found alone); asking with `comma` from now on",
    ]


def test_items_the_server_does_not_know_do_not_change_the_spelling() -> None:
    build = levels({**ABC, "GHOST-1": "ghost"}, {"wh-1": "dub-dc"})
    results = run_fetches(build, server(reads_repeated, ABC_STOCK), [[*ABC, "GHOST-1"]] * 2)
    for answer, requests in results:
        assert [spelling(request) for request in requests] == [
            [("inventoryItemIds", "ghost"), *EXPECTED_QUERY["repeat"]],
            [("inventoryItemIds", "ghost")],
        ]
        assert answer.unknown_skus == answer.missing_skus == {"GHOST-1"}


def test_when_no_spelling_reads_a_whole_batch_the_switching_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = levels(ABC, {"wh-1": "dub-dc"})
    with caplog.at_level(logging.INFO, logger="engine.sources.dr_levels"):
        results = run_fetches(build, server(reads_first_id_only, ABC_STOCK), [list(ABC)] * 5)
    for answer, _ in results:
        assert sorted((r.sku, r.atp) for r in answer.records) == ABC_RECORDS
        assert answer.errors == ()
    settled = [[spelling(request) for request in requests] for _, requests in results[2:]]
    assert (
        settled
        == [[EXPECTED_QUERY["repeat"], [("inventoryItemIds", "b")], [("inventoryItemIds", "c")]]]
        * 3
    )
    gave_up = [r.getMessage() for r in caplog.records if "no spelling" in r.getMessage()]
    assert gave_up == [
        "dr-levels: no spelling of inventoryItemIds gets a whole batch read; keeping `repeat`, "
        "items left out of a batch answer are asked for alone"
    ]


# -- hasMore -------------------------------------------------------------------------------------


def page(*elements: dict[str, Any], has_more: bool) -> httpx.Response:
    body = {"object": "list", "hasMore": has_more, "data": list(elements)}
    return httpx.Response(200, content=json.dumps(body).encode())


def test_a_batch_cut_short_is_asked_item_by_item() -> None:
    """The batch answer's own levels are not used: an item may be listed at only some of its
    locations, and a location left out would read as no stock there."""

    def handler(request: httpx.Request) -> httpx.Response:
        ids = asked(request)
        if len(ids) > 1:
            return page(level("a", "wh-1", available=True, availableQuantity=1), has_more=True)
        return page(
            level(ids[0], "wh-1", available=True, availableQuantity=5),
            level(ids[0], "wh-2", available=True, availableQuantity=6),
            has_more=False,
        )

    build = levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc", "wh-2": "ams-dc"})
    (answer, requests), (_, again) = run_fetches(build, handler, [["SKU-A", "SKU-B"]] * 2)
    assert [asked(request) for request in requests] == [["a", "b"], ["a"], ["b"]]
    assert sorted((r.sku, r.location_id, r.atp) for r in answer.records) == [
        ("SKU-A", "ams-dc", 6),
        ("SKU-A", "dub-dc", 5),
        ("SKU-B", "ams-dc", 6),
        ("SKU-B", "dub-dc", 5),
    ]
    assert (answer.unknown_skus, answer.missing_skus, answer.errors) == (
        frozenset(),
        frozenset(),
        (),
    )
    # Being cut short says nothing about the spelling.
    assert spelling(again[0]) == [("inventoryItemIds", "a"), ("inventoryItemIds", "b")]


def test_an_item_cut_short_when_asked_alone_is_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if asked(request) == ["b"]:
            return page(level("b", available=True, availableQuantity=9), has_more=True)
        return page(
            *(level(item, available=True, availableQuantity=2) for item in asked(request)),
            has_more=len(asked(request)) > 1,
        )

    answer, requests = run(
        levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}), handler, ["SKU-A", "SKU-B"]
    )
    assert [asked(request) for request in requests] == [["a", "b"], ["a"], ["b"]]
    assert [(r.sku, r.atp) for r in answer.records] == [("SKU-A", 2)]
    assert answer.unknown_skus == {"SKU-B"}
    assert answer.missing_skus == frozenset()
    (error,) = answer.errors
    assert type(error) is BadPayload
    assert error.message == (
        "HTTP 200 from /inventory-levels: hasMore is true although item b was asked for alone: "
        "its levels may be cut short, and no way to page is documented"
    )


def test_a_fetch_of_one_item_cut_short_is_unknown_at_once() -> None:
    answer, requests = run(
        levels({"SKU-A": "a"}, {"wh-1": "dub-dc"}),
        lambda _request: page(level("a", available=True, availableQuantity=9), has_more=True),
        ["SKU-A"],
    )
    assert len(requests) == 1
    assert answer.records == ()
    assert answer.unknown_skus == {"SKU-A"}
    assert [type(error) for error in answer.errors] == [BadPayload]


def test_has_more_false_or_null_is_a_whole_answer() -> None:
    for has_more in (False, None):
        answer, requests = run(
            levels({"SKU-A": "a", "SKU-B": "b"}, {"wh-1": "dub-dc"}),
            lambda request, more=has_more: httpx.Response(
                200,
                content=json.dumps(
                    {
                        "hasMore": more,
                        "data": [
                            level(i, available=True, availableQuantity=1) for i in asked(request)
                        ],
                    }
                ).encode(),
            ),
            ["SKU-A", "SKU-B"],
        )
        assert len(requests) == 1
        assert len(answer.records) == 2


def test_asking_alone_is_logged_once_per_fetch_with_the_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = {f"SKU-{n}": f"i{n}" for n in range(5)}

    def handler(request: httpx.Request) -> httpx.Response:
        ids = asked(request)
        if ids == ["i0", "i1"]:
            return page(level("i0", available=True, availableQuantity=1), has_more=True)
        if ids == ["i2", "i3"]:
            return page(level("i2", available=True, availableQuantity=1), has_more=False)
        known = [i for i in ids if i != "i3"]
        return page(*(level(i, available=True, availableQuantity=1) for i in known), has_more=False)

    with caplog.at_level(logging.INFO, logger="engine.sources.dr_levels"):
        answer, _ = run(levels(items, {"wh-1": "dub-dc"}, batch_size=2), handler, list(items))
    assert answer.missing_skus == {"SKU-3"}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "dr-levels: 3 item(s) asked for alone (1 left out of a batch answer, 2 in a batch answer "
        "cut short by hasMore); 2 found"
    ]
