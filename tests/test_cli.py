"""`python -m engine check|decide` through `engine.cli.main`, output captured with capsys."""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from engine.checkout import Checkout
from engine.cli import main
from engine.policy import load_rule_set
from engine.service import create_app
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, DEMO_LOCATIONS, NOW, ROOT, RULES

NOW_ARG = NOW.isoformat()
LOCATED = re.compile(r"^(?P<file>.+\.ya?ml):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

CARTS: list[dict[str, Any]] = [
    {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]},
    {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 45}], "cart_id": "split"},
    {"country": "IE", "lines": [{"sku": "SNEAKER-RUN-42", "quantity": 2}]},
    {"country": "GB", "lines": [{"sku": "CHEF-KNIFE-20", "quantity": 1}]},
    {"country": "IE", "lines": [{"sku": "LAMP-OAK", "quantity": 1}]},
    {
        "country": "GB",
        "lines": [{"sku": "TEE-BLK-M", "quantity": 1}, {"sku": "TEE-WHT-M", "quantity": 4}],
        "pickup_location": "lon-store",
    },
    {
        "country": "IE",
        "channel": "wholesale",
        "lines": [{"sku": "TEE-BLK-M", "quantity": 30}, {"sku": "TEE-WHT-M", "quantity": 10}],
    },
]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_cart(tmp_path: Path, cart: Any, name: str = "cart.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(cart), encoding="utf-8")
    return path


def decide_args(cart: Path | str, *extra: str) -> list[str]:
    return [
        "decide",
        str(cart),
        "--rules",
        str(RULES),
        "--availability",
        str(DEMO_AVAILABILITY),
        "--now",
        NOW_ARG,
        *extra,
    ]


@pytest.fixture(scope="module")
def service() -> Any:
    """The service's answer for a cart, decided at NOW on the demo."""
    checkout = Checkout(
        load_rule_set(RULES), [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    with TestClient(create_app(checkout)) as client:

        def post(cart: Any, explain: bool = False) -> Any:
            query = "?explain=true" if explain else ""
            response = client.post(f"/v1/allocations{query}", json=cart)
            assert response.status_code == 200, response.text
            return response.json()

        yield post


# --- check --------------------------------------------------------------------------------------


def test_check_demo_rules_exits_0(capsys):
    assert main(["check", str(RULES)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "ok, rule set" in err
    assert "6 locations, 9 catalog items, 15 rules" in err


def test_check_defaults_to_the_rules_folder(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check"]) == 0
    assert "rules: ok" in capsys.readouterr().err


def test_check_strict_on_clean_rules_exits_0(capsys):
    assert main(["check", "--strict", str(RULES)]) == 0
    capsys.readouterr()


def test_check_broken_rules_exits_1_with_located_problems(tmp_path, capsys):
    folder = tmp_path / "rules"
    write(
        folder,
        "locations.yaml",
        """\
        locations:
          - id: dub
            country: IE
          - id: xx
            country: XX
        """,
    )
    write(
        folder,
        "rules.yaml",
        """\
        catalog:
          - sku: A
            tags: [apparel]
        rules:
          - name: bad-location
            match:
              locations: [dbu]
            safety_stock: 2
          - name: negative
            match:
              tags: [apparel]
            min_atp: -1
        """,
    )
    assert main(["check", str(folder)]) == 1
    out, err = capsys.readouterr()
    problems = out.splitlines()
    assert problems
    for problem in problems:
        assert LOCATED.match(problem), problem
    located = {
        (Path(m["file"]).name, int(m["line"]), int(m["column"])): m["message"]
        for m in map(LOCATED.match, problems)
        if m is not None
    }
    assert located[("locations.yaml", 5, 14)] == ("`XX` is not an ISO 3166-1 alpha-2 country code")
    assert "no location has the id `dbu` (did you mean `dub`?)" in located[("rules.yaml", 7, 19)]
    assert "cannot be negative" in located[("rules.yaml", 12, 14)]
    assert "error(s)" in err
    assert "the rules were not loaded" in err


def test_check_invalid_yaml_exits_1(tmp_path, capsys):
    folder = tmp_path / "rules"
    write(folder, "a.yaml", "locations:\n  - id: x\n\tcountry: IE\n")
    assert main(["check", str(folder)]) == 1
    out, _ = capsys.readouterr()
    assert LOCATED.match(out.splitlines()[0])
    assert "not valid YAML" in out


def test_check_missing_folder_exits_1(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 1
    out, _ = capsys.readouterr()
    assert "no such folder of rule files" in out


WARNED = """\
locations:
  - id: dub
    country: IE
catalog:
  - sku: A
    tags: [apparel]
rules:
  - name: never
    match:
      tags: [aparel]
    safety_stock: 1
"""


def test_check_warning_passes_without_strict(tmp_path, capsys):
    write(tmp_path / "rules", "rules.yaml", WARNED)
    assert main(["check", str(tmp_path / "rules")]) == 0
    out, err = capsys.readouterr()
    match = LOCATED.match(out.strip())
    assert match is not None
    assert (int(match["line"]), int(match["column"])) == (10, 14)
    assert match["message"].startswith("warning: rule `never`: no catalog item has the tag")
    assert "(did you mean `apparel`?)" in match["message"]
    assert "1 warning(s)" in err


def test_check_strict_fails_on_a_warning(tmp_path, capsys):
    write(tmp_path / "rules", "rules.yaml", WARNED)
    assert main(["check", "--strict", str(tmp_path / "rules")]) == 1
    out, _ = capsys.readouterr()
    assert "warning: rule `never`" in out


# --- decide -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cart", CARTS, ids=lambda c: c.get("cart_id") or c["lines"][0]["sku"])
def test_decide_prints_the_services_decision(tmp_path, capsys, service, cart):
    assert main(decide_args(write_cart(tmp_path, cart))) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == service(cart)


def test_decide_explain_matches_the_service(tmp_path, capsys, service):
    cart = CARTS[1]
    assert main([*decide_args(write_cart(tmp_path, cart)), "--explain"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == service(cart, explain=True)
    assert printed["explanation"]["summary"].startswith("allocate: 1 line(s)")
    locations = printed["lines"][0]["explanation"]["locations"]
    assert [loc["location_id"] for loc in locations] == DEMO_LOCATIONS


def test_decide_without_explain_has_no_explanation(tmp_path, capsys):
    assert main(decide_args(write_cart(tmp_path, CARTS[0]))) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "explanation" not in printed
    assert all("explanation" not in line for line in printed["lines"])


def test_decide_output_is_indented_json(tmp_path, capsys):
    assert main(decide_args(write_cart(tmp_path, CARTS[0]))) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "decision": "allocate",')
    assert out.endswith("}\n")


def test_decide_reads_stdin(capsys, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(CARTS[0]).encode()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(decide_args("-")) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "allocate"


@pytest.mark.parametrize(
    ("cart", "field"),
    [
        ({"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 0}]}, "$.lines[0].quantity"),
        (
            {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": "5"}]},
            "$.lines[0].quantity",
        ),
        ({"country": "ie", "lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}, "$.country"),
        ({"lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}, "$.country"),
        ({"country": "IE", "lines": []}, "$.lines"),
        ({"country": "IE", "lines": [{"sku": "A", "quantity": 1, "x": 1}]}, "$.lines[0].x"),
        ({"country": "IE", "lines": [{"sku": "A", "quantity": 1}], "coupon": 1}, "$.coupon"),
        ([], "$"),
    ],
)
def test_decide_invalid_cart_exits_2_naming_the_field(tmp_path, capsys, cart, field):
    path = write_cart(tmp_path, cart)
    assert main(decide_args(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: {field}")


@pytest.mark.parametrize("raw", [b"", b"{", b"not json"])
def test_decide_malformed_json_exits_2(tmp_path, capsys, raw):
    path = tmp_path / "cart.json"
    path.write_bytes(raw)
    assert main(decide_args(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: ")


def test_decide_unknown_pickup_location_exits_2_naming_the_field(tmp_path, capsys):
    cart = {
        "country": "IE",
        "lines": [{"sku": "TEE-BLK-M", "quantity": 1}],
        "pickup_location": "mars-base",
    }
    assert main(decide_args(write_cart(tmp_path, cart))) == 2
    assert "$.pickup_location" in capsys.readouterr().err


def test_decide_with_broken_rules_exits_1(tmp_path, capsys):
    write(tmp_path / "rules", "a.yaml", "locations:\n  - id: x\n    country: XX\n")
    cart = write_cart(tmp_path, CARTS[0])
    code = main(["decide", str(cart), "--rules", str(tmp_path / "rules"), "--now", NOW_ARG])
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(r"a\.yaml:3:14: `XX` is not an ISO 3166-1 alpha-2 country code", err)
    assert "the rules have errors" in err


def test_decide_missing_cart_file_exits_1(tmp_path, capsys):
    assert main(decide_args(tmp_path / "missing.json")) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "missing.json" in err


def test_decide_bad_availability_file_exits_1(tmp_path, capsys):
    bad = tmp_path / "availability.json"
    bad.write_text('{"records": [{"sku": "A"}]}', encoding="utf-8")
    cart = write_cart(tmp_path, CARTS[0])
    code = main(
        ["decide", str(cart), "--rules", str(RULES), "--availability", str(bad), "--now", NOW_ARG]
    )
    assert code == 1
    assert str(bad) in capsys.readouterr().err


def test_a_bad_sku_in_an_availability_file_is_said_in_words(tmp_path, capsys):
    bad = tmp_path / "availability.json"
    bad.write_text('{"records": [{"sku": "A B", "location_id": "x", "atp": 1}]}')
    cart = write_cart(tmp_path, CARTS[0])
    code = main(
        ["decide", str(cart), "--rules", str(RULES), "--availability", str(bad), "--now", NOW_ARG]
    )
    assert code == 1
    assert (
        f"{bad}: Expected text without spaces or line breaks - at `$.records[0].sku`"
        in capsys.readouterr().err
    )


def test_decide_bad_now_is_a_usage_error(tmp_path, capsys):
    cart = write_cart(tmp_path, CARTS[0])
    with pytest.raises(SystemExit) as exited:
        main(["decide", str(cart), "--now", "yesterday"])
    assert exited.value.code == 2
    assert "--now" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    capsys.readouterr()


def test_a_time_budget_out_of_range_is_refused(tmp_path, capsys, monkeypatch):
    path = write_cart(tmp_path, CARTS[0])
    assert main([*decide_args(path), "--budget-ms", "0"]) == 2
    assert "the time budget must be 1 to 60000 ms, not 0" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_BUDGET_MS", "soon")
    assert main(decide_args(path)) == 2
    assert "ENGINE_BUDGET_MS must be milliseconds, not 'soon'" in capsys.readouterr().err
    assert main([*decide_args(path), "--budget-ms", "80"]) == 0  # the option wins
