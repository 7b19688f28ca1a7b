"""The decision: a pure function from a cart, its availability and a rule set to a `Decision`.

No I/O, no clock, no globals: `now` is passed in, so a decision can be replayed from its inputs.

How a cart is decided (the order the docs describe):
1. Each line is checked against the rules: unknown SKU, deny rules, ship-to, per-line maximum.
   Lines that fail are denied and take no stock.
2. If `single_location` leads the routing criteria and one location can serve every remaining
   line in full, the whole cart ships from the best such location.
3. Otherwise each line, in cart order, fills greedily from its candidate locations ranked by the
   criteria, taking `min(remaining, allocatable)` from each and stopping when covered, within
   `max_locations_per_line` and `max_shipments` (with a look-ahead so that a cap never leaves a
   line short when another choice of locations would cover it). Stock taken by one line is gone
   for the next: on-hand stock is used everywhere before any backorder.
4. What is still short goes to the rules' `unknown_availability` policy (when a candidate's
   availability is unknown), then to a backorder against a restock, and is otherwise denied with
   reason codes that say why.

Cost: what is allocatable is computed per (SKU, location) only where a step reads it, and the
usual line is covered whole by the first location with stock in rank order (then answered at
once), so most records are never read; every step is at most linear in lines x locations (the
look-ahead sorts a line's locations once; what other lines hold is counted as it is taken).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final

from engine.availability.record import Availability, StockRecord
from engine.model import (
    MAX_QUANTITY,
    Allocation,
    Cart,
    CartExplanation,
    CartLine,
    Decision,
    LineDecision,
    LineExplanation,
    LineStatus,
    LocationExplanation,
    LocationVerdict,
    Outcome,
    ReasonCode,
    Reservation,
    SettingOrigin,
    Shipment,
    ShipmentLine,
    SkuAvailability,
)
from engine.policy.compile import Candidate, CartRules, LineRules, Origin, RankKey, RuleSet

__all__ = ("UNLIMITED", "assess", "decide")

UNLIMITED: Final = 10**12
"""Allocatable quantity of an item whose source does not track stock."""

# Enum members read through their class cost a descriptor look-up each time (about ten times a
# module global); the hot path compares statuses often, so it reads them from here.
_ALLOCATED: Final = LineStatus.ALLOCATED
_RESERVED: Final = LineStatus.RESERVED
_DENIED: Final = LineStatus.DENIED
_ALLOCATE: Final = Outcome.ALLOCATE
_RESERVE: Final = Outcome.RESERVE
_DENY: Final = Outcome.DENY


def _check_field_order() -> None:
    """The answer's structs are built positionally (cheaper than keywords on the hot path):
    checked at import, so that a change of the model's field order fails loudly."""
    positional: dict[str, tuple[str, ...]] = {
        "LineDecision": (
            "line",
            "sku",
            "quantity",
            "status",
            "allocated",
            "reserved",
            "allocations",
            "reasons",
            "reservation",
            "message",
            "available",
            "explanation",
        ),
        "Decision": ("decision", "rule_set", "lines", "shipments", "cart_id", "explanation"),
        "Allocation": ("location_id", "quantity"),
        "ShipmentLine": ("line", "sku", "quantity"),
        "Shipment": ("location_id", "lines"),
    }
    for struct in (LineDecision, Decision, Allocation, ShipmentLine, Shipment):
        fields = positional[struct.__name__]
        if struct.__struct_fields__[: len(fields)] != fields:
            raise ImportError(f"engine.allocate builds {struct.__name__} with fields {fields}")


_check_field_order()

_UNREAD: Final = -1
"""What `levels.get` answers for a location not read yet (a level is never negative)."""


class _Line:
    """One cart line while the cart is decided: what the rules say, then what it gets."""

    __slots__ = (
        "allocated",
        "allocations",
        "answer",
        "available",
        "candidates",
        "groups",
        "index",
        "lead",
        "levels",
        "line",
        "message",
        "notes",
        "reachable",
        "reasons",
        "records",
        "reservation",
        "rules",
        "status",
        "summary",
        "thresholds",
    )

    # Set by `decide` on the lines not denied (the lines that take stock):
    levels: dict[str, int | None]
    """Location id -> what is still allocatable of the SKU, for the locations read so far: one
    dict per SKU, shared by its lines, so two lines draw from one pool (see `_read`)."""
    records: Mapping[str, StockRecord]
    """The SKU's availability records by location id."""

    # Attribute notes are comments, not docstrings: this runs once per line.
    def __init__(
        self, index: int, line: CartLine, rules: LineRules, notes: dict[str, str] | None
    ) -> None:
        self.index = index
        self.line = line
        self.rules = rules
        # The rules' candidates, or only the pickup location; none on a denied line.
        self.candidates: tuple[Candidate, ...] = rules.candidates
        self.groups: tuple[tuple[Candidate, ...], ...] = rules.groups
        self.thresholds: dict[str, tuple[int, int]] = rules.thresholds
        self.lead: tuple[tuple[str, int, int], ...] = rules.lead
        self.status: LineStatus | None = None
        self.reasons: tuple[ReasonCode, ...] = ()
        self.message: str | None = None
        self.allocations: dict[str, int] = {}
        self.allocated = 0
        self.reservation: Reservation | None = None
        # On a line denied for stock: what the fill could take within the caps.
        self.available: int | None = None
        # What all candidates held together, caps aside, when the fill fell short: tells
        # SPLIT_LIMIT from a shortage (read only for a line the fill left short).
        self.reachable = 0
        # Location id -> why it was passed over, when explaining; else None.
        self.notes = notes
        self.summary = ""
        # Its `LineDecision`, when the fill could build it at once (the usual line).
        self.answer: LineDecision | None = None


_Need = tuple[int, dict[str, tuple[int, int]], Mapping[str, StockRecord], _Line]
"""What a SKU's lines ask for, its thresholds and records, and its first line (for its levels)."""


