"""One group of tests per rule kind, each with the exact decision the rules must give.

Most tests compile two files: a small world (`rules-0.yaml`: locations, catalog) and the rules under
test (`rules-1.yaml`), so explanations can name the file and line a setting was written on.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from engine.allocate import assess
from engine.model import (
    Allocation,
    LineStatus,
    LocationVerdict,
    Outcome,
    ReasonCode,
    Reservation,
    SettingOrigin,
    Shipment,
    ShipmentLine,
)
from tests.helpers import NOW, allocations, cart, rules_from, stock

# Three Irish locations in priority order a, b, c; SKUs with tags for rules to match.
WORLD = """
locations:
  - {id: a, country: IE, priority: 1}
  - {id: b, country: IE, priority: 2}
  - {id: c, country: IE, priority: 3}
catalog:
  - {sku: TEE, tags: [apparel]}
  - {sku: HOODIE, tags: [apparel]}
  - {sku: MUG, tags: [home]}
  - {sku: KNIFE, tags: [home, blade]}
  - {sku: BATTERY, tags: [electronics, battery]}
"""

# Locations in several countries, for ship-to and same_country.
WORLD_EU = """
country_groups:
  - {name: eu, countries: [IE, FR, DE]}
  - {name: north-america, countries: [US, CA]}
locations:
  - {id: dub, country: IE, priority: 1, ships_to: [eu, GB]}
  - {id: par, country: FR, priority: 2, ships_to: [eu]}
  - {id: nyc, country: US, priority: 3, ships_to: [north-america]}
  - {id: lon, country: GB, priority: 4}
catalog:
  - {sku: TEE, tags: [apparel]}
  - {sku: MUG, tags: [home]}
  - {sku: BATTERY, tags: [electronics, battery]}
"""


def world(rules: str = "rules: []", base: str = WORLD):
    return rules_from(base, rules)


def reasons(decision):
    return [list(line.reasons) for line in decision.lines]


def statuses(decision):
    return [line.status for line in decision.lines]


def verdicts(line):
    return {loc.location_id: loc.verdict for loc in line.explanation.locations}


def setting(explanation, name, location_id=None):
    found = [s for s in explanation.settings if s.setting == name and s.location_id == location_id]
    assert len(found) == 1, found
    return found[0]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line of a rule text (as rules_from dedents it) holding needle."""
    hits = [i for i, ln in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in ln]
    return hits[nth - 1]


# --- catalog --------------------------------------------------------------------------------------


def test_sku_not_in_catalog_is_denied_unknown_sku(decide_at):
    decision = decide_at(cart("IE", ("NOPE", 1)), stock(("NOPE", "a", 5)), world())
    assert decision.decision == Outcome.DENY
    assert statuses(decision) == [LineStatus.DENIED]
    assert reasons(decision) == [[ReasonCode.UNKNOWN_SKU]]
    assert allocations(decision) == [{}]
    assert decision.shipments == ()


# --- ship-to --------------------------------------------------------------------------------------


def test_location_ships_to_its_own_country_by_default(decide_at):
    # lon (GB) has no ships_to: it serves GB only.
    rules = world(base=WORLD_EU)
    availability = stock(("TEE", "lon", 5))
    assert allocations(decide_at(cart("GB", ("TEE", 1)), availability, rules)) == [{"lon": 1}]
    decision = decide_at(cart("IE", ("TEE", 1)), availability, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK]]
    assert allocations(decision) == [{}]


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        ("FR", {"dub": 2, "par": 1}),  # both list the eu group
        ("DE", {"dub": 2, "par": 1}),
        ("GB", {"dub": 2, "lon": 1}),  # dub lists GB by code; par's eu group does not cover it
        ("US", {"nyc": 3}),  # nyc ships to the north-america group
        ("CA", {"nyc": 3}),
    ],
)
def test_ships_to_country_groups_and_codes(decide_at, country, expected):
    availability = stock(("MUG", "dub", 2), ("MUG", "par", 5), ("MUG", "nyc", 9), ("MUG", "lon", 1))
    decision = decide_at(cart(country, ("MUG", 3)), availability, world(base=WORLD_EU))
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [expected]


def test_no_location_ships_to_country_is_not_shippable(decide_at):
    decision = decide_at(cart("JP", ("MUG", 1)), stock(("MUG", "dub", 5)), world(base=WORLD_EU))
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[ReasonCode.NOT_SHIPPABLE]]
    assert allocations(decision) == [{}]


def test_disabled_location_is_never_used(decide_at):
    rules = rules_from("""
        locations:
          - {id: a, country: IE, priority: 1, enabled: false}
          - {id: b, country: IE, priority: 2}
        catalog:
          - {sku: TEE}
        """)
    availability = stock(("TEE", "a", 10), ("TEE", "b", 1))
    assert allocations(decide_at(cart("IE", ("TEE", 1)), availability, rules)) == [{"b": 1}]
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.lines[0].available == 1


SHIP_TO_PER_PRODUCT = """
rules:
  - name: tees-only-to-ireland
    match: {skus: ["TEE"]}
    ship_to: {allow: [IE]}
  - name: no-batteries-to-north-america
    match: {tags: [battery]}
    ship_to: {deny: [north-america]}
"""


@pytest.mark.parametrize(
    ("country", "sku", "expected_reasons", "expected_alloc"),
    [
        ("IE", "TEE", [], {"dub": 1}),
        ("FR", "TEE", [ReasonCode.NOT_SHIPPABLE], {}),  # allow list by SKU
        ("FR", "MUG", [], {"dub": 1}),  # the allow list is for TEE only
        ("US", "BATTERY", [ReasonCode.NOT_SHIPPABLE], {}),  # deny list by tag, via a group
        ("CA", "BATTERY", [ReasonCode.NOT_SHIPPABLE], {}),
        ("FR", "BATTERY", [], {"dub": 1}),
        ("US", "MUG", [], {"nyc": 1}),
    ],
)
def test_ship_to_allow_and_deny_per_sku_and_tag(
    decide_at, country, sku, expected_reasons, expected_alloc
):
    rules = world(SHIP_TO_PER_PRODUCT, base=WORLD_EU)
    availability = stock((sku, "dub", 5), (sku, "par", 5), (sku, "nyc", 5))
    decision = decide_at(cart(country, (sku, 1)), availability, rules)
    assert reasons(decision) == [expected_reasons]
    assert allocations(decision) == [expected_alloc]


def test_ship_to_in_defaults_applies_to_every_line(decide_at):
    rules = world("defaults:\n  ship_to: {deny: [FR]}\n", base=WORLD_EU)
    availability = stock(("MUG", "dub", 5))
    assert reasons(decide_at(cart("FR", ("MUG", 1)), availability, rules)) == [
        [ReasonCode.NOT_SHIPPABLE]
    ]
    assert allocations(decide_at(cart("DE", ("MUG", 1)), availability, rules)) == [{"dub": 1}]


SHIP_TO_PER_LOCATION = """
rules:
  - name: dublin-no-batteries-to-france
    match: {tags: [battery], locations: [dub]}
    ship_to: {deny: [FR]}
  - name: paris-mugs-only-to-france
    match: {skus: [MUG], locations: [par]}
    ship_to: {allow: [FR]}
"""


@pytest.mark.parametrize(
    ("country", "sku", "expected"),
    [
        ("FR", "BATTERY", {"par": 1}),  # dub is excluded for batteries to FR only
        ("DE", "BATTERY", {"dub": 1}),
        ("FR", "TEE", {"dub": 1}),  # the rule is for batteries only
        ("DE", "MUG", {"dub": 1}),
    ],
)
def test_ship_to_rule_per_location_excludes_that_location(decide_at, country, sku, expected):
    rules = world(SHIP_TO_PER_LOCATION, base=WORLD_EU)
    availability = stock((sku, "dub", 5), (sku, "par", 5))
    decision = decide_at(cart(country, (sku, 1)), availability, rules)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [expected]


