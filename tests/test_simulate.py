"""Simulate and diff: recorded carts decided under two rule sets, counted and explained.

A crafted file with known transitions checks every count exactly; the demo recording and the
demo candidate check the reports end to end (CLI text and JSON, HTTP); the recorder is checked
through `Checkout`; 10,000 recorded carts check that a large run completes and adds up.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from engine.allocate import decide
from engine.availability import Availability
from engine.checkout import Checkout
from engine.cli import main
from engine.model import Cart
from engine.policy import load_rule_set
from engine.record import Recorded, Recorder, recorded_availability, recorder_from
from engine.service import create_app
from engine.service.problems import MAX_BODY_BYTES
from engine.simulate import Report, read_carts, simulate
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, NOW, ROOT, RULES, cart, stock
from tests.recorded import demo_carts, record

DEMO_RECORDED = ROOT / "demo" / "recorded-carts.jsonl"
CANDIDATE = ROOT / "demo" / "candidate-rules"
LOCATED = re.compile(r"^(?P<file>.+\.ya?ml):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

# Two locations shipping to IE; S1 served by `a` first; S3 sold on backorder.
LIVE = """\
locations:
  - {id: a, country: IE, priority: 1}
  - {id: b, country: IE, priority: 2}
catalog:
  - {sku: S1, tags: [x]}
  - {sku: S2, tags: [y]}
  - {sku: S3, tags: [z]}
rules:
  - name: s1-safety-stock
    match: {skus: [S1], locations: [a]}
    safety_stock: 0
  - name: s3-backorders
    match: {tags: [z]}
    backorder: {allowed: true, restock_required: false}
