"""Hot reload of the rules: validate first, swap atomically, keep the last good set.

Twenty rule files broken the way merchandisers break them are each refused with the file, the
line and what to do, while carts go on being decided with the live set; a real server takes 100
alternating good and bad reloads under load without a failed request; SIGHUP and the file
watcher reload; the history says what was loaded when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from benchmarks.load import free_port
from engine.availability import Source, SourceAnswer
from engine.checkout import Checkout
from engine.cli import _parser
from engine.model import Cart, CartLine
from engine.policy import RuleSet, load_folder, load_rule_set
from engine.reload import (
    HISTORY_LIMIT,
    SLOW_LOOK,
    SLOW_LOOKS,
    Fingerprint,
    RuleReloader,
    fingerprint,
    watch_enabled,
)
from engine.service import create_app
from engine.sources.snapshot import SnapshotSource
from engine.sources.upstream import UpstreamSources
from tests.helpers import DEMO_AVAILABILITY, NOW, ROOT, RULES

CART = {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}
CARTS = (
    CART,
    {"country": "FR", "lines": [{"sku": "HOODIE-GRY-L", "quantity": 8}]},
    {"country": "GB", "lines": [{"sku": "CHEF-KNIFE-20", "quantity": 1}]},
    {"country": "US", "lines": [{"sku": "POWERBANK-20K", "quantity": 1}]},
    {"country": "DE", "lines": [{"sku": "SNEAKER-RUN-42", "quantity": 2}]},
)


def copy_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder, ignore=shutil.ignore_patterns("tests"))
    return folder


def write(path: Path, text: str) -> None:
    """Replace a file in one step, as editors that save safely do: a reader never sees half."""
    temporary = path.with_name(f".{path.name}.saving")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def checkout_on(folder: Path) -> Checkout:
    rules = load_rule_set(folder)
    source = SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)
    return Checkout(rules, [source], clock=lambda: NOW)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_rules(tmp_path)


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def reload_log() -> Iterator[Kept]:
    """What `engine.reload` logs (on its own logger: the app's logging set-up replaces the
    root logger's handlers, so caplog would miss it)."""
    logger = logging.getLogger("engine.reload")
    kept = Kept()
    level = logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.DEBUG)
    try:
        yield kept
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)


# --- twenty broken edits ------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """One edit a merchandiser might make, and where the error must point."""

    file: str
    edit: Callable[[str], str]
    at: str
    """Text on the line the first error must name (in the edited file)."""
    says: str
    """Part of the sentence that says what to do."""
    occurrence: int = 1
    """Which line holding `at`, when it is on more than one."""


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"the demo rules no longer hold {old!r} once"
        return text.replace(old, new)

    return edit


def unwrap_catalog(text: str) -> str:
    """The catalog pasted as a bare list: the `catalog:` line deleted, the items dedented."""
    head, _, items = text.partition("catalog:\n")
    return head + "\n".join(line.removeprefix("  ") for line in items.splitlines()) + "\n"