def test_ship_to_allow_per_location_leaves_only_other_locations(decide_at):
    rules = world(SHIP_TO_PER_LOCATION, base=WORLD_EU)
    # par may send mugs only to FR: a DE cart cannot use its stock.
    decision = decide_at(cart("DE", ("MUG", 1)), stock(("MUG", "par", 5)), rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK]]
    assert allocations(decision) == [{}]
    assert decision.lines[0].available == 0


def test_ship_to_per_location_excluding_every_location_is_not_shippable(decide_at):
    rules = world(
        """
        rules:
          - name: dub-and-par-no-batteries-to-france
            match: {tags: [battery], locations: [dub, par]}
            ship_to: {deny: [FR]}
        """,
        base=WORLD_EU,
    )
    decision = decide_at(cart("FR", ("BATTERY", 1)), stock(("BATTERY", "dub", 5)), rules)
    assert reasons(decision) == [[ReasonCode.NOT_SHIPPABLE]]
    assert allocations(decision) == [{}]


# --- ATP thresholds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules_text", "expected"),
    [
        ("defaults: {safety_stock: 2}", [{"a": 3, "b": 1}]),
        (
            "rules:\n  - {name: tee-hold, match: {skus: [TEE]}, safety_stock: 3}",
            [{"a": 2, "b": 2}],
        ),
        (
            "rules:\n  - {name: apparel-hold, match: {tags: [apparel]}, safety_stock: 1}",
            [{"a": 4}],
        ),
        (
            "rules:\n  - {name: a-hold, match: {locations: [a]}, safety_stock: 5}",
            [{"b": 4}],
        ),
        (
            "rules:\n  - {name: tees-at-a, match: {tags: [apparel], locations: [a]}, "
            "safety_stock: 4}",
            [{"a": 1, "b": 3}],
        ),
    ],
    ids=["defaults", "per-sku", "per-tag", "per-location", "per-tag-and-location"],
)
def test_safety_stock_is_held_back(decide_at, rules_text, expected):
    availability = stock(("TEE", "a", 5), ("TEE", "b", 5))
    decision = decide_at(cart("IE", ("TEE", 4)), availability, world(rules_text))
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == expected


def test_safety_stock_for_one_tag_does_not_touch_other_skus(decide_at):
    rules = world("rules:\n  - {name: apparel-hold, match: {tags: [apparel]}, safety_stock: 5}")
    availability = stock(("MUG", "a", 5), ("TEE", "a", 5))
    decision = decide_at(cart("IE", ("MUG", 5), ("TEE", 1)), availability, rules)
    assert allocations(decision) == [{"a": 5}, {}]
    assert reasons(decision) == [[], [ReasonCode.BELOW_SAFETY_STOCK]]


@pytest.mark.parametrize(
    ("atp_a", "expected"),
    [(2, [{"b": 2}]), (3, [{"a": 2}]), (4, [{"a": 2}])],
)
def test_min_atp_skips_a_location_below_it(decide_at, atp_a, expected):
    rules = world("defaults: {min_atp: 3}")
    availability = stock(("TEE", "a", atp_a), ("TEE", "b", 5))
    assert allocations(decide_at(cart("IE", ("TEE", 2)), availability, rules)) == expected


def test_min_atp_and_safety_stock_together(decide_at):
    # a: ATP 4 >= min_atp 3, allocatable 4 - 2 = 2; b: ATP 2 < 3, unused.
    rules = world("defaults: {min_atp: 3, safety_stock: 2}")
    availability = stock(("TEE", "a", 4), ("TEE", "b", 2))
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert allocations(decision) == [{"a": 2}]
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules)
    assert reasons(decision) == [[ReasonCode.BELOW_SAFETY_STOCK]]
    assert decision.lines[0].available == 2


@pytest.mark.parametrize(
    ("quantity", "expected_reason", "available"),
    [
        (3, ReasonCode.BELOW_SAFETY_STOCK, 2),  # raw ATP 4 would cover 3
        (4, ReasonCode.BELOW_SAFETY_STOCK, 2),  # raw ATP 4 would cover 4
        (5, ReasonCode.INSUFFICIENT_STOCK, 2),  # not even raw ATP covers 5
    ],
)
def test_shortfall_reason_below_safety_stock_or_insufficient(
    decide_at, quantity, expected_reason, available
):
    rules = world("defaults: {safety_stock: 1}")
    availability = stock(("TEE", "a", 2), ("TEE", "b", 2))
    decision = decide_at(cart("IE", ("TEE", quantity)), availability, rules)
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[expected_reason]]
    assert decision.lines[0].available == available
    assert allocations(decision) == [{}]


@pytest.mark.parametrize(
    ("atp", "sellable", "low_stock"),
    [(0, 0, False), (1, 1, True), (3, 3, True), (4, 4, False)],
)
def test_assess_low_stock_threshold(atp, sellable, low_stock):
    rules = world("defaults: {low_stock_threshold: 3}")
    answer = assess("TEE", "IE", None, stock(("TEE", "a", atp)), rules, NOW)
    assert answer.sellable == sellable
    assert answer.low_stock is low_stock


def test_assess_sums_allocatable_after_thresholds():
    rules = world(
        """
        defaults: {low_stock_threshold: 5, min_atp: 2}
        rules:
          - {name: tee-hold, match: {skus: [TEE]}, safety_stock: 1, low_stock_threshold: 2}
        """
    )
    # a: 4 - 1 = 3; b: ATP 1 < min_atp 2 -> 0; c: 3 - 1 = 2.
    availability = stock(("TEE", "a", 4), ("TEE", "b", 1), ("TEE", "c", 3))
    answer = assess("TEE", "IE", None, availability, rules, NOW)
    assert answer.sellable == 5
    assert answer.low_stock is False  # the TEE rule's threshold 2 wins over the default 5
    mug = assess("MUG", "IE", None, stock(("MUG", "a", 4)), rules, NOW)
    assert mug.sellable == 4
    assert mug.low_stock is True


def test_assess_backorderable_and_restock():
    rules = world("defaults: {backorder: {allowed: true, within_days: 10}}")
    soon = assess("TEE", "IE", None, stock(("TEE", "a", 0, {"restock_time": SOON})), rules, NOW)
    assert (soon.sellable, soon.backorderable, soon.restock_time) == (0, True, SOON)
    late = assess("TEE", "IE", None, stock(("TEE", "a", 0, {"restock_time": LATER})), rules, NOW)
    assert (late.backorderable, late.restock_time) == (False, None)


def test_assess_reasons_for_nothing_sellable():
    rules = world("defaults: {safety_stock: 3}")
    held = assess("TEE", "IE", None, stock(("TEE", "a", 3)), rules, NOW)
    assert (held.sellable, held.reasons) == (0, (ReasonCode.BELOW_SAFETY_STOCK,))
    none = assess("TEE", "IE", None, stock(), rules, NOW)
    assert (none.sellable, none.reasons) == (0, (ReasonCode.INSUFFICIENT_STOCK,))
    unknown = assess("NOPE", "IE", None, stock(), rules, NOW)
    assert (unknown.known, unknown.reasons) == (False, (ReasonCode.UNKNOWN_SKU,))


# --- backorder ------------------------------------------------------------------------------------

SOON = NOW + timedelta(days=5)
LATER = NOW + timedelta(days=20)
FAR = NOW + timedelta(days=90)


def backorder_rules(**settings):
    body = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return world(f"defaults:\n  backorder: {{{body}}}\n")


def test_backorder_not_allowed_denies_the_short_line(decide_at):
    rules = backorder_rules(allowed="false")
    availability = stock(("TEE", "a", 2, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules)
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK]]
    assert allocations(decision) == [{}]
    assert decision.lines[0].reservation is None
    assert decision.lines[0].available == 2