def _read(ln: _Line, location_id: str) -> int | None:
    """The first read of a location for the line's SKU, kept in `ln.levels`: allocatable = ATP -
    safety stock, 0 under the minimum ATP (the reference formula is `_allocatable`). None: no
    record, or not a candidate: nothing there, unless its source could not answer.

    Levels are computed when first needed, then only adjusted as lines take stock: the usual line
    is covered by the first location in rank order, so most records are never read."""
    limits = ln.thresholds.get(location_id)
    record = ln.records.get(location_id)
    left: int | None
    if limits is None or record is None:
        left = None
    elif record.unlimited:
        left = UNLIMITED
    else:
        atp = record.atp
        left = atp - limits[1] if atp >= limits[0] and atp > limits[1] else 0
    ln.levels[location_id] = left
    return left


def _level(ln: _Line, location_id: str) -> int | None:
    """What is still allocatable of the line's SKU at a location."""
    left = ln.levels.get(location_id, _UNREAD)
    return _read(ln, location_id) if left == _UNREAD else left


class _Stock:
    """The availability of one cart, and what its lines have taken so far."""

    __slots__ = ("_unknown", "backordered", "by_sku", "held", "levels", "opened")

    def __init__(self, availability: Availability) -> None:
        # SKU -> location id -> record.
        self.by_sku = availability.stock
        self._unknown = availability.unknown
        # SKU -> its levels (see `_Line.levels`).
        self.levels: dict[str, dict[str, int | None]] = {}
        # SKU -> units the cart's lines of the SKU hold now (not there for another line); kept
        # only when a SKU is on several lines (else no other line can hold any: None).
        self.held: dict[str, int] | None = None
        # Location id -> lines allocated there now: the cart's shipments.
        self.opened: dict[str, int] = {}
        # SKU -> units reserved against restocks so far (backorder limits are per order).
        self.backordered: dict[str, int] = {}

    def hold(self, sku: str, quantity: int) -> None:
        """Count units a line takes (or gives back, when negative) for the lines after it."""
        held = self.held
        if held is not None:
            held[sku] = held.get(sku, 0) + quantity

    def record(self, sku: str, location_id: str) -> StockRecord | None:
        by_location = self.by_sku.get(sku)
        return None if by_location is None else by_location.get(location_id)

    def is_unknown(self, sku: str, location_id: str) -> bool:
        unknown = self._unknown.get(sku)
        return unknown is not None and location_id in unknown


_NO_RECORDS: Final[Mapping[str, StockRecord]] = MappingProxyType({})
"""The records of a SKU the availability does not mention (read-only: it is shared)."""

_NO_LOCATIONS: Final[frozenset[str]] = frozenset()