BREAKS = {
    "a-tab": Break(
        "rules.yaml",
        replace("    safety_stock: 3", "\tsafety_stock: 3"),
        "\tsafety_stock: 3",
        "indent with spaces, not tabs",
    ),
    "norway-unquoted": Break(
        "locations.yaml",
        replace('IS, "NO", SE', "IS, NO, SE"),
        "IS, NO, SE",
        'write it in quotes ("NO")',
    ),
    "misspelt-key": Break(
        "rules.yaml",
        replace("    safety_stock: 2", "    safty_stock: 2"),
        "safty_stock",
        "did you mean `safety_stock`?",
    ),
    "misspelt-location-in-a-rule": Break(
        "rules.yaml",
        replace("[dub-dc, ams-dc]", "[dub-dc, ams-cd]"),
        "ams-cd",
        "did you mean `ams-dc`?",
    ),
    "negative-quantity": Break(
        "rules.yaml",
        replace("    max_quantity: 2\n", "    max_quantity: -2\n"),
        "max_quantity: -2",
        "must be at least 1",
    ),
    "duplicate-rule-name": Break(
        "rules.yaml",
        replace("- name: limited-vinyl-two-per-order", "- name: hoodie-safety-stock"),
        "- name: hoodie-safety-stock",
        "each needs its own name",
        occurrence=2,
    ),
    "unknown-routing-criterion": Break(
        "rules.yaml",
        replace("same_country, priority, most_stock]", "same_country, priority, most_stok]"),
        "most_stok",
        "did you mean `most_stock`?",
    ),
    "three-letter-country": Break(
        "locations.yaml",
        replace(
            "country: IE\n    ships_to: [eu, GB, nordics]",
            "country: IRL\n    ships_to: [eu, GB, nordics]",
        ),
        "country: IRL",
        "did you mean `IE`?",
    ),
    "rule-without-match": Break(
        "rules.yaml",
        replace(
            "  - name: limited-vinyl-two-per-order\n    match:\n      tags: [limited]\n",
            "  - name: limited-vinyl-two-per-order\n",
        ),
        "- name: limited-vinyl-two-per-order",
        "add `match:`",
    ),
    "bracket-left-open": Break(
        "locations.yaml",
        replace("ships_to: [eu, GB, nordics]", "ships_to: [eu, GB, nordics"),
        "[eu, GB, nordics",
        "end the list with `]`",
    ),
    "file-is-a-list": Break(
        "catalog.yaml",
        unwrap_catalog,
        "- sku: TEE-BLK-M",
        "write `catalog:` above the list",
    ),
    "id-read-as-a-number": Break(
        "locations.yaml",
        replace("- id: old-cork", "- id: 2001"),
        "- id: 2001",
        'write it in quotes ("2001")',
    ),
    "duplicate-key": Break(
        "rules.yaml",
        replace("    safety_stock: 2\n", "    safety_stock: 2\n    safety_stock: 4\n"),
        "safety_stock: 4",
        "remove one of them",
    ),
    "alias": Break(
        "locations.yaml",
        replace(
            'countries: [DK, FI, IS, "NO", SE]\n  - name: north-america\n    countries: [US, CA]',
            'countries: &nordic [DK, FI, IS, "NO", SE]\n  - name: north-america\n'
            "    countries: *nordic",
        ),
        "countries: *nordic",
        "write the value out where it is needed",
    ),
    "unknown-section": Break(
        "rules.yaml",
        replace("\nrules:\n", "\nrule:\n"),
        "rule:",
        "did you mean `rules`?",
    ),
    "source-misspelt-on-a-location": Break(
        "locations.yaml",
        replace("source: shoplazza", "source: shoplaza"),
        "source: shoplaza",
        "did you mean `shoplazza`?",
    ),
    "numeric-upstream-id-unquoted": Break(
        "locations.yaml",
        replace('upstream_id: "327627904831724000"', "upstream_id: 327627904831724000"),
        "upstream_id: 327627904831724000",
        'write it in quotes ("327627904831724000")',
    ),
    "cart-setting-with-a-sku-match": Break(
        "rules.yaml",
        replace(
            "      channels: [wholesale]\n", '      channels: [wholesale]\n      skus: ["TEE-*"]\n'
        ),
        "routing:",
        "move it to such a rule or to `defaults`",
        occurrence=3,
    ),
    "uk-for-gb": Break(
        "rules.yaml",
        replace("countries: [GB]", "countries: [UK]"),
        "countries: [UK]",
        "did you mean `GB`?",
    ),
    "locations-emptied": Break(
        "locations.yaml",
        lambda text: "",
        "",
        "the file is empty: write its sections back",
    ),
}


def line_of(text: str, marker: str, occurrence: int) -> int:
    """The 1-based line holding `marker` for the `occurrence`th time (1 for an empty file)."""
    if not marker:
        return 1
    found = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(found) >= occurrence, f"{marker!r} is not on {occurrence} line(s)"
    return found[occurrence - 1]