def test_backorder_split_reserves_only_the_shortfall(decide_at):
    rules = backorder_rules(allowed="true", split="true")
    availability = stock(("TEE", "a", 2, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, rules)
    assert decision.decision == Outcome.RESERVE
    line = decision.lines[0]
    assert line.status == LineStatus.RESERVED
    assert (line.allocated, line.reserved) == (2, 3)
    assert line.allocations == (Allocation("a", 2),)
    assert line.reservation == Reservation(quantity=3, location_id="a", restock_time=SOON)
    assert line.reasons == (ReasonCode.INSUFFICIENT_STOCK,)
    assert decision.shipments == (Shipment("a", (ShipmentLine(0, "TEE", 2),)),)


def test_backorder_without_split_reserves_the_whole_line(decide_at):
    rules = backorder_rules(allowed="true", split="false")
    availability = stock(("TEE", "a", 2, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, rules)
    line = decision.lines[0]
    assert decision.decision == Outcome.RESERVE
    assert (line.allocated, line.reserved) == (0, 5)
    assert line.allocations == ()
    assert line.reservation == Reservation(quantity=5, location_id="a", restock_time=SOON)
    assert decision.shipments == ()


def test_stock_released_by_an_unsplit_line_serves_a_later_line(decide_at):
    rules = backorder_rules(allowed="true", split="false")
    availability = stock(("TEE", "a", 2, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 5), ("TEE", 2)), availability, rules)
    assert statuses(decision) == [LineStatus.RESERVED, LineStatus.ALLOCATED]
    assert allocations(decision) == [{}, {"a": 2}]
    assert decision.lines[0].reserved == 5


@pytest.mark.parametrize(
    ("split", "max_quantity", "expected_status", "reserved"),
    [
        ("true", 3, LineStatus.RESERVED, 3),  # shortfall 3 <= 3
        ("true", 2, LineStatus.DENIED, 0),  # shortfall 3 > 2
        ("false", 4, LineStatus.DENIED, 0),  # the whole line (5) would be reserved, > 4
        ("false", 5, LineStatus.RESERVED, 5),
    ],
)
def test_backorder_max_quantity(decide_at, split, max_quantity, expected_status, reserved):
    rules = backorder_rules(allowed="true", split=split, max_quantity=max_quantity)
    availability = stock(("TEE", "a", 2, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, rules)
    line = decision.lines[0]
    assert line.status == expected_status
    assert line.reserved == reserved
    if expected_status is LineStatus.DENIED:
        assert line.reasons == (ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BACKORDER_LIMIT)
        assert line.allocations == ()


def test_backorder_restock_required_without_known_restock(decide_at):
    availability = stock(("TEE", "a", 0))
    required = backorder_rules(allowed="true")  # restock_required is true by default
    decision = decide_at(cart("IE", ("TEE", 2)), availability, required)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK, ReasonCode.RESTOCK_UNKNOWN]]
    assert decision.lines[0].reservation is None
    rules = backorder_rules(allowed="true", restock_required="false")
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert decision.decision == Outcome.RESERVE
    assert decision.lines[0].reservation == Reservation(quantity=2, location_id="a")


@pytest.mark.parametrize(
    ("restock", "expected_status", "expected_reasons"),
    [
        (NOW + timedelta(days=10), LineStatus.RESERVED, (ReasonCode.INSUFFICIENT_STOCK,)),
        (NOW + timedelta(days=30), LineStatus.RESERVED, (ReasonCode.INSUFFICIENT_STOCK,)),
        (
            NOW + timedelta(days=30, seconds=1),
            LineStatus.DENIED,
            (ReasonCode.INSUFFICIENT_STOCK, ReasonCode.RESTOCK_TOO_LATE),
        ),
    ],
)
def test_backorder_within_days(decide_at, restock, expected_status, expected_reasons):
    rules = backorder_rules(allowed="true", within_days=30)
    availability = stock(("TEE", "a", 0, {"restock_time": restock}))
    decision = decide_at(cart("IE", ("TEE", 1)), availability, rules)
    assert decision.lines[0].status == expected_status
    assert decision.lines[0].reasons == expected_reasons


def test_backorder_goes_to_the_earliest_restock(decide_at):
    rules = backorder_rules(allowed="true")
    availability = stock(
        ("TEE", "a", 1, {"restock_time": LATER}),
        ("TEE", "b", 0, {"restock_time": SOON}),
        ("TEE", "c", 0, {"restock_time": FAR}),
    )
    decision = decide_at(cart("IE", ("TEE", 4)), availability, rules)
    line = decision.lines[0]
    assert line.allocations == (Allocation("a", 1),)
    assert line.reservation == Reservation(quantity=3, location_id="b", restock_time=SOON)


def test_backorder_equal_restock_goes_to_the_better_ranked_location(decide_at):
    rules = backorder_rules(allowed="true")
    availability = stock(
        ("TEE", "c", 0, {"restock_time": SOON}),
        ("TEE", "b", 0, {"restock_time": SOON}),
    )
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert decision.lines[0].reservation == Reservation(2, "b", SOON)


def test_backorder_skips_a_location_that_is_not_backorderable(decide_at):
    rules = backorder_rules(allowed="true")
    availability = stock(
        ("TEE", "a", 0, {"restock_time": SOON, "backorderable": False}),
        ("TEE", "b", 0, {"restock_time": LATER}),
    )
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert decision.lines[0].reservation == Reservation(2, "b", LATER)


def test_backorder_not_backorderable_anywhere(decide_at):
    rules = backorder_rules(allowed="true")
    availability = stock(("TEE", "a", 0, {"restock_time": SOON, "backorderable": False}))
    decision = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BACKORDER_NOT_ALLOWED]]


def test_on_hand_everywhere_is_used_before_a_backorder(decide_at):
    rules = backorder_rules(allowed="true")
    availability = stock(
        ("TEE", "a", 0, {"restock_time": SOON}),
        ("TEE", "b", 3),
        ("TEE", "c", 0, {"restock_time": LATER}),
    )
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"b": 3}]
    assert decision.lines[0].reservation is None


def test_backorder_rule_for_one_tag_only(decide_at):
    rules = world(
        """
        rules:
          - name: preorder-apparel
            match: {tags: [apparel]}
            backorder: {allowed: true, restock_required: false}
        """
    )
    availability = stock(("TEE", "a", 0), ("MUG", "a", 0))
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1)), availability, rules)
    assert statuses(decision) == [LineStatus.RESERVED, LineStatus.DENIED]
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK], [ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.decision == Outcome.DENY


# --- routing --------------------------------------------------------------------------------------


def routing(criteria, **caps):
    extra = "".join(f"\n    {k}: {v}" for k, v in caps.items())
    return world(f"defaults:\n  routing:\n    criteria: [{', '.join(criteria)}]{extra}\n")


def test_default_routing_is_priority_then_file_order(decide_at):
    rules = rules_from("""
        locations:
          - {id: x, country: IE, priority: 5}
          - {id: y, country: IE, priority: 1}
          - {id: z, country: IE, priority: 5}
        catalog:
          - {sku: TEE}
        """)
    availability = stock(("TEE", "x", 2), ("TEE", "y", 1), ("TEE", "z", 9))
    decision = decide_at(cart("IE", ("TEE", 4)), availability, rules)
    assert decision.lines[0].allocations == (
        Allocation("y", 1),
        Allocation("x", 2),
        Allocation("z", 1),
    )


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (["priority"], {"a": 1, "b": 2, "c": 2}),
        (["most_stock"], {"c": 5}),
        (["whole_line", "priority"], {"c": 5}),
        (["whole_line", "most_stock"], {"c": 5}),
    ],
)
def test_single_criterion_ranking(decide_at, criteria, expected):
    availability = stock(("TEE", "a", 1), ("TEE", "b", 2), ("TEE", "c", 6))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, routing(criteria))
    assert allocations(decision) == [expected]


