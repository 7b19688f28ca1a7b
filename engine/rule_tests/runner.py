"""Running rule tests: decide each test's cart, compare with what it expects, report.

Each cart is decided by `engine.allocate.decide`, the function the service calls, on
availability built from the test's records, with explanations on, so a failure can show why
the engine decided otherwise: the line's summary, every location considered, and the rule
(file:line) that set each setting bearing on what failed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec
from msgspec import UnsetType

from engine.allocate import decide
from engine.errors import RuleSetError, Severity
from engine.explain_text import describe_origin, render_cart, render_line
from engine.model import Decision, LineDecision, LocationVerdict, Reservation
from engine.policy import RuleSet, compile_files, load_folder
from engine.rule_tests.spec import (
    LOCATION_SETTINGS,
    TESTS_FOLDER,
    LineExpectation,
    ReservationExpectation,
    RuleTest,
    load_rule_tests,
)

__all__ = (
    "Difference",
    "RuleTestResult",
    "compare",
    "failure_report",
    "run_folder",
    "run_rule_test",
)

_ROUTING: Final = frozenset(
    {"routing.criteria", "routing.max_shipments", "routing.max_locations_per_line"}
)
_CART_SETTINGS: Final = _ROUTING | {"partial_cart"}
_STOCK: Final = _ROUTING | {"safety_stock", "min_atp", "max_quantity", "ship_to"}
_BACKORDER: Final = frozenset(
    {
        "backorder.allowed",
        "backorder.max_quantity",
        "backorder.restock_required",
        "backorder.within_days",
        "backorder.split",
        "unknown_availability",
    }
)
_BEARING: Final[dict[str, frozenset[str] | None]] = {
    "decision": frozenset({"partial_cart"}),
    "status": None,
    "reasons": None,
    "available": None,
    "allocated": _STOCK,
    "allocations": _STOCK,
    "reserved": _BACKORDER,
    "reservation": _BACKORDER,
    "message": frozenset({"deny"}),
    "shipments": _ROUTING,
    "locations": None,
}
"""The settings that bear on each field a test compares (None: any of them may), so that a
failure report shows those settings and where they were set, not all of them."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One field of the decision that is not what the test expects."""

    line: int | None
    """The cart line's index; None for the cart's decision or shipments."""
    subject: str
    """`line 0 (HOODIE-GRY-L)`, or empty for the cart."""
    field: str
    expected: str
    got: str
    bearing: frozenset[str] | None
    """Settings that bear on the field; None: any may."""

    def __str__(self) -> str:
        where = f"{self.subject} " if self.subject else ""
        return f"{where}{self.field}: expected {self.expected}, got {self.got}"


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """A test, the decision its cart got (with explanations, for the report) and what differs."""

    test: RuleTest
    decision: Decision
    differences: tuple[Difference, ...]

    @property
    def passed(self) -> bool:
        return not self.differences


def run_rule_test(test: RuleTest, rules: RuleSet) -> RuleTestResult:
    """Decide the test's cart as the service would (with explanations) and compare."""
    decision = decide(test.cart, test.availability, rules, test.now, explain=True)
    return RuleTestResult(test, decision, tuple(compare(test, decision)))


def compare(test: RuleTest, decision: Decision) -> list[Difference]:
    """What differs from the test's expectations, in the order a reader checks: the cart's
    decision, each line in cart order (field by field), then the shipments."""
    out: list[Difference] = []
    if test.decision is not None and test.decision != decision.decision:
        out.append(_cart_difference("decision", test.decision, decision.decision))
    for index, expect in test.lines:
        out.extend(_compare_line(index, expect, decision.lines[index], test.now))
    if test.shipments is not None:
        got = {s.location_id: [item.sku for item in s.lines] for s in decision.shipments}
        if got != test.shipments:
            out.append(_cart_difference("shipments", test.shipments, got))
    if test.settings:
        found = decision.explanation.settings if decision.explanation is not None else ()
        for name, expected in test.settings.items():
            origin = next((s for s in found if s.setting == name), None)
            actual = None if origin is None else msgspec.to_builtins(origin.value)
            if actual != expected:
                shown = (
                    "not set" if origin is None else f"{_show(actual)} ({describe_origin(origin)})"
                )
                out.append(
                    Difference(
                        None, "", f"settings.{name}", _show(expected), shown, frozenset({name})
                    )
                )
    return out