def test_there_are_twenty_breaks() -> None:
    assert len(BREAKS) == 20


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_edit_is_refused_named_and_changes_nothing(
    name: str, folder: Path, reload_log: Kept
) -> None:
    case = BREAKS[name]
    checkout = checkout_on(folder)
    good = checkout.rules.id
    reloader = RuleReloader(folder, checkout, watch=False)
    path = folder / case.file
    original = path.read_text(encoding="utf-8")
    broken = case.edit(original)
    line = line_of(broken, case.at, case.occurrence)
    with TestClient(create_app(checkout, reloader=reloader)) as client:
        write(path, broken)
        response = client.post("/v1/rules/reload")

        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["type"] == "/problems/invalid-rules"
        assert body["rule_set"] == good
        assert f"rule set {good} is still live" in body["detail"]
        errors = [p for p in body["problems"] if p["severity"] == "error"]
        first = errors[0]
        assert (first["file"], first["line"]) == (case.file, line), body["problems"]
        assert case.says in first["message"]
        assert set(first) == {"file", "line", "column", "message", "severity"}
        # Logged at warning as `file:line:column: sentence`, the way `check` prints it.
        logged = f"{path}:{line}:{first['column']}: {first['message']}"
        assert logged in reload_log.at(logging.WARNING)

        shown = client.get("/v1/rules").json()
        assert shown["id"] == good
        assert shown["last_rejected"]["trigger"] == "api"
        assert shown["last_rejected"]["problems"] == body["problems"]
        decision = client.post("/v1/allocations", json=CART)
        assert decision.status_code == 200
        assert decision.json()["rule_set"] == good
        assert checkout.rules.id == good

        write(path, original)
        restored = client.post("/v1/rules/reload")
        assert restored.status_code == 200
        assert restored.json() == {"outcome": "unchanged", "rule_set": good, "warnings": []}
        assert "last_rejected" not in client.get("/v1/rules").json()


# --- reloads, swaps and the history -------------------------------------------------------------


def other_rules(folder: Path, max_quantity: int = 40) -> str:
    """rules.yaml with another per-order default: a good edit that changes the rule set id."""
    text = (folder / "rules.yaml").read_text(encoding="utf-8")
    assert text.count("  max_quantity: 50\n") == 1
    return text.replace("  max_quantity: 50\n", f"  max_quantity: {max_quantity}\n")


def test_a_good_edit_is_loaded_and_decides_the_next_cart(folder: Path) -> None:
    checkout = checkout_on(folder)
    before = checkout.rules.id
    reloader = RuleReloader(folder, checkout, watch=False)
    with TestClient(create_app(checkout, reloader=reloader)) as client:
        write(folder / "rules.yaml", other_rules(folder))
        asked = datetime.now(UTC)
        response = client.post("/v1/rules/reload")
        assert response.status_code == 200
        after = response.json()["rule_set"]
        assert response.json()["outcome"] == "loaded"
        assert after != before
        assert after == load_rule_set(folder).id
        assert client.get("/health").json()["rule_set"] == after
        assert client.post("/v1/allocations", json=CART).json()["rule_set"] == after
        shown = client.get("/v1/rules").json()
        assert shown["id"] == after
        assert asked <= datetime.fromisoformat(shown["loaded_at"]) <= datetime.now(UTC)
        assert "last_rejected" not in shown


def test_the_history_lists_loads_newest_first_with_hashes_and_triggers(folder: Path) -> None:
    checkout = checkout_on(folder)
    first = checkout.rules
    reloader = RuleReloader(folder, checkout, watch=False)
    with TestClient(create_app(checkout, reloader=reloader)) as client:
        write(folder / "rules.yaml", other_rules(folder))
        second = client.post("/v1/rules/reload").json()["rule_set"]
        write(folder / "rules.yaml", "rules: [\n")
        assert client.post("/v1/rules/reload").status_code == 422
        history = client.get("/v1/rules/history").json()
    assert [(h["trigger"], h["outcome"]) for h in history] == [
        ("api", "rejected"),
        ("api", "loaded"),
        ("startup", "loaded"),
    ]
    assert [h["live"] for h in history] == [second, second, first.id]
    assert history[2]["digest"] == first.digest
    assert history[2]["files"] == ["catalog.yaml", "locations.yaml", "rules.yaml", "sources.yaml"]
    for entry in history:
        assert len(entry["digest"]) == 64
        assert entry["rule_set"] == entry["digest"][:12]
    assert history[0]["problems"][0]["file"] == "rules.yaml"
    assert history[1]["problems"] == []
    times = [datetime.fromisoformat(h["loaded_at"]) for h in history]
    assert times == sorted(times, reverse=True)