def decide(
    cart: Cart,
    availability: Availability,
    rules: RuleSet,
    now: datetime,
    *,
    explain: bool = False,
) -> Decision:
    """Decide a cart. Pure: the same inputs always give the same decision."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cart_rules = rules.cart_rules(cart.country, cart.channel)
    stock = _Stock(availability)
    lines, active, needs, denied = _check_lines(cart, rules, cart_rules, stock, explain)
    open_locations = stock.opened
    single = None
    if active and cart_rules.criteria[0] == "single_location":
        single = _single_location(active, needs, stock.held is not None, cart_rules)
    reserved = 0
    for ln in active:
        if single is not None:
            _allocate_whole(ln, single.location.id, _level(ln, single.location.id), stock)
            if ln.notes is not None:
                ln.summary = f"the whole cart ships from {single.location.id} (single_location)"
                for cand in ln.candidates:
                    if cand.location.id != single.location.id:
                        ln.notes[cand.location.id] = (
                            f"not needed: the whole cart ships from {single.location.id}"
                        )
            continue
        _fill(ln, cart_rules, stock, open_locations)
        if ln.status is not None:
            continue  # covered at once
        if ln.allocated < ln.line.quantity:
            _shortfall(ln, cart_rules, stock, now, open_locations)
            if ln.status is _DENIED:
                denied += 1
            elif ln.status is _RESERVED:
                reserved += 1
        else:
            ln.status = _ALLOCATED
    return _decision(
        cart, lines, rules, cart_rules, stock, explain, single is not None, denied, reserved
    )


# --- step 1: rules that deny a line outright ---------------------------------------------------


def _check_lines(
    cart: Cart, rules: RuleSet, cart_rules: CartRules, stock: _Stock, explain: bool
) -> tuple[list[_Line], list[_Line], list[_Need], int]:
    """The cart's lines with what the rules say; those not denied, which get their SKU's stock;
    per SKU of those, what `_single_location` needs; and how many lines are denied."""
    country, channel, pickup = cart.country, cart.channel, cart.pickup_location
    # Per-order limits compare a SKU's quantity over all lines; no SKU can have more than the
    # whole cart, so the per-SKU totals are only added up when some limit is below that.
    total = 0
    for line in cart.lines:
        total += line.quantity
    per_sku: dict[str, int] | None = None
    line_memo = cart_rules.line_memo
    by_sku = stock.by_sku
    sku_levels = stock.levels
    lines = []
    active = []
    needs: list[_Need] = []
    denied = 0
    for i, line in enumerate(cart.lines):
        sku = line.sku
        lr = line_memo.get(sku)
        if lr is None:
            lr = rules.line_rules(sku, country, channel)
            if lr.known:  # the memo is bounded by the catalog
                line_memo[sku] = lr
        ln = _Line(i, line, lr, {} if explain else None)
        lines.append(ln)
        if (
            not lr.ready
            or pickup is not None
            or (lr.max_quantity is not None and total > lr.max_quantity)
        ):
            if per_sku is None:
                per_sku = _per_sku(cart)
            _check_line(ln, cart, per_sku[sku])  # may deny it, or narrow it to the pickup location
            if ln.status is not None:
                denied += 1
                continue
        active.append(ln)
        # The SKU's stock: one levels dict per SKU, shared by its lines.
        ln.records = by_sku.get(sku) or _NO_RECORDS
        levels = sku_levels.get(sku)
        if levels is None:
            ln.levels = sku_levels[sku] = {}
            needs.append((line.quantity, ln.thresholds, ln.records, ln))
        else:
            ln.levels = levels
            # A SKU on several lines: what one line holds is not there for another.
            stock.held = {}
    return lines, active, needs, denied


def _check_line(ln: _Line, cart: Cart, in_cart: int) -> None:
    """The checks a line whose rules are not simply `ready` goes through. `in_cart` is the
    quantity of the SKU over all lines: limits apply per order, so that splitting a SKU over
    several lines cannot get round them."""
    lr = ln.rules
    if not lr.known:
        _deny(ln, (ReasonCode.UNKNOWN_SKU,), "the SKU is not in the catalog")
    elif lr.deny is not None:
        ln.message = lr.deny.message
        _deny(ln, (lr.deny.code,), f"denied by {lr.deny_origin}")
    elif lr.not_shippable is not None:
        _deny(ln, (ReasonCode.NOT_SHIPPABLE,), lr.not_shippable)
    elif lr.max_quantity is not None and in_cart > lr.max_quantity:
        origin = _origin(lr, "max_quantity")
        _deny(
            ln,
            (ReasonCode.QUANTITY_LIMIT,),
            f"{in_cart} of this SKU in the cart, at most {lr.max_quantity} per order ({origin})",
        )
    else:
        pickup = cart.pickup_location
        if pickup is not None:
            found = lr.by_location.get(pickup)
            ln.candidates = (found,) if found is not None else ()
            ln.groups = (ln.candidates,) if found is not None else ()
            ln.thresholds = (
                {pickup: (found.min_atp, found.safety_stock)} if found is not None else {}
            )
            ln.lead = ((pickup, found.min_atp, found.safety_stock),) if found is not None else ()
        if not ln.candidates:
            why = (
                f"the pickup location {pickup} cannot serve it"
                if pickup is not None
                else f"no enabled location may send it to {cart.country}"
            )
            _deny(ln, (ReasonCode.NOT_SHIPPABLE,), why)
    if ln.status is _DENIED:
        ln.candidates = ln.groups = ()
        ln.thresholds = {}
        ln.lead = ()


def _per_sku(cart: Cart) -> dict[str, int]:
    """SKU -> its quantity over all lines of the cart (limits apply per order)."""
    per_sku: dict[str, int] = {}
    for line in cart.lines:
        per_sku[line.sku] = per_sku.get(line.sku, 0) + line.quantity
    return per_sku


def _deny(ln: _Line, reasons: tuple[ReasonCode, ...], summary: str) -> None:
    ln.status = _DENIED
    ln.reasons = reasons
    ln.summary = summary


# --- step 2: one location for the whole cart ----------------------------------------------------


def _single_location(
    active: list[_Line], needs: list[_Need], repeats: bool, cart_rules: CartRules
) -> Candidate | None:
    """The best location that can serve every line in full, or None. `needs` has, per SKU,
    what its first line asks for, its stock and that line; `repeats` tells that some SKU is on
    several lines (whose quantities then add up).

    Locations are tried in static rank order, reading each SKU's record there until one falls
    short, largest need first (the likeliest to fall short); the first rank group with a
    location that serves everything holds the answer, so later groups are never read. A
    location that serves the cart is a candidate of every SKU, and the static rank depends only
    on the location and the cart, so the groups of the SKU with the largest need hold it in the
    same group as the first line's would: walking them reads that SKU's thresholds at hand."""
    if repeats:
        need: dict[str, int] = {}
        for ln in active:
            need[ln.line.sku] = need.get(ln.line.sku, 0) + ln.line.quantity
        needs = [(need[ln.line.sku], limits, records, ln) for _, limits, records, ln in needs]
    needs = sorted(needs, key=_BY_QUANTITY, reverse=True)
    largest, _, records, walk = needs[0]
    rest = needs[1:]
    for group in walk.groups:
        for cand in group:
            location_id = cand.location.id
            # `level >= need` from the record, without storing a level (need > 0, so it
            # means a candidate with ATP >= min ATP and ATP - safety stock >= need).
            record = records.get(location_id)
            if record is None or (
                not record.unlimited
                and (record.atp < cand.min_atp or record.atp - cand.safety_stock < largest)
            ):
                continue
            for quantity, limits, other, _ in rest:
                found = other.get(location_id)
                if found is None:
                    break
                low = limits.get(location_id)
                if low is None:
                    break
                if not found.unlimited and (found.atp < low[0] or found.atp - low[1] < quantity):
                    break
            else:
                # The first location that serves everything: its group holds the answer.
                return cand if len(group) == 1 else _best_of(group, needs, cart_rules)
    return None


def _best_of(group: tuple[Candidate, ...], needs: list[_Need], cart_rules: CartRules) -> Candidate:
    """The best location of a rank group (a tie on the static criteria) that serves every SKU:
    stock, the cart's total there, may decide it."""
    members = []
    for cand in group:
        levels = [_level(ln, cand.location.id) for *_, ln in needs]
        if all(
            left is not None and left >= quantity
            for left, (quantity, *_) in zip(levels, needs, strict=True)
        ):
            members.append((cand, min(sum([left or 0 for left in levels]), UNLIMITED)))
    if len(members) == 1:
        return members[0][0]
    rank = cart_rules.rank
    return min(members, key=lambda member: rank(member[0], member[1], 0, _NO_LOCATIONS))[0]


_BY_QUANTITY: Final = itemgetter(0)
"""The sort key of a `_Need` (a C function: a Python one would cost a call per item)."""


# --- step 3: greedy fill ------------------------------------------------------------------------