def failure_report(result: RuleTestResult) -> list[str]:
    """`FAIL name (file:line)`, each difference, then why: the cart and each line concerned,
    as the text explanation renders them, with the settings that bear on what failed."""
    test, decision = result.test, result.decision
    out = [f"FAIL {test.name} ({test.where})"]
    out.extend(f"  {difference}" for difference in result.differences)
    out.append("  why:")
    cart_level = [d for d in result.differences if d.line is None]
    cart_only = _union(d.bearing for d in result.differences)
    if cart_only is not None:
        cart_only = cart_only & _CART_SETTINGS
    if cart_level or cart_only is None or cart_only:
        out.extend(_indent(render_cart(decision, test.cart, only=cart_only)))
    shown = []
    for line in decision.lines:
        concerned = [d for d in result.differences if d.line == line.line]
        if concerned:
            only = _union(d.bearing for d in concerned)
            out.extend(_indent(render_line(line, only=only)))
            shown.append(line.line)
    if any(d.field == "decision" for d in cart_level):
        for line in decision.lines:
            if line.line not in shown:
                out.extend(_indent(render_line(line, brief=True)))
    return out


def run_folder(
    folder: Path,
    *,
    name_filter: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`python -m engine test`: load the rules and their tests, run them, print `PASS`/`FAIL`
    lines and `N passed, M failed`. Exit status 1 when the rules or a test file have errors
    (every problem printed as `file:line:column: sentence`, no test run), when there is no
    test to run, or when any test fails; else 0."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        rules = compile_files(load_folder(folder))
    except RuleSetError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        errors = sum(p.severity is Severity.ERROR for p in exc.problems)
        print(f"{folder}: {errors} error(s); the rules were not loaded, no test was run", file=err)
        return 1
    tests, problems = load_rule_tests(folder, rules)
    where = folder / TESTS_FOLDER
    if problems:
        for problem in sorted(problems):
            print(problem, file=out)
        print(f"{where}: {len(problems)} error(s) in the test files; no test was run", file=err)
        return 1
    if not tests:
        print(f"{where}: no tests (write them in *.yaml files there)", file=err)
        return 1
    if name_filter is not None:
        needle = name_filter.lower()
        tests = [t for t in tests if needle in t.name.lower()]
        if not tests:
            print(f"no test name contains `{name_filter}`", file=err)
            return 1
    passed = failed = 0
    for test in tests:
        result = run_rule_test(test, rules)
        if result.passed:
            passed += 1
            print(f"PASS {test.name}", file=out)
        else:
            failed += 1
            print("\n".join(failure_report(result)) + "\n", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


# --- comparing ----------------------------------------------------------------------------------


def _compare_line(
    index: int, expect: LineExpectation, got: LineDecision, now: datetime
) -> list[Difference]:
    subject = f"line {index} ({got.sku})"
    out: list[Difference] = []

    def check(field: str, expected: Any, actual: Any, shown: Any = None) -> None:
        if expected != actual:
            out.append(
                Difference(
                    index,
                    subject,
                    field,
                    _show(expected),
                    _show(actual if shown is None else shown),
                    _BEARING[field.partition(".")[0]],
                )
            )

    if not isinstance(expect.status, UnsetType):
        check("status", expect.status, got.status)
    if not isinstance(expect.allocated, UnsetType):
        check("allocated", expect.allocated, got.allocated)
    if not isinstance(expect.allocations, UnsetType):
        check(
            "allocations",
            expect.allocations,
            {a.location_id: a.quantity for a in got.allocations},
        )
    if not isinstance(expect.reserved, UnsetType):
        check("reserved", expect.reserved, got.reserved)
    if not isinstance(expect.reservation, UnsetType):
        _check_reservation(expect.reservation, got.reservation, now, check)
    if not isinstance(expect.reasons, UnsetType):
        check("reasons", list(expect.reasons), list(got.reasons))
    if not isinstance(expect.available, UnsetType):
        check("available", expect.available, got.available)
    if not isinstance(expect.message, UnsetType):
        check("message", expect.message, got.message)
    if not isinstance(expect.settings, UnsetType):
        out.extend(_compare_settings(index, subject, expect.settings, got))
    if not isinstance(expect.locations, UnsetType):
        judged = got.explanation.locations if got.explanation is not None else ()
        for location_id, verdict in expect.locations.items():
            seen = next((loc for loc in judged if loc.location_id == location_id), None)
            if seen is None:
                check(f"locations.{location_id}", verdict.value, "not listed", "not listed")
            elif seen.verdict is not verdict:
                shown = f"{seen.verdict.value} ({seen.detail})"
                check(f"locations.{location_id}", verdict.value, seen.verdict.value, shown)
    return out


def _check_reservation(
    expect: ReservationExpectation | None,
    got: Reservation | None,
    now: datetime,
    check: Any,
) -> None:
    """Compare the keys the test gives (all of the reservation when it expects none)."""
    actual = _reservation_view(got, now)
    if expect is None or actual is None:
        stated = None if expect is None else _stated(expect)
        check("reservation", stated, actual)
        return
    stated = _stated(expect)
    check("reservation", stated, {k: actual[k] for k in stated})


def _stated(expect: ReservationExpectation) -> dict[str, Any]:
    return {
        name: getattr(expect, name)
        for name in expect.__struct_fields__
        if not isinstance(getattr(expect, name), UnsetType)
    }


def _reservation_view(reservation: Reservation | None, now: datetime) -> dict[str, Any] | None:
    """A reservation in the test format: its restock as whole days from `now` (UTC dates)."""
    if reservation is None:
        return None
    days = None
    if reservation.restock_time is not None:
        restock = reservation.restock_time
        if restock.tzinfo is None:
            restock = restock.replace(tzinfo=UTC)
        days = (restock.astimezone(UTC).date() - now.astimezone(UTC).date()).days
    return {
        "location_id": reservation.location_id,
        "quantity": reservation.quantity,
        "restock_in_days": days,
    }


def _compare_settings(
    index: int, subject: str, expected: dict[str, Any], got: LineDecision
) -> list[Difference]:
    settings = got.explanation.settings if got.explanation is not None else ()
    out = []
    for name, value in expected.items():
        wanted: Iterable[tuple[str | None, Any]] = (
            value.items() if name in LOCATION_SETTINGS else [(None, value)]
        )
        for location_id, expected_value in wanted:
            found = next(
                (s for s in settings if s.setting == name and s.location_id == location_id),
                None,
            )
            field = f"settings.{name}" + (f" at {location_id}" if location_id else "")
            if found is None:
                shown = _unset_setting(name, location_id, got)
                out.append(
                    Difference(
                        index, subject, field, _show(expected_value), shown, frozenset({name})
                    )
                )
                continue
            actual = msgspec.to_builtins(found.value)
            if actual != expected_value:
                out.append(
                    Difference(
                        index,
                        subject,
                        field,
                        _show(expected_value),
                        f"{_show(actual)} ({describe_origin(found)})",
                        frozenset({name}),
                    )
                )
    return out


_BUILT_IN_LOCATION_SETTINGS: Final = {"safety_stock": 0, "min_atp": 0}
"""The built-in values of the location settings (docs/rules.md, "Built-in defaults"): an
explanation lists a location setting only when a rule or `defaults` sets it."""


def _unset_setting(name: str, location_id: str | None, got: LineDecision) -> str:
    """What a setting the explanation does not list is: for a location that may serve the
    line, the built-in value; for one excluded, why it was; else not set (a `deny` no rule
    writes)."""
    if location_id is None or got.explanation is None:
        return "not set"
    for location in got.explanation.locations:
        if location.location_id == location_id:
            if location.verdict is LocationVerdict.EXCLUDED:
                return f"not set: {location_id} is excluded ({location.detail})"
            return f"{_BUILT_IN_LOCATION_SETTINGS[name]} (built-in)"
    return "not set"


def _cart_difference(field: str, expected: Any, got: Any) -> Difference:
    return Difference(None, "", field, _show(expected), _show(got), _BEARING[field])


def _show(value: Any) -> str:
    """A value as it would be written in the test file (YAML flow style)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _union(bearings: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """All the settings bearing on some differences; None when any may."""
    union: frozenset[str] = frozenset()
    for bearing in bearings:
        if bearing is None:
            return None
        union |= bearing
    return union


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" if line else line for line in lines]