def test_the_history_keeps_the_last_hundred(folder: Path) -> None:
    checkout = checkout_on(folder)
    reloader = RuleReloader(folder, checkout, watch=False)

    async def many() -> None:
        for _ in range(HISTORY_LIMIT + 5):
            await reloader.reload("api")

    asyncio.run(many())
    history = reloader.newest_first()
    assert len(history) == HISTORY_LIMIT
    assert {h.outcome for h in history} == {"unchanged"}  # the startup entry has gone


def test_the_watcher_picks_up_an_edit_within_a_few_polls(folder: Path) -> None:
    checkout = checkout_on(folder)
    before = checkout.rules.id
    reloader = RuleReloader(folder, checkout, poll_interval=0.05, debounce=0.02)
    with TestClient(create_app(checkout, reloader=reloader)) as client:
        write(folder / "rules.yaml", other_rules(folder))
        expected = load_rule_set(folder).id
        started = time.monotonic()
        while client.get("/health").json()["rule_set"] != expected:
            assert time.monotonic() - started < 2, "the edit was not picked up"
            time.sleep(0.02)
        assert time.monotonic() - started < 1.5  # a few poll intervals, not seconds

        write(folder / "locations.yaml", "locations:\n  - id: dub-dc\n    country: IRL\n")
        while "last_rejected" not in (shown := client.get("/v1/rules").json()):
            assert time.monotonic() - started < 4, "the broken edit was not seen"
            time.sleep(0.02)
        assert shown["id"] == expected
        assert shown["last_rejected"]["trigger"] == "file"
        assert shown["last_rejected"]["problems"][0]["line"] == 3
        history = client.get("/v1/rules/history").json()
    assert [(h["trigger"], h["outcome"]) for h in history] == [
        ("file", "rejected"),
        ("file", "loaded"),
        ("startup", "loaded"),
    ]
    assert history[1]["rule_set"] == expected != before


def test_watching_an_unchanged_folder_starts_no_thread(folder: Path) -> None:
    """The look at the folder runs on the event loop: a worker thread would take the
    interpreter lock from the loop serving carts at every look (the p99 of a cart at half the
    maximum rate was 2 to 5 ms with one, about 1 ms without)."""
    checkout = checkout_on(folder)
    reloader = RuleReloader(folder, checkout, poll_interval=0.01, debounce=0.01)

    before = set(threading.enumerate())  # what earlier tests may have left running

    async def run() -> list[str]:
        await reloader.start()
        await asyncio.sleep(0.1)  # some ten looks
        await reloader.stop()
        return [t.name for t in threading.enumerate() if t not in before]

    assert asyncio.run(run()) == []
    assert [h.outcome for h in reloader.newest_first()] == ["loaded"]  # the startup entry only


