"""Project-wide fixtures: the demo rule set and `decide` at a fixed time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.allocate import decide
from engine.availability import Availability
from engine.model import Cart, Decision
from engine.policy import RuleSet, load_rule_set
from tests.helpers import NOW, RULES


@pytest.fixture(scope="session")
def demo_rules() -> RuleSet:
    return load_rule_set(RULES)


@pytest.fixture
def decide_at() -> Callable[..., Decision]:
    """`decide` at the fixed test time NOW."""

    def run(c: Cart, availability: Availability, rules: RuleSet, explain: bool = False) -> Decision:
        return decide(c, availability, rules, NOW, explain=explain)

    return run
