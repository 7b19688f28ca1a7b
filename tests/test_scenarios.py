"""Allocation scenarios from other platforms' test suites (Saleor, Magento MSI, Solidus, Medusa).

Each test is named after the scenario id and gives its source in the docstring. Platform
strategies map to routing criteria: Saleor PRIORITIZE_HIGH_STOCK -> `[most_stock]`, Saleor
PRIORITIZE_SORTING_ORDER, Magento priority and Solidus/Medusa location order -> `[priority]`
(with the platform's order as `priority`), Medusa's "prefer a location that covers the line" ->
`[whole_line, priority]`. Other checkouts' allocations and reservations are netted out of ATP,
as our sources report it. Where a platform raises an error or returns a partial plan, our
engine denies the line (no allocations) and reports `available`.

Magento quantities are decimal (5.5, 1.5); ours are whole units, so every Magento quantity,
stock and request here is doubled (5.5 -> 11), which keeps the arithmetic of each plan.
An item with status OUT_OF_STOCK is an ATP 0 record.

Scenarios (or parts) left out, and why:
- saleor-single-fill-1, the on-hand/`quantity_allocated` bookkeeping: we decide only; writing
  stock is not part of the engine (the decision is asserted, and that availability is unchanged).
- saleor-cc-sorting-1 note on a short collection point (other warehouses top it up in Saleor):
  not asserted by Saleor; in our model `pickup_location` alone serves the cart.
- saleor-no-shipping-zone-1 "related" PL query: no fixed number in the source test.
- saleor-availability-sum-1 with negative stock (-1, -99): our ATP cannot be negative.
- magento-zero-deduct-line-1 zero-quantity entries (eu-2 deduct 0): we list only locations that
  give stock; the allocations are asserted.
- magento-candidate-items-1: tests the candidate-listing query (source items in source order,
  including qty-0 in-stock items), which has no counterpart in a decision.
- solidus-backordered-first-alt-1, second half (backorder 13 at the dropship location while the
  default location holds 10 on hand): we always use on-hand stock everywhere before a backorder.
  The first half (whole variant from the location that covers it) is `whole_line`.
- medusa-whole-units-1 and the required_quantity part of medusa-insufficient-no-partial-1:
  we have no inventory kits (one cart unit is one stock unit).
- medusa-sales-channel-filter-1 exception (allow_backorder skips the error): a location excluded
  for a channel cannot take a backorder in our model.
- vendure-multi-location-sum-1 per-location stock levels (`fromLocation`): `assess` answers per
  destination, not per location.
- vendure-threshold-1 caveat (allocating the full quantity at each location): a bug in the
  platform, not a policy; we assert the remaining-quantity fill.
"""

from __future__ import annotations

import pytest

from engine.allocate import assess
from engine.model import (
    Allocation,
    LineStatus,
    LocationVerdict,
    Outcome,
    ReasonCode,
    Reservation,
    Shipment,
    ShipmentLine,
)
from tests.helpers import NOW, allocations, cart, rules_from, stock


def reasons(decision):
    return [list(line.reasons) for line in decision.lines]


def assert_denied_for_stock(decision, available):
    """What our engine says where a platform raises InsufficientStock or returns a partial plan."""
    assert decision.decision == Outcome.DENY
    assert decision.shipments == ()
    line = decision.lines[0]
    assert (line.status, line.reasons) == (LineStatus.DENIED, (ReasonCode.INSUFFICIENT_STOCK,))
    assert (line.allocations, line.available) == ((), available)


# --- Saleor ---------------------------------------------------------------------------------------


def saleor(strategy: str, *, w1_priority: int = 0, w2_priority: int = 0, cc: bool = False):
    """W1 and W2 serve the US (variant_with_many_stocks); `cc` adds a collection point."""
    criteria = {"high_stock": "[most_stock]", "sorting_order": "[priority]"}[strategy]
    locations = [
        f"  - {{id: W1, country: US, priority: {w1_priority}}}",
        f"  - {{id: W2, country: US, priority: {w2_priority}}}",
    ]
    if cc:
        locations.append("  - {id: CC, country: US}")
    return rules_from(
        "locations:\n"
        + "\n".join(locations)
        + "\ncatalog:\n  - {sku: SKU_A}\n  - {sku: SKU_B}\n"
        + f"defaults:\n  routing: {{criteria: {criteria}}}\n"
    )


HIGH_STOCK = saleor("high_stock")
# PRIORITIZE_SORTING_ORDER with W1 sort_order 1 and W2 sort_order 0.
SORTING_ORDER = saleor("sorting_order", w1_priority=1, w2_priority=0)


def test_saleor_single_fill_1(decide_at):
    """saleor/saleor saleor/warehouse/tests/test_stock_management.py::test_allocate_stocks"""
    availability = stock(("SKU_A", "W1", 100))
    decision = decide_at(cart("US", ("SKU_A", 50)), availability, HIGH_STOCK)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"W1": 50}]
    assert availability.stock["SKU_A"]["W1"].atp == 100  # deciding does not decrement stock