def test_most_stock_splits_largest_first(decide_at):
    availability = stock(("TEE", "a", 2), ("TEE", "b", 5), ("TEE", "c", 3))
    decision = decide_at(cart("IE", ("TEE", 7)), availability, routing(["most_stock"]))
    assert decision.lines[0].allocations == (Allocation("b", 5), Allocation("c", 2))


def test_whole_line_prefers_the_best_ranked_covering_location(decide_at):
    availability = stock(("TEE", "a", 1), ("TEE", "b", 4), ("TEE", "c", 9))
    decision = decide_at(cart("IE", ("TEE", 4)), availability, routing(["whole_line", "priority"]))
    assert allocations(decision) == [{"b": 4}]
    # When no location covers the line, whole_line falls through to the next criterion.
    decision = decide_at(cart("IE", ("TEE", 12)), availability, routing(["whole_line", "priority"]))
    assert decision.lines[0].allocations == (
        Allocation("a", 1),
        Allocation("b", 4),
        Allocation("c", 7),
    )


def test_same_country_before_priority(decide_at):
    rules = world("defaults:\n  routing: {criteria: [same_country, priority]}\n", base=WORLD_EU)
    availability = stock(("MUG", "dub", 5), ("MUG", "par", 5))
    assert allocations(decide_at(cart("FR", ("MUG", 2)), availability, rules)) == [{"par": 2}]
    assert allocations(decide_at(cart("DE", ("MUG", 2)), availability, rules)) == [{"dub": 2}]
    only_priority = world("defaults:\n  routing: {criteria: [priority]}\n", base=WORLD_EU)
    assert allocations(decide_at(cart("FR", ("MUG", 2)), availability, only_priority)) == [
        {"dub": 2}
    ]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (["priority"], [{"b": 1}, {"a": 1}]),
        (["fewest_shipments", "priority"], [{"b": 1}, {"b": 1}]),
    ],
)
def test_fewest_shipments_reuses_a_location_the_cart_already_uses(decide_at, criteria, expected):
    availability = stock(("TEE", "b", 5), ("MUG", "a", 5), ("MUG", "b", 5))
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1)), availability, routing(criteria))
    assert allocations(decision) == expected
    assert len(decision.shipments) == len({loc for line in expected for loc in line})


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (["priority"], [{"a": 1}, {"b": 1}]),
        (["single_location", "priority"], [{"b": 1}, {"b": 1}]),
    ],
)
def test_single_location_serves_the_whole_cart(decide_at, criteria, expected):
    availability = stock(("TEE", "a", 5), ("TEE", "b", 5), ("MUG", "b", 5))
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1)), availability, routing(criteria))
    assert allocations(decision) == expected


def test_single_location_picks_the_best_ranked_of_those_that_can(decide_at):
    availability = stock(
        ("TEE", "a", 5), ("TEE", "b", 5), ("TEE", "c", 5), ("MUG", "b", 5), ("MUG", "c", 9)
    )
    the_cart = cart("IE", ("TEE", 2), ("MUG", 3))
    by_priority = routing(["single_location", "priority"])
    assert allocations(decide_at(the_cart, availability, by_priority)) == [{"b": 2}, {"b": 3}]
    by_stock = routing(["single_location", "most_stock"])
    # c holds 5 + 9 of the cart's SKUs, b 5 + 5.
    assert allocations(decide_at(the_cart, availability, by_stock)) == [{"c": 2}, {"c": 3}]


def test_single_location_falls_back_to_per_line_fill(decide_at):
    availability = stock(("TEE", "a", 5), ("MUG", "b", 1), ("MUG", "c", 1))
    rules = routing(["single_location", "priority"])
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 2)), availability, rules)
    assert allocations(decision) == [{"a": 1}, {"b": 1, "c": 1}]


def test_single_location_counts_duplicate_lines_together(decide_at):
    availability = stock(("TEE", "a", 3), ("TEE", "b", 4))
    rules = routing(["single_location", "priority"])
    decision = decide_at(cart("IE", ("TEE", 2), ("TEE", 2)), availability, rules)
    assert allocations(decision) == [{"b": 2}, {"b": 2}]


def test_fill_stops_when_covered_and_never_opens_an_unneeded_location(decide_at):
    availability = stock(("TEE", "a", 3), ("TEE", "b", 3), ("TEE", "c", 3))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, routing(["priority"]))
    assert allocations(decision) == [{"a": 3, "b": 2}]
    assert [s.location_id for s in decision.shipments] == ["a", "b"]


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({}, {"a": 1, "b": 2, "c": 2}),
        ({"max_locations_per_line": 2}, {"a": 1, "c": 4}),
        ({"max_locations_per_line": 1}, {"c": 5}),
        ({"max_shipments": 2}, {"a": 1, "c": 4}),
        ({"max_shipments": 1}, {"c": 5}),
    ],
)
def test_caps_never_use_a_third_location_when_two_suffice(decide_at, caps, expected):
    availability = stock(("TEE", "a", 1), ("TEE", "b", 2), ("TEE", "c", 6))
    decision = decide_at(cart("IE", ("TEE", 5)), availability, routing(["priority"], **caps))
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [expected]


def test_max_locations_per_line_shortfall_is_split_limit(decide_at):
    availability = stock(("TEE", "a", 2), ("TEE", "b", 2), ("TEE", "c", 2))
    rules = routing(["priority"], max_locations_per_line=2)
    decision = decide_at(cart("IE", ("TEE", 5)), availability, rules)
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[ReasonCode.SPLIT_LIMIT]]
    assert decision.lines[0].available == 4  # what two locations can give: the cap holds
    assert allocations(decision) == [{}]


def test_max_shipments_counts_locations_across_lines(decide_at):
    availability = stock(("TEE", "a", 5), ("MUG", "b", 5), ("KNIFE", "a", 5), ("KNIFE", "c", 5))
    rules = routing(["priority"], max_shipments=2)
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1), ("KNIFE", 1)), availability, rules)
    assert allocations(decision) == [{"a": 1}, {"b": 1}, {"a": 1}]
    decision = decide_at(
        cart("IE", ("TEE", 1), ("MUG", 1), ("HOODIE", 1)),
        stock(("TEE", "a", 5), ("MUG", "b", 5), ("HOODIE", "c", 5)),
        rules,
    )
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[], [], [ReasonCode.SPLIT_LIMIT]]
    assert allocations(decision)[2] == {}


def test_max_shipments_prefers_an_open_location_to_cover_a_line(decide_at):
    # One shipment: TEE opens a, so MUG may only come from a (3), never from b.
    availability = stock(("TEE", "a", 5), ("MUG", "a", 3), ("MUG", "b", 4))
    rules = routing(["priority"], max_shipments=1)
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 3)), availability, rules)
    assert allocations(decision) == [{"a": 1}, {"a": 3}]
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 4)), availability, rules)
    assert reasons(decision) == [[], [ReasonCode.SPLIT_LIMIT]]


def test_max_shipments_look_ahead_picks_two_locations_that_cover(decide_at):
    """Two shipments allowed; taking a (1) first would leave 5 that no single other location
    holds, but b + c (3 + 3) cover the line."""
    availability = stock(("TEE", "a", 1), ("TEE", "b", 3), ("TEE", "c", 3))
    decision = decide_at(
        cart("IE", ("TEE", 6)), availability, routing(["priority"], max_shipments=2)
    )
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"b": 3, "c": 3}]


def test_max_locations_per_line_look_ahead_picks_two_locations_that_cover(decide_at):
    availability = stock(("TEE", "a", 1), ("TEE", "b", 3), ("TEE", "c", 3))
    decision = decide_at(
        cart("IE", ("TEE", 6)), availability, routing(["priority"], max_locations_per_line=2)
    )
    assert allocations(decision) == [{"b": 3, "c": 3}]


