"""The explanation as text: `engine.explain_text.render`, `decide --format text` and
`POST /v1/allocations?explain=text`, on the demo carts at NOW.

The exact renderings are in `tests/explain_text/<cart>.txt` (lines longer than the code's): a
change of layout or wording shows there as a diff a reviewer can read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from engine.checkout import Checkout
from engine.cli import main
from engine.explain_text import REASON_WORDS, describe_value, render
from engine.model import Cart, Decision, ReasonCode
from engine.policy import load_rule_set
from engine.service import create_app
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, NOW, ROOT, RULES

CARTS = ROOT / "demo" / "carts"
GOLDEN = Path(__file__).parent / "explain_text"
RENDERED = ["split", "below-safety-stock", "preorder", "click-and-collect", "deny-rule"]


@pytest.fixture(scope="module")
def checkout() -> Checkout:
    return Checkout(
        load_rule_set(RULES), [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )


@pytest.fixture(scope="module")
def client(checkout: Checkout) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(checkout)) as test_client:
        yield test_client


def demo_cart(name: str) -> Cart:
    return msgspec.json.decode((CARTS / f"{name}.json").read_bytes(), type=Cart)


def decided(checkout: Checkout, cart: Cart, explain: bool = True) -> Decision:
    return asyncio.run(checkout.allocate(cart, explain=explain))


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.txt").read_text(encoding="utf-8")


# --- render ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RENDERED)
def test_render_demo_cart_exactly(checkout, name):
    cart = demo_cart(name)
    assert render(decided(checkout, cart), cart) == golden(name)


def test_split_names_each_location_and_the_rule_behind_its_safety_stock(checkout):
    cart = demo_cart("split")
    lines = render(decided(checkout, cart), cart).splitlines()
    assert lines[0] == "Cart demo-split to FR: allocate (rule set c95f239b487d)"
    assert "Line 0: 8 × HOODIE-GRY-L: allocated 5 from dub-dc, 3 from ams-dc" in lines
    assert (
        "    dub-dc        used         allocated 5; ATP 7, safety stock 2 → 5 allocatable" in lines
    )
    assert "    lon-store     excluded     ships to GB, not FR" in lines
    assert (
        "    safety_stock: 2 at dub-dc, ams-dc (rule `hoodie-safety-stock`, rules.yaml:34)" in lines
    )


def test_below_safety_stock_says_why_in_words(checkout):
    cart = demo_cart("below-safety-stock")
    lines = render(decided(checkout, cart), cart).splitlines()
    assert "Line 0: 4 × TEE-WHT-M: denied, 3 available" in lines
    assert (
        "  reasons: BELOW_SAFETY_STOCK (stock exists, but not enough after safety stock and "
        "minimum ATP)" in lines
    )
    assert "    lon-store     passed over  nothing allocatable: ATP 2, safety stock 3" in lines


def test_preorder_shows_the_reservation_and_its_restock(checkout):
    cart = demo_cart("preorder")
    text = render(decided(checkout, cart), cart)
    assert (
        "Line 0: 2 × SNEAKER-RUN-42: reserved 2 at ber-dropship against the restock of 2026-12-06"
        in text
    )
    assert "    backorder.split: false (rule `sneaker-preorders`, rules.yaml:99)" in text


def test_render_without_explanations_lists_what_each_line_got(checkout):
    cart = demo_cart("split")
    assert render(decided(checkout, cart, explain=False)) == (
        "Cart demo-split: allocate (rule set c95f239b487d)\n"
        "\n"
        "Line 0: 8 × HOODIE-GRY-L: allocated 5 from dub-dc, 3 from ams-dc\n"
        "\n"
        "Shipments:\n"
        "  dub-dc: 5 × HOODIE-GRY-L (line 0)\n"
        "  ams-dc: 3 × HOODIE-GRY-L (line 0)\n"
    )


def test_render_names_channel_and_unknown_availability(checkout):
    cart = msgspec.convert(
        {"country": "IE", "channel": "wholesale", "lines": [{"sku": "LAMP-OAK", "quantity": 1}]},
        Cart,
    )
    text = render(decided(checkout, cart), cart)
    assert text.startswith("Cart to IE, channel wholesale: reserve (rule set ")
    assert "Line 0: 1 × LAMP-OAK: reserved 1 at dub-dc (no restock date)" in text
    assert "AVAILABILITY_UNKNOWN (the source could not say what is available)" in text
    assert "Shipments: none\n" in text


def test_every_reason_code_has_words():
    assert set(REASON_WORDS) == set(ReasonCode)


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("ship_to", {"allow": None, "deny": []}, "no restriction"),
        ("ship_to", {"allow": ["IE", "GB"], "deny": []}, "only to IE, GB"),
        ("ship_to", {"allow": None, "deny": ["CA", "US"]}, "not to CA, US"),
        ("backorder.max_quantity", None, "no limit"),
        ("backorder.allowed", True, "true"),
        ("routing.criteria", ["priority", "most_stock"], "priority, most_stock"),
        ("max_quantity", 2, "2"),
    ],
)
def test_setting_values_in_words(setting, value, words):
    assert describe_value(setting, value) == words


# --- CLI ----------------------------------------------------------------------------------------


def decide_args(name: str, *extra: str) -> list[str]:
    return [
        "decide",
        str(CARTS / f"{name}.json"),
        "--rules",
        str(RULES),
        "--availability",
        str(DEMO_AVAILABILITY),
        "--now",
        NOW.isoformat(),
        *extra,
    ]


@pytest.mark.parametrize("extra", [("--format", "text"), ("--explain", "--format", "text")])
def test_cli_format_text_prints_the_rendering(capsys, extra):
    assert main(decide_args("split", *extra)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == golden("split")


def test_cli_explain_alone_still_prints_json(capsys):
    assert main(decide_args("split", "--explain")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lines"][0]["explanation"]["summary"] == "allocated 5 from dub-dc, 3 from ams-dc"


def test_cli_format_json_is_the_default(capsys):
    assert main(decide_args("split", "--format", "json")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "explanation" not in printed


def test_cli_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(decide_args("split", "--format", "yaml"))
    assert exited.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


# --- service ------------------------------------------------------------------------------------


def post(client: TestClient[Litestar], name: str, query: str) -> Any:
    body = (CARTS / f"{name}.json").read_bytes()
    return client.post(
        f"/v1/allocations{query}", content=body, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("name", ["split", "deny-rule"])
@pytest.mark.parametrize("value", ["text", "TEXT"])
def test_service_explain_text_answers_plain_text(client, name, value):
    response = post(client, name, f"?explain={value}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == golden(name)


def test_service_explain_true_is_still_json(client):
    response = post(client, "split", "?explain=true")
    assert response.headers["content-type"] == "application/json"
    assert "explanation" in response.json()


def test_service_bad_explain_value_names_the_choices(client):
    response = post(client, "split", "?explain=words")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == [{"field": "explain", "message": "use true, false or text"}]


def test_openapi_documents_explain_text(client):
    schema = client.get("/schema/openapi.json").json()
    post_ = schema["paths"]["/v1/allocations"]["post"]
    explain = next(p for p in post_["parameters"] if p["name"] == "explain")
    assert explain["schema"]["enum"] == ["false", "true", "text"]
    assert explain["schema"]["default"] == "false"
    assert "plain text" in explain["description"]
    content = post_["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Decision"}
    assert content["text/plain"]["schema"]["type"] == "string"