def test_saleor_multi_line_1(decide_at):
    """saleor test_stock_management.py::
    test_allocate_stocks_multiple_lines_the_highest_stock_strategy
    (variant 2's stock is not set by the test: 10 here)."""
    availability = stock(("SKU_A", "W1", 100), ("SKU_B", "W2", 10))
    decision = decide_at(cart("US", ("SKU_A", 50), ("SKU_B", 5)), availability, HIGH_STOCK)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"W1": 50}, {"W2": 5}]


@pytest.mark.parametrize(
    "rules",
    [HIGH_STOCK, saleor("sorting_order")],
    ids=["highest-stock", "pk-order-before-strategies"],
)
def test_saleor_high_stock_split_1(decide_at, rules):
    """saleor test_stock_management.py::test_allocate_stock_many_stocks_the_highest_stock_strategy
    (and the older test_allocate_stock_many_stocks, pk order: W1 then W2)."""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, rules)
    assert decision.lines[0].allocations == (Allocation("W1", 4), Allocation("W2", 1))


def test_saleor_sorting_order_split_1(decide_at):
    """saleor test_stock_management.py::
    test_allocate_stock_many_stocks_prioritize_sorting_order_strategy"""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, SORTING_ORDER)
    assert decision.lines[0].allocations == (Allocation("W2", 3), Allocation("W1", 2))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (SORTING_ORDER, (Allocation("W2", 3), Allocation("W1", 2))),
        (HIGH_STOCK, (Allocation("W1", 5),)),
    ],
    ids=["sorting-order-splits", "high-stock-does-not"],
)
def test_saleor_sorting_order_split_1_code_note(decide_at, rules, expected):
    """saleor `_create_allocations` (code, not asserted): by sort order a line splits even when
    a later warehouse covers it alone (W2 3, W1 10, qty 5); by highest stock it does not."""
    availability = stock(("SKU_A", "W1", 10), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, rules)
    assert decision.lines[0].allocations == expected


@pytest.mark.parametrize(
    "rules",
    [
        saleor("high_stock", cc=True),
        rules_from("""
            locations:
              - {id: W1, country: US, priority: 1}
              - {id: W2, country: US, priority: 0}
              - {id: CC, country: US, priority: 2}
            catalog:
              - {sku: SKU_A}
            """),
    ],
    ids=["saleor-cc-high-stock-1", "saleor-cc-sorting-1"],
)
def test_saleor_cc_high_stock_1_and_cc_sorting_1(decide_at, rules):
    """saleor test_stock_management.py::
    test_allocate_stocks_the_highest_stock_strategy_with_collection_point and
    test_allocate_stock_prioritize_sorting_order_strategy_with_collection_point"""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3), ("SKU_A", "CC", 5))
    decision = decide_at(cart("US", ("SKU_A", 5), pickup_location="CC"), availability, rules)
    assert decision.decision == Outcome.ALLOCATE
    assert decision.lines[0].allocations == (Allocation("CC", 5),)
    assert decision.shipments == (Shipment("CC", (ShipmentLine(0, "SKU_A", 5),)),)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        # Saleor's key is quantity - allocated (4 vs 3) and ignores the reservation, so W1 is
        # tried first: the same as ranking W1 first.
        (saleor("sorting_order"), (Allocation("W1", 2), Allocation("W2", 1))),
        # Our most_stock ranks by what is allocatable (W1 2, W2 3): W2 covers the line.
        (HIGH_STOCK, (Allocation("W2", 3),)),
    ],
    ids=["saleor-order", "our-most-stock"],
)
def test_saleor_reservations_high_1(decide_at, rules, expected):
    """saleor test_stock_management.py::
    test_allocate_stock_with_reservations_the_highest_stock_strategy
    (W1 4 with another checkout's reservation of 2: ATP 2)."""
    availability = stock(("SKU_A", "W1", 2), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 3)), availability, rules)
    assert decision.lines[0].allocations == expected


def test_saleor_reservations_sorting_1(decide_at):
    """saleor test_stock_management.py::
    test_allocate_stock_with_reservations_prioritize_sorting_order_strategy
    (W2 3 with 1 reserved: ATP 2)."""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 2))
    decision = decide_at(cart("US", ("SKU_A", 3)), availability, SORTING_ORDER)
    assert decision.lines[0].allocations == (Allocation("W2", 2), Allocation("W1", 1))


def test_saleor_insufficient_reservations_1(decide_at):
    """saleor test_stock_management.py::test_allocate_stock_insufficient_stock_due_to_reservations
    (W1 4 - 2 reserved, W2 3 - 1 reserved)."""
    availability = stock(("SKU_A", "W1", 2), ("SKU_A", "W2", 2))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, HIGH_STOCK)
    assert_denied_for_stock(decision, available=4)


