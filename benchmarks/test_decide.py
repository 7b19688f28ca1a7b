"""`decide`, the pure decision, on a warm rule set (look-ups memoised as in the service)."""

from __future__ import annotations

import pytest

from benchmarks.synthetic import NOW, availability, cart, rule_set
from engine.allocate import decide


@pytest.mark.parametrize(
    ("lines", "locations", "rules"),
    [(1, 10, 100), (5, 10, 100), (5, 10, 10), (5, 10, 1000), (20, 10, 100), (5, 100, 100)],
    ids=str,
)
def test_decide(benchmark, lines, locations, rules):
    benchmark.group = "decide"
    benchmark.name = f"decide[{lines} lines x {locations} locations, {rules} rules]"
    rs = rule_set(locations, rules)
    c = cart(lines)
    av = availability(rs, [line.sku for line in c.lines])
    decision = decide(c, av, rs, NOW)
    assert len(decision.lines) == lines
    benchmark(decide, c, av, rs, NOW)


def test_decide_explained(benchmark):
    benchmark.group = "decide"
    benchmark.name = "decide[5 lines x 10 locations, 100 rules, explain]"
    rs = rule_set(10, 100)
    c = cart(5)
    av = availability(rs, [line.sku for line in c.lines])
    benchmark(lambda: decide(c, av, rs, NOW, explain=True))