def _fill(ln: _Line, cart_rules: CartRules, stock: _Stock, open_locations: dict[str, int]) -> None:
    """Fill a line greedily in rank order within the caps, reading candidates a rank group at a
    time: the usual line is covered by the first location with stock, and stock further down
    the ranking is read only when the fill needs it (or an explanation does)."""
    quantity = ln.line.quantity
    levels = ln.levels
    if ln.notes is None:
        max_shipments = cart_rules.max_shipments
        # The common case, without ranking work: the first location with stock, in static rank
        # order, covers the line on its own and may be opened (what the fill below would do).
        for location_id, min_atp, safety in ln.lead:
            left = levels.get(location_id, _UNREAD)
            if left == _UNREAD:
                # `_read`, inlined for the usual line (the lead has the thresholds at hand).
                record = ln.records.get(location_id)
                if record is None:
                    left = None
                elif record.unlimited:
                    left = UNLIMITED
                else:
                    atp = record.atp
                    left = atp - safety if atp >= min_atp and atp > safety else 0
                levels[location_id] = left
            if not left:
                continue
            if left >= quantity and (
                max_shipments is None
                or location_id in open_locations
                or len(open_locations) < max_shipments
            ):
                # What the plan below would be: `_allocate_whole`, inlined (the usual line; a
                # call costs more than the rest of it here).
                ln.allocations[location_id] = quantity
                ln.allocated = quantity
                open_locations[location_id] = open_locations.get(location_id, 0) + 1
                if left != UNLIMITED:
                    levels[location_id] = left - quantity
                if stock.held is not None:
                    stock.hold(ln.line.sku, quantity)
                ln.status = _ALLOCATED
                ln.answer = LineDecision(
                    ln.index,
                    ln.line.sku,
                    quantity,
                    _ALLOCATED,
                    quantity,
                    0,
                    (Allocation(location_id, quantity),),
                    (),
                )
                return
            break
    plan, usable = _plan(ln, cart_rules, open_locations)
    # Take what the plan says (`_take`, inlined: the line holds nothing yet, and each level in
    # the plan is the level there now).
    allocations = ln.allocations
    parts = []
    taken = 0
    for location_id, take, left in plan:
        allocations[location_id] = take
        open_locations[location_id] = open_locations.get(location_id, 0) + 1
        if left != UNLIMITED:
            levels[location_id] = left - take
        taken += take
        parts.append(Allocation(location_id, take))
    ln.allocated = taken
    if stock.held is not None:
        stock.hold(ln.line.sku, taken)
    if taken == quantity and ln.notes is None:
        # Covered: its answer is known now, so it is built here (explanations wait for the end).
        ln.status = _ALLOCATED
        ln.answer = LineDecision(
            ln.index, ln.line.sku, quantity, _ALLOCATED, quantity, 0, tuple(parts), ()
        )
    elif ln.notes is not None:
        _fill_notes(ln, usable, plan, cart_rules, stock)


def _allocate_whole(ln: _Line, location_id: str, left: int | None, stock: _Stock) -> None:
    """Allocate a line, which holds nothing yet, in full at one location whose level is `left`
    (`_take` for this case, the usual one), and answer it at once unless explaining."""
    quantity = ln.line.quantity
    ln.allocations[location_id] = quantity
    ln.allocated = quantity
    opened = stock.opened
    opened[location_id] = opened.get(location_id, 0) + 1
    if left is not None and left != UNLIMITED:
        ln.levels[location_id] = left - quantity
    if stock.held is not None:
        stock.hold(ln.line.sku, quantity)
    ln.status = _ALLOCATED
    if ln.notes is None:
        ln.answer = LineDecision(
            ln.index,
            ln.line.sku,
            quantity,
            _ALLOCATED,
            quantity,
            0,
            (Allocation(location_id, quantity),),
            (),
        )


def _plan(
    ln: _Line, cart_rules: CartRules, open_locations: dict[str, int]
) -> tuple[list[tuple[str, int, int]], list[tuple[Candidate, int]]]:
    """The fill's plan, (location id, to take, its level now) best first, and the candidates
    it read: those with known, positive stock, best first (all of them when the plan falls
    short or when explaining)."""
    quantity = ln.line.quantity
    levels = ln.levels
    rank = cart_rules.rank
    slots = cart_rules.max_locations_per_line
    max_shipments = cart_rules.max_shipments
    new_allowed = None
    if max_shipments is not None:
        opened = len(open_locations)
        new_allowed = max_shipments - opened if opened < max_shipments else 0
    groups = ln.groups
    # The plain greedy (`_greedy_capped` without look-ahead, or no caps at all), run as
    # candidates are read. A line has at most as many usable locations as candidates, so that
    # many slots is no cap.
    plan: list[tuple[str, int, int]] = []
    remaining = quantity
    slots_left = len(ln.candidates) if slots is None else slots
    new_left = len(ln.candidates) if new_allowed is None else new_allowed
    usable: list[tuple[Candidate, int]] = []
    read = 0
    while remaining and slots_left and read < len(groups):
        group = groups[read]
        read += 1
        if len(group) == 1:
            cand = group[0]
            location_id = cand.location.id
            left = levels.get(location_id, _UNREAD)
            if left == _UNREAD:
                left = _read(ln, location_id)
            if not left:
                continue
            ranked = [(cand, left)]
        else:
            ranked = _rank_group(ln, group, rank, open_locations)
        usable += ranked
        for cand, left in ranked:
            location_id = cand.location.id
            if location_id not in open_locations:
                if not new_left:
                    continue
                new_left -= 1
            take = left if left < remaining else remaining  # min(): a slower, generic call
            plan.append((location_id, take, left))
            remaining -= take
            slots_left -= 1
            if not remaining or not slots_left:
                break
    if remaining or ln.notes is not None:
        for group in groups[read:]:
            usable += _rank_group(ln, group, rank, open_locations)
    if remaining:
        # Short within the caps: the look-ahead may find locations that cover the line. When
        # the plain greedy covers it, the look-ahead never skips a location (what the plain
        # greedy then takes covers every remainder), so it is only run here.
        if slots is not None or new_allowed is not None:
            ahead, taken = _greedy_capped(usable, quantity, slots, new_allowed, open_locations)
            if taken >= quantity or taken >= quantity - remaining:
                plan = ahead
        reachable = 0
        for _, left in usable:
            reachable += left
        ln.reachable = reachable
    return plan, usable


def _rank_group(
    ln: _Line, group: tuple[Candidate, ...], rank: RankKey, open_locations: dict[str, int]
) -> list[tuple[Candidate, int]]:
    """A rank group's candidates with known, positive allocatable stock, best first."""
    levels = ln.levels
    found = []
    for cand in group:
        location_id = cand.location.id
        left = levels.get(location_id, _UNREAD)
        if left == _UNREAD:
            left = _read(ln, location_id)
        if left:
            found.append((cand, left))
    if len(found) > 1:  # the keys end with the location's index, so they never tie
        need = ln.line.quantity
        found.sort(key=lambda entry: rank(entry[0], entry[1], need, open_locations))
    return found