def test_saleor_insufficient_partially_allocated_1(decide_at):
    """saleor test_stock_management.py::test_allocate_stock_partially_allocated_insufficient_stocks
    (W1 4 - 2 allocated, W2 3 - 1 allocated)."""
    availability = stock(("SKU_A", "W1", 2), ("SKU_A", "W2", 2))
    decision = decide_at(cart("US", ("SKU_A", 6)), availability, HIGH_STOCK)
    assert_denied_for_stock(decision, available=4)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (HIGH_STOCK, (Allocation("W2", 2), Allocation("W1", 1))),
        (saleor("sorting_order"), (Allocation("W1", 1), Allocation("W2", 2))),
    ],
    ids=["highest-stock", "pk-order-before-strategies"],
)
def test_saleor_partially_allocated_fill_1(decide_at, rules, expected):
    """saleor test_stock_management.py::test_allocate_stock_many_stocks_partially_allocated
    (W1 available 1, W2 available 2; older version in pk order)."""
    availability = stock(("SKU_A", "W1", 1), ("SKU_A", "W2", 2))
    decision = decide_at(cart("US", ("SKU_A", 3)), availability, rules)
    assert decision.lines[0].allocations == expected


def test_saleor_insufficient_single_line_1(decide_at):
    """saleor test_stock_management.py::test_allocate_stock_insufficient_stocks"""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 10)), availability, HIGH_STOCK)
    assert_denied_for_stock(decision, available=7)


def test_saleor_insufficient_whole_basket_1(decide_at):
    """saleor test_stock_management.py::test_allocate_stock_insufficient_stocks_for_multiple_lines
    (variant 2's stock is not set by the test: 10 here). Every short line is reported."""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3), ("SKU_B", "W1", 10))
    decision = decide_at(cart("US", ("SKU_A", 100), ("SKU_B", 100)), availability, HIGH_STOCK)
    assert decision.decision == Outcome.DENY
    assert [line.status for line in decision.lines] == [LineStatus.DENIED, LineStatus.DENIED]
    assert reasons(decision) == [[ReasonCode.INSUFFICIENT_STOCK], [ReasonCode.INSUFFICIENT_STOCK]]
    assert [line.available for line in decision.lines] == [7, 10]
    assert allocations(decision) == [{}, {}]
    assert decision.shipments == ()


def test_saleor_no_shipping_zone_1(decide_at):
    """saleor test_stock_management.py::test_allocate_stocks_no_channel_shipping_zones
    (the only warehouse's zone does not cover the US)."""
    rules = rules_from("""
        locations:
          - {id: W1, country: DE}
        catalog:
          - {sku: SKU_A}
        """)
    decision = decide_at(cart("US", ("SKU_A", 50)), stock(("SKU_A", "W1", 100)), rules)
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[ReasonCode.NOT_SHIPPABLE]]
    assert allocations(decision) == [{}]


@pytest.mark.parametrize(("quantity", "allocated"), [(19, True), (20, True), (21, False)])
def test_saleor_increase_allocation_boundary_1(decide_at, quantity, allocated):
    """saleor test_stock_management.py::test_increase_allocations and
    test_increase_allocation_insufficient_stock (100 on hand, 80 allocated: ATP 20)."""
    decision = decide_at(cart("US", ("SKU_A", quantity)), stock(("SKU_A", "W1", 20)), HIGH_STOCK)
    if allocated:
        assert decision.decision == Outcome.ALLOCATE
        assert allocations(decision) == [{"W1": quantity}]
    else:
        assert_denied_for_stock(decision, available=20)


def test_saleor_reserve_high_stock_1(decide_at):
    """saleor test_stock_reservations_management.py::
    test_multiple_stocks_reserved_if_single_stock_is_not_enough_highest_stock_strategy
    (a checkout reservation of on-hand stock is our allocation)."""
    availability = stock(("SKU_A", "W1", 3), ("SKU_A", "W2", 2))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, HIGH_STOCK)
    assert decision.lines[0].allocations == (Allocation("W1", 3), Allocation("W2", 2))


def test_saleor_reserve_sorting_1(decide_at):
    """saleor test_stock_reservations_management.py::
    test_multiple_stocks_reserved_if_single_stock_is_not_enough_sorting_order_strategy"""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 5)), availability, SORTING_ORDER)
    assert decision.lines[0].allocations == (Allocation("W2", 3), Allocation("W1", 2))


@pytest.mark.parametrize(
    ("w2_atp", "quantity", "available"),
    [(2, 4, 3), (0, 2, 1)],
    ids=["order-allocations", "order-allocations-and-reservations"],
)
def test_saleor_reserve_accounts_allocations_1(decide_at, w2_atp, quantity, available):
    """saleor test_stock_reservations_management.py::
    test_stock_reservation_accounts_for_order_allocations (and ..._and_reservations):
    W1 3 - 2 allocated, W2 3 - 1 allocated (- 2 reserved by another checkout)."""
    availability = stock(("SKU_A", "W1", 1), ("SKU_A", "W2", w2_atp))
    decision = decide_at(cart("US", ("SKU_A", quantity)), availability, HIGH_STOCK)
    assert_denied_for_stock(decision, available=available)


def test_saleor_availability_sum_1(decide_at):
    """saleor graphql checkout tests test_checkout_create_check_lines_quantity_multiple_warehouse
    and test_checkout_create_when_one_stock_exceeded: "Only 7 remaining" is the sum."""
    availability = stock(("SKU_A", "W1", 4), ("SKU_A", "W2", 3))
    decision = decide_at(cart("US", ("SKU_A", 16)), availability, HIGH_STOCK)
    assert_denied_for_stock(decision, available=7)
    assert assess("SKU_A", "US", None, availability, HIGH_STOCK, NOW).sellable == 7


