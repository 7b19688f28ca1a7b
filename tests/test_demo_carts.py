"""The demo carts in demo/carts/ decide as the README says, through the CLI a user would run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from tests.helpers import ROOT

CARTS = ROOT / "demo" / "carts"

# cart file -> (decision, per line: status, allocations, reasons)
EXPECTED = {
    "allocate.json": ("allocate", [("allocated", {"dub-dc": 2}, [])]),
    "split.json": ("allocate", [("allocated", {"dub-dc": 5, "ams-dc": 3}, [])]),
    "new-york.json": ("allocate", [("allocated", {"nyc-3pl": 2}, [])]),
    "preorder.json": ("reserve", [("reserved", {}, ["INSUFFICIENT_STOCK"])]),
    "ship-to-denied.json": ("deny", [("denied", {}, ["NOT_SHIPPABLE"])]),
    "below-safety-stock.json": ("deny", [("denied", {}, ["BELOW_SAFETY_STOCK"])]),
    "deny-rule.json": ("deny", [("denied", {}, ["DENIED_BY_RULE"])]),
    "availability-unknown.json": ("reserve", [("reserved", {}, ["AVAILABILITY_UNKNOWN"])]),
    "quantity-limit.json": ("deny", [("denied", {}, ["QUANTITY_LIMIT"])]),
    "click-and-collect.json": ("allocate", [("allocated", {"dub-dc": 1}, [])]),
    "five-lines.json": ("allocate", [("allocated", {"dub-dc": q}, []) for q in (2, 1, 1, 1, 1)]),
}


def test_every_demo_cart_is_pinned():
    assert sorted(p.name for p in CARTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demo_cart(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    assert (
        main(["decide", str(Path("demo/carts") / name), "--now", "2026-11-22T12:00:00+00:00"]) == 0
    )
    decision = json.loads(capsys.readouterr().out)
    outcome, lines = EXPECTED[name]
    assert decision["decision"] == outcome
    got = [
        (ln["status"], {a["location_id"]: a["quantity"] for a in ln["allocations"]}, ln["reasons"])
        for ln in decision["lines"]
    ]
    assert got == lines
    assert decision["cart_id"] == json.loads((CARTS / name).read_text())["cart_id"]


def test_preorder_waits_for_the_earliest_restock(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    main(["decide", "demo/carts/preorder.json", "--now", "2026-11-22T12:00:00+00:00"])
    (line,) = json.loads(capsys.readouterr().out)["lines"]
    # The drop-ship supplier restocks 14 days after the demo data is loaded, dub-dc after 21.
    assert line["reservation"] == {
        "quantity": 2,
        "location_id": "ber-dropship",
        "restock_time": "2026-12-06T00:00:00Z",
    }