"""
CANDIDATE_TEXT = LIVE.replace("safety_stock: 0", "safety_stock: 5").replace(
    "allowed: true", "allowed: false"
)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def counts_add_up(counts: dict[str, Any]) -> None:
    """Every invariant the report promises."""
    assert counts["total"] == counts["unchanged"] + counts["changed"]
    assert sum(t["count"] for t in counts["outcomes"]) == counts["changed"]
    assert sum(t["count"] for t in counts["statuses"]) == counts["lines_changed"]
    assert sum(counts["live_outcomes"].values()) == counts["total"]
    assert sum(counts["candidate_outcomes"].values()) == counts["total"]
    assert list(counts["kinds"]) == ["status", "location", "quantity", "reservation", "reasons"]
    assert all(0 <= n <= counts["lines_changed"] for n in counts["kinds"].values())
    assert counts["lines_changed"] <= counts["lines"]
    if counts["changed"]:
        assert counts["lines_changed"] >= 1


def entry(c: Cart, availability: Availability, rule_set: str = "live") -> bytes:
    return msgspec.json.encode(
        Recorded(
            decided_at=NOW,
            rule_set=rule_set,
            cart=c,
            availability=recorded_availability(availability),
        )
    )


CRAFTED = [
    # 1: a keeps 5 back now: 1 from a, 1 from b (a location change; the outcome stays).
    (cart("IE", ("S1", 2), cart_id="moves"), stock(("S1", "a", 6), ("S1", "b", 10))),
    # 2: no b: below safety stock (allocate -> deny).
    (cart("IE", ("S1", 2), cart_id="denied"), stock(("S1", "a", 6))),
    # 3: untouched by either edit.
    (cart("IE", ("S2", 1), cart_id="same"), stock(("S2", "a", 3))),
    # 4: backorders off (reserve -> deny).
    (cart("IE", ("S3", 1), cart_id="backorder"), stock(("S3", "a", 0))),
    # 5: one line changes, the other does not (reserve -> deny, one changed line of two).
    (cart("IE", ("S2", 1), ("S3", 1)), stock(("S2", "a", 3), ("S3", "a", 0))),
    # 6: a has enough above the new safety stock.
    (cart("IE", ("S1", 1), cart_id="enough"), stock(("S1", "a", 10))),
]


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path, Path]:
    live = tmp_path / "live"
    candidate = tmp_path / "candidate"
    for folder, text in ((live, LIVE), (candidate, CANDIDATE_TEXT)):
        folder.mkdir()
        (folder / "rules.yaml").write_text(text, encoding="utf-8")
    carts = tmp_path / "carts.jsonl"
    live_id = load_rule_set(live).id
    carts.write_bytes(b"".join(entry(c, a, live_id) + b"\n" for c, a in CRAFTED))
    return live, candidate, carts


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, *args, "--format", "json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


# --- counts and classification ------------------------------------------------------------------


def test_counts_add_up_exactly_on_known_transitions(crafted, capsys):
    live, candidate, carts = crafted
    report = run_json(capsys, "--carts", str(carts), "--rules", str(candidate), "--live", str(live))
    counts = report["counts"]
    counts_add_up(counts)
    assert counts["total"] == 6
    assert counts["unchanged"] == 2
    assert counts["changed"] == 4
    assert {(t["live"], t["candidate"]): t["count"] for t in counts["outcomes"]} == {
        ("reserve", "deny"): 2,
        ("allocate", "allocate"): 1,
        ("allocate", "deny"): 1,
    }
    assert counts["lines"] == 7
    assert counts["lines_changed"] == 4
    assert {(t["live"], t["candidate"]): t["count"] for t in counts["statuses"]} == {
        ("reserved", "denied"): 2,
        ("allocated", "allocated"): 1,
        ("allocated", "denied"): 1,
    }
    assert counts["kinds"] == {
        "status": 3,
        "location": 1,
        "quantity": 3,
        "reservation": 2,
        "reasons": 3,
    }
    assert counts["live_outcomes"] == {"allocate": 4, "reserve": 2}
    assert counts["candidate_outcomes"] == {"allocate": 3, "deny": 3}
    assert (counts["snapshot"], counts["unrecorded"], counts["other_rule_set"]) == (0, 0, 0)
    # Shown in file order, named by cart_id, else by line.
    assert [c["id"] for c in report["changes"]] == ["moves", "denied", "backorder", "line 5"]
    assert [c["position"] for c in report["changes"]] == [1, 2, 4, 5]


def test_location_change_is_detected(crafted, capsys):
    live, candidate, carts = crafted
    report = run_json(capsys, "--carts", str(carts), "--rules", str(candidate), "--live", str(live))
    moved = report["changes"][0]
    assert (moved["live"], moved["candidate"]) == ("allocate", "allocate")
    (line,) = moved["lines"]
    assert line["changes"] == ["location"]
    assert line["live"]["allocations"] == [{"location_id": "a", "quantity": 2}]
    assert line["candidate"]["allocations"] == [
        {"location_id": "a", "quantity": 1},
        {"location_id": "b", "quantity": 1},
    ]
    # Only the changed line of a two-line cart is listed.
    two_lines = report["changes"][3]
    assert [(x["line"], x["sku"], x["changes"]) for x in two_lines["lines"]] == [
        (1, "S3", ["status", "quantity", "reservation", "reasons"])
    ]


def test_rules_responsible_are_listed_with_file_and_line(crafted, capsys):
    live, candidate, carts = crafted
    report = run_json(capsys, "--carts", str(carts), "--rules", str(candidate), "--live", str(live))
    safety_line = line_of(LIVE, "safety_stock:")
    backorder_line = line_of(LIVE, "backorder:")
    moved = report["changes"][0]["lines"][0]["settings"]
    assert moved == [
        {
            "setting": "safety_stock",
            "location_id": "a",
            "live": {
                "value": 0,
                "rule": "s1-safety-stock",
                "file": f"{live}/rules.yaml",
                "line": safety_line,
            },
            "candidate": {
                "value": 5,
                "rule": "s1-safety-stock",
                "file": f"{candidate}/rules.yaml",
                "line": safety_line,
            },
        }
    ]
    backorder = report["changes"][2]["lines"][0]["settings"]
    assert [(s["setting"], s["live"]["value"], s["candidate"]["value"]) for s in backorder] == [
        ("backorder.allowed", True, False)
    ]
    assert backorder[0]["candidate"]["line"] == backorder_line
    # The text report says the same, one setting per line, file:line on both sides.
    code, out, _ = run_cli(
        capsys, "--carts", str(carts), "--rules", str(candidate), "--live", str(live)
    )
    assert code == 0
    assert (
        f"safety_stock at a: 0 (rule s1-safety-stock, {live}/rules.yaml:{safety_line}) → "
        f"5 (rule s1-safety-stock, {candidate}/rules.yaml:{safety_line})"
    ) in out
    assert "moves (line 1): allocate → allocate" in out
    assert "    live       allocated; a 2\n    candidate  allocated; a 1, b 1\n" in out


def test_deny_rules_are_listed(tmp_path, capsys):
    live = tmp_path / "live"
    candidate = tmp_path / "candidate"
    live.mkdir()
    candidate.mkdir()
    (live / "rules.yaml").write_text(LIVE, encoding="utf-8")
    deny = textwrap.dedent("""\
        rules:
          - name: no-s2-to-ie
            match: {skus: [S2]}
            deny: {message: Not here.}
    """)
    text = LIVE.replace("rules:\n", deny, 1)
    (candidate / "rules.yaml").write_text(text, encoding="utf-8")
    carts = tmp_path / "carts.jsonl"
    carts.write_bytes(entry(*CRAFTED[2]) + b"\n")
    report = run_json(capsys, "--carts", str(carts), "--rules", str(candidate), "--live", str(live))
    (line,) = report["changes"][0]["lines"]
    assert line["candidate"]["message"] == "Not here."
    assert line["settings"] == [
        {
            "setting": "deny",
            "live": None,
            "candidate": {
                "value": "DENIED_BY_RULE",
                "rule": "no-s2-to-ie",
                "file": f"{candidate}/rules.yaml",
                "line": line_of(text, "- name: no-s2-to-ie"),  # a deny names its rule's line
            },
        }
    ]
    # Recorded under a rule set id the live one does not have: counted.
    assert report["counts"]["other_rule_set"] == 1


def test_a_cart_collected_where_the_candidate_has_no_location_is_rejected(tmp_path, capsys):
    live = tmp_path / "live"
    candidate = tmp_path / "candidate"
    live.mkdir()
    candidate.mkdir()
    (live / "rules.yaml").write_text(LIVE, encoding="utf-8")
    closed = LIVE.replace("  - {id: b, country: IE, priority: 2}\n", "")
    (candidate / "rules.yaml").write_text(closed, encoding="utf-8")
    carts = tmp_path / "carts.jsonl"
    collected = cart("IE", ("S2", 1), ("S2", 2), pickup_location="b")
    carts.write_bytes(entry(collected, stock(("S2", "b", 5))) + b"\n")
    args = ["--carts", str(carts), "--rules", str(candidate), "--live", str(live)]
    report = run_json(capsys, *args)
    counts = report["counts"]
    counts_add_up(counts)
    assert [(t["live"], t["candidate"], t["count"]) for t in counts["outcomes"]] == [
        ("allocate", "rejected", 1)
    ]
    assert [(t["live"], t["candidate"], t["count"]) for t in counts["statuses"]] == [
        ("allocated", "rejected", 2)
    ]
    assert counts["candidate_outcomes"] == {"rejected": 1}
    (change,) = report["changes"]
    assert [line["candidate"] for line in change["lines"]] == [None, None]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "    candidate  rejected: the pickup location is not in these rules\n" in out


# --- the demo -----------------------------------------------------------------------------------


def test_demo_recording_against_the_demo_candidate(capsys):
    report = run_json(
        capsys, "--carts", str(DEMO_RECORDED), "--rules", str(CANDIDATE), "--live", str(RULES)
    )
    counts = report["counts"]
    counts_add_up(counts)
    assert counts["total"] == 200
    assert 0 < counts["changed"] < 200
    assert len(report["changes"]) == report["shown"] == 20
    assert set(report) == {
        "carts",
        "live",
        "candidate",
        "counts",
        "shown",
        "changes",
        "elapsed_s",
        "timings",
    }
    by_id = {c["id"]: c for c in report["changes"]}
    # Each of the three edits shows up, with the rule behind it.
    split = by_id["demo-split"]
    assert (split["live"], split["candidate"]) == ("allocate", "deny")
    assert {s["setting"] for s in split["lines"][0]["settings"]} == {"safety_stock"}
    preorder = by_id["demo-preorder"]
    assert (preorder["live"], preorder["candidate"]) == ("reserve", "deny")
    assert preorder["lines"][0]["settings"][0]["setting"] == "backorder.allowed"
    knife = by_id["demo-deny-rule"]
    assert knife["lines"][0]["settings"][0]["live"]["rule"] == "no-blades-to-gb"
    # The live rules never asked about knives for GB: that stock is unknown, and said so.
    assert "CHEF-KNIFE-20@lon-store" in knife["unrecorded"]
    assert knife["lines"][0]["candidate"]["reasons"] == ["AVAILABILITY_UNKNOWN"]


def test_a_snapshot_fills_what_the_recording_lacks(capsys):
    args = ["--carts", str(DEMO_RECORDED), "--rules", str(CANDIDATE), "--live", str(RULES)]
    report = run_json(capsys, *args, "--availability", str(DEMO_AVAILABILITY), "--show", "all")
    counts_add_up(report["counts"])
    assert report["shown"] == report["counts"]["changed"]
    knife = next(c for c in report["changes"] if c["id"] == "demo-deny-rule")
    assert knife["filled"] is True
    assert (knife["live"], knife["candidate"]) == ("deny", "allocate")


def test_text_report_counts_and_time(capsys):
    code, out, _ = run_cli(
        capsys, "--carts", str(DEMO_RECORDED), "--rules", str(CANDIDATE), "--show", "2"
    )
    assert code == 0
    assert re.match(r"Simulated 200 carts from .+ in \d+\.\d\d s \(loading", out)
    assert "changed carts by outcome (live → candidate)" in out
    assert "changed carts (2 of " in out
    assert "--show all for every one" in out


def test_the_same_rules_change_nothing(capsys):
    report = run_json(capsys, "--carts", str(DEMO_RECORDED), "--rules", str(RULES))
    assert report["counts"]["changed"] == 0
    assert report["counts"]["unchanged"] == 200
    assert report["changes"] == []


def test_bare_carts_are_decided_on_the_snapshot(tmp_path, capsys):
    carts = tmp_path / "bare.jsonl"
    carts.write_bytes(b"\n".join(msgspec.json.encode(c) for c in demo_carts()) + b"\n\n")
    report = run_json(
        capsys,
        "--carts",
        str(carts),
        "--rules",
        str(CANDIDATE),
        "--availability",
        str(DEMO_AVAILABILITY),
        "--now",
        NOW.isoformat(),
        "--show",
        "all",
    )
    counts = report["counts"]
    counts_add_up(counts)
    assert counts["total"] == counts["snapshot"] == len(demo_carts())
    changed = {c["id"]: (c["live"], c["candidate"]) for c in report["changes"]}
    # The snapshot has every SKU's stock: the knife is simply allocated now.
    assert changed == {
        "demo-deny-rule": ("deny", "allocate"),
        "demo-preorder": ("reserve", "deny"),
        "demo-split": ("allocate", "deny"),
    }


# --- errors -------------------------------------------------------------------------------------


def test_broken_candidate_rules_exit_1_with_problems(crafted, tmp_path, capsys):
    live, _, carts = crafted
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "rules.yaml").write_text(
        LIVE.replace("safety_stock: 0", "safty_stock: 5"), encoding="utf-8"
    )
    code, out, err = run_cli(
        capsys, "--carts", str(carts), "--rules", str(broken), "--live", str(live)
    )
    assert code == 1
    assert out == ""
    problems = [LOCATED.match(line) for line in err.splitlines()[:-1]]
    assert problems
    assert all(problems)
    first = problems[0]
    assert first is not None
    assert first["file"] == str(broken / "rules.yaml")
    assert int(first["line"]) == line_of(LIVE, "safety_stock")
    assert "safty_stock" in first["message"]
    assert err.splitlines()[-1] == f"{broken}: 1 error(s); nothing was simulated"


def test_unreadable_carts_file_exit_2_naming_the_line(crafted, tmp_path, capsys):
    live, candidate, carts = crafted
    lines = carts.read_bytes().splitlines()
    lines[2] = lines[2].replace(b'"quantity":1', b'"quantity":"1"')
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run_cli(capsys, "--carts", str(bad), "--rules", str(candidate))
    assert (code, out) == (2, "")
    assert err.strip() == f"{bad}:3: $.cart.lines[0].quantity: Expected `int`, got `str`"

    bad.write_bytes(lines[0] + b"\n{not json\n")
    code, _, err = run_cli(capsys, "--carts", str(bad), "--rules", str(candidate))
    assert code == 2
    assert err.startswith(f"{bad}:2: not valid JSON")

    bad.write_bytes(b'{"country": "IE", "lines": []}\n')  # a bare cart, but not a valid one
    code, _, err = run_cli(capsys, "--carts", str(bad), "--rules", str(candidate))
    assert code == 2
    assert err.startswith(f"{bad}:1: $.lines: Expected `array` of length >= 1")

    code, _, err = run_cli(capsys, "--carts", str(tmp_path / "none.jsonl"), "--rules", str(live))
    assert code == 2
    assert err.strip() == f"{tmp_path / 'none.jsonl'}: cannot be read: No such file or directory"


def test_show_must_be_a_number_or_all(crafted, capsys):
    _, candidate, carts = crafted
    with pytest.raises(SystemExit):
        main(["simulate", "--carts", str(carts), "--rules", str(candidate), "--show", "some"])
    assert "a number of carts or `all`" in capsys.readouterr().err


def test_reading_the_last_lines_keeps_their_numbers(tmp_path):
    path = tmp_path / "carts.jsonl"
    lines = [msgspec.json.encode(cart("IE", ("S1", i + 1))) for i in range(50)]
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"country": "IE", "li')  # cut short
    last = read_carts(path, last=7)
    assert [e.position for e in last] == list(range(44, 51))
    assert [e.cart.lines[0].quantity for e in last] == list(range(44, 51))
    assert len(read_carts(path, last=500)) == 50


def test_tail_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.simulate._BLOCK", 64)
    path = tmp_path / "carts.jsonl"
    path.write_bytes(
        b"".join(msgspec.json.encode(cart("IE", ("S1", i + 1))) + b"\n" for i in range(30))
    )
    last = read_carts(path, last=4)
    assert [e.position for e in last] == [27, 28, 29, 30]
    assert [e.cart.lines[0].quantity for e in last] == [27, 28, 29, 30]


# --- the recorder -------------------------------------------------------------------------------


def checkout_with(recorder: Recorder | None) -> Checkout:
    return Checkout(
        load_rule_set(RULES),
        [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)],
        clock=lambda: NOW,
        recorder=recorder,
    )


def decide_all(checkout: Checkout, carts: list[Cart], explain: bool = False) -> None:
    async def run() -> None:
        for c in carts:
            await checkout.allocate(c, explain=explain)

    asyncio.run(run())


def test_recorder_samples_everything_at_1_and_nothing_at_0(tmp_path):
    carts = demo_carts()
    everything = Recorder(tmp_path / "all.jsonl", 1.0)
    decide_all(checkout_with(everything), carts, explain=True)
    assert everything.recorded == len(carts)
    assert (tmp_path / "all.jsonl").read_bytes() == b""  # nothing before a flush
    assert everything.flush() == len(carts)
    lines = (tmp_path / "all.jsonl").read_bytes().splitlines()
    records = [msgspec.json.decode(line, type=Recorded) for line in lines]
    assert [r.cart for r in records] == carts
    first = json.loads(lines[0])
    assert list(first) == ["decided_at", "rule_set", "cart", "availability", "decision"]
    assert first["decided_at"] == "2026-11-22T12:00:00Z"
    assert set(first["availability"]) == {"records", "unknown"}
    for r in records:
        assert r.decision is not None
        assert r.rule_set == r.decision.rule_set
        assert r.decision.explanation is None  # explanations are not recorded
        assert all(line.explanation is None for line in r.decision.lines)
    unknown = next(r for r in records if r.cart.cart_id == "demo-unknown")
    assert unknown.availability is not None
    assert "dub-dc" in unknown.availability.unknown["LAMP-OAK"]

    nothing = Recorder(tmp_path / "none.jsonl", 0.0)
    decide_all(checkout_with(nothing), carts)
    assert (nothing.recorded, nothing.flush()) == (0, 0)
    assert (tmp_path / "none.jsonl").read_bytes() == b""


def test_a_recording_replays_to_the_same_decisions(tmp_path, capsys):
    path = record(tmp_path / "rec.jsonl", 60)
    report = run_json(capsys, "--carts", str(path), "--rules", str(RULES))
    assert report["counts"]["changed"] == 0
    # The live decision made from the recorded inputs is the decision that was served.
    rules = load_rule_set(RULES)
    for line in path.read_bytes().splitlines():
        recorded = msgspec.json.decode(line, type=Recorded)
        assert recorded.availability is not None
        assert recorded.decided_at is not None
        again = decide(
            recorded.cart, recorded.availability.availability(), rules, recorded.decided_at
        )
        assert again == recorded.decision


def test_recorder_buffer_is_bounded(tmp_path):
    recorder = Recorder(tmp_path / "r.jsonl", 1.0, capacity=2)
    decide_all(checkout_with(recorder), demo_carts()[:5])
    assert (recorder.recorded, recorder.dropped) == (2, 3)
    assert recorder.flush() == 2
    decide_all(checkout_with(recorder), demo_carts()[:1])
    assert recorder.flush() == 1
    assert len((tmp_path / "r.jsonl").read_bytes().splitlines()) == 3
    assert recorder.stats() == {
        "path": str(tmp_path / "r.jsonl"),
        "sample": 1.0,
        "recorded": 3,
        "written": 3,
        "dropped": 3,
        "buffered": 0,
    }


def test_recorder_writes_in_the_background_and_on_close(tmp_path):
    path = tmp_path / "bg.jsonl"
    recorder = Recorder(path, 1.0, interval=0.02)
    recorder.start()
    assert any(t.name == "decision-recorder" for t in threading.enumerate())
    decide_all(checkout_with(recorder), demo_carts()[:3])
    deadline = time.monotonic() + 5
    while recorder.written < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.written == 3
    decide_all(checkout_with(recorder), demo_carts()[:2])
    recorder.close()
    assert recorder.written == 5
    assert len(path.read_bytes().splitlines()) == 5
    assert not any(t.name == "decision-recorder" for t in threading.enumerate())


def test_recorder_settings_from_options_and_environment(tmp_path):
    path = tmp_path / "env.jsonl"
    assert recorder_from(None, None, env={}) is None
    from_env = recorder_from(None, None, env={"ENGINE_RECORD": str(path)})
    assert from_env is not None
    assert (from_env.path, from_env.sample) == (path, 1.0)
    env = {"ENGINE_RECORD": str(path), "ENGINE_RECORD_SAMPLE": "0.1"}
    sampled = recorder_from(None, None, env=env)
    assert sampled is not None
    assert sampled.sample == 0.1
    option = recorder_from(tmp_path / "opt.jsonl", 0.5, env=env)
    assert option is not None
    assert (option.path, option.sample) == (tmp_path / "opt.jsonl", 0.5)
    with pytest.raises(ValueError, match="from 0 to 1"):
        recorder_from(path, 1.5, env={})
    with pytest.raises(ValueError, match="ENGINE_RECORD_SAMPLE must be a number"):
        recorder_from(None, None, env={"ENGINE_RECORD": str(path), "ENGINE_RECORD_SAMPLE": "x"})
    with pytest.raises(OSError, match="No such file"):
        Recorder(tmp_path / "missing" / "r.jsonl")


def test_serve_refuses_a_bad_sample(capsys):
    assert main(["serve", "--record", "x.jsonl", "--record-sample", "2"]) == 2
    assert "from 0 to 1" in capsys.readouterr().err


# --- HTTP ---------------------------------------------------------------------------------------


def candidate_files() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(CANDIDATE.glob("*.yaml"))}


@pytest.fixture
def recording(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "served.jsonl", 1.0)


@pytest.fixture
def client(recording: Recorder) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(checkout_with(recording))) as test_client:
        yield test_client


def test_http_simulate_gives_the_cli_report(client, capsys):
    carts = [json.loads(line) for line in DEMO_RECORDED.read_bytes().splitlines()]
    response = client.post(
        "/v1/rules/simulate", json={"files": candidate_files(), "carts": carts, "show": 3}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    cli = run_json(
        capsys, "--carts", str(DEMO_RECORDED), "--rules", str(CANDIDATE), "--live", str(RULES)
    )
    assert body["counts"] == cli["counts"]
    counts_add_up(body["counts"])
    assert body["live"] == {"rules": "live", "rule_set": cli["live"]["rule_set"]}
    assert body["candidate"] == {"rules": "candidate", "rule_set": cli["candidate"]["rule_set"]}
    assert body["shown"] == 3
    split = next(
        c
        for c in client.post(
            "/v1/rules/simulate", json={"files": candidate_files(), "carts": carts, "show": "all"}
        ).json()["changes"]
        if c["id"] == "demo-split"
    )
    assert split["lines"][0]["settings"][0]["candidate"]["file"] == "rules.yaml"
    # Without a cart_id, a cart is named by its index in the request.
    bare = client.post(
        "/v1/rules/simulate",
        json={
            "files": candidate_files(),
            "carts": [{"country": "FR", "lines": [{"sku": "HOODIE-GRY-L", "quantity": 8}]}],
        },
    ).json()
    assert bare["counts"]["snapshot"] == 1
    assert [c["id"] for c in bare["changes"]] == ["carts[0]"]


def test_http_simulate_reads_the_recording_by_default(client, recording):
    for c in demo_carts():
        json_content = {"content-type": "application/json"}
        answer = client.post(
            "/v1/allocations", content=msgspec.json.encode(c), headers=json_content
        )
        assert answer.status_code == 200, answer.text
    response = client.post("/v1/rules/simulate", json={"files": candidate_files()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["counts"]["total"] == len(demo_carts())
    assert body["carts"] == f"the recording (its last {len(demo_carts())} decisions)"
    assert {c["id"] for c in body["changes"]} >= {"demo-split", "demo-preorder"}
    last = client.post("/v1/rules/simulate", json={"files": candidate_files(), "last": 2}).json()
    assert last["counts"]["total"] == 2


def test_http_simulate_broken_candidate_is_422_with_problems(client):
    files = candidate_files()
    files["rules.yaml"] = files["rules.yaml"].replace("safety_stock: 4", "safty_stock: 4")
    response = client.post("/v1/rules/simulate", json={"files": files, "carts": []})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/invalid-rules"
    (problem,) = body["problems"]
    assert problem["file"] == "rules.yaml"
    assert problem["line"] == line_of(files["rules.yaml"], "safty_stock")
    assert problem["column"] > 0
    assert "safty_stock" in problem["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "$"),
        (b'{"carts": []}', "$.files"),
        (b'{"files": {}}', "$.files"),
        (b'{"files": {"../x.yaml": "rules: []"}, "carts": []}', "$.files.../x.yaml"),
        (b'{"files": {"x.yaml\\n": "rules: []"}, "carts": []}', "$.files.x.yaml\n"),
        (b'{"files": {"r.yaml": "rules: []"}, "carts": [{"country": "IE"}]}', "$.carts[0].lines"),
        (b'{"files": {"r.yaml": "rules: []"}, "carts": [], "show": -1}', "$.show"),
        (b'{"files": {"r.yaml": "rules: []"}, "colour": 1}', "$.colour"),
    ],
)
def test_http_simulate_invalid_bodies_are_400(client, body, field):
    response = client.post(
        "/v1/rules/simulate", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_http_simulate_without_carts_or_recording_is_400():
    with TestClient(create_app(checkout_with(None))) as plain:
        response = plain.post("/v1/rules/simulate", json={"files": candidate_files()})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "$.carts",
            "message": "no carts given, and the service records none (serve --record FILE)",
        }
    ]


def test_http_simulate_takes_a_larger_body_than_a_cart(client):
    lines = DEMO_RECORDED.read_bytes().splitlines()
    carts = [json.loads(line) for line in lines] * 2
    body = msgspec.json.encode({"files": candidate_files(), "carts": carts})
    assert len(body) > MAX_BODY_BYTES
    response = client.post(
        "/v1/rules/simulate", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["counts"]["total"] == 400
    # A cart still may not be that large; the message names each route's own limit.
    too_big = client.post(
        "/v1/allocations", content=body, headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == "the body is larger than the 256 KiB a cart may take"


# --- size ---------------------------------------------------------------------------------------


def test_ten_thousand_recorded_carts(tmp_path):
    path = record(tmp_path / "10k.jsonl", 10_000, start=NOW - timedelta(days=1))
    live, candidate = load_rule_set(RULES), load_rule_set(CANDIDATE)
    started = time.perf_counter()
    entries = read_carts(path)
    report: Report = simulate(
        entries,
        live,
        candidate,
        now=NOW,
        read_s=time.perf_counter() - started,
        labels=("rules", "demo/candidate-rules"),
    )
    elapsed = time.perf_counter() - started
    counts = msgspec.to_builtins(report.counts)
    counts_add_up(counts)
    assert counts["total"] == 10_000
    assert counts["changed"] > 0
    assert report.shown == 20
    print(
        f"\n10,000 recorded carts simulated in {elapsed:.2f} s "
        f"(read {report.timings.read_s:.2f} s, decided twice and compared "
        f"{report.timings.decide_s:.2f} s, explained 20 in {report.timings.explain_s:.2f} s)"
    )


# --- HTTP: bodies msgspec cannot decode, rules too deep, the documented body ---------------------

JSON_CONTENT = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            b'{"files": {"r.yaml": "rules: [\xff]"}, "carts": []}',
            [{"field": "$", "message": "the body is not valid UTF-8"}],
        ),
        (
            b'{"files": {"r.yaml": "rules: []"}, "carts": [{"country": "I\xff"}]}',
            [{"field": "$.carts[0]", "message": "the cart is not valid UTF-8"}],
        ),
        (
            b'{"files": {"r.yaml": "rules: []"}, "carts": ['
            + b"[" * 10_000
            + b"]" * 10_000
            + b"]}",
            [{"field": "$", "message": "the body nests too deeply"}],
        ),
    ],
    ids=["invalid UTF-8 in a file", "invalid UTF-8 in a cart", "a cart 10,000 deep"],
)
def test_http_simulate_undecodable_bodies_are_400(client, body, errors):
    response = client.post("/v1/rules/simulate", content=body, headers=JSON_CONTENT)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == errors


@pytest.mark.parametrize(
    ("text", "column"),
    [("a: " + "[" * 1_000 + "]" * 1_000, 67), ("- " * 100_000 + "x", 129)],
    ids=["flow, 1,000 deep", "block, 100,000 deep"],
)
def test_http_simulate_rules_nested_too_deep_are_422(client, text, column):
    """A rule file nested deeper than anyone writes is refused where it gets too deep, before
    it is composed: composing 100,000 levels would overflow the C stack (a crash, not a 500)."""
    body = {"files": {"rules.yaml": text}, "carts": []}
    response = client.post("/v1/rules/simulate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["problems"] == [
        {
            "file": "rules.yaml",
            "line": 1,
            "column": column,
            "message": "nested more than 64 levels deep: a rule file is a few levels of mappings "
            "and lists",
            "severity": "error",
        }
    ]


def test_http_simulate_documents_its_body(client):
    operation = client.get("/schema/openapi.json").json()["paths"]["/v1/rules/simulate"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["files"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["properties"]) == ["carts", "files", "last", "show"]
    assert schema["properties"]["files"]["propertyNames"] == {
        "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.ya?ml$"
    }
    assert schema["properties"]["last"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100_000,
        "default": 10_000,
    }