# --- Magento MSI ----------------------------------------------------------------------------------


def magento(order=("eu-1", "eu-2", "eu-3", "eu-disabled")):
    """Stock 10 (the eu sources) serves FR; stock 20 (us-1) serves the US. `order` is the
    stock-source-link priority of stock 10."""
    prio = {source: i + 1 for i, source in enumerate(order)}
    return rules_from(f"""
        country_groups:
          - {{name: eu, countries: [FR, DE]}}
        locations:
          - {{id: eu-1, country: FR, ships_to: [eu], priority: {prio["eu-1"]}}}
          - {{id: eu-2, country: FR, ships_to: [eu], priority: {prio["eu-2"]}}}
          - {{id: eu-3, country: DE, ships_to: [eu], priority: {prio["eu-3"]}}}
          - {{id: eu-disabled, country: DE, ships_to: [eu], priority: {prio["eu-disabled"]},
              enabled: false}}
          - {{id: us-1, country: US, priority: 1}}
        catalog:
          - {{sku: SKU-1}}
          - {{sku: SKU-2}}
          - {{sku: SKU-3}}
          - {{sku: SKU-4}}
          - {{sku: SKU-6}}
        defaults:
          routing: {{criteria: [priority]}}
        """)


# The source items, doubled. eu-3/SKU-1 (10) and eu-2/SKU-3 (6) are OUT_OF_STOCK: ATP 0.
MAGENTO_ITEMS = stock(
    ("SKU-1", "eu-1", 11),
    ("SKU-1", "eu-2", 6),
    ("SKU-1", "eu-3", 0),
    ("SKU-1", "eu-disabled", 20),
    ("SKU-2", "us-1", 10),
    ("SKU-3", "eu-2", 0),
    ("SKU-4", "eu-2", 12),
    ("SKU-6", "eu-1", 0),
)


def test_magento_priority_fill_1(decide_at):
    """magento/inventory InventorySourceSelectionApi/Test/Integration/
    GetDefaultSortedSourcesResultTest.php::testShouldReturnDefaultResults (data set 0)"""
    decision = decide_at(cart("FR", ("SKU-1", 14)), MAGENTO_ITEMS, magento())
    assert decision.decision == Outcome.ALLOCATE
    assert decision.lines[0].allocations == (Allocation("eu-1", 11), Allocation("eu-2", 3))


def test_magento_partial_plan_1(decide_at):
    """GetDefaultSortedSourcesResultTest.php::testShouldReturnDefaultResults (data set 1):
    Magento returns the partial plan 11 + 6 with isShippable false; we deny with available 17."""
    decision = decide_at(cart("FR", ("SKU-1", 30)), MAGENTO_ITEMS, magento())
    assert_denied_for_stock(decision, available=17)


def test_magento_zero_deduct_line_1(decide_at):
    """GetDefaultSortedSourcesResultTest.php::testShouldReturnDefaultResults (data set 2):
    SKU-2 exists only at us-1, which is not in stock 10: the request is not shippable."""
    decision = decide_at(cart("FR", ("SKU-1", 10), ("SKU-2", 6)), MAGENTO_ITEMS, magento())
    assert decision.decision == Outcome.DENY
    assert allocations(decision) == [{"eu-1": 10}, {}]
    assert reasons(decision) == [[], [ReasonCode.INSUFFICIENT_STOCK]]
    assert decision.lines[1].available == 0
    assert decision.shipments == ()


def test_magento_reordered_sources_1(decide_at):
    """GetDefaultSortedSourcesResultTest.php::testShouldReturnDefaultResults (data set 3):
    sources sorted eu-3, eu-2, eu-1; eu-3 is out of stock."""
    rules = magento(order=("eu-3", "eu-2", "eu-1", "eu-disabled"))
    decision = decide_at(cart("FR", ("SKU-1", 10), ("SKU-2", 6)), MAGENTO_ITEMS, rules)
    assert decision.decision == Outcome.DENY
    assert decision.lines[0].allocations == (Allocation("eu-2", 6), Allocation("eu-1", 4))
    assert reasons(decision) == [[], [ReasonCode.INSUFFICIENT_STOCK]]


def test_magento_single_source_1(decide_at):
    """GetDefaultSortedSourcesResultTest.php::testShouldReturnDefaultResults (data set 4)"""
    decision = decide_at(cart("US", ("SKU-2", 6)), MAGENTO_ITEMS, magento())
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"us-1": 6}]


def test_magento_api_multi_line_1(decide_at):
    """magento/inventory InventorySourceSelectionApi/Test/Api/
    SourceSelectionServiceTest.php::testSourceSelectionService: each SKU fills by priority,
    with no consolidation onto eu-2."""
    decision = decide_at(cart("FR", ("SKU-1", 16), ("SKU-4", 8)), MAGENTO_ITEMS, magento())
    assert decision.decision == Outcome.ALLOCATE
    assert decision.lines[0].allocations == (Allocation("eu-1", 11), Allocation("eu-2", 5))
    assert decision.lines[1].allocations == (Allocation("eu-2", 8),)
    assert decision.shipments == (
        Shipment("eu-1", (ShipmentLine(0, "SKU-1", 11),)),
        Shipment("eu-2", (ShipmentLine(0, "SKU-1", 5), ShipmentLine(1, "SKU-4", 8))),
    )