def test_released_stock_of_a_denied_line_does_not_count_as_a_shipment(decide_at):
    """TEE is short and denied, so it holds nothing at a; MUG may then use b as the cart's
    one shipment (partial carts are allowed)."""
    rules = world(
        "defaults:\n  partial_cart: true\n  routing: {criteria: [priority], max_shipments: 1}\n"
    )
    availability = stock(("TEE", "a", 3), ("MUG", "b", 3))
    decision = decide_at(cart("IE", ("TEE", 5), ("MUG", 1)), availability, rules)
    assert statuses(decision) == [LineStatus.DENIED, LineStatus.ALLOCATED]
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK], []]
    assert allocations(decision) == [{}, {"b": 1}]
    assert decision.decision == Outcome.ALLOCATE
    assert decision.shipments == (Shipment("b", (ShipmentLine(1, "MUG", 1),)),)


def test_reserved_unsplit_line_does_not_count_as_a_shipment(decide_at):
    """TEE is reserved whole (split: false), so it ships nothing from a; MUG may then use b as
    the cart's one shipment."""
    rules = world(
        """
        defaults:
          backorder: {allowed: true, split: false}
          routing: {criteria: [priority], max_shipments: 1}
        """
    )
    availability = stock(("TEE", "a", 1, {"restock_time": SOON}), ("MUG", "b", 3))
    decision = decide_at(cart("IE", ("TEE", 3), ("MUG", 1)), availability, rules)
    assert statuses(decision) == [LineStatus.RESERVED, LineStatus.ALLOCATED]
    assert allocations(decision) == [{}, {"b": 1}]
    assert decision.lines[0].reservation == Reservation(3, "a", SOON)
    assert decision.decision == Outcome.RESERVE


# --- limits and denials ---------------------------------------------------------------------------

LIMITS = """
defaults:
  max_quantity: 10
rules:
  - name: knives-one-per-line
    match: {tags: [blade]}
    max_quantity: 1
  - name: no-knives-to-gb
    match: {tags: [blade], countries: [GB]}
    deny: {message: Knives cannot be sent to the UK.}
  - name: no-hoodies-wholesale
    match: {skus: ["HOOD*"], channels: [wholesale]}
    deny: {code: NOT_SHIPPABLE, message: Hoodies are retail only.}
  - name: no-batteries
    match: {skus: [BATTERY]}
    deny: {}
"""


@pytest.mark.parametrize(
    ("sku", "qty", "allowed"),
    [("TEE", 10, True), ("TEE", 11, False), ("KNIFE", 1, True), ("KNIFE", 2, False)],
)
def test_max_quantity_per_line(decide_at, sku, qty, allowed):
    availability = stock((sku, "a", 50))
    decision = decide_at(cart("IE", (sku, qty)), availability, world(LIMITS))
    if allowed:
        assert allocations(decision) == [{"a": qty}]
        assert reasons(decision) == [[]]
    else:
        assert decision.decision == Outcome.DENY
        assert allocations(decision) == [{}]
        assert reasons(decision) == [[ReasonCode.QUANTITY_LIMIT]]


@pytest.mark.parametrize(
    ("country", "channel", "sku", "code", "message"),
    [
        ("GB", None, "KNIFE", ReasonCode.DENIED_BY_RULE, "Knives cannot be sent to the UK."),
        ("IE", "wholesale", "HOODIE", ReasonCode.NOT_SHIPPABLE, "Hoodies are retail only."),
        ("IE", None, "BATTERY", ReasonCode.DENIED_BY_RULE, None),
    ],
)
def test_deny_rule_code_and_message(decide_at, country, channel, sku, code, message):
    rules = rules_from(WORLD.replace("priority: 1}", "priority: 1, ships_to: [IE, GB]}"), LIMITS)
    availability = stock((sku, "a", 5))
    decision = decide_at(cart(country, (sku, 1), channel=channel), availability, rules)
    assert decision.decision == Outcome.DENY
    line = decision.lines[0]
    assert (line.status, line.reasons, line.message) == (LineStatus.DENIED, (code,), message)
    assert line.allocations == ()


@pytest.mark.parametrize(
    ("country", "channel", "sku"),
    [("IE", None, "KNIFE"), ("IE", "retail", "HOODIE"), ("IE", None, "HOODIE")],
)
def test_deny_rule_only_where_its_match_fits(decide_at, country, channel, sku):
    availability = stock((sku, "a", 5))
    decision = decide_at(cart(country, (sku, 1), channel=channel), availability, world(LIMITS))
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"a": 1}]


def test_a_denied_line_denies_the_cart_and_holds_no_stock(decide_at):
    availability = stock(("TEE", "a", 5), ("BATTERY", "a", 5))
    decision = decide_at(cart("IE", ("TEE", 1), ("BATTERY", 1)), availability, world(LIMITS))
    assert decision.decision == Outcome.DENY
    assert statuses(decision) == [LineStatus.ALLOCATED, LineStatus.DENIED]
    assert allocations(decision)[1] == {}
    assert decision.shipments == ()


# --- unknown availability -------------------------------------------------------------------------


def unknown_rules(policy, extra=""):
    return world(f"defaults:\n  unknown_availability: {policy}\n{extra}")


@pytest.mark.parametrize(
    ("policy", "status", "expected_reasons", "alloc", "reservation"),
    [
        (
            "deny",
            LineStatus.DENIED,
            (ReasonCode.AVAILABILITY_UNKNOWN, ReasonCode.INSUFFICIENT_STOCK),
            {},
            None,
        ),
        (
            "reserve",
            LineStatus.RESERVED,
            (ReasonCode.AVAILABILITY_UNKNOWN,),
            {"a": 1},
            Reservation(quantity=2, location_id="b"),
        ),
        (
            "allocate",
            LineStatus.ALLOCATED,
            (ReasonCode.AVAILABILITY_UNKNOWN,),
            {"a": 1, "b": 2},
            None,
        ),
    ],
)
def test_unknown_availability_policies(
    decide_at, policy, status, expected_reasons, alloc, reservation
):
    availability = stock(("TEE", "a", 1), unknown={"TEE": ["b"]})
    decision = decide_at(cart("IE", ("TEE", 3)), availability, unknown_rules(policy))
    line = decision.lines[0]
    assert line.status == status
    assert line.reasons == expected_reasons
    assert allocations(decision) == [alloc]
    assert line.reservation == reservation


def test_unknown_availability_reserve_without_split_reserves_the_whole_line(decide_at):
    rules = unknown_rules("reserve", "  backorder: {split: false}\n")
    availability = stock(("TEE", "a", 1), unknown={"TEE": ["b"]})
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules)
    assert allocations(decision) == [{}]
    assert decision.lines[0].reservation == Reservation(quantity=3, location_id="b")


@pytest.mark.parametrize("policy", ["deny", "reserve", "allocate"])
def test_unknown_availability_does_not_matter_when_known_stock_covers(decide_at, policy):
    availability = stock(("TEE", "b", 5), unknown={"TEE": ["a"]})
    decision = decide_at(cart("IE", ("TEE", 3)), availability, unknown_rules(policy))
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"b": 3}]
    assert reasons(decision) == [[]]


def test_unknown_availability_per_tag(decide_at):
    rules = world(
        """
        rules:
          - name: trust-home-feed
            match: {tags: [home]}
            unknown_availability: allocate
        """
    )
    availability = stock(unknown={"TEE": ["a"], "MUG": ["a"]})
    decision = decide_at(cart("IE", ("MUG", 2), ("TEE", 2)), availability, rules)
    assert statuses(decision) == [LineStatus.ALLOCATED, LineStatus.DENIED]
    assert allocations(decision) == [{"a": 2}, {}]
    assert reasons(decision) == [
        [ReasonCode.AVAILABILITY_UNKNOWN],
        [ReasonCode.AVAILABILITY_UNKNOWN, ReasonCode.INSUFFICIENT_STOCK],
    ]