def _fill_notes(
    ln: _Line,
    usable: list[tuple[Candidate, int]],
    plan: list[tuple[str, int, int]],
    cart_rules: CartRules,
    stock: _Stock,
) -> None:
    """Why each candidate the fill did not use was left out, for explanations."""
    assert ln.notes is not None
    used = {location_id for location_id, _, _ in plan}
    covered = sum(q for _, q, _ in plan) >= ln.line.quantity
    ranks = [c.location.id for c, _ in usable]
    last_used = max((ranks.index(loc) for loc in used), default=-1)
    for position, location_id in enumerate(ranks):
        if location_id in used:
            continue
        if covered and position > last_used:
            ln.notes[location_id] = "not needed: locations ranked higher covered the line"
        else:
            ln.notes[location_id] = _cap_note(cart_rules)
    sku = ln.line.sku
    usable_ids = set(ranks)
    for cand in ln.candidates:
        location_id = cand.location.id
        record = stock.record(sku, location_id)
        if location_id in usable_ids or record is None or location_id in ln.notes:
            continue
        if not record.unlimited and record.atp >= cand.min_atp and record.atp > cand.safety_stock:
            ln.notes[location_id] = "its stock was taken by earlier lines of the cart"


def _cap_note(cart_rules: CartRules) -> str:
    caps = []
    if cart_rules.max_locations_per_line is not None:
        caps.append(f"at most {cart_rules.max_locations_per_line} location(s) per line")
    if cart_rules.max_shipments is not None:
        caps.append(f"at most {cart_rules.max_shipments} shipment(s) per cart")
    return "not used: " + " and ".join(caps)


def _greedy_capped(
    usable: list[tuple[Candidate, int]],
    quantity: int,
    slots: int | None,
    new_allowed: int | None,
    open_locations: dict[str, int],
) -> tuple[list[tuple[str, int, int]], int]:
    """Greedy fill within caps with a look-ahead, and what it takes: a location is skipped when
    taking it would leave a remainder that the best remaining choices can no longer cover."""
    plan: list[tuple[str, int, int]] = []
    remaining = quantity
    slots_left = len(usable) if slots is None else slots
    new_left = len(usable) if new_allowed is None else new_allowed
    after: _After | None = None
    for i, (cand, left) in enumerate(usable):
        is_new = cand.location.id not in open_locations
        if after is not None:
            after.drop(left, is_new)  # `after` holds the locations after this one
        if remaining == 0 or slots_left == 0:
            break
        if is_new and new_left == 0:
            continue
        take = min(remaining, left)
        rest = remaining - take
        if rest > 0:
            if after is None:
                after = _After(usable[i + 1 :], open_locations)
            if after.best_cover(slots_left - 1, new_left - is_new) < rest:
                continue
        plan.append((cand.location.id, take, left))
        remaining = rest
        slots_left -= 1
        new_left -= is_new
    return plan, quantity - remaining


class _After:
    """The allocatable stock at the locations after a position of a line's ranked list, for the
    look-ahead: sorted once, then each position passed is dropped (a binary search), so a line
    costs one sort instead of one per location it considers."""

    __slots__ = ("fresh", "fresh_total", "opened", "opened_total")

    def __init__(self, rest: list[tuple[Candidate, int]], open_locations: dict[str, int]) -> None:
        self.opened = sorted([left for c, left in rest if c.location.id in open_locations])
        """Ascending: what locations the cart already ships from hold."""
        self.fresh = sorted([left for c, left in rest if c.location.id not in open_locations])
        """Ascending: what the locations a shipment would be new at hold."""
        self.opened_total = sum(self.opened)
        self.fresh_total = sum(self.fresh)

    def drop(self, left: int, is_new: bool) -> None:
        if is_new:
            del self.fresh[bisect_left(self.fresh, left)]
            self.fresh_total -= left
        else:
            del self.opened[bisect_left(self.opened, left)]
            self.opened_total -= left

    def best_cover(self, slots: int, new: int) -> int:
        """The most `slots` more locations could give, at most `new` of them not yet open: the
        `slots` largest among the open ones and the `new` largest new ones (every level here is
        positive, so taking the largest is best)."""
        if slots <= 0:
            return 0
        fresh = min(new, slots, len(self.fresh))
        if slots >= len(self.opened) + fresh:  # all that may count fits in the slots
            if fresh == len(self.fresh):
                return self.opened_total + self.fresh_total
            return self.opened_total + (sum(self.fresh[-fresh:]) if fresh else 0)
        # Here `slots` is below what the rest holds, so a cap bounds it: small lists.
        top = self.opened[-slots:] + (self.fresh[-fresh:] if fresh else [])
        top.sort()
        return sum(top[-slots:])


def _take(ln: _Line, location_id: str, quantity: int, stock: _Stock) -> None:
    """Allocate at a location (the fill and `_allocate_whole` do this inline for their cases)."""
    allocations = ln.allocations
    held = allocations.get(location_id, 0)
    if not held:
        opened = stock.opened
        opened[location_id] = opened.get(location_id, 0) + 1
    allocations[location_id] = held + quantity
    ln.allocated += quantity
    if stock.held is not None:
        stock.hold(ln.line.sku, quantity)
    left = _level(ln, location_id)
    # An unknown availability has no level to lower: what the `allocate` policy takes there is
    # taken on trust, and stays unknown for the next line.
    if left is not None and left != UNLIMITED:
        ln.levels[location_id] = left - quantity


def _give_back(ln: _Line, location_id: str, quantity: int) -> None:
    """Raise the level where a line gives stock back (none where it is unknown)."""
    current = _level(ln, location_id)
    if current is not None and current != UNLIMITED:
        ln.levels[location_id] = current + quantity