def test_magento_disabled_source_1(decide_at):
    """magento/inventory InventorySourceSelection/Model/Algorithms/PriorityBasedAlgorithm.php
    (code + fixture): eu-disabled's stock is never used."""
    decision = decide_at(cart("FR", ("SKU-1", 30)), MAGENTO_ITEMS, magento(), explain=True)
    assert_denied_for_stock(decision, available=17)
    by_id = {loc.location_id: loc for loc in decision.lines[0].explanation.locations}
    assert by_id["eu-disabled"].verdict == LocationVerdict.EXCLUDED
    assert by_id["eu-disabled"].detail == "the location is disabled"


# --- Solidus --------------------------------------------------------------------------------------


def solidus(first="default", second="dropship", criteria="[priority]"):
    """Two locations in Solidus' order; backorders need no restock date (backorderable items)."""
    return rules_from(f"""
        locations:
          - {{id: {first}, country: US, priority: 1}}
          - {{id: {second}, country: US, priority: 2}}
        catalog:
          - {{sku: v1}}
          - {{sku: v2}}
        defaults:
          routing: {{criteria: {criteria}}}
          backorder: {{allowed: true, restock_required: false, split: true}}
        """)


SOLIDUS = solidus()
NOT_BACKORDERABLE = {"backorderable": False}
BACKORDERABLE = {"backorderable": True}


def solidus_stock(default, dropship):
    return stock(
        ("v1", "default", default[0], NOT_BACKORDERABLE),
        ("v2", "default", default[1], NOT_BACKORDERABLE),
        ("v1", "dropship", dropship[0], BACKORDERABLE),
        ("v2", "dropship", dropship[1], BACKORDERABLE),
    )


def test_solidus_onhand_default_covers_1(decide_at):
    """solidusio/solidus core/spec/models/spree/stock/allocator/on_hand_first_spec.rb —
    "when default stock location has enough items" """
    availability = solidus_stock(default=(100, 100), dropship=(0, 0))
    decision = decide_at(cart("US", ("v1", 30), ("v2", 5)), availability, SOLIDUS)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"default": 30}, {"default": 5}]
    assert [line.reserved for line in decision.lines] == [0, 0]


def test_solidus_onhand_spill_1(decide_at):
    """on_hand_first_spec.rb — "default stock location hasn't enough items" /
    "dropship stock location has enough items" """
    availability = solidus_stock(default=(10, 10), dropship=(20, 0))
    decision = decide_at(cart("US", ("v1", 15), ("v2", 5)), availability, SOLIDUS)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"default": 10, "dropship": 5}, {"default": 5}]
    assert [line.reserved for line in decision.lines] == [0, 0]


def test_solidus_onhand_before_backorder_1(decide_at):
    """on_hand_first_spec.rb — "dropship stock location hasn't enough items" """
    availability = solidus_stock(default=(10, 10), dropship=(2, 0))
    decision = decide_at(cart("US", ("v1", 15), ("v2", 5)), availability, SOLIDUS)
    assert decision.decision == Outcome.RESERVE
    assert allocations(decision) == [{"default": 10, "dropship": 2}, {"default": 5}]
    v1 = decision.lines[0]
    assert v1.status == LineStatus.RESERVED
    assert v1.reservation == Reservation(quantity=3, location_id="dropship")
    assert v1.reasons == (ReasonCode.INSUFFICIENT_STOCK,)
    assert decision.lines[1].reservation is None


def test_solidus_backordered_first_alt_1(decide_at):
    """core/spec/models/spree/stock/allocator/backordered_first_spec.rb (PR #2914, not merged):
    a variant the default location cannot cover goes wholly to the location that can, which is
    our whole_line criterion (first half of the scenario only: see the module docstring)."""
    rules = rules_from("""
        locations:
          - {id: default, country: US, priority: 1}
          - {id: dropship, country: US, priority: 2}
        catalog:
          - {sku: v1}
          - {sku: v2}
        defaults:
          routing: {criteria: [whole_line, priority]}
        """)
    availability = solidus_stock(default=(10, 10), dropship=(20, 0))
    decision = decide_at(cart("US", ("v1", 15), ("v2", 5)), availability, rules)
    assert allocations(decision) == [{"dropship": 15}, {"default": 5}]


SOLIDUS_NO_BACKORDER = rules_from("""
    locations:
      - {id: loc1, country: US, priority: 1}
      - {id: loc2, country: US, priority: 2}
      - {id: loc3, country: US, priority: 3}
    catalog:
      - {sku: v1}
      - {sku: v2}
    """)