# --- partial carts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "outcome", "shipments"),
    [
        ("false", Outcome.DENY, ()),
        ("true", Outcome.ALLOCATE, (Shipment("a", (ShipmentLine(0, "TEE", 1),)),)),
    ],
)
def test_partial_cart(decide_at, partial, outcome, shipments):
    rules = world(f"defaults: {{partial_cart: {partial}}}")
    availability = stock(("TEE", "a", 5))
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1)), availability, rules)
    assert decision.decision == outcome
    assert statuses(decision) == [LineStatus.ALLOCATED, LineStatus.DENIED]
    assert reasons(decision) == [[], [ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.shipments == shipments


def test_partial_cart_with_every_line_denied_is_denied(decide_at):
    rules = world("defaults: {partial_cart: true}")
    decision = decide_at(cart("IE", ("TEE", 1), ("MUG", 1)), stock(), rules)
    assert decision.decision == Outcome.DENY


def test_partial_cart_with_a_reserved_line_is_reserve(decide_at):
    rules = world(
        "defaults: {partial_cart: true, backorder: {allowed: true, restock_required: false}}"
    )
    decision = decide_at(cart("IE", ("TEE", 1), ("NOPE", 1)), stock(("TEE", "a", 0)), rules)
    assert decision.decision == Outcome.RESERVE
    assert statuses(decision) == [LineStatus.RESERVED, LineStatus.DENIED]


def test_partial_cart_per_channel(decide_at):
    rules = world(
        """
        rules:
          - name: marketplace-partial
            match: {channels: [marketplace]}
            partial_cart: true
        """
    )
    availability = stock(("TEE", "a", 5))
    the_cart = cart("IE", ("TEE", 1), ("MUG", 1), channel="marketplace")
    assert decide_at(the_cart, availability, rules).decision == Outcome.ALLOCATE
    web = cart("IE", ("TEE", 1), ("MUG", 1), channel="web")
    assert decide_at(web, availability, rules).decision == Outcome.DENY


# --- pickup ---------------------------------------------------------------------------------------


def test_pickup_location_alone_serves_the_cart(decide_at):
    availability = stock(("TEE", "a", 5), ("TEE", "c", 5))
    decision = decide_at(cart("IE", ("TEE", 2), pickup_location="c"), availability, world())
    assert allocations(decision) == [{"c": 2}]
    assert decision.shipments == (Shipment("c", (ShipmentLine(0, "TEE", 2),)),)


def test_pickup_location_short_is_not_topped_up_elsewhere(decide_at):
    availability = stock(("TEE", "a", 5), ("TEE", "c", 1))
    decision = decide_at(cart("IE", ("TEE", 2), pickup_location="c"), availability, world())
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.lines[0].available == 1


def test_pickup_location_ignores_its_ships_to(decide_at):
    # lon ships only to GB, but a French shopper may collect there.
    availability = stock(("TEE", "lon", 3))
    rules = world(base=WORLD_EU)
    decision = decide_at(cart("FR", ("TEE", 3), pickup_location="lon"), availability, rules)
    assert allocations(decision) == [{"lon": 3}]


def test_pickup_at_a_disabled_location_is_not_shippable(decide_at):
    rules = rules_from("""
        locations:
          - {id: a, country: IE}
          - {id: shut, country: IE, enabled: false}
        catalog:
          - {sku: TEE}
        """)
    availability = stock(("TEE", "a", 5), ("TEE", "shut", 5))
    decision = decide_at(cart("IE", ("TEE", 1), pickup_location="shut"), availability, rules)
    assert reasons(decision) == [[ReasonCode.NOT_SHIPPABLE]]


# --- duplicate SKU lines, unlimited stock ---------------------------------------------------------


def test_duplicate_sku_lines_share_stock(decide_at):
    availability = stock(("TEE", "a", 3), ("TEE", "b", 2))
    decision = decide_at(cart("IE", ("TEE", 2), ("TEE", 2)), availability, world())
    assert allocations(decision) == [{"a": 2}, {"a": 1, "b": 1}]
    assert decision.shipments == (
        Shipment("a", (ShipmentLine(0, "TEE", 2), ShipmentLine(1, "TEE", 1))),
        Shipment("b", (ShipmentLine(1, "TEE", 1),)),
    )


def test_duplicate_sku_line_short_after_an_earlier_line_is_insufficient_stock(decide_at):
    """No safety stock or min_atp is set: the second line is short because the first took the
    stock, which is INSUFFICIENT_STOCK, not BELOW_SAFETY_STOCK."""
    availability = stock(("TEE", "a", 5))
    decision = decide_at(cart("IE", ("TEE", 5), ("TEE", 2)), availability, world())
    assert allocations(decision) == [{"a": 5}, {}]
    assert reasons(decision) == [[], [ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.lines[1].available == 0


def test_explain_duplicate_sku_line_denied_because_an_earlier_line_took_the_stock(decide_at):
    availability = stock(("TEE", "a", 2))
    decision = decide_at(cart("IE", ("TEE", 2), ("TEE", 1)), availability, world(), explain=True)
    assert statuses(decision) == [LineStatus.ALLOCATED, LineStatus.DENIED]
    a = decision.lines[1].explanation.locations[0]
    assert (a.location_id, a.verdict) == ("a", LocationVerdict.PASSED_OVER)
    assert a.detail == "its stock was taken by earlier lines of the cart"


def test_max_quantity_counts_every_line_of_the_sku(decide_at):
    """The limit is per order: splitting a SKU over lines cannot get round it."""
    rules = world("defaults: {max_quantity: 3}")
    decision = decide_at(cart("IE", ("TEE", 3), ("TEE", 3)), stock(("TEE", "a", 9)), rules)
    assert reasons(decision) == [[ReasonCode.QUANTITY_LIMIT], [ReasonCode.QUANTITY_LIMIT]]
    within = decide_at(cart("IE", ("TEE", 1), ("TEE", 2)), stock(("TEE", "a", 9)), rules)
    assert allocations(within) == [{"a": 1}, {"a": 2}]


def test_backorder_max_quantity_counts_every_line_of_the_sku(decide_at):
    rules = world(
        "defaults: {backorder: {allowed: true, max_quantity: 10, restock_required: false}}"
    )
    availability = stock(("TEE", "a", 0))
    decision = decide_at(cart("IE", ("TEE", 10), ("TEE", 10)), availability, rules)
    assert statuses(decision) == [LineStatus.RESERVED, LineStatus.DENIED]
    assert reasons(decision)[1] == [ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BACKORDER_LIMIT]


def test_unlimited_stock_is_never_short(decide_at):
    availability = stock(("TEE", "b", 0, {"unlimited": True}))
    decision = decide_at(cart("IE", ("TEE", 100_000), ("TEE", 100_000)), availability, world())
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"b": 100_000}, {"b": 100_000}]


def test_unlimited_stock_ranks_after_priority_and_first_for_most_stock(decide_at):
    availability = stock(("TEE", "a", 2), ("TEE", "c", 0, {"unlimited": True}))
    by_priority = decide_at(cart("IE", ("TEE", 3)), availability, routing(["priority"]))
    assert allocations(by_priority) == [{"a": 2, "c": 1}]
    by_stock = decide_at(cart("IE", ("TEE", 3)), availability, routing(["most_stock"]))
    assert allocations(by_stock) == [{"c": 3}]


def test_assess_unlimited_stock_is_capped_at_max_quantity():
    answer = assess("TEE", "IE", None, stock(("TEE", "a", 0, {"unlimited": True})), world(), NOW)
    assert answer.sellable == 100_000


# --- precedence -----------------------------------------------------------------------------------

PRECEDENCE = """
defaults:
  safety_stock: 1
  max_quantity: 20
rules:
  - name: tee-first
    match: {skus: [TEE]}
    safety_stock: 3
  - name: apparel-second
    match: {tags: [apparel]}
    safety_stock: 5
    max_quantity: 4
  - name: tee-disabled
    enabled: false
    match: {skus: [TEE]}
    max_quantity: 1
"""


def test_first_matching_rule_wins_per_setting(decide_at):
    rules = world(PRECEDENCE)
    availability = stock(("TEE", "a", 7), ("HOODIE", "a", 7), ("MUG", "a", 7))
    # TEE: safety stock 3 from tee-first, max_quantity 4 from apparel-second.
    decision = decide_at(cart("IE", ("TEE", 4)), availability, rules)
    assert allocations(decision) == [{"a": 4}]
    decision = decide_at(cart("IE", ("TEE", 5)), availability, rules)
    assert reasons(decision) == [[ReasonCode.QUANTITY_LIMIT]]
    # HOODIE: only apparel-second matches: safety stock 5 leaves 2.
    decision = decide_at(cart("IE", ("HOODIE", 3)), availability, rules)
    assert reasons(decision) == [[ReasonCode.BELOW_SAFETY_STOCK]]
    assert decision.lines[0].available == 2
    # MUG: no rule; defaults give safety stock 1 and max 20.
    decision = decide_at(cart("IE", ("MUG", 6)), availability, rules)
    assert allocations(decision) == [{"a": 6}]


def test_precedence_explained_with_rule_and_line(decide_at):
    rules = world(PRECEDENCE)
    decision = decide_at(cart("IE", ("TEE", 2)), stock(("TEE", "a", 7)), rules, explain=True)
    exp = decision.lines[0].explanation
    assert setting(exp, "max_quantity") == SettingOrigin(
        "max_quantity", 4, "apparel-second", "rules-1.yaml", 12
    )
    assert setting(exp, "safety_stock", "a") == SettingOrigin(
        "safety_stock", 3, "tee-first", "rules-1.yaml", 8, "a"
    )
    assert setting(exp, "backorder.allowed") == SettingOrigin(
        "backorder.allowed", False, "built-in"
    )
    mug = decide_at(cart("IE", ("MUG", 2)), stock(("MUG", "a", 7)), rules, explain=True)
    mug_exp = mug.lines[0].explanation
    assert setting(mug_exp, "max_quantity") == SettingOrigin(
        "max_quantity", 20, "defaults", "rules-1.yaml", 4
    )
    assert setting(mug_exp, "safety_stock", "a") == SettingOrigin(
        "safety_stock", 1, "defaults", "rules-1.yaml", 3, "a"
    )


def test_disabled_rule_is_skipped(decide_at):
    rules = world(PRECEDENCE)
    # tee-disabled would cap TEE at 1; apparel-second's 4 applies instead.
    decision = decide_at(cart("IE", ("TEE", 3)), stock(("TEE", "a", 9)), rules)
    assert allocations(decision) == [{"a": 3}]


def test_location_rule_and_product_rule_order_for_safety_stock(decide_at):
    rules = world(
        """
        rules:
          - name: store-a-keeps-two
            match: {locations: [a]}
            safety_stock: 2
          - name: tees-keep-four
            match: {skus: [TEE]}
            safety_stock: 4
        """
    )
    availability = stock(("TEE", "a", 6), ("TEE", "b", 6))
    # a: store-a-keeps-two comes first (6 - 2 = 4); b: tees-keep-four (6 - 4 = 2).
    decision = decide_at(cart("IE", ("TEE", 6)), availability, rules)
    assert allocations(decision) == [{"a": 4, "b": 2}]


def test_cart_settings_by_country_rule(decide_at):
    rules = world(
        """
        defaults:
          routing: {criteria: [priority]}
        rules:
          - name: ie-most-stock
            match: {countries: [IE]}
            routing: {criteria: [most_stock]}
        """
    )
    availability = stock(("TEE", "a", 2), ("TEE", "b", 5))
    assert allocations(decide_at(cart("IE", ("TEE", 2)), availability, rules)) == [{"b": 2}]


# --- explanations ---------------------------------------------------------------------------------

EXPLAIN_RULES = """
defaults:
  min_atp: 2
  routing:
    criteria: [priority]
rules:
  - name: b-keeps-one
    match: {locations: [b]}
    safety_stock: 1
  - name: c-not-for-tees
    match: {tags: [apparel], locations: [c]}
    ship_to: {deny: [IE]}
"""

EXPLAIN_WORLD = """
locations:
  - {id: a, country: IE, priority: 1}
  - {id: b, country: IE, priority: 2}
  - {id: c, country: IE, priority: 3}
  - {id: d, country: IE, priority: 4}
  - {id: e, country: IE, priority: 5}
  - {id: f, country: FR, priority: 6}
  - {id: g, country: IE, priority: 7, enabled: false}
catalog:
  - {sku: TEE, tags: [apparel]}
"""


def test_explain_location_verdicts(decide_at):
    rules = rules_from(EXPLAIN_WORLD, EXPLAIN_RULES)
    availability = stock(
        ("TEE", "a", 1),  # under min_atp 2
        ("TEE", "b", 4),  # 4 - 1 = 3 allocatable: used
        ("TEE", "c", 9),  # ship_to rule excludes it
        ("TEE", "d", 9),  # not needed
        ("TEE", "f", 9),  # ships only to FR
        ("TEE", "g", 9),  # disabled
    )
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules, explain=True)
    assert allocations(decision) == [{"b": 3}]
    line = decision.lines[0]
    assert verdicts(line) == {
        "a": LocationVerdict.EXCLUDED,
        "b": LocationVerdict.USED,
        "c": LocationVerdict.EXCLUDED,
        "d": LocationVerdict.PASSED_OVER,
        "e": LocationVerdict.PASSED_OVER,
        "f": LocationVerdict.EXCLUDED,
        "g": LocationVerdict.EXCLUDED,
    }
    by_id = {loc.location_id: loc for loc in line.explanation.locations}
    assert (by_id["b"].atp, by_id["b"].safety_stock, by_id["b"].allocatable) == (4, 1, 3)
    assert by_id["b"].allocated == 3
    assert by_id["b"].detail == "allocated 3"
    assert by_id["d"].detail == "not needed: locations ranked higher covered the line"
    assert by_id["e"].detail == "no stock reported for this SKU here"
    assert by_id["g"].detail == "the location is disabled"
    assert by_id["f"].detail == "ships to FR, not IE"
    assert by_id["c"].detail == (
        "may not send this SKU to IE (rule `c-not-for-tees` (rules-1.yaml:12))"
    )
    assert by_id["a"].detail == "ATP 1 is under the minimum ATP 2 (defaults (rules-1.yaml:3))"


def test_explain_names_the_rule_and_line_of_each_setting(decide_at):
    rules = rules_from(EXPLAIN_WORLD, EXPLAIN_RULES)
    decision = decide_at(cart("IE", ("TEE", 1)), stock(("TEE", "b", 4)), rules, explain=True)
    exp = decision.lines[0].explanation
    assert setting(exp, "safety_stock", "b") == SettingOrigin(
        "safety_stock", 1, "b-keeps-one", "rules-1.yaml", 9, "b"
    )
    assert setting(exp, "min_atp", "b") == SettingOrigin(
        "min_atp", 2, "defaults", "rules-1.yaml", 3, "b"
    )
    cart_settings = {s.setting: s for s in decision.explanation.settings}
    assert cart_settings["routing.criteria"].rule == "defaults"
    assert cart_settings["routing.criteria"].line == 5
    assert cart_settings["partial_cart"] == SettingOrigin("partial_cart", False, "built-in")


def test_explain_line_numbers_match_the_yaml():
    assert line_of(EXPLAIN_RULES, "min_atp") == 3
    assert line_of(EXPLAIN_RULES, "criteria:") == 5
    assert line_of(EXPLAIN_RULES, "safety_stock: 1") == 9
    assert line_of(EXPLAIN_RULES, "ship_to:") == 12
    assert line_of(PRECEDENCE, "max_quantity: 20") == 4
    assert line_of(PRECEDENCE, "safety_stock: 1") == 3
    assert line_of(PRECEDENCE, "safety_stock: 3") == 8
    assert line_of(PRECEDENCE, "max_quantity: 4") == 12


def test_explain_deny_rule_and_summary(decide_at):
    rules = world(LIMITS)
    decision = decide_at(
        cart("IE", ("BATTERY", 1)), stock(("BATTERY", "a", 5)), rules, explain=True
    )
    exp = decision.lines[0].explanation
    assert setting(exp, "deny").rule == "no-batteries"
    assert setting(exp, "deny").line == line_of(LIMITS, "name: no-batteries")
    assert exp.summary == "denied by rule `no-batteries` (rules-1.yaml:14)"
    assert {loc.verdict for loc in exp.locations} == {LocationVerdict.EXCLUDED}


def test_explain_location_skipped_for_a_cap(decide_at):
    """a ranks before b; it is skipped only because one location must cover the line."""
    rules = routing(["priority"], max_locations_per_line=1)
    availability = stock(("TEE", "a", 1), ("TEE", "b", 5))
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules, explain=True)
    assert allocations(decision) == [{"b": 3}]
    a = decision.lines[0].explanation.locations[0]
    assert (a.location_id, a.verdict) == ("a", LocationVerdict.PASSED_OVER)
    assert a.detail == "not used: at most 1 location(s) per line"