def _release(ln: _Line, stock: _Stock, why: str) -> None:
    """Give a line's stock back (it is denied, or reserved whole): its locations are no longer
    shipments of the cart unless another line uses them."""
    for location_id, quantity in ln.allocations.items():
        _give_back(ln, location_id, quantity)
        left = stock.opened[location_id] - 1
        if left:
            stock.opened[location_id] = left
        else:
            del stock.opened[location_id]
        if ln.notes is not None:
            ln.notes[location_id] = why
    stock.hold(ln.line.sku, -ln.allocated)
    ln.allocations.clear()
    ln.allocated = 0


# --- step 4: what is still short ----------------------------------------------------------------


def _shortfall(
    ln: _Line,
    cart_rules: CartRules,
    stock: _Stock,
    now: datetime,
    open_locations: dict[str, int],
) -> None:
    sku = ln.line.sku
    lr = ln.rules
    quantity = ln.line.quantity
    unknown = [
        c
        for c in ln.candidates
        if _level(ln, c.location.id) is None and stock.is_unknown(sku, c.location.id)
    ]
    policy = lr.unknown_availability
    if unknown and policy == "allocate":
        target = _open_unknown(ln, unknown, cart_rules, open_locations)
        if target is not None:
            _take(ln, target.location.id, quantity - ln.allocated, stock)
            ln.status = _ALLOCATED
            ln.reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
            ln.summary = (
                f"allocated at {target.location.id} although its availability is "
                f"unknown (unknown_availability: allocate, {_origin(lr, 'unknown_availability')})"
            )
            return
    if unknown and policy == "reserve":
        if ln.allocations and not lr.backorder.split:
            _release(ln, stock, _SPLIT_NOTE.format(origin=_origin(lr, "backorder.split")))
        ln.reservation = Reservation(
            quantity=quantity - ln.allocated, location_id=unknown[0].location.id
        )
        ln.status = _RESERVED
        ln.reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
        ln.summary = (
            f"reserved at {unknown[0].location.id}: its availability is unknown "
            f"(unknown_availability: reserve, {_origin(lr, 'unknown_availability')})"
        )
        return

    short_reason = _short_reason(ln, stock)
    backorder = lr.backorder
    if not backorder.allowed:
        why: tuple[ReasonCode, ...] = (
            (ReasonCode.AVAILABILITY_UNKNOWN, short_reason) if unknown else (short_reason,)
        )
        origin = _origin(lr, "backorder.allowed")
        _deny_short(
            ln,
            stock,
            why,
            f"{short_reason.value}: only {ln.allocated} of {quantity} can be allocated, and "
            f"backorders are not allowed ({origin})",
        )
        return
    to_reserve = quantity - ln.allocated
    if ln.allocations and not backorder.split:
        to_reserve = quantity
    reserved_before = stock.backordered.get(sku, 0)
    if backorder.max_quantity is not None and reserved_before + to_reserve > backorder.max_quantity:
        _deny_short(
            ln,
            stock,
            (short_reason, ReasonCode.BACKORDER_LIMIT),
            f"{reserved_before + to_reserve} of this SKU would be backordered, at most "
            f"{backorder.max_quantity} per order ({_origin(lr, 'backorder.max_quantity')})",
        )
        return
    chosen, failure, detail = _restock_location(ln, stock, now)
    if chosen is None:
        why = (short_reason, failure)
        if unknown:
            why = (ReasonCode.AVAILABILITY_UNKNOWN, *why)
        _deny_short(ln, stock, why, detail)
        return
    cand, record = chosen
    if to_reserve == quantity and ln.allocations:
        _release(ln, stock, _SPLIT_NOTE.format(origin=_origin(lr, "backorder.split")))
    restock = _aware(record.restock_time)
    if restock is not None and restock < now:
        restock = None
    ln.reservation = Reservation(
        quantity=to_reserve, location_id=cand.location.id, restock_time=restock
    )
    stock.backordered[sku] = reserved_before + to_reserve
    ln.status = _RESERVED
    ln.reasons = (short_reason,)
    when = f"restock {restock.isoformat()}" if restock else "no restock time known"
    ln.summary = f"reserved {to_reserve} at {cand.location.id} ({when})"


def _origin(lr: LineRules, setting: str) -> Origin:
    for name, _, origin in lr.origins:
        if name == setting:
            return origin
    return Origin("built-in")


def _open_unknown(
    ln: _Line, unknown: list[Candidate], cart_rules: CartRules, open_locations: dict[str, int]
) -> Candidate | None:
    if (
        cart_rules.max_locations_per_line is not None
        and len(ln.allocations) >= cart_rules.max_locations_per_line
    ):
        return None
    for cand in unknown:
        if (
            cart_rules.max_shipments is None
            or cand.location.id in open_locations
            or len(open_locations) < cart_rules.max_shipments
        ):
            return cand
    return None


def _short_reason(ln: _Line, stock: _Stock) -> ReasonCode:
    """Why known stock did not cover the line: caps, thresholds, or plain shortage."""
    sku = ln.line.sku
    quantity = ln.line.quantity
    if ln.reachable >= quantity:
        return ReasonCode.SPLIT_LIMIT
    raw = 0
    for cand in ln.candidates:
        record = stock.record(sku, cand.location.id)
        if record is not None:
            raw += record.atp
    # What the other lines of the cart hold is not there for this one (no count is kept when no
    # other line has a SKU of this cart).
    if stock.held is not None:
        raw -= stock.held.get(sku, 0) - ln.allocated
    if raw >= quantity:
        return ReasonCode.BELOW_SAFETY_STOCK
    return ReasonCode.INSUFFICIENT_STOCK