@pytest.mark.parametrize("on_hand", [0, 1, None])
def test_solidus_single_location_insufficient_1(decide_at, on_hand):
    """core/spec/models/spree/stock/simple_coordinator_spec.rb — "with no backordering" /
    "with a single stock location" (None: no stock item at all)."""
    rows = [] if on_hand is None else [("v1", "loc1", on_hand, NOT_BACKORDERABLE)]
    decision = decide_at(cart("US", ("v1", 5)), stock(*rows), SOLIDUS_NO_BACKORDER)
    assert_denied_for_stock(decision, available=on_hand or 0)


def test_solidus_single_location_insufficient_1_enough(decide_at):
    """simple_coordinator_spec.rb — "with a single stock location", on hand 5."""
    availability = stock(("v1", "loc1", 5, NOT_BACKORDERABLE))
    decision = decide_at(cart("US", ("v1", 5)), availability, SOLIDUS_NO_BACKORDER)
    assert decision.decision == Outcome.ALLOCATE
    assert allocations(decision) == [{"loc1": 5}]


@pytest.mark.parametrize(
    ("loc1", "loc2", "expected"),
    [
        (0, 0, None),
        (1, 1, None),
        (5, 0, {"loc1": 5}),
        (0, 5, {"loc2": 5}),
        (2, 3, {"loc1": 2, "loc2": 3}),
        (2, 5, {"loc1": 2, "loc2": 3}),
        (5, 2, {"loc1": 5}),
        (5, 5, {"loc1": 5}),
    ],
)
def test_solidus_two_locations_1(decide_at, loc1, loc2, expected):
    """simple_coordinator_spec.rb — "with two stock locations" (neither backorderable)."""
    availability = stock(
        ("v1", "loc1", loc1, NOT_BACKORDERABLE), ("v1", "loc2", loc2, NOT_BACKORDERABLE)
    )
    decision = decide_at(cart("US", ("v1", 5)), availability, SOLIDUS_NO_BACKORDER)
    if expected is None:
        assert_denied_for_stock(decision, available=loc1 + loc2)
    else:
        assert decision.decision == Outcome.ALLOCATE
        assert allocations(decision) == [expected]


@pytest.mark.parametrize(
    ("levels", "expected"),
    [((3, 3, 3), {"loc1": 3, "loc2": 2}), ((2, 4, 5), {"loc1": 2, "loc2": 3})],
    ids=["spec", "issue-2122"],
)
def test_solidus_no_third_location_1(decide_at, levels, expected):
    """simple_coordinator_spec.rb — "with sufficient inventory in first two locations"
    (regression for solidusio/solidus#2122)."""
    availability = stock(*[("v1", f"loc{i}", n) for i, n in enumerate(levels, 1)])
    decision = decide_at(cart("US", ("v1", 5)), availability, SOLIDUS_NO_BACKORDER)
    assert allocations(decision) == [expected]
    assert len(decision.shipments) == 2


def test_solidus_three_locations_needed_1(decide_at):
    """simple_coordinator_spec.rb — "with sufficient inventory only across all three locations" """
    availability = stock(("v1", "loc1", 2), ("v1", "loc2", 2), ("v1", "loc3", 2))
    decision = decide_at(cart("US", ("v1", 5)), availability, SOLIDUS_NO_BACKORDER)
    assert allocations(decision) == [{"loc1": 2, "loc2": 2, "loc3": 1}]
    assert len(decision.shipments) == 3


@pytest.mark.parametrize(
    ("loc1", "loc2", "expected_alloc", "expected_reservation"),
    [
        # "1st has some, 2nd has remaining"
        ((2, NOT_BACKORDERABLE), (5, NOT_BACKORDERABLE), {"loc1": 2, "loc2": 3}, None),
        # "1st has backorder, 2nd has some"
        ((0, BACKORDERABLE), (2, NOT_BACKORDERABLE), {"loc2": 2}, Reservation(3, "loc1")),
        # "1st has backorder, 2nd has all"
        ((0, BACKORDERABLE), (5, NOT_BACKORDERABLE), {"loc2": 5}, None),
    ],
    ids=["first-some-second-rest", "first-backorder-second-some", "first-backorder-second-all"],
)
def test_solidus_legacy_prioritizer_1(decide_at, loc1, loc2, expected_alloc, expected_reservation):
    """core/spec/models/spree/stock/prioritizer_spec.rb (legacy Coordinator + Prioritizer):
    on-hand anywhere beats a backorder at a better-ranked location."""
    availability = stock(("v1", "loc1", *loc1), ("v1", "loc2", *loc2))
    decision = decide_at(cart("US", ("v1", 5)), availability, solidus("loc1", "loc2"))
    assert allocations(decision) == [expected_alloc]
    assert decision.lines[0].reservation == expected_reservation


def test_solidus_untracked_item_location_1(decide_at):
    """simple_coordinator_spec.rb — "when there is one unit that has stock in a stock location
    that a non-tracked unit has no stock item in" """
    availability = stock(("v1", "loc1", 10), ("v2", "loc2", 0, {"unlimited": True}))
    decision = decide_at(cart("US", ("v1", 1), ("v2", 1)), availability, SOLIDUS_NO_BACKORDER)
    assert decision.decision == Outcome.ALLOCATE
    assert decision.shipments == (
        Shipment("loc1", (ShipmentLine(0, "v1", 1),)),
        Shipment("loc2", (ShipmentLine(1, "v2", 1),)),
    )