def test_a_slow_folder_is_looked_at_from_a_thread(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Looks that hold the event loop longer than `SLOW_LOOK`, `SLOW_LOOKS` times in a row (a
    network file system), move the next looks to a thread, once, with a warning; edits are
    still picked up. One slow look alone (the process busy, not the disk) moves nothing."""
    checkout = checkout_on(folder)
    reloader = RuleReloader(folder, checkout, poll_interval=0.01, debounce=0.01)
    looks: list[str] = []

    def slow(path: Path) -> Fingerprint:
        looks.append(threading.current_thread().name)
        if len(looks) != 2:  # the second look is quick: the count of slow ones starts again
            time.sleep(SLOW_LOOK * 1.5)
        return fingerprint(path)

    async def run() -> None:
        monkeypatch.setattr("engine.reload.fingerprint", slow)
        await reloader.start()
        await asyncio.sleep(0.2)
        write(folder / "rules.yaml", other_rules(folder))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if checkout.rules.id == load_rule_set(folder).id:
                break
        await reloader.stop()

    caplog.set_level(logging.WARNING, logger="engine.reload")
    asyncio.run(run())
    on_loop = 2 + SLOW_LOOKS  # slow, quick, then SLOW_LOOKS slow ones
    assert looks[:on_loop] == ["MainThread"] * on_loop
    assert len(looks) > on_loop
    assert all(name != "MainThread" for name in looks[on_loop:])
    assert checkout.rules.id == load_rule_set(folder).id
    assert [r.getMessage().split(";")[1] for r in caplog.records] == [
        " looking from a thread from now on (keep the rules folder on a local disk)"
    ]
    assert "3 times in a row" in caplog.records[0].getMessage()


def test_a_reload_is_the_same_whether_asked_or_signalled(folder: Path) -> None:
    """The SIGHUP handler's path (the signal itself is sent to a real server below)."""
    checkout = checkout_on(folder)
    reloader = RuleReloader(folder, checkout, watch=False)
    write(folder / "rules.yaml", other_rules(folder))

    async def signalled() -> None:
        reloader.on_signal()
        await asyncio.gather(*reloader._pending)

    asyncio.run(signalled())
    assert checkout.rules.id == load_rule_set(folder).id
    assert reloader.newest_first()[0].trigger == "signal"


def test_unchanged_files_are_a_no_op_that_clears_a_rejection(folder: Path) -> None:
    checkout = checkout_on(folder)
    rules = checkout.rules
    reloader = RuleReloader(folder, checkout, watch=False)
    original = (folder / "rules.yaml").read_text(encoding="utf-8")

    async def run() -> None:
        write(folder / "rules.yaml", original + "  - name: half-written\n")
        assert (await reloader.reload("file")).outcome == "rejected"
        assert reloader.last_rejected is not None
        write(folder / "rules.yaml", original)
        attempt = await reloader.reload("api")
        assert (attempt.outcome, attempt.live) == ("unchanged", rules.id)
        assert reloader.last_rejected is None

    asyncio.run(run())
    assert checkout.rules is rules  # not even recompiled


class Gate:
    """A source that holds every fetch until it is opened: a cart caught mid-decision."""

    def __init__(self, inner: SnapshotSource, name: str) -> None:
        self.inner = inner
        self._name = name
        self.opened = asyncio.Event()
        self.asked = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str] | None:
        return self.inner.locations

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        self.asked += 1
        await self.opened.wait()
        return await self.inner.fetch(skus, deadline=deadline)


def test_a_cart_decides_with_the_rules_and_sources_it_started_with(folder: Path) -> None:
    snapshot = SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)
    old = Gate(snapshot, "old")
    new = Gate(snapshot, "new")
    rules = load_rule_set(folder)
    checkout = Checkout(rules, [old], clock=lambda: NOW, budget=5)
    built: list[RuleSet] = []

    def sources_for(ruleset: RuleSet, current: Collection[Source]) -> tuple[Source, ...]:
        assert tuple(current) == (old,)
        built.append(ruleset)
        return (new,)

    reloader = RuleReloader(folder, checkout, sources_for=sources_for, watch=False)
    cart = Cart(country="IE", lines=(CartLine(sku="TEE-BLK-M", quantity=2),))

    async def run() -> None:
        deciding = asyncio.create_task(checkout.allocate(cart))
        while not old.asked:
            await asyncio.sleep(0)
        write(folder / "rules.yaml", other_rules(folder))
        attempt = await reloader.reload("api")
        assert attempt.outcome == "loaded"
        assert checkout.live == (built[0], (new,))
        old.opened.set()
        decision = await deciding
        assert decision.rule_set == rules.id  # the set it started with, to the end
        new.opened.set()
        assert (await checkout.allocate(cart)).rule_set == built[0].id
        assert new.asked == 1

    asyncio.run(run())
    assert old.asked == 1