def test_explain_reservation_and_released_allocation(decide_at):
    rules = backorder_rules(allowed="true", split="false")
    availability = stock(("TEE", "a", 1), ("TEE", "b", 0, {"restock_time": SOON}))
    decision = decide_at(cart("IE", ("TEE", 3)), availability, rules, explain=True)
    assert decision.lines[0].reservation == Reservation(3, "b", SOON)
    by_id = {loc.location_id: loc for loc in decision.lines[0].explanation.locations}
    assert (by_id["a"].verdict, by_id["a"].allocated) == (LocationVerdict.PASSED_OVER, 0)
    assert by_id["a"].detail == (
        "released: the line may not be part allocated and part reserved "
        "(backorder.split: false, defaults (rules-1.yaml:2))"
    )
    assert (by_id["b"].verdict, by_id["b"].reserved) == (LocationVerdict.USED, 3)
    assert by_id["b"].detail == f"reserved 3 against the restock of {SOON.date().isoformat()}"


def test_explain_stock_taken_by_an_earlier_line(decide_at):
    availability = stock(("TEE", "a", 2), ("TEE", "b", 2))
    decision = decide_at(cart("IE", ("TEE", 2), ("TEE", 2)), availability, world(), explain=True)
    second = {loc.location_id: loc for loc in decision.lines[1].explanation.locations}
    assert second["a"].verdict == LocationVerdict.PASSED_OVER
    assert second["a"].detail == "its stock was taken by earlier lines of the cart"
    assert second["b"].verdict == LocationVerdict.USED