def test_solidus_location_filter_sort_1(decide_at):
    """location_filter/active_spec.rb and location_sorter/default_first_spec.rb: an inactive
    location is never used; the default location (created second) comes first; a location with
    no stock item for the variant is not a candidate."""
    rules = rules_from("""
        locations:
          - {id: first-created, country: US, priority: 2}
          - {id: default, country: US, priority: 1}
          - {id: inactive, country: US, priority: 0, enabled: false}
          - {id: new-empty, country: US, priority: 0}
        catalog:
          - {sku: v1}
        """)
    availability = stock(("v1", "first-created", 5), ("v1", "default", 5), ("v1", "inactive", 5))
    decision = decide_at(cart("US", ("v1", 3)), availability, rules)
    assert allocations(decision) == [{"default": 3}]
    decision = decide_at(cart("US", ("v1", 7)), availability, rules)
    assert allocations(decision) == [{"default": 5, "first-created": 2}]


def test_solidus_backorder_split_1(decide_at):
    """core/spec/models/spree/stock/splitter/backordered_spec.rb: on-hand and backordered units
    at one location are kept apart (the allocation ships; the reservation waits)."""
    availability = stock(("v1", "default", 4, BACKORDERABLE))
    decision = decide_at(cart("US", ("v1", 9)), availability, SOLIDUS)
    line = decision.lines[0]
    assert line.allocations == (Allocation("default", 4),)
    assert line.reservation == Reservation(quantity=5, location_id="default")
    assert decision.shipments == (Shipment("default", (ShipmentLine(0, "v1", 4),)),)


# --- Medusa ---------------------------------------------------------------------------------------


def medusa(criteria="[priority]", backorder=False):
    extra = "\n          backorder: {allowed: true, restock_required: false}" if backorder else ""
    return rules_from(f"""
        locations:
          - {{id: sl_a, country: US, priority: 1}}
          - {{id: sl_b, country: US, priority: 2}}
          - {{id: sl_c, country: US, priority: 3}}
        catalog:
          - {{sku: pv_1}}
        defaults:
          routing: {{criteria: {criteria}}}{extra}
        """)


def test_medusa_single_location_fallback_1(decide_at):
    """medusajs/medusa packages/core/core-flows/src/cart/utils/__tests__/
    compute-reservation-allocations.spec.ts — "allocates the full quantity to the first location
    for single-location items": Medusa lets the inventory module fail; we deny."""
    decision = decide_at(cart("US", ("pv_1", 2)), stock(("pv_1", "sl_a", 1)), medusa())
    assert_denied_for_stock(decision, available=1)


def test_medusa_backorder_first_location_1(decide_at):
    """compute-reservation-allocations.spec.ts — "allocates the full quantity to the first
    location for backorder items" """
    availability = stock(("pv_1", "sl_a", 0), ("pv_1", "sl_b", 0))
    decision = decide_at(cart("US", ("pv_1", 3)), availability, medusa(backorder=True))
    assert decision.decision == Outcome.RESERVE
    line = decision.lines[0]
    assert line.allocations == ()
    assert line.reservation == Reservation(quantity=3, location_id="sl_a")


@pytest.mark.parametrize("criteria", ["[priority]", "[whole_line, priority]"])
def test_medusa_first_covers_no_split_1(decide_at, criteria):
    """compute-reservation-allocations.spec.ts — "does not split when the first location covers
    the full quantity" """
    availability = stock(("pv_1", "sl_a", 5), ("pv_1", "sl_b", 5))
    decision = decide_at(cart("US", ("pv_1", 2)), availability, medusa(criteria))
    assert allocations(decision) == [{"sl_a": 2}]


@pytest.mark.parametrize("criteria", ["[priority]", "[whole_line, priority]"])
def test_medusa_split_when_needed_1(decide_at, criteria):
    """compute-reservation-allocations.spec.ts — "splits across locations when no single location
    can cover the full quantity (issue #14987)" """
    availability = stock(("pv_1", "sl_a", 1), ("pv_1", "sl_b", 1))
    decision = decide_at(cart("US", ("pv_1", 2)), availability, medusa(criteria))
    assert decision.lines[0].allocations == (Allocation("sl_a", 1), Allocation("sl_b", 1))


@pytest.mark.parametrize("criteria", ["[priority]", "[whole_line, priority]"])
def test_medusa_skip_empty_1(decide_at, criteria):
    """compute-reservation-allocations.spec.ts — "skips locations without availability while
    splitting" """
    availability = stock(("pv_1", "sl_a", 1), ("pv_1", "sl_b", 0), ("pv_1", "sl_c", 2))
    decision = decide_at(cart("US", ("pv_1", 3)), availability, medusa(criteria))
    assert decision.lines[0].allocations == (Allocation("sl_a", 1), Allocation("sl_c", 2))