def test_an_unexpected_failure_is_a_rejection_not_a_crash(folder: Path, reload_log: Kept) -> None:
    checkout = checkout_on(folder)
    live = checkout.live

    def broken_builder(rules: RuleSet, current: Collection[Source]) -> tuple[Source, ...]:
        raise RuntimeError("a bug")

    reloader = RuleReloader(folder, checkout, sources_for=broken_builder, watch=False)
    write(folder / "rules.yaml", other_rules(folder))
    attempt = asyncio.run(reloader.reload("api"))
    assert attempt.outcome == "rejected"
    assert "internal error" in attempt.problems[0].message
    assert checkout.live is live
    (failure,) = [r for r in reload_log.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None
    assert str(failure.exc_info[1]) == "a bug"


def test_reloads_are_serialised(folder: Path) -> None:
    checkout = checkout_on(folder)
    reloader = RuleReloader(folder, checkout, watch=False)
    write(folder / "rules.yaml", other_rules(folder))

    async def run() -> list[str]:
        attempts = await asyncio.gather(*(reloader.reload("api") for _ in range(5)))
        return [a.outcome for a in attempts]

    assert asyncio.run(run()) == ["loaded", "unchanged", "unchanged", "unchanged", "unchanged"]


def test_the_fingerprint_covers_what_the_loader_reads(folder: Path) -> None:
    before = fingerprint(folder)
    assert [name for name, _, _ in before] == [
        "catalog.yaml",
        "locations.yaml",
        "rules.yaml",
        "sources.yaml",
    ]
    (folder / "notes.txt").write_text("not a rule file")
    (folder / "tests").mkdir()
    (folder / "tests" / "a.yaml").write_text("tests: []")
    assert fingerprint(folder) == before
    (folder / "extra.yml").write_text("# more rules\n")
    assert [name for name, _, _ in fingerprint(folder)][1] == "extra.yml"
    assert fingerprint(folder / "missing") == ()


def test_watching_is_on_unless_turned_off() -> None:
    assert watch_enabled(None, {}) is True
    assert watch_enabled(None, {"ENGINE_WATCH_RULES": "0"}) is False
    assert watch_enabled(None, {"ENGINE_WATCH_RULES": "off"}) is False
    assert watch_enabled(None, {"ENGINE_WATCH_RULES": "1"}) is True
    assert watch_enabled(True, {"ENGINE_WATCH_RULES": "0"}) is True
    assert watch_enabled(False, {}) is False
    assert _parser().parse_args(["serve", "--no-watch"]).watch is False
    assert _parser().parse_args(["serve"]).watch is None
    assert _parser().parse_args(["serve", "--watch-interval", "0.5"]).watch_interval == 0.5


def test_without_a_reloader_there_are_no_reload_routes() -> None:
    checkout = checkout_on(RULES)
    with TestClient(create_app(checkout)) as client:
        assert client.post("/v1/rules/reload").status_code == 404
        assert "loaded_at" not in client.get("/v1/rules").json()


# --- upstream sources across reloads ------------------------------------------------------------


def test_unchanged_upstream_sources_are_kept_warm_and_changed_ones_rebuilt(folder: Path) -> None:
    rules = load_rule_set(folder)
    sources_text = (folder / "sources.yaml").read_text(encoding="utf-8")

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            pool = UpstreamSources(client, env={})
            first = pool(rules)
            assert [s.name for s in first] == ["dr-levels", "dr-shopper", "shoplazza", "catalog"]
            write(folder / "rules.yaml", other_rules(folder))
            same_sources = pool(load_rule_set(folder), first)
            assert all(a is b for a, b in zip(first, same_sources, strict=True))
            write(
                folder / "sources.yaml",
                sources_text.replace(
                    "url: http://127.0.0.1:8104",
                    "url: http://127.0.0.1:8104\n    fresh_for_ms: 1000",
                ),
            )
            changed = pool(load_rule_set(folder), same_sources)
            assert [a is b for a, b in zip(same_sources, changed, strict=True)] == [
                True,
                True,
                True,
                False,
            ]
            moved = UpstreamSources(client, env={"ENGINE_SOURCE_DR_LEVELS_URL": "http://x:1"})
            before = moved(rules)
            assert moved(rules, before)[0] is before[0]
            # A source the live pair no longer holds is never brought back.
            assert moved(rules, before[1:])[0] is not before[0]

    asyncio.run(run())


# --- a real server: reloads under load, SIGHUP --------------------------------------------------


ADMIN = {"authorization": "Bearer demo-admin-key"}
"""The demo's admin key (demo/api-keys.json): the served routes are tried with keys, as run."""


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve(folder: Path, *options: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`python -m engine serve` on the folder, in its own process, on a free port."""
    port = free_port()
    log = folder.parent / "server.log"
    command = [sys.executable, "-m", "engine", "serve", "--rules", str(folder), "--port", str(port)]
    command += ["--availability", str(DEMO_AVAILABILITY), "--log-level", "warning", *options]
    command += ["--api-keys", str(ROOT / "demo" / "api-keys.json")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(f"{server.base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def watched(folder: Path) -> Iterator[Server]:
    with serve(folder, "--watch-interval", "0.05") as server:
        yield server


def test_reloads_under_load_fail_no_cart(folder: Path, watched: Server) -> None:
    """100 reloads, good (two rule sets, so the id alternates) and broken in turn, through the
    API and, every tenth, through the watcher, while four clients post carts without pause."""
    good_a = (folder / "rules.yaml").read_text(encoding="utf-8")
    good_b = other_rules(folder)
    breaks = [case for case in BREAKS.values() if case.file == "rules.yaml"]
    id_a = load_rule_set(folder).id
    write(folder / "rules.yaml", good_b)
    id_b = load_rule_set(folder).id
    write(folder / "rules.yaml", good_a)
    good_ids = {id_a, id_b}

    stop = threading.Event()
    answers: list[tuple[int, str | None]] = []
    failures: list[str] = []

    def client_loop(offset: int) -> None:
        with httpx.Client(base_url=watched.base, timeout=10, headers=ADMIN) as client:
            n = offset
            while not stop.is_set():
                n += 1
                try:
                    if n % 7 == 0:
                        response = client.get(
                            "/v1/availability", params={"sku": ["TEE-BLK-M"], "country": "IE"}
                        )
                    else:
                        response = client.post("/v1/allocations", json=CARTS[n % len(CARTS)])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                rule_set = response.json().get("rule_set") if response.status_code == 200 else None
                answers.append((response.status_code, rule_set))

    clients = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for thread in clients:
        thread.start()
    started = time.monotonic()
    outcomes: list[str] = []
    try:
        with httpx.Client(base_url=watched.base, timeout=10, headers=ADMIN) as admin:
            live = id_a
            for i in range(100):
                assert time.monotonic() - started < 45, "100 reloads took too long"
                if i % 2 == 0:
                    text, expected = (good_b, id_b) if i % 4 == 0 else (good_a, id_a)
                else:
                    text, expected = breaks[i // 2 % len(breaks)].edit(good_a), None
                write(folder / "rules.yaml", text)
                if i % 10 in (4, 5):  # left to the watcher
                    digest = load_folder(folder).digest
                    while True:
                        shown = admin.get("/v1/rules").json()
                        if expected is not None and shown["id"] == expected:
                            break
                        rejected = shown.get("last_rejected")
                        if expected is None and rejected and rejected["digest"] == digest:
                            break
                        assert time.monotonic() - started < 45, f"reload {i} was not seen"
                        time.sleep(0.01)
                    outcomes.append("file")
                    live = expected or live
                    continue
                response = admin.post("/v1/rules/reload")
                if expected is None:
                    assert response.status_code == 422, response.text
                    assert response.json()["rule_set"] == live
                else:
                    assert response.status_code == 200, response.text
                    assert response.json()["rule_set"] == expected
                    assert response.json()["outcome"] in {"loaded", "unchanged"}
                    live = expected
                outcomes.append("api")
            history = admin.get("/v1/rules/history").json()
        time.sleep(0.2)  # carts keep coming after the last reload
    finally:
        stop.set()
        for thread in clients:
            thread.join(10)
    elapsed = time.monotonic() - started

    assert failures == []
    assert len(outcomes) == 100
    assert len(answers) > 200, f"only {len(answers)} requests in {elapsed:.1f} s"
    assert {status for status, _ in answers} == {200}
    assert {rule_set for _, rule_set in answers} <= good_ids
    assert {rule_set for _, rule_set in answers} == good_ids  # both sets decided carts
    assert {h["trigger"] for h in history} >= {"api", "file"}
    assert {h["outcome"] for h in history} >= {"loaded", "rejected"}
    assert elapsed < 50


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads_a_running_server(folder: Path) -> None:
    with serve(folder, "--watch-interval", "0.05", env={"ENGINE_WATCH_RULES": "0"}) as server:
        before = httpx.get(f"{server.base}/health").json()["rule_set"]
        write(folder / "rules.yaml", other_rules(folder))
        expected = load_rule_set(folder).id
        time.sleep(0.3)  # not watching: the edit waits for the signal
        assert httpx.get(f"{server.base}/health").json()["rule_set"] == before
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while httpx.get(f"{server.base}/health").json()["rule_set"] != expected:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.02)
        history = httpx.get(f"{server.base}/v1/rules/history", headers=ADMIN).json()
        assert [(h["trigger"], h["outcome"]) for h in history] == [
            ("signal", "loaded"),
            ("startup", "loaded"),
        ]
        write(folder / "rules.yaml", "rules:\n  - name: half\n")
        server.process.send_signal(signal.SIGHUP)
        while "last_rejected" not in (
            shown := httpx.get(f"{server.base}/v1/rules", headers=ADMIN).json()
        ):
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.02)
        assert shown["id"] == expected
        assert server.process.poll() is None
    log = server.log.read_text()
    assert "rules.yaml:2:5: rule `half` is missing `match`" in log  # logged at warning
    # `serve` logs JSON lines by default (--log-format), for a log collector.
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    rejected = [entry for entry in logged if "is missing `match`" in entry["message"]]
    assert rejected, log
    assert {"time", "level", "logger", "message"} <= set(rejected[0])
    assert rejected[0]["level"] == "WARNING"


def test_the_cli_checks_the_watch_interval(folder: Path) -> None:
    from engine.cli import main  # noqa: PLC0415

    assert main(["serve", "--rules", str(folder), "--watch-interval", "0"]) == 2


def test_sigterm_lets_a_request_in_flight_finish(folder: Path) -> None:
    """A deploy stops the service with SIGTERM: a simulation of 8,000 carts already running
    still gets its answer, then the process shuts down in order and stops listening."""
    files = {path.name: path.read_text(encoding="utf-8") for path in folder.glob("*.yaml")}
    cart = {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}
    body = {"files": files, "carts": [cart] * 8000, "show": 0}
    with serve(folder, "--no-watch", "--shutdown-timeout", "20") as server:
        assert httpx.get(f"{server.base}/ready").json()["status"] == "ready"
        answer: list[httpx.Response] = []

        def simulate() -> None:
            answer.append(
                httpx.post(f"{server.base}/v1/rules/simulate", json=body, headers=ADMIN, timeout=30)
            )

        worker = threading.Thread(target=simulate)
        started = time.monotonic()
        worker.start()
        time.sleep(0.3)  # the request is in flight (it takes about a second)
        server.process.send_signal(signal.SIGTERM)
        worker.join(30)
        # uvicorn re-raises SIGTERM once it has shut down, so the exit status says so.
        assert server.process.wait(20) == -signal.SIGTERM
    assert time.monotonic() - started > 0.3
    (response,) = answer
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["total"] == 8000
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/ready", timeout=1)