def _restock_location(
    ln: _Line, stock: _Stock, now: datetime
) -> tuple[tuple[Candidate, StockRecord] | None, ReasonCode, str]:
    """The location to reserve at: earliest known restock first, then routing rank.

    Only a location with a record of the SKU can take a backorder (one without does not carry
    it). A restock time already past is no promise: it counts as unknown."""
    backorder = ln.rules.backorder
    sku = ln.line.sku
    options: list[tuple[datetime, int, Candidate, StockRecord]] = []
    failure = ReasonCode.RESTOCK_UNKNOWN
    detail = "no location has a known restock time"
    latest_allowed = (
        None if backorder.within_days is None else now + timedelta(days=backorder.within_days)
    )
    too_late: datetime | None = None
    for rank, cand in enumerate(ln.candidates):
        record = stock.record(sku, cand.location.id)
        if record is None:
            continue
        if record.backorderable is False:
            if failure is ReasonCode.RESTOCK_UNKNOWN:
                failure = ReasonCode.BACKORDER_NOT_ALLOWED
                detail = f"{cand.location.id} does not take backorders for this SKU"
            continue
        restock = _aware(record.restock_time)
        if restock is not None and restock < now:
            restock = None
        if restock is None:
            if not backorder.restock_required:
                options.append((_NEVER, rank, cand, record))
            continue
        if latest_allowed is not None and restock > latest_allowed:
            too_late = restock if too_late is None else min(too_late, restock)
            failure = ReasonCode.RESTOCK_TOO_LATE
            continue
        options.append((restock, rank, cand, record))
    if too_late is not None:  # the earliest of them; once too late, the failure stays so
        detail = (
            f"the earliest restock ({too_late.date().isoformat()}) is more than "
            f"{backorder.within_days} days away"
        )
    if not options:
        return None, failure, detail
    options.sort(key=lambda o: (o[0], o[1]))
    _, _, cand, record = options[0]
    return (cand, record), failure, detail


_NEVER: Final = datetime.max.replace(tzinfo=UTC)
"""The restock time of a reservation that has none (sorts after every known one)."""


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


_SPLIT_NOTE: Final = (
    "released: the line may not be part allocated and part reserved "
    "(backorder.split: false, {origin})"
)


def _deny_short(ln: _Line, stock: _Stock, reasons: tuple[ReasonCode, ...], summary: str) -> None:
    ln.available = ln.allocated
    _release(ln, stock, "released: the line is denied, so it takes no stock")
    _deny(ln, tuple(dict.fromkeys(reasons)), summary)


# --- the answer ---------------------------------------------------------------------------------


def _decision(
    cart: Cart,
    lines: list[_Line],
    rules: RuleSet,
    cart_rules: CartRules,
    stock: _Stock,
    explain: bool,
    single: bool,
    denied: int,
    reserved: int,
) -> Decision:
    """The answer; `denied` and `reserved` count the lines so decided."""
    if denied and (denied == len(lines) or not cart_rules.partial_cart):
        outcome = _DENY
    elif reserved:
        outcome = _RESERVE
    else:
        outcome = _ALLOCATE
    answers = []
    for ln in lines:
        answer = ln.answer  # built as the line was filled, in the usual case
        answers.append(answer if answer is not None else _line_decision(ln, rules, stock, cart))
    shipments = []
    if outcome is not _DENY:
        # Location id -> its shipment's lines, in the order locations are first used.
        grouped: dict[str, list[ShipmentLine]] = {}
        for answer in answers:
            if answer.status is _DENIED:
                continue
            for allocation in answer.allocations:
                shipped = ShipmentLine(answer.line, answer.sku, allocation.quantity)
                items = grouped.get(allocation.location_id)
                if items is None:
                    grouped[allocation.location_id] = [shipped]
                else:
                    items.append(shipped)
        for location_id, items in grouped.items():
            shipments.append(Shipment(location_id, tuple(items)))
    explanation = None
    if explain:
        explanation = CartExplanation(
            settings=tuple(_setting(n, v, o) for n, v, o in cart_rules.origins),
            summary=_cart_summary(outcome, lines, cart_rules, single, denied),
        )
    return Decision(outcome, rules.id, tuple(answers), tuple(shipments), cart.cart_id, explanation)


_STOCK_REASONS: Final = frozenset(
    {ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BELOW_SAFETY_STOCK, ReasonCode.SPLIT_LIMIT}
)


def _line_decision(ln: _Line, rules: RuleSet, stock: _Stock, cart: Cart) -> LineDecision:
    status = ln.status or _DENIED
    available = None
    if (
        status is _DENIED
        and ln.available is not None
        and ln.reasons
        and ln.reasons[0] in _STOCK_REASONS
    ):
        available = ln.available
    reservation = ln.reservation
    line = ln.line
    return LineDecision(
        ln.index,
        line.sku,
        line.quantity,
        status,
        ln.allocated,
        0 if reservation is None else reservation.quantity,
        tuple(
            [Allocation(location_id, quantity) for location_id, quantity in ln.allocations.items()]
        ),
        ln.reasons,
        reservation,
        ln.message,
        available,
        None if ln.notes is None else _line_explanation(ln, rules, stock, cart),
    )


def _setting(
    name: str, value: Any, origin: Origin, location_id: str | None = None
) -> SettingOrigin:
    return SettingOrigin(
        setting=name,
        value=value,
        rule=origin.rule,
        file=origin.file.rsplit("/", 1)[-1] if origin.file else None,
        line=origin.line,
        location_id=location_id,
    )


def _line_explanation(ln: _Line, rules: RuleSet, stock: _Stock, cart: Cart) -> LineExplanation:
    lr = ln.rules
    notes = ln.notes or {}
    settings = [_setting(n, v, o) for n, v, o in lr.origins]
    excluded = dict(lr.excluded)
    candidate_ids = {c.location.id for c in ln.candidates}
    locations = []
    for loc in rules.locations:
        cand = lr.by_location.get(loc.id)
        if cand is not None and loc.id in candidate_ids:
            settings.extend(_setting(n, v, o, loc.id) for n, v, o in cand.origins)
        record = stock.record(ln.line.sku, loc.id)
        atp = record.atp if record is not None else None
        allocated = ln.allocations.get(loc.id, 0)
        reserved = (
            ln.reservation.quantity
            if ln.reservation is not None and ln.reservation.location_id == loc.id
            else 0
        )
        safety = cand.safety_stock if cand is not None else None
        allocatable = _allocatable(record, cand) if cand is not None else None
        verdict, detail = _verdict(
            ln,
            loc.id,
            excluded,
            candidate_ids,
            cart,
            record,
            cand,
            allocated,
            reserved,
            notes,
            stock.is_unknown(ln.line.sku, loc.id),
        )
        locations.append(
            LocationExplanation(
                location_id=loc.id,
                verdict=verdict,
                detail=detail,
                atp=atp,
                safety_stock=safety,
                allocatable=allocatable,
                allocated=allocated,
                reserved=reserved,
            )
        )
    summary = ln.summary or _line_summary(ln)
    return LineExplanation(settings=tuple(settings), locations=tuple(locations), summary=summary)