def test_medusa_insufficient_no_partial_1(decide_at):
    """compute-reservation-allocations.spec.ts — "falls back to the first location when the
    aggregate availability is insufficient": nothing partial is written."""
    availability = stock(("pv_1", "sl_a", 1), ("pv_1", "sl_b", 1))
    decision = decide_at(cart("US", ("pv_1", 5)), availability, medusa())
    assert_denied_for_stock(decision, available=2)


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("[whole_line, priority]", (Allocation("sl_b", 2),)),  # Medusa
        ("[priority]", (Allocation("sl_a", 1), Allocation("sl_b", 1))),  # Saleor sort order
    ],
    ids=["medusa", "priority-only"],
)
def test_medusa_prefer_covering_location_1(decide_at, criteria, expected):
    """packages/core/core-flows/src/cart/utils/__tests__/prepare-confirm-inventory-input.spec.ts
    — "should return only stock locations with availability, if any" (sl_1: 10 stocked, 9
    reserved; sl_2: 7 stocked, 5 reserved)."""
    availability = stock(("pv_1", "sl_a", 1), ("pv_1", "sl_b", 2))
    decision = decide_at(cart("US", ("pv_1", 2)), availability, medusa(criteria))
    assert decision.lines[0].allocations == expected


def test_medusa_sales_channel_filter_1(decide_at):
    """prepare-confirm-inventory-input.spec.ts — "should throw an error if any variant has no
    stock locations linked to the sales channel": sl_2 is linked only to sc_2. Medusa throws;
    we deny the line: sl_2 is excluded on sc_1 and sl_1 holds no pv_2."""
    rules = rules_from("""
        locations:
          - {id: sl_1, country: US, priority: 1}
          - {id: sl_2, country: US, priority: 2}
        catalog:
          - {sku: pv_1}
          - {sku: pv_2}
        rules:
          - name: sl-2-only-for-sc-2
            match: {channels: [sc_1], locations: [sl_2]}
            ship_to: {allow: []}
        """)
    availability = stock(("pv_1", "sl_1", 5), ("pv_2", "sl_2", 5))
    the_cart = cart("US", ("pv_1", 1), ("pv_2", 1), channel="sc_1")
    decision = decide_at(the_cart, availability, rules, explain=True)
    assert decision.decision == Outcome.DENY
    assert reasons(decision) == [[], [ReasonCode.INSUFFICIENT_STOCK]]
    assert allocations(decision) == [{"sl_1": 1}, {}]
    assert decision.lines[1].available == 0
    sl_2 = decision.lines[1].explanation.locations[1]
    assert (sl_2.location_id, sl_2.verdict) == ("sl_2", LocationVerdict.EXCLUDED)
    assert sl_2.detail == (
        "may send this SKU only to nowhere (rule `sl-2-only-for-sc-2` (rules-0.yaml:11))"
    )
    on_sc_2 = decide_at(cart("US", ("pv_2", 1), channel="sc_2"), availability, rules)
    assert allocations(on_sc_2) == [{"sl_2": 1}]


# --- Vendure --------------------------------------------------------------------------------------

VENDURE = rules_from("""
    locations:
      - {id: default-stock-location, country: GB, priority: 1}
      - {id: warehouse-2, country: GB, priority: 2}
    catalog:
      - {sku: T_1}
      - {sku: T_2}
    """)


def test_vendure_multi_location_sum_1(decide_at):
    """vendure-ecommerce/vendure packages/core/e2e/stock-control-multi-location.e2e-spec.ts —
    saleable stock is the sum (100 + 120); a line collected at a chosen location is allocated
    there (the test strategy lets the customer pick the location)."""
    availability = stock(
        ("T_1", "default-stock-location", 100),
        ("T_1", "warehouse-2", 120),
        ("T_2", "default-stock-location", 100),
        ("T_2", "warehouse-2", 120),
    )
    assert assess("T_1", "GB", None, availability, VENDURE, NOW).sellable == 220
    at_1 = cart("GB", ("T_1", 2), pickup_location="default-stock-location")
    assert allocations(decide_at(at_1, availability, VENDURE)) == [{"default-stock-location": 2}]
    at_2 = cart("GB", ("T_2", 2), pickup_location="warehouse-2")
    assert allocations(decide_at(at_2, availability, VENDURE)) == [{"warehouse-2": 2}]


def test_vendure_threshold_1(decide_at):
    """packages/core/src/config/catalog/multi-channel-stock-location-strategy.ts::forAllocation
    (code, not asserted): each location holds back the out-of-stock threshold (2), which is our
    safety stock; the walk takes what remains of the quantity, not the full quantity."""
    rules = rules_from(
        """
        locations:
          - {id: loc1, country: GB, priority: 1}
          - {id: loc2, country: GB, priority: 2}
        catalog:
          - {sku: T_1}
        defaults:
          safety_stock: 2
        """
    )
    availability = stock(("T_1", "loc1", 5), ("T_1", "loc2", 12))
    decision = decide_at(cart("GB", ("T_1", 5)), availability, rules)
    assert decision.lines[0].allocations == (Allocation("loc1", 3), Allocation("loc2", 2))
    assert decide_at(cart("GB", ("T_1", 14)), availability, rules).lines[0].available == 13
