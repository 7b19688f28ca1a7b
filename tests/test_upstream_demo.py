"""The demo over the real HTTP path: the simulator on 127.0.0.1, the four adapters, the service.

The demo snapshot (`demo/availability.json`) and the simulator's data (`demo/upstream.json`)
describe the same stock in each API's own terms, so every demo cart must be decided identically
through either: that pins the adapters' normalisation end to end. Then what the issue asks of
the upstream path: batching, and no upstream failure ever escaping into a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from engine.checkout import Checkout, utc_now
from engine.model import Cart
from engine.policy import RuleSet, load_rule_set, load_rule_set_texts
from engine.service import create_app
from engine.simulator import Fault, Simulator
from engine.sources.snapshot import SnapshotSource
from engine.sources.upstream import build_sources, env_name
from tests.helpers import DEMO_AVAILABILITY, ROOT, RULES

CARTS = sorted((ROOT / "demo" / "carts").glob("*.json"))
TOKENS = json.loads((ROOT / "demo" / "secrets.json").read_text())


def environment(sim: Simulator, rules: RuleSet) -> dict[str, str]:
    env = {}
    for source in rules.sources:
        env[env_name(source.name, "URL")] = sim.url(source.name)
        env[env_name(source.name, "TOKEN")] = TOKENS[source.name]["token"]
    return env


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(ROOT / "demo" / "upstream.json") as running:
        yield running


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rule_set(RULES)


def decide_all(
    rules: RuleSet, env: dict[str, str] | None, carts: list[Path], explain: bool = False
) -> list[dict[str, Any]]:
    """Decide each cart through `Checkout`, over the upstream adapters (or the snapshot)."""

    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            if env is None:
                sources = [SnapshotSource.from_file(DEMO_AVAILABILITY)]
            else:
                sources = list(build_sources(rules, client, env))
            # A generous budget: these tests compare answers, and a busy machine must not turn
            # a first, cold upstream call into an unknown (the deadline has tests of its own).
            checkout = Checkout(rules, sources, clock=utc_now, budget=5.0)
            decisions = []
            for path in carts:
                cart = msgspec.json.decode(path.read_bytes(), type=Cart)
                decision = await checkout.allocate(cart, explain=explain)
                decisions.append(json.loads(msgspec.json.encode(decision)))
            return decisions

    return asyncio.run(run())


def test_every_demo_cart_decides_as_from_the_snapshot(sim, rules):
    over_http = decide_all(rules, environment(sim, rules), CARTS)
    from_snapshot = decide_all(rules, None, CARTS)
    for path, upstream, snapshot in zip(CARTS, over_http, from_snapshot, strict=True):
        # Only the upstream path says how current its data was; a snapshot does not.
        freshness = upstream.pop("freshness", {"stale": False})
        assert upstream == snapshot, path.name
        assert freshness["stale"] is False, path.name


def test_the_readme_answers_are_fed_by_different_apis(sim, rules):
    carts = {p.stem: p for p in CARTS}
    names = ["allocate", "split", "new-york", "preorder", "ship-to-denied", "below-safety-stock"]
    sim.reset_counters()
    decisions = dict(
        zip(
            names,
            decide_all(rules, environment(sim, rules), [carts[n] for n in names]),
            strict=True,
        )
    )
    assert decisions["allocate"]["lines"][0]["allocations"] == [
        {"location_id": "dub-dc", "quantity": 2}  # dr-levels
    ]
    assert decisions["split"]["lines"][0]["allocations"] == [
        {"location_id": "dub-dc", "quantity": 5},
        {"location_id": "ams-dc", "quantity": 3},  # dr-levels, two warehouses
    ]
    assert decisions["new-york"]["lines"][0]["allocations"] == [
        {"location_id": "nyc-3pl", "quantity": 2}  # catalog: 3 on hand - 0.5 reserved
    ]
    reservation = decisions["preorder"]["lines"][0]["reservation"]
    assert reservation["location_id"] == "ber-dropship"  # dr-shopper's expectedInStockDate
    assert decisions["ship-to-denied"]["lines"][0]["reasons"] == ["NOT_SHIPPABLE"]  # no call
    below = decisions["below-safety-stock"]["lines"][0]
    assert (below["reasons"], below["available"]) == (["BELOW_SAFETY_STOCK"], 3)  # shoplazza
    counters = sim.counters()
    assert all(
        counters[api].total > 0 for api in ("dr-levels", "dr-shopper", "shoplazza", "catalog")
    )


def test_explanations_say_where_the_numbers_came_from(sim, rules):
    (decision,) = decide_all(
        rules, environment(sim, rules), [ROOT / "demo" / "carts" / "below-safety-stock.json"], True
    )
    by_location = {
        loc["location_id"]: loc for loc in decision["lines"][0]["explanation"]["locations"]
    }
    assert by_location["lon-store"]["atp"] == 2
    assert by_location["lon-store"]["safety_stock"] == 3


# --- batching -------------------------------------------------------------------------------


def twenty_sku_rules(sim: Simulator) -> tuple[RuleSet, dict[str, str]]:
    """Twenty SKUs all served by the inventory-levels API (ids the demo data does have, reused:
    what matters is how many requests a cart costs)."""
    ids = [
        "ce4ce2de-530c-4da2-bf8a-f0f8cf059095",
        "310abe81-69f6-44e5-85df-2674045e5460",
        "6b0e9f7c-2d4a-4f1e-8c3b-5a7d9e1f2c40",
        "9d3c1b2a-7e6f-4a5b-8c9d-0e1f2a3b4c5d",
        "c4a1e2b3-5d6f-4a7b-8c9d-2e3f4a5b6c7d",
    ]
    catalog = "".join(
        f"  - sku: SKU-{i:02d}\n    upstream: {{levels: {ids[i % len(ids)]}}}\n" for i in range(20)
    )
    text = (
        "sources:\n  - name: levels\n    api: digitalriver-inventory-levels\n"
        "    url: https://inventory.example.com\n"
        "locations:\n  - id: dub-dc\n    country: IE\n    source: levels\n"
        "    upstream_id: afe95639-8181-4b66-86a6-1a9493d5419d\n"
        "  - id: ams-dc\n    country: NL\n    ships_to: [IE, NL]\n    source: levels\n"
        '    upstream_id: "20045"\n'
        "catalog:\n" + catalog
    )
    rules = load_rule_set_texts([("rules.yaml", text)])
    env = {
        env_name("levels", "URL"): sim.url("dr-levels"),
        env_name("levels", "TOKEN"): TOKENS["dr-levels"]["token"],
    }
    return rules, env


def test_a_cart_of_twenty_skus_costs_one_inventory_levels_request(sim, tmp_path):
    rules, env = twenty_sku_rules(sim)
    cart = {"country": "IE", "lines": [{"sku": f"SKU-{i:02d}", "quantity": 1} for i in range(20)]}
    path = tmp_path / "cart.json"
    path.write_text(json.dumps(cart))
    sim.reset_counters()
    (decision,) = decide_all(rules, env, [path])
    assert decision["decision"] == "allocate"
    assert sim.counters()["dr-levels"].total == 1


# --- failures never become 5xx --------------------------------------------------------------


@pytest.fixture
def client(
    sim: Simulator, rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient[Any]]:
    for key, value in environment(sim, rules).items():
        monkeypatch.setenv(key, value)
    http = httpx.AsyncClient()
    checkout = Checkout(rules, build_sources(rules, http), clock=utc_now)
    with TestClient(create_app(checkout, on_shutdown=[http.aclose])) as test_client:
        yield test_client
    sim.clear_faults()


FAULTS = [
    Fault(status=503, retry_after=2),
    Fault(status=500),
    Fault(status=401),
    Fault(status=429, retry_after=2),
    Fault(malformed=True),
    Fault(wrong_shape=True),
    Fault(reset=True),
    Fault(refuse=True),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: msgspec.json.encode(f).decode())
def test_every_fault_on_the_warehouse_api_gives_an_answer_not_an_error(sim, client, fault):
    sim.set_fault("dr-levels", fault)
    response = client.post(
        "/v1/allocations", json={"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}
    )
    assert response.status_code == 200
    (line,) = response.json()["lines"]
    # Only dub-dc and ams-dc (both reported by dr-levels) ship to IE: their availability is
    # unknown, and the demo's `unknown_availability` for apparel is the default, deny.
    assert line["status"] == "denied"
    assert line["reasons"][0] == "AVAILABILITY_UNKNOWN"


def test_a_source_down_leaves_the_others_answering(sim, client):
    sim.set_fault("dr-levels", Fault(refuse=True))
    response = client.post(
        "/v1/allocations",
        json={"country": "GB", "lines": [{"sku": "CHEF-KNIFE-20", "quantity": 1}]},
    )
    assert response.status_code == 200
    assert response.json()["lines"][0]["reasons"] == ["DENIED_BY_RULE"]
    response = client.post(
        "/v1/allocations", json={"country": "US", "lines": [{"sku": "TEE-BLK-M", "quantity": 3}]}
    )
    assert response.status_code == 200
    assert response.json()["lines"][0]["allocations"] == [{"location_id": "nyc-3pl", "quantity": 3}]


def test_failures_and_unknown_ids_are_logged_by_source(sim, rules, caplog, tmp_path):
    to_us = tmp_path / "to-us.json"
    to_us.write_text('{"country": "US", "lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}')
    sim.set_fault("catalog", Fault(status=503))
    try:
        with caplog.at_level(logging.WARNING, logger="engine.availability.gather"):
            decide_all(rules, environment(sim, rules), [to_us])
            decide_all(
                rules,
                environment(sim, rules),
                [ROOT / "demo" / "carts" / "availability-unknown.json"],
            )
    finally:
        sim.clear_faults()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("source catalog could not answer: ") for m in messages), messages
    assert (
        "source dr-levels does not know LAMP-OAK: check their ids in the catalog's `upstream`"
        in messages
    )


def test_only_sources_that_may_serve_a_line_are_asked(sim, rules, tmp_path):
    env = environment(sim, rules)
    carts = {p.stem: p for p in CARTS}
    sim.reset_counters()
    decide_all(rules, env, [carts["allocate"]])  # TEE-BLK-M to IE: only Dublin and Amsterdam
    assert {api: c.total for api, c in sim.counters().items()} == {
        "dr-levels": 1,
        "dr-shopper": 0,
        "shoplazza": 0,
        "catalog": 0,
    }
    sim.reset_counters()
    decide_all(rules, env, [carts["ship-to-denied"], carts["deny-rule"]])
    assert sum(c.total for c in sim.counters().values()) == 0  # denied by rules: nothing to ask
    sim.reset_counters()
    decide_all(rules, env, [carts["click-and-collect"]])  # collected at dub-dc
    assert {api: c.total for api, c in sim.counters().items()}["dr-levels"] == 1
    assert sum(c.total for c in sim.counters().values()) == 1
