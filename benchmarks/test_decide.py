"""`decide`, the pure decision, on a warm rule set (look-ups memoised as in the service).

Each size axis is its own group, the others held at the reference case (5 lines x 10 locations,
100 rules), which sits in the "lines" group; `benchmarks.compare` checks the scaling targets on
these names."""

from __future__ import annotations

import collections
import copy
from datetime import datetime

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.compare import decide_name
from benchmarks.synthetic import NOW, availability, cart, rule_set, warm_rule_set
from engine.allocate import decide
from engine.availability import Availability
from engine.model import Cart, Decision, LineStatus, ReasonCode
from engine.policy import RuleSet

TRIVIAL = frozenset(
    {
        ReasonCode.UNKNOWN_SKU,
        ReasonCode.DENIED_BY_RULE,
        ReasonCode.NOT_SHIPPABLE,
        ReasonCode.QUANTITY_LIMIT,
        ReasonCode.AVAILABILITY_UNKNOWN,
    }
)
"""Reasons that deny a line before any stock is read: a cart denied for these measures little."""


def assert_real_work(decision: Decision, lines: int) -> None:
    """The cart is decided on stock: every line answered, none denied before stock is read, and
    at least 90% of the lines allocated or reserved (a few may run short under the caps)."""
    assert len(decision.lines) == lines
    statuses = collections.Counter(line.status for line in decision.lines)
    assert statuses[LineStatus.ALLOCATED] + statuses[LineStatus.RESERVED] >= 0.9 * lines
    assert not any(TRIVIAL.intersection(line.reasons) for line in decision.lines)


SIZES = {
    "decide: lines": [(1, 10, 100), (5, 10, 100), (20, 10, 100), (100, 10, 100)],
    "decide: locations": [(5, 5, 100), (5, 20, 100), (5, 100, 100)],
    "decide: rules": [(5, 10, 10), (5, 10, 1000)],
}


@pytest.mark.parametrize(
    ("group", "lines", "locations", "rules"),
    [(group, *size) for group, sizes in SIZES.items() for size in sizes],
    ids=lambda value: str(value).replace(" ", ""),
)
def test_decide(
    benchmark: BenchmarkFixture, group: str, lines: int, locations: int, rules: int
) -> None:
    benchmark.group = group
    benchmark.name = decide_name(lines, locations, rules)
    rs = warm_rule_set(locations, rules)
    c = cart(lines)
    av = availability(rs, [line.sku for line in c.lines])
    assert_real_work(decide(c, av, rs, NOW), lines)
    benchmark(decide, c, av, rs, NOW)


def test_decide_explained(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "decide: explained, cold"
    benchmark.name = decide_name(5, 10, 100, "explain")
    rs = warm_rule_set(10, 100)
    c = cart(5)
    av = availability(rs, [line.sku for line in c.lines])
    assert_real_work(decide(c, av, rs, NOW, explain=True), 5)
    benchmark(lambda: decide(c, av, rs, NOW, explain=True))


def test_first_cart_after_load(benchmark: BenchmarkFixture) -> None:
    """A cart decided right after a reload: every look-up is a memo miss. Each round gets its
    own copy of a freshly compiled rule set (outside the timing; copying is cheaper than
    compiling again)."""
    benchmark.group = "decide: explained, cold"
    benchmark.name = decide_name(5, 10, 100, "cold")
    c = cart(5)
    fresh = rule_set(10, 100)
    av = availability(fresh, [line.sku for line in c.lines])

    def setup() -> tuple[tuple[Cart, Availability, RuleSet, datetime], dict[str, object]]:
        return (c, av, copy.deepcopy(fresh), NOW), {}

    benchmark.pedantic(decide, setup=setup, rounds=20)
