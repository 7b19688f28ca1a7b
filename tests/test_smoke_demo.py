from engine.availability import Availability
from tests.helpers import DEMO_LOCATIONS, allocations, cart, stock


def test_demo_rules_load_without_warnings(demo_rules):
    assert demo_rules.warnings == ()
    assert [loc.id for loc in demo_rules.locations] == DEMO_LOCATIONS


def test_single_line_allocates_from_first_priority(demo_rules, decide_at):
    availability: Availability = stock(("TEE-BLK-M", "dub-dc", 40), ("TEE-BLK-M", "ams-dc", 25))
    decision = decide_at(cart("IE", ("TEE-BLK-M", 2)), availability, demo_rules)
    assert decision.decision == "allocate"
    assert allocations(decision) == [{"dub-dc": 2}]
