"""The HTTP service on the demo rules and availability, in process (correctness, not speed).

Every expected body is written out in full: a field that appears or disappears is an API change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from engine.checkout import Checkout
from engine.model import MAX_LINES
from engine.policy import RuleSet, load_rule_set
from engine.service import create_app
from engine.service.app import MAX_BODY_BYTES, readiness
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, DEMO_LOCATIONS, NOW, RULES

PROBLEM_JSON = "application/problem+json"
JSON_CONTENT = {"content-type": "application/json"}
ALL_LOCATIONS = DEMO_LOCATIONS
SNEAKER_RESTOCK = "2026-12-06T00:00:00Z"
"""The drop-ship supplier's sneaker restock: `restock_in_days: 14` from midnight of NOW."""


@pytest.fixture(scope="module")
def rule_set() -> RuleSet:
    return load_rule_set(RULES)


@pytest.fixture(scope="module")
def app(rule_set: RuleSet) -> Litestar:
    checkout = Checkout(
        rule_set, [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    return create_app(checkout)


@pytest.fixture(scope="module")
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def rs_id(rule_set: RuleSet) -> str:
    return rule_set.id


def line(sku: str = "TEE-BLK-M", quantity: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, **extra}


def allocated_line(index: int, sku: str, *allocs: tuple[str, int]) -> dict[str, Any]:
    total = sum(q for _, q in allocs)
    return {
        "line": index,
        "sku": sku,
        "quantity": total,
        "status": "allocated",
        "allocated": total,
        "reserved": 0,
        "allocations": [{"location_id": loc, "quantity": q} for loc, q in allocs],
        "reasons": [],
    }


def denied_line(index: int, sku: str, quantity: int, *reasons: str, **extra: Any) -> dict[str, Any]:
    return {
        "line": index,
        "sku": sku,
        "quantity": quantity,
        "status": "denied",
        "allocated": 0,
        "reserved": 0,
        "allocations": [],
        "reasons": list(reasons),
        **extra,
    }


def shipment(location_id: str, *lines: tuple[int, str, int]) -> dict[str, Any]:
    return {
        "location_id": location_id,
        "lines": [{"line": i, "sku": sku, "quantity": q} for i, sku, q in lines],
    }


def post_cart(client: TestClient[Litestar], body: Any, query: str = "") -> Any:
    response = client.post(f"/v1/allocations{query}", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_problem(response: Any, status: int, field: str | None) -> dict[str, Any]:
    """A problem+json answer with `status` whose `errors` name `field` (when one is given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == response.request.url.path
    if field is not None:
        fields = [error["field"] for error in problem["errors"]]
        assert field in fields, problem
        assert all(error["message"] for error in problem["errors"])
    return problem


# --- POST /v1/allocations: decisions ------------------------------------------------------------


def test_allocates_from_the_same_country_location(client, rs_id):
    body = post_cart(client, {"country": "IE", "lines": [line("TEE-BLK-M", 2)]})
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "TEE-BLK-M", ("dub-dc", 2))],
        "shipments": [shipment("dub-dc", (0, "TEE-BLK-M", 2))],
    }


def test_single_location_picks_the_one_place_that_covers_the_line(client, rs_id):
    # dub-dc has 3 white tees, ams-dc 12: only ams-dc serves the whole cart.
    body = post_cart(client, {"country": "IE", "lines": [line("TEE-WHT-M", 10)]})
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "TEE-WHT-M", ("ams-dc", 10))],
        "shipments": [shipment("ams-dc", (0, "TEE-WHT-M", 10))],
    }


def test_splits_a_line_across_two_locations(client, rs_id):
    # dub-dc: on_hand 42 - reserved 2 = 40; ams-dc: 25. No single location has 45.
    body = post_cart(client, {"country": "IE", "lines": [line("TEE-BLK-M", 45)]})
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "TEE-BLK-M", ("dub-dc", 40), ("ams-dc", 5))],
        "shipments": [
            shipment("dub-dc", (0, "TEE-BLK-M", 40)),
            shipment("ams-dc", (0, "TEE-BLK-M", 5)),
        ],
    }


def test_split_respects_safety_stock(client, rs_id):
    # hoodies: dub-dc 7 - 2 safety = 5, ams-dc 6 - 2 = 4.
    body = post_cart(client, {"country": "IE", "lines": [line("HOODIE-GRY-L", 8)]})
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "HOODIE-GRY-L", ("dub-dc", 5), ("ams-dc", 3))],
        "shipments": [
            shipment("dub-dc", (0, "HOODIE-GRY-L", 5)),
            shipment("ams-dc", (0, "HOODIE-GRY-L", 3)),
        ],
    }


def test_reserves_against_the_earliest_restock(client, rs_id):
    # ams-dc has 1 sneaker, but `split: false` forbids 1 allocated + 1 reserved: both units
    # are reserved at ber-dropship, whose restock (14 days) is earlier than dub-dc's (21 days).
    body = post_cart(client, {"country": "IE", "lines": [line("SNEAKER-RUN-42", 2)]})
    assert body == {
        "decision": "reserve",
        "rule_set": rs_id,
        "lines": [
            {
                "line": 0,
                "sku": "SNEAKER-RUN-42",
                "quantity": 2,
                "status": "reserved",
                "allocated": 0,
                "reserved": 2,
                "allocations": [],
                "reasons": ["INSUFFICIENT_STOCK"],
                "reservation": {
                    "quantity": 2,
                    "location_id": "ber-dropship",
                    "restock_time": SNEAKER_RESTOCK,
                },
            }
        ],
        "shipments": [],
    }


def test_backorder_over_the_limit_is_denied(client, rs_id):
    body = post_cart(client, {"country": "IE", "lines": [line("SNEAKER-RUN-42", 11)]})
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [
            denied_line(
                0, "SNEAKER-RUN-42", 11, "INSUFFICIENT_STOCK", "BACKORDER_LIMIT", available=1
            )
        ],
        "shipments": [],
    }


def test_ship_to_rule_denies_a_destination(client, rs_id):
    body = post_cart(client, {"country": "US", "lines": [line("POWERBANK-20K", 1)]})
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [denied_line(0, "POWERBANK-20K", 1, "NOT_SHIPPABLE")],
        "shipments": [],
    }


def test_below_safety_stock_is_denied_with_what_is_available(client, rs_id):
    # 13 hoodies on hand in the EU, 9 after safety stock: 10 cannot be allocated.
    body = post_cart(client, {"country": "IE", "lines": [line("HOODIE-GRY-L", 10)]})
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [denied_line(0, "HOODIE-GRY-L", 10, "BELOW_SAFETY_STOCK", available=9)],
        "shipments": [],
    }


def test_store_display_stock_is_not_sold(client, rs_id):
    # GB: dub-dc 3 + lon-store 2 ATP (all of it display stock) = 5 raw, 3 allocatable.
    body = post_cart(client, {"country": "GB", "lines": [line("TEE-WHT-M", 4)]})
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [denied_line(0, "TEE-WHT-M", 4, "BELOW_SAFETY_STOCK", available=3)],
        "shipments": [],
    }


def test_deny_rule_carries_its_message(client, rs_id):
    body = post_cart(client, {"country": "GB", "lines": [line("CHEF-KNIFE-20", 1)]})
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [
            denied_line(
                0,
                "CHEF-KNIFE-20",
                1,
                "DENIED_BY_RULE",
                message="This item cannot be delivered to the United Kingdom.",
            )
        ],
        "shipments": [],
    }


def test_unknown_availability_is_reserved_under_the_reserve_policy(client, rs_id):
    # The snapshot has no record of LAMP-OAK, so its availability is unknown everywhere.
    body = post_cart(client, {"country": "IE", "lines": [line("LAMP-OAK", 1)]})
    assert body == {
        "decision": "reserve",
        "rule_set": rs_id,
        "lines": [
            {
                "line": 0,
                "sku": "LAMP-OAK",
                "quantity": 1,
                "status": "reserved",
                "allocated": 0,
                "reserved": 1,
                "allocations": [],
                "reasons": ["AVAILABILITY_UNKNOWN"],
                "reservation": {"quantity": 1, "location_id": "dub-dc"},
            }
        ],
        "shipments": [],
    }


def test_click_and_collect_allocates_at_the_pickup_location(client, rs_id):
    # lon-store: on_hand 6 - reserved 1 = 5, minus 3 display stock = 2 allocatable.
    body = post_cart(
        client,
        {"country": "GB", "lines": [line("TEE-BLK-M", 2)], "pickup_location": "lon-store"},
    )
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "TEE-BLK-M", ("lon-store", 2))],
        "shipments": [shipment("lon-store", (0, "TEE-BLK-M", 2))],
    }


def test_click_and_collect_never_uses_another_location(client, rs_id):
    body = post_cart(
        client,
        {"country": "GB", "lines": [line("TEE-BLK-M", 3)], "pickup_location": "lon-store"},
    )
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [denied_line(0, "TEE-BLK-M", 3, "BELOW_SAFETY_STOCK", available=2)],
        "shipments": [],
    }


def test_pickup_at_a_disabled_location_is_not_shippable(client, rs_id):
    body = post_cart(
        client, {"country": "IE", "lines": [line("TEE-BLK-M", 1)], "pickup_location": "old-cork"}
    )
    assert body == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [denied_line(0, "TEE-BLK-M", 1, "NOT_SHIPPABLE")],
        "shipments": [],
    }


def test_cart_id_is_echoed_and_shipments_group_lines(client, rs_id):
    cart = {
        "country": "IE",
        "cart_id": "cart-42",
        "lines": [line("TEE-BLK-M", 1), line("CHEF-KNIFE-20", 1)],
    }
    assert post_cart(client, cart) == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [
            allocated_line(0, "TEE-BLK-M", ("dub-dc", 1)),
            allocated_line(1, "CHEF-KNIFE-20", ("dub-dc", 1)),
        ],
        "shipments": [shipment("dub-dc", (0, "TEE-BLK-M", 1), (1, "CHEF-KNIFE-20", 1))],
        "cart_id": "cart-42",
    }


def test_unknown_sku_and_quantity_limit(client, rs_id):
    cart = {"country": "IE", "lines": [line("NO-SUCH-SKU", 1), line("VINYL-LTD-01", 3)]}
    assert post_cart(client, cart) == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [
            denied_line(0, "NO-SUCH-SKU", 1, "UNKNOWN_SKU"),
            denied_line(1, "VINYL-LTD-01", 3, "QUANTITY_LIMIT"),
        ],
        "shipments": [],
    }


def test_wholesale_cart_must_ship_from_one_location(client, rs_id):
    # max_shipments 1: after 30 black tees from dub-dc, the white tees (3 at dub-dc) are short.
    cart = {
        "country": "IE",
        "channel": "wholesale",
        "lines": [line("TEE-BLK-M", 30), line("TEE-WHT-M", 10)],
    }
    assert post_cart(client, cart) == {
        "decision": "deny",
        "rule_set": rs_id,
        "lines": [
            allocated_line(0, "TEE-BLK-M", ("dub-dc", 30)),
            # 3 is what dub-dc, the one shipment allowed, still holds of the white tee.
            denied_line(1, "TEE-WHT-M", 10, "SPLIT_LIMIT", available=3),
        ],
        "shipments": [],
    }


def test_unlimited_stock_allocates(client, rs_id):
    body = post_cart(client, {"country": "US", "lines": [line("GIFTCARD-50", 3)]})
    assert body == {
        "decision": "allocate",
        "rule_set": rs_id,
        "lines": [allocated_line(0, "GIFTCARD-50", ("ber-dropship", 3))],
        "shipments": [shipment("ber-dropship", (0, "GIFTCARD-50", 3))],
    }


def test_explain_lists_every_location_of_the_rule_set(client, rs_id):
    cart = {"country": "IE", "lines": [line("TEE-BLK-M", 45), line("POWERBANK-20K", 1)]}
    plain = post_cart(client, cart)
    explained = post_cart(client, cart, "?explain=true")

    assert plain["decision"] == explained["decision"] == "allocate"
    assert "explanation" not in plain
    assert all("explanation" not in ln for ln in plain["lines"])
    stripped = {k: v for k, v in explained.items() if k != "explanation"}
    stripped["lines"] = [
        {k: v for k, v in ln.items() if k != "explanation"} for ln in explained["lines"]
    ]
    assert stripped == plain

    cart_explanation = explained["explanation"]
    assert cart_explanation["summary"].startswith("allocate: 2 line(s)")
    assert {s["setting"] for s in cart_explanation["settings"]} == {
        "partial_cart",
        "routing.criteria",
        "routing.max_locations_per_line",
        "routing.max_shipments",
    }

    for decided in explained["lines"]:
        explanation = decided["explanation"]
        assert [loc["location_id"] for loc in explanation["locations"]] == ALL_LOCATIONS
        assert explanation["summary"]

    tees = {loc["location_id"]: loc for loc in explained["lines"][0]["explanation"]["locations"]}
    assert tees["dub-dc"] == {
        "location_id": "dub-dc",
        "verdict": "used",
        "detail": "allocated 40",
        "atp": 40,
        "safety_stock": 0,
        "allocatable": 40,
        "allocated": 40,
    }
    assert tees["ams-dc"]["verdict"] == "used"
    assert tees["ams-dc"]["allocated"] == 5
    assert tees["lon-store"]["verdict"] == "excluded"
    assert tees["lon-store"]["detail"] == "ships to GB, not IE"
    assert tees["old-cork"] == {
        "location_id": "old-cork",
        "verdict": "excluded",
        "detail": "the location is disabled",
    }
    assert tees["ber-dropship"]["verdict"] == "passed_over"
    assert explained["lines"][0]["explanation"]["summary"] == (
        "allocated 40 from dub-dc, 5 from ams-dc"
    )

    settings_ = explained["lines"][0]["explanation"]["settings"]
    max_quantity = next(s for s in settings_ if s["setting"] == "max_quantity")
    assert max_quantity == {
        "setting": "max_quantity",
        "value": 50,
        "rule": "defaults",
        "file": "rules.yaml",
        "line": 8,
    }


def test_explain_names_the_rule_behind_a_location_setting(client):
    body = post_cart(client, {"country": "IE", "lines": [line("HOODIE-GRY-L", 8)]}, "?explain=true")
    settings_ = body["lines"][0]["explanation"]["settings"]
    assert {
        "setting": "safety_stock",
        "value": 2,
        "rule": "hoodie-safety-stock",
        "file": "rules.yaml",
        "line": 34,
        "location_id": "dub-dc",
    } in settings_
    locations = body["lines"][0]["explanation"]["locations"]
    assert [loc["location_id"] for loc in locations] == ALL_LOCATIONS


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "True"])
def test_explain_accepts_boolean_spellings(client, value):
    body = post_cart(client, {"country": "IE", "lines": [line()]}, f"?explain={value}")
    assert "explanation" in body


@pytest.mark.parametrize("value", ["false", "0"])
def test_explain_false_adds_nothing(client, value):
    body = post_cart(client, {"country": "IE", "lines": [line()]}, f"?explain={value}")
    assert "explanation" not in body


# --- POST /v1/allocations: bad requests ---------------------------------------------------------


BAD_CARTS: list[tuple[str, Any, str]] = [
    ("quantity as text", {"country": "IE", "lines": [line(quantity="5")]}, "$.lines[0].quantity"),
    ("quantity as float", {"country": "IE", "lines": [line(quantity=1.5)]}, "$.lines[0].quantity"),
    ("quantity as bool", {"country": "IE", "lines": [line(quantity=True)]}, "$.lines[0].quantity"),
    ("quantity null", {"country": "IE", "lines": [line(quantity=None)]}, "$.lines[0].quantity"),
    ("quantity zero", {"country": "IE", "lines": [line(quantity=0)]}, "$.lines[0].quantity"),
    ("quantity negative", {"country": "IE", "lines": [line(quantity=-3)]}, "$.lines[0].quantity"),
    ("quantity 10**20", {"country": "IE", "lines": [line(quantity=10**20)]}, "$.lines[0].quantity"),
    (
        "quantity over the limit",
        {"country": "IE", "lines": [line(), line(quantity=100_001)]},
        "$.lines[1].quantity",
    ),
    ("sku as number", {"country": "IE", "lines": [line(sku=5)]}, "$.lines[0].sku"),
    ("sku empty", {"country": "IE", "lines": [line(sku="")]}, "$.lines[0].sku"),
    ("sku with a space", {"country": "IE", "lines": [line(sku="TEE BLK")]}, "$.lines[0].sku"),
    # Python's `$` matches before a final newline: each pattern is anchored past it.
    ("sku ending in a newline", {"country": "IE", "lines": [line(sku="TEE\n")]}, "$.lines[0].sku"),
    ("sku too long", {"country": "IE", "lines": [line(sku="X" * 101)]}, "$.lines[0].sku"),
    ("missing sku", {"country": "IE", "lines": [{"quantity": 1}]}, "$.lines[0].sku"),
    ("missing quantity", {"country": "IE", "lines": [{"sku": "A"}]}, "$.lines[0].quantity"),
    ("line not an object", {"country": "IE", "lines": ["TEE-BLK-M"]}, "$.lines[0]"),
    ("lines an object", {"country": "IE", "lines": {"sku": "A", "quantity": 1}}, "$.lines"),
    ("lines null", {"country": "IE", "lines": None}, "$.lines"),
    ("empty lines", {"country": "IE", "lines": []}, "$.lines"),
    ("missing lines", {"country": "IE"}, "$.lines"),
    ("unknown top-level field", {"country": "IE", "lines": [line()], "coupon": "X"}, "$.coupon"),
    (
        "unknown line field",
        {"country": "IE", "lines": [line(), line(price=10)]},
        "$.lines[1].price",
    ),
    ("country XX", {"country": "XX", "lines": [line()]}, "$.country"),
    ("country lower case", {"country": "ie", "lines": [line()]}, "$.country"),
    ("country alpha-3", {"country": "IRL", "lines": [line()]}, "$.country"),
    ("country as number", {"country": 353, "lines": [line()]}, "$.country"),
    ("country empty", {"country": "", "lines": [line()]}, "$.country"),
    ("missing country", {"lines": [line()]}, "$.country"),
    ("channel not a slug", {"country": "IE", "lines": [line()], "channel": "Web"}, "$.channel"),
    (
        "channel ending in a newline",
        {"country": "IE", "lines": [line()], "channel": "web\n"},
        "$.channel",
    ),
    ("cart_id empty", {"country": "IE", "lines": [line()], "cart_id": ""}, "$.cart_id"),
    ("cart_id a number", {"country": "IE", "lines": [line()], "cart_id": 7}, "$.cart_id"),
    (
        "pickup_location with a space",
        {"country": "IE", "lines": [line()], "pickup_location": "dub dc"},
        "$.pickup_location",
    ),
    (
        "pickup_location ending in a newline",
        {"country": "IE", "lines": [line()], "pickup_location": "dub-dc\n"},
        "$.pickup_location",
    ),
    ("array instead of object", [{"country": "IE", "lines": [line()]}], "$"),
    ("null body", None, "$"),
    ("string body", "IE", "$"),
    ("number body", 5, "$"),
]


@pytest.mark.parametrize(
    ("body", "field"), [pytest.param(b, f, id=name) for name, b, f in BAD_CARTS]
)
def test_bad_cart_is_a_400_naming_the_field(client, body, field):
    response = client.post(
        "/v1/allocations", content=json.dumps(body).encode(), headers=JSON_CONTENT
    )
    problem = assert_problem(response, 400, field)
    assert problem["type"] == "/problems/invalid-request"
    assert problem["detail"].startswith(field)


def test_a_sku_ending_in_a_newline_is_named_in_words(client):
    response = client.post("/v1/allocations", json={"country": "IE", "lines": [line(sku="A\n")]})
    problem = assert_problem(response, 400, "$.lines[0].sku")
    assert problem["errors"][0]["message"] == "Expected text without spaces or line breaks"


def test_country_error_explains_what_to_write(client):
    response = client.post("/v1/allocations", json={"country": "ie", "lines": [line()]})
    problem = assert_problem(response, 400, "$.country")
    assert "ISO 3166-1 alpha-2" in problem["errors"][0]["message"]


def test_too_many_lines_is_a_400_naming_lines(client):
    # Short SKUs keep 10,000 lines under the body size limit, so the line count is what fails.
    raw = json.dumps(
        {"country": "IE", "lines": [{"sku": "A", "quantity": 1}] * 10_000}, separators=(",", ":")
    ).encode()
    assert len(raw) < MAX_BODY_BYTES
    assert_problem(
        client.post("/v1/allocations", content=raw, headers=JSON_CONTENT), 400, "$.lines"
    )


def test_one_line_over_the_maximum_is_refused_and_the_maximum_is_accepted(client):
    over = {"country": "IE", "lines": [line("NOPE", 1)] * (MAX_LINES + 1)}
    assert_problem(client.post("/v1/allocations", json=over), 400, "$.lines")
    at_limit = post_cart(client, {"country": "IE", "lines": [line("NOPE", 1)] * MAX_LINES})
    assert len(at_limit["lines"]) == MAX_LINES
    assert at_limit["decision"] == "deny"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{", id="cut short"),
        pytest.param(b"not json", id="garbage"),
        pytest.param(b'{"country": "IE", "lines": [}', id="broken"),
        pytest.param(b'{"country": "IE", "lines": [{"sku": "A", "quantity": 1}]} x', id="trailing"),
        pytest.param(b"\xff\xfe", id="not utf-8"),
    ],
)
def test_invalid_json_is_a_400(client, raw):
    response = client.post(
        "/v1/allocations", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "$")


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_empty_body_is_a_400(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/allocations", content=b"", headers=headers)
    problem = assert_problem(response, 400, "$")
    assert "empty" in problem["detail"]


def test_huge_body_is_a_413(client):
    lines = [line("TEE-BLK-M", 1)] * 10_000
    raw = json.dumps({"country": "IE", "lines": lines}).encode()
    assert len(raw) > MAX_BODY_BYTES
    response = client.post(
        "/v1/allocations", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, None)
    assert response.json()["type"] == "/problems/payload-too-large"
    assert response.json()["detail"] == "the body is larger than the 256 KiB a cart may take"


def test_padding_over_the_limit_is_a_413(client):
    raw = b'{"country": "IE", "lines": [{"sku": "A", "quantity": 1}]}' + b" " * MAX_BODY_BYTES
    response = client.post(
        "/v1/allocations", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, None)


def test_unknown_pickup_location_is_a_422(client):
    response = client.post(
        "/v1/allocations",
        json={"country": "IE", "lines": [line()], "pickup_location": "mars-base"},
    )
    problem = assert_problem(response, 422, "$.pickup_location")
    assert problem["type"] == "/problems/unknown-reference"
    assert "mars-base" in problem["detail"]


@pytest.mark.parametrize("value", ["maybe", "2", "", "yes", "-1"])
def test_bad_explain_value_is_a_400(client, value):
    response = client.post(
        f"/v1/allocations?explain={value}", json={"country": "IE", "lines": [line()]}
    )
    assert_problem(response, 400, "explain")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_a_405(client, method):
    response = client.request(method, "/v1/allocations")
    assert_problem(response, 405, None)
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing-here"), ("POST", "/v2/allocations"), ("GET", "/v1/allocations/x")],
)
def test_unknown_route_is_a_404(client, method, path):
    assert_problem(client.request(method, path), 404, None)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
CART_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "country": st.sampled_from(["IE", "GB", "US", "ie", "XX", ""]) | JSON_VALUES,
        "lines": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "sku": st.sampled_from(["TEE-BLK-M", "LAMP-OAK", "NOPE", ""]) | JSON_VALUES,
                    "quantity": st.integers(-5, 10**6) | JSON_VALUES,
                    "extra": JSON_VALUES,
                },
            ),
            max_size=4,
        )
        | JSON_VALUES,
        "channel": st.sampled_from(["web", "wholesale", "Web"]) | JSON_VALUES,
        "pickup_location": st.sampled_from(["lon-store", "old-cork", "nowhere"]) | JSON_VALUES,
        "cart_id": JSON_VALUES,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
)
@given(body=CART_LIKE | JSON_VALUES, explain=st.sampled_from(["", "?explain=true"]))
def test_no_body_is_ever_a_5xx(client, body, explain):
    response = client.post(
        f"/v1/allocations{explain}", content=json.dumps(body).encode(), headers=JSON_CONTENT
    )
    assert response.status_code in {200, 400, 422}, response.text
    if response.status_code != 200:
        assert_problem(response, response.status_code, None)
        assert response.json()["errors"]


# --- GET /v1/availability -----------------------------------------------------------------------


def item(sku: str, sellable: int, **extra: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "known": True,
        "shippable": True,
        "orderable": sellable > 0,
        "sellable": sellable,
        "low_stock": False,
        "backorderable": False,
        **extra,
    }


def get_availability(client: TestClient[Litestar], query: str) -> Any:
    response = client.get(f"/v1/availability?{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_availability_after_safety_stock_and_min_atp(client, rs_id):
    body = get_availability(client, "sku=TEE-BLK-M&sku=TEE-WHT-M&sku=HOODIE-GRY-L&country=IE")
    assert body == {
        "country": "IE",
        "rule_set": rs_id,
        "items": [
            item("TEE-BLK-M", 50),  # dub-dc 40 + ams-dc 25, but at most 50 per order
            item("TEE-WHT-M", 15),  # dub-dc 3 + ams-dc 12
            item("HOODIE-GRY-L", 9),  # (7 - 2) + (6 - 2)
        ],
    }


def test_availability_low_stock_and_display_stock(client, rs_id):
    body = get_availability(client, "sku=TEE-WHT-M&sku=TEE-BLK-M&sku=VINYL-LTD-01&country=GB")
    assert body == {
        "country": "GB",
        "rule_set": rs_id,
        "items": [
            # dub-dc 3; lon-store's 2 are display stock (safety stock 3).
            item("TEE-WHT-M", 3, low_stock=True),
            # dub-dc 40 + lon-store (6 - 1 reserved - 3 display) 2.
            item("TEE-BLK-M", 42),
            item("VINYL-LTD-01", 2, low_stock=True),  # 3 in stock, two per order
        ],
    }


def test_availability_backorderable_unknown_and_unlimited(client, rs_id):
    body = get_availability(
        client, "sku=SNEAKER-RUN-42&sku=NO-SUCH-SKU&sku=LAMP-OAK&sku=GIFTCARD-50&country=IE"
    )
    assert body == {
        "country": "IE",
        "rule_set": rs_id,
        "items": [
            # dub-dc's ATP 0 is under min_atp 1; ams-dc has 1.
            item(
                "SNEAKER-RUN-42",
                1,
                low_stock=True,
                backorderable=True,
                restock_time=SNEAKER_RESTOCK,
            ),
            {
                "sku": "NO-SUCH-SKU",
                "known": False,
                "shippable": False,
                "orderable": False,
                "sellable": 0,
                "low_stock": False,
                "backorderable": False,
                "reasons": ["UNKNOWN_SKU"],
            },
            # Unknown, but the rules take the order and reserve it.
            item(
                "LAMP-OAK",
                0,
                orderable=True,
                availability_unknown=True,
                reasons=["AVAILABILITY_UNKNOWN"],
            ),
            item("GIFTCARD-50", 50),  # not tracked: as many as one order may have
        ],
    }


def test_availability_not_shippable_and_denied(client, rs_id):
    body = get_availability(
        client, "sku=POWERBANK-20K&sku=CHEF-KNIFE-20&sku=GIFTCARD-50&country=US"
    )
    assert body == {
        "country": "US",
        "rule_set": rs_id,
        "items": [
            {
                "sku": "POWERBANK-20K",
                "known": True,
                "shippable": False,
                "orderable": False,
                "sellable": 0,
                "low_stock": False,
                "backorderable": False,
                "reasons": ["NOT_SHIPPABLE"],
            },
            item("CHEF-KNIFE-20", 0, reasons=["INSUFFICIENT_STOCK"]),
            item("GIFTCARD-50", 50),
        ],
    }
    gb = get_availability(client, "sku=CHEF-KNIFE-20&country=GB")
    assert gb["items"] == [
        {
            "sku": "CHEF-KNIFE-20",
            "known": True,
            "shippable": False,
            "orderable": False,
            "sellable": 0,
            "low_stock": False,
            "backorderable": False,
            "reasons": ["DENIED_BY_RULE"],
        }
    ]


def test_availability_repeated_sku_is_answered_once(client, rs_id):
    body = get_availability(client, "sku=TEE-BLK-M&sku=TEE-BLK-M&country=JP")
    assert body == {
        "country": "JP",
        "rule_set": rs_id,
        "items": [
            {
                "sku": "TEE-BLK-M",
                "known": True,
                "shippable": False,
                "orderable": False,
                "sellable": 0,
                "low_stock": False,
                "backorderable": False,
                "reasons": ["NOT_SHIPPABLE"],
            }
        ],
    }


def test_availability_with_a_channel(client):
    body = get_availability(client, "sku=TEE-BLK-M&country=IE&channel=wholesale")
    assert body["items"] == [item("TEE-BLK-M", 40)]  # wholesale: one shipment, dub-dc's 40


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("country=IE", "sku", id="missing sku"),
        pytest.param("sku=TEE-BLK-M", "country", id="missing country"),
        pytest.param("sku=TEE-BLK-M&country=XX", "country", id="country XX"),
        pytest.param("sku=TEE-BLK-M&country=ie", "country", id="country lower case"),
        pytest.param("sku=TEE-BLK-M&country=IRL", "country", id="country alpha-3"),
        pytest.param("sku=&country=IE", "sku", id="empty sku"),
        pytest.param("sku=A%20B&country=IE", "sku", id="sku with a space"),
        pytest.param("sku=A%0A&country=IE", "sku", id="sku ending in a newline"),
        pytest.param("&".join(["sku=A"] * (MAX_LINES + 1)) + "&country=IE", "sku", id="too many"),
    ],
)
def test_bad_availability_query_is_a_400_naming_the_parameter(client, query, field):
    response = client.get(f"/v1/availability?{query}")
    problem = assert_problem(response, 400, field)
    assert problem["type"] == "/problems/invalid-request"


def test_availability_without_parameters_names_a_missing_one(client):
    # Litestar stops at the first missing parameter, in no fixed order.
    problem = assert_problem(client.get("/v1/availability"), 400, None)
    assert [e["field"] for e in problem["errors"]] in (["sku"], ["country"])
    assert problem["errors"][0]["message"] == "required query parameter is missing"


@pytest.mark.parametrize("channel", ["Web", "web%20shop", "-x", "web%0A"])
def test_bad_availability_channel_is_a_400(client, channel):
    response = client.get(f"/v1/availability?sku=TEE-BLK-M&country=IE&channel={channel}")
    problem = assert_problem(response, 400, "channel")
    assert problem["errors"][0]["message"] == (
        "Expected lower-case letters, digits, `-` and `_`, starting with a letter or digit"
    )


def test_a_bad_availability_sku_is_named_in_words(client):
    problem = assert_problem(client.get("/v1/availability?sku=A%20B&country=IE"), 400, "sku")
    assert problem["errors"][0]["message"] == "Expected text without spaces or line breaks"


# --- rules, health, OpenAPI ---------------------------------------------------------------------


def test_rules_describe_the_active_rule_set(client, rule_set):
    response = client.get("/v1/rules")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"] == rule_set.id
    assert body["digest"].startswith(rule_set.id)
    assert body["files"] == ["catalog.yaml", "locations.yaml", "rules.yaml", "sources.yaml"]
    assert [loc["id"] for loc in body["locations"]] == ALL_LOCATIONS
    assert body["locations"][2] == {
        "id": "lon-store",
        "name": "London flagship store",
        "country": "GB",
        "ships_to": ["GB"],
        "priority": 3,
        "enabled": True,
    }
    assert body["locations"][5]["enabled"] is False
    assert body["locations"][5]["ships_to"] == ["IE"]
    assert body["catalog_size"] == 9
    assert [r["name"] for r in body["rules"]] == [
        "store-keeps-display-stock",
        "hoodie-safety-stock",
        "berlin-feed-lags",
        "no-batteries-to-north-america",
        "berlin-sends-batteries-by-road",
        "vinyl-licensed-for-europe",
        "no-blades-to-gb",
        "limited-vinyl-two-per-order",
        "vinyl-low-stock-early",
        "sneaker-preorders",
        "home-trust-when-unknown",
        "gift-cards-sell-when-unknown",
        "marketplace-takes-what-ships",
        "nordics-fewest-parcels",
        "wholesale-one-shipment",
    ]
    assert body["rules"][6] == {
        "name": "no-blades-to-gb",
        "file": "rules.yaml",
        "line": 64,
        "sets": ["deny"],
    }
    assert body["defaults"]["routing.max_shipments"] == 3
    assert body["warnings"] == []


def test_health(client, rule_set):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "rule_set": rule_set.id}


def test_openapi_describes_cart_and_decision(client):
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    components = schema["components"]["schemas"]
    assert {"Cart", "CartLine", "Decision", "LineDecision", "AvailabilityAnswer"} <= set(components)
    post = schema["paths"]["/v1/allocations"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Cart"
    }
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Decision"
    }
    assert set(components["Cart"]["required"]) == {"country", "lines"}
    assert "IE" in json.dumps(components["Cart"]["properties"]["country"])
    assert "explain" in [p["name"] for p in post["parameters"]]
    assert {"/v1/availability", "/v1/rules", "/health"} <= set(schema["paths"])


def test_replaced_rules_are_served(rule_set):
    checkout = Checkout(
        rule_set, [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    with TestClient(create_app(checkout)) as test_client:
        before = test_client.get("/health").json()["rule_set"]
        other = load_rule_set(RULES)
        other.id = "replacement"
        checkout.replace_rules(other)
        assert test_client.get("/health").json() == {"status": "ok", "rule_set": "replacement"}
        body = post_cart(test_client, {"country": "IE", "lines": [line()]})
        assert body["rule_set"] == "replacement"
        assert before == rule_set.id


# --- readiness ---------------------------------------------------------------------------------


class _Stats:
    """A checkout's `stats()` and rules, as `readiness` reads them."""

    def __init__(self, sources: dict[str, dict[str, object]]) -> None:
        self._sources = sources
        self.rules = load_rule_set(RULES)

    def stats(self) -> dict[str, object]:
        return {"budget_ms": 150, "sources": self._sources}


def _source(state: str, retry_after_ms: int = 0) -> dict[str, object]:
    return {"breaker": {"state": state}, "retry_after_ms": retry_after_ms}


def test_ready_reports_the_rule_set_and_each_sources_health():
    stats = _Stats(
        {
            "dr-levels": _source("closed"),
            "dr-shopper": _source("closed", retry_after_ms=1200),
            "shoplazza": _source("half_open"),
            "catalog": _source("open"),
        }
    )
    body = readiness(stats, None)  # type: ignore[arg-type]
    assert body == {
        "status": "ready",
        "rule_set": stats.rules.id,
        "sources": {
            "dr-levels": {"health": "ok", "breaker": "closed", "retry_after_ms": 0},
            "dr-shopper": {"health": "degraded", "breaker": "closed", "retry_after_ms": 1200},
            "shoplazza": {"health": "degraded", "breaker": "half_open", "retry_after_ms": 0},
            "catalog": {"health": "down", "breaker": "open", "retry_after_ms": 0},
        },
    }
    assert readiness(stats, None, draining=True)["status"] == "draining"  # type: ignore[arg-type]


def test_ready_route_on_a_snapshot(client, rule_set):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "rule_set": rule_set.id, "sources": {}}


# --- HEAD probes, Content-Type, undecodable bodies, a client gone, the OpenAPI document -------


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_head_answers_what_get_would_without_the_body(client, path):
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"] == "application/json"
    assert head.content == b""


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        (None, "no Content-Type"),
        ("text/plain", "`text/plain`"),
        ("application/x-www-form-urlencoded", "`application/x-www-form-urlencoded`"),
        ("application/json; charset=latin-1", "JSON must be UTF-8"),
        ("application/json; charset=utf-16", "JSON must be UTF-8"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/allocations", "/v1/rules/simulate"])
def test_a_body_not_sent_as_json_is_a_415(client, path, content_type, says):
    body = json.dumps({"country": "IE", "lines": [line()]}).encode()
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=body, headers=headers)
    problem = assert_problem(response, 415, None)
    assert problem["type"] == "/problems/unsupported-media-type"
    assert says in problem["detail"]
    assert "Content-Type: application/json" in problem["detail"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'APPLICATION/JSON; CHARSET="utf-8"',
        "application/vnd.checkout.cart+json",
    ],
)
def test_json_media_types_are_decided(client, content_type):
    body = json.dumps({"country": "IE", "lines": [line()]}).encode()
    response = client.post("/v1/allocations", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def keyed_client(rule_set: RuleSet) -> Iterator[TestClient[Litestar]]:
    from engine.service.auth import ApiKeys  # noqa: PLC0415

    checkout = Checkout(
        rule_set, [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    keys = ApiKeys.from_file(RULES.parent / "demo" / "api-keys.json")
    with TestClient(create_app(checkout, api_keys=keys)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/v1/allocations", "/v1/rules/simulate"])
def test_the_key_is_checked_before_the_content_type(keyed_client, path):
    from engine.cli import DEMO_KEYS  # noqa: PLC0415

    text = {"content-type": "text/plain"}
    assert keyed_client.post(path, content=b"{}", headers=text).status_code == 401
    decide = {**text, "authorization": f"Bearer {DEMO_KEYS['decide']}"}
    expected = 415 if path == "/v1/allocations" else 403
    assert keyed_client.post(path, content=b"{}", headers=decide).status_code == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"country": "IE", "lines": [{"sku": "\xff\xfe", "quantity": 1}]}', "not valid UTF-8"),
        (
            json.dumps({"cart_id": "caf\xe9"}, ensure_ascii=False).encode("latin-1"),
            "not valid UTF-8",
        ),
    ],
    ids=["a SKU", "a latin-1 body"],
)
def test_a_body_not_in_utf8_is_a_400(client, body, message):
    response = client.post("/v1/allocations", content=body, headers=JSON_CONTENT)
    problem = assert_problem(response, 400, "$")
    assert problem["detail"] == f"the body is {message}"


def test_a_client_gone_mid_body_is_a_400_not_an_error(app, caplog):
    """The client hung up before the body's end: no one reads the answer, but it must not count
    as a server error (a 500, logged) either."""
    import asyncio  # noqa: PLC0415

    messages = [
        {"type": "http.request", "body": b'{"country": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/allocations",
        "raw_path": b"/v1/allocations",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    with caplog.at_level("DEBUG"):
        asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["status"] == 400
    assert json.loads(body) == {
        "type": "/problems/client-disconnected",
        "title": "Client disconnected",
        "status": 400,
        "detail": "the client closed the connection before the body was complete",
        "instance": "/v1/allocations",
    }
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]


def test_openapi_documents_every_error_as_problem_json(client):
    schema = client.get("/schema/openapi.json").json()
    documented = {
        f"{method.upper()} {path} {status}": next(iter(response.get("content", {})), None)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }
    assert documented == {
        **{f"POST /v1/allocations {s}": PROBLEM_JSON for s in (400, 401, 403, 413, 415, 422)},
        **{f"GET /v1/availability {s}": PROBLEM_JSON for s in (400, 401, 403)},
        **{f"GET /v1/rules {s}": PROBLEM_JSON for s in (401, 403)},
        **{f"GET /v1/sources {s}": PROBLEM_JSON for s in (401, 403)},
        **{f"{m} /ready 503": PROBLEM_JSON for m in ("GET", "HEAD")},
        **{f"POST /v1/rules/simulate {s}": PROBLEM_JSON for s in (400, 401, 403, 413, 415, 422)},
    }
    problem = schema["components"]["schemas"]["Problem"]
    assert sorted(problem["required"]) == ["detail", "status", "title", "type"]


def test_openapi_cart_is_what_the_decoder_takes(client):
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    assert schemas["Cart"]["properties"]["lines"]["items"] == {
        "$ref": "#/components/schemas/CartLine"
    }
    assert schemas["Cart"]["additionalProperties"] is False
    assert schemas["CartLine"]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["Decision"]  # answers may grow


def test_openapi_names_the_shape_of_encoded_answers(client):
    paths = client.get("/schema/openapi.json").json()["paths"]

    def ok(path: str, method: str = "get") -> Any:
        return paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    assert ok("/v1/rules")["type"] == "object"
    assert ok("/v1/sources")["type"] == "object"
    assert ok("/ready") == {"$ref": "#/components/schemas/Readiness"}
    assert ok("/v1/rules/simulate", "post") == {"$ref": "#/components/schemas/Report"}


def test_ready_while_shutting_down_is_a_503(rule_set):
    checkout = Checkout(
        rule_set, [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    test_client = TestClient(create_app(checkout))
    with test_client:
        assert test_client.get("/ready").status_code == 200
    response = test_client.get("/ready")  # after the shutdown hooks ran
    problem = assert_problem(response, 503, None)
    assert problem["detail"] == "the service is shutting down: send requests to another instance"
    assert test_client.head("/ready").status_code == 503