def test_explain_cart_summary(decide_at):
    rules = routing(["single_location", "priority"])
    decision = decide_at(
        cart("IE", ("TEE", 1), ("MUG", 1)),
        stock(("TEE", "b", 5), ("MUG", "b", 5)),
        rules,
        explain=True,
    )
    assert decision.explanation.summary == (
        "allocate: 2 line(s), routing by single_location, priority; "
        "one location serves the whole cart"
    )
    assert decision.lines[0].explanation.summary == (
        "the whole cart ships from b (single_location)"
    )


def test_explain_is_off_by_default(decide_at):
    decision = decide_at(cart("IE", ("TEE", 1)), stock(("TEE", "a", 5)), world())
    assert decision.explanation is None
    assert decision.lines[0].explanation is None


# --- found in review ------------------------------------------------------------------------------


def test_backorder_without_restock_needs_a_location_that_carries_the_sku(decide_at):
    """`restock_required: false` still reserves only where the SKU has a record: a location
    without one does not carry it, and must not get round `within_days` or the source's no."""
    rules = world(
        "defaults: {backorder: {allowed: true, restock_required: false, within_days: 30}}"
    )
    late = stock(("TEE", "a", 0, {"restock_time": NOW + timedelta(days=90)}))
    decision = decide_at(cart("IE", ("TEE", 2)), late, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK, ReasonCode.RESTOCK_TOO_LATE]]
    refused = stock(("TEE", "a", 0, {"backorderable": False}))
    decision = decide_at(cart("IE", ("TEE", 2)), refused, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BACKORDER_NOT_ALLOWED]]


def test_restock_too_late_names_the_earliest_restock(decide_at):
    rules = world("defaults: {backorder: {allowed: true, within_days: 30}}")
    availability = stock(
        ("TEE", "a", 0, {"restock_time": NOW + timedelta(days=40)}),
        ("TEE", "b", 0, {"restock_time": NOW + timedelta(days=90)}),
    )
    decision = decide_at(cart("IE", ("TEE", 1)), availability, rules, explain=True)
    earliest = (NOW + timedelta(days=40)).date().isoformat()
    assert decision.lines[0].explanation.summary == (
        f"the earliest restock ({earliest}) is more than 30 days away"
    )


def test_a_restock_time_already_past_is_no_promise(decide_at):
    rules = world("defaults: {backorder: {allowed: true}}")
    availability = stock(("TEE", "a", 0, {"restock_time": NOW - timedelta(days=400)}))
    decision = decide_at(cart("IE", ("TEE", 1)), availability, rules)
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK, ReasonCode.RESTOCK_UNKNOWN]]
    open_ended = world("defaults: {backorder: {allowed: true, restock_required: false}}")
    decision = decide_at(cart("IE", ("TEE", 1)), availability, open_ended)
    assert decision.lines[0].reservation == Reservation(quantity=1, location_id="a")


def test_ship_to_is_one_setting_so_an_exception_can_stand_first(decide_at):
    rules = world(
        """
        rules:
          - name: batteries-to-canada-from-this-supplier
            match: {skus: [BATTERY], countries: [CA]}
            ship_to: {allow: [CA]}
          - name: no-batteries-to-north-america
            match: {tags: [battery]}
            ship_to: {deny: [north-america]}
        """,
        base=WORLD_EU,
    )
    availability = stock(("BATTERY", "nyc", 5))
    assert decide_at(cart("CA", ("BATTERY", 1)), availability, rules).decision == Outcome.ALLOCATE
    assert reasons(decide_at(cart("US", ("BATTERY", 1)), availability, rules)) == [
        [ReasonCode.NOT_SHIPPABLE]
    ]


def test_unlimited_stock_explained_without_a_placeholder_number(decide_at):
    rules = world("defaults: {min_atp: 1, routing: {criteria: [single_location, priority]}}")
    availability = stock(("TEE", "a", 0, {"unlimited": True}), ("TEE", "b", 0, {"unlimited": True}))
    decision = decide_at(cart("IE", ("TEE", 1)), availability, rules, explain=True)
    by_id = {loc.location_id: loc for loc in decision.lines[0].explanation.locations}
    assert by_id["a"].verdict == LocationVerdict.USED
    assert by_id["a"].allocatable is None
    assert by_id["b"].verdict == LocationVerdict.PASSED_OVER
    assert by_id["b"].detail == "not needed: the whole cart ships from a"


def test_a_channel_no_rule_names_decides_like_no_channel(decide_at):
    rules = world("rules: [{name: web-limit, match: {channels: [web]}, max_quantity: 1}]")
    availability = stock(("TEE", "a", 5))
    plain = decide_at(cart("IE", ("TEE", 2)), availability, rules)
    other = decide_at(cart("IE", ("TEE", 2), channel="kiosk"), availability, rules)
    assert plain == other
    limited = decide_at(cart("IE", ("TEE", 2), channel="web"), availability, rules)
    assert reasons(limited) == [[ReasonCode.QUANTITY_LIMIT]]