def _allocatable(record: StockRecord | None, cand: Candidate) -> int | None:
    """The reference formula `_Stock.levels` inlines; None when unknown or not tracked."""
    if record is None or record.unlimited:
        return None
    if record.atp < cand.min_atp:
        return 0
    return max(0, record.atp - cand.safety_stock)


def _verdict(
    ln: _Line,
    location_id: str,
    excluded: dict[str, str],
    candidate_ids: set[str],
    cart: Cart,
    record: StockRecord | None,
    cand: Candidate | None,
    allocated: int,
    reserved: int,
    notes: dict[str, str],
    unknown: bool,
) -> tuple[LocationVerdict, str]:
    if allocated or reserved:
        parts = []
        if allocated:
            parts.append(f"allocated {allocated}")
        if reserved and ln.reservation is not None:
            when = ln.reservation.restock_time
            parts.append(
                f"reserved {reserved}"
                + (f" against the restock of {when.date().isoformat()}" if when else "")
            )
        return LocationVerdict.USED, " and ".join(parts)
    if cart.pickup_location is not None and location_id != cart.pickup_location:
        return LocationVerdict.EXCLUDED, f"the cart is collected at {cart.pickup_location}"
    if location_id in excluded and location_id not in candidate_ids:
        return LocationVerdict.EXCLUDED, excluded[location_id]
    if location_id not in candidate_ids:
        return LocationVerdict.EXCLUDED, f"not considered: the line is denied ({ln.summary})"
    assert cand is not None
    if record is None:
        return LocationVerdict.PASSED_OVER, (
            "availability unknown: its source gave no answer"
            if unknown
            else "no stock reported for this SKU here"
        )
    if location_id in notes:
        return LocationVerdict.PASSED_OVER, notes[location_id]
    if record.unlimited:
        return LocationVerdict.PASSED_OVER, "not needed: stock here is not tracked (unlimited)"
    if record.atp < cand.min_atp:
        origin = next((o for n, _, o in cand.origins if n == "min_atp"), "defaults")
        return LocationVerdict.EXCLUDED, (
            f"ATP {record.atp} is under the minimum ATP {cand.min_atp} ({origin})"
        )
    if record.atp - cand.safety_stock <= 0:
        return LocationVerdict.PASSED_OVER, (
            f"nothing allocatable: ATP {record.atp}, safety stock {cand.safety_stock}"
        )
    return LocationVerdict.PASSED_OVER, "not used"


def _line_summary(ln: _Line) -> str:
    if ln.status is _ALLOCATED:
        parts = ", ".join(f"{q} from {loc}" for loc, q in ln.allocations.items())
        return f"allocated {parts}"
    return ln.summary


def _cart_summary(
    outcome: Outcome, lines: list[_Line], cart_rules: CartRules, single: bool, denied: int
) -> str:
    criteria = ", ".join(cart_rules.criteria)
    text = f"{outcome.value}: {len(lines)} line(s), routing by {criteria}"
    if single:
        text += "; one location serves the whole cart"
    if denied:
        partial = (
            "partial carts allowed" if cart_rules.partial_cart else "partial carts not allowed"
        )
        text += f"; {denied} line(s) denied ({partial})"
    return text


def assess(
    sku: str,
    country: str,
    channel: str | None,
    availability: Availability,
    rules: RuleSet,
    now: datetime,
) -> SkuAvailability:
    """What a product page may promise for one SKU and destination, under the same rules and
    thresholds `decide` applies (read side: nothing is taken)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    lr = rules.line_rules(sku, country, channel)
    reason: ReasonCode | None = None
    if not lr.known:
        reason = ReasonCode.UNKNOWN_SKU
    elif lr.deny is not None:
        reason = lr.deny.code
    elif lr.not_shippable is not None or not lr.candidates:
        reason = ReasonCode.NOT_SHIPPABLE
    if reason is not None:
        return SkuAvailability(
            sku=sku,
            known=lr.known,
            shippable=False,
            orderable=False,
            sellable=0,
            low_stock=False,
            backorderable=False,
            reasons=(reason,),
        )
    stock = _Stock(availability)
    probe = _Line(0, CartLine(sku=sku, quantity=1), lr, None)
    probe.records = availability.stock.get(sku) or _NO_RECORDS
    probe.levels = {}
    levels: list[int] = []
    unknown = False
    for cand in lr.candidates:
        left = _level(probe, cand.location.id)
        if left:
            levels.append(min(left, MAX_QUANTITY))
        elif left is None and stock.is_unknown(sku, cand.location.id):
            unknown = True
    # One line draws on at most as many locations as the routing caps allow.
    cart_rules = rules.cart_rules(country, channel)
    caps = [c for c in (cart_rules.max_locations_per_line, cart_rules.max_shipments) if c]
    if caps:
        levels = sorted(levels, reverse=True)[: min(caps)]
    sellable = min(sum(levels), MAX_QUANTITY, lr.max_quantity or MAX_QUANTITY)
    restock = None
    backorderable = False
    if lr.backorder.allowed and lr.backorder.max_quantity != 0:
        chosen, _, _ = _restock_location(probe, stock, now)
        if chosen is not None:
            backorderable = True
            restock = _aware(chosen[1].restock_time)
            if restock is not None and restock < now:
                restock = None
    trusted = unknown and lr.unknown_availability != "deny"
    reasons: tuple[ReasonCode, ...] = ()
    if unknown and sellable == 0:
        reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
    elif sellable == 0:
        reasons = (_short_reason(probe, stock),)
    return SkuAvailability(
        sku=sku,
        known=True,
        shippable=True,
        orderable=sellable > 0 or backorderable or trusted,
        sellable=sellable,
        low_stock=0 < sellable <= lr.low_stock_threshold,
        backorderable=backorderable,
        availability_unknown=unknown,
        restock_time=restock,
        reasons=reasons,
    )
