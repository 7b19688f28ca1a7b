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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from engine.policy.compile import Candidate, CartRules, LineRules, Origin, RuleSet

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


@dataclass(slots=True)
class _Line:
    index: int
    line: CartLine
    rules: LineRules
    candidates: tuple[Candidate, ...] = ()
    groups: tuple[tuple[Candidate, ...], ...] = ()
    thresholds: dict[str, tuple[int, int]] = field(default_factory=dict)
    status: LineStatus | None = None
    reasons: tuple[ReasonCode, ...] = ()
    message: str | None = None
    allocations: dict[str, int] = field(default_factory=dict)
    allocated: int = 0
    reservation: Reservation | None = None
    available: int | None = None
    """On a line denied for stock: what the fill could take within the caps."""
    reachable: int = 0
    """What all candidates hold together, caps aside: tells SPLIT_LIMIT from a shortage."""
    notes: dict[str, str] | None = None
    summary: str = ""


class _Stock:
    """Allocatable stock per SKU and location for one cart, consumed as lines take it.

    Levels are computed once per SKU, in one pass over that SKU's records at the locations that
    may serve it, and then only adjusted, so a SKU on several lines of a cart draws from one
    pool. A candidate with no record has nothing, unless its source could not answer (None)."""

    __slots__ = ("_by_sku", "_levels", "_unknown", "backordered", "lines", "opened")

    def __init__(self, availability: Availability) -> None:
        self._by_sku = availability.stock
        self._unknown = availability.unknown
        self._levels: dict[str, dict[str, int]] = {}
        self.lines: list[_Line] = []
        """The cart's lines, for what the others hold when a line comes up short."""
        self.opened: dict[str, int] = {}
        """Location id -> lines allocated there now: the cart's shipments."""
        self.backordered: dict[str, int] = {}
        """SKU -> units reserved against restocks so far (backorder limits are per order)."""

    def record(self, sku: str, location_id: str) -> StockRecord | None:
        by_location = self._by_sku.get(sku)
        return None if by_location is None else by_location.get(location_id)

    def is_unknown(self, sku: str, location_id: str) -> bool:
        unknown = self._unknown.get(sku)
        return unknown is not None and location_id in unknown

    def levels(self, sku: str, thresholds: dict[str, tuple[int, int]]) -> dict[str, int]:
        """Location id -> allocatable, for the candidates that have a record of `sku`.
        `thresholds` maps each candidate location to its (min ATP, safety stock)."""
        found = self._levels.get(sku)
        if found is not None:
            return found
        records = self._by_sku.get(sku)
        found = (
            {
                location_id: (
                    UNLIMITED
                    if rec.unlimited
                    else rec.atp - limits[1]
                    if rec.atp >= limits[0] and rec.atp > limits[1]
                    else 0
                )
                for location_id, rec in records.items()
                if (limits := thresholds.get(location_id)) is not None
            }
            if records
            else {}
        )
        self._levels[sku] = found
        return found

    def left(self, sku: str, cand: Candidate) -> int | None:
        """What is still allocatable at a candidate; None when its source could not say."""
        location_id = cand.location.id
        left = self._levels[sku].get(location_id)
        if left is None:
            return None if self.is_unknown(sku, location_id) else 0
        return left

    def take(self, sku: str, location_id: str, quantity: int) -> None:
        """Take stock. A location whose availability is unknown has no level to lower: what
        the `allocate` policy takes there is taken on trust, and stays unknown for the next."""
        levels = self._levels[sku]
        current = levels.get(location_id)
        if current is not None and current != UNLIMITED:
            levels[location_id] = current - quantity

    def give_back(self, sku: str, location_id: str, quantity: int) -> None:
        self.take(sku, location_id, -quantity)


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
    country, channel = cart.country, cart.channel
    cart_rules = rules.cart_rules(country, channel)
    stock = _Stock(availability)
    per_sku: dict[str, int] = {}
    for line in cart.lines:
        per_sku[line.sku] = per_sku.get(line.sku, 0) + line.quantity
    lines = [
        _check_line(i, line, rules, cart, per_sku[line.sku], explain)
        for i, line in enumerate(cart.lines)
    ]
    stock.lines = lines
    active = [ln for ln in lines if ln.status is None]
    open_locations = stock.opened
    single = None
    if active and cart_rules.criteria[0] == "single_location":
        single = _single_location(active, cart_rules, stock)
    for ln in active:
        if single is not None:
            _take(ln, single.location.id, ln.line.quantity, stock)
            ln.status = _ALLOCATED
            if ln.notes is not None:
                ln.summary = f"the whole cart ships from {single.location.id} (single_location)"
                for cand in ln.candidates:
                    if cand.location.id != single.location.id:
                        ln.notes[cand.location.id] = (
                            f"not needed: the whole cart ships from {single.location.id}"
                        )
            continue
        _fill(ln, cart_rules, stock, open_locations)
        if ln.allocated < ln.line.quantity:
            _shortfall(ln, cart_rules, stock, now, open_locations)
        else:
            ln.status = _ALLOCATED
    return _decision(cart, lines, rules, cart_rules, stock, explain, single is not None)


# --- step 1: rules that deny a line outright ---------------------------------------------------


def _check_line(
    index: int, line: CartLine, rules: RuleSet, cart: Cart, in_cart: int, explain: bool
) -> _Line:
    """`in_cart` is the quantity of the SKU over all lines: limits apply per order, so that
    splitting a SKU over several lines cannot get round them."""
    lr = rules.line_rules(line.sku, cart.country, cart.channel)
    ln = _Line(
        index, line, lr, lr.candidates, lr.groups, lr.thresholds, notes={} if explain else None
    )
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
    return ln


def _deny(ln: _Line, reasons: tuple[ReasonCode, ...], summary: str) -> None:
    ln.status = _DENIED
    ln.reasons = reasons
    ln.summary = summary


# --- step 2: one location for the whole cart ----------------------------------------------------


def _single_location(active: list[_Line], cart_rules: CartRules, stock: _Stock) -> Candidate | None:
    """The best location that can serve every line in full, or None.

    Locations are tried in static rank order (the first line's groups): the first group with a
    location that serves everything holds the answer, so later groups are never read."""
    need: dict[str, int] = {}
    thresholds: dict[str, dict[str, tuple[int, int]]] = {}
    for ln in active:
        sku = ln.line.sku
        need[sku] = need.get(sku, 0) + ln.line.quantity
        thresholds[sku] = ln.thresholds
    able: set[str] | None = None
    for sku, quantity in need.items():
        levels = stock.levels(sku, thresholds[sku])
        if able is None:
            able = {loc for loc, left in levels.items() if left >= quantity}
        else:
            able = {loc for loc in able if levels.get(loc, 0) >= quantity}
        if not able:
            return None
    assert able is not None
    rank = cart_rules.rank
    for group in active[0].groups:
        members = [cand for cand in group if cand.location.id in able]
        if len(members) == 1:
            return members[0]
        if members:
            # A tie on the static criteria: stock (the cart's total there) may decide it.
            def total(cand: Candidate) -> int:
                location_id = cand.location.id
                return min(
                    sum(stock.levels(sku, thresholds[sku])[location_id] for sku in need),
                    UNLIMITED,
                )

            return min(members, key=lambda cand: rank(cand, total(cand), 0, _NO_LOCATIONS))
    return None


# --- step 3: greedy fill ------------------------------------------------------------------------


def _usable(
    ln: _Line, cart_rules: CartRules, stock: _Stock, open_locations: dict[str, int]
) -> Iterator[tuple[Candidate, int]]:
    """Candidates with known, positive allocatable stock, best first, read lazily."""
    levels = stock.levels(ln.line.sku, ln.thresholds)
    need = ln.line.quantity
    for group in ln.groups:
        if len(group) == 1:
            left = levels.get(group[0].location.id)
            if left:
                yield group[0], left
            continue
        rank = cart_rules.rank
        decorated = []
        for cand in group:
            left = levels.get(cand.location.id)
            if left:
                decorated.append((rank(cand, left, need, open_locations), cand, left))
        decorated.sort()
        for _, cand, left in decorated:
            yield cand, left


def _fill(ln: _Line, cart_rules: CartRules, stock: _Stock, open_locations: dict[str, int]) -> None:
    quantity = ln.line.quantity
    if ln.notes is None:
        fast = _first_covering(ln, stock, cart_rules.max_shipments)
        if fast is not None:
            _take(ln, fast[0].location.id, quantity, stock)
            return
    usable_iter = _usable(ln, cart_rules, stock, open_locations)
    first = next(usable_iter, None)
    max_shipments = cart_rules.max_shipments
    if (
        first is not None
        and first[1] >= quantity
        and (
            max_shipments is None
            or first[0].location.id in open_locations
            or len(open_locations) < max_shipments
        )
    ):
        # The best-ranked location covers the line: what every strategy below would choose.
        plan = [(first[0], quantity)]
        usable = [first]
        if ln.notes is not None:
            usable.extend(usable_iter)
    else:
        usable = ([first] if first is not None else []) + list(usable_iter)
        slots = cart_rules.max_locations_per_line
        new_allowed = None if max_shipments is None else max(0, max_shipments - len(open_locations))
        if slots is None and new_allowed is None:
            plan = _greedy(usable, quantity)
        else:
            plan = _greedy_capped(usable, quantity, slots, new_allowed, open_locations, True)
            if sum(q for _, q in plan) < quantity:
                plain = _greedy_capped(usable, quantity, slots, new_allowed, open_locations, False)
                if sum(q for _, q in plain) > sum(q for _, q in plan):
                    plan = plain
    ln.reachable = sum(left for _, left in usable)
    for cand, take in plan:
        _take(ln, cand.location.id, take, stock)
    if ln.notes is not None:
        _fill_notes(ln, usable, plan, cart_rules, stock)


def _fill_notes(
    ln: _Line,
    usable: list[tuple[Candidate, int]],
    plan: list[tuple[Candidate, int]],
    cart_rules: CartRules,
    stock: _Stock,
) -> None:
    """Why each candidate the fill did not use was left out, for explanations."""
    assert ln.notes is not None
    used = {c.location.id for c, _ in plan}
    covered = sum(q for _, q in plan) >= ln.line.quantity
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


def _first_covering(
    ln: _Line, stock: _Stock, max_shipments: int | None
) -> tuple[Candidate, int] | None:
    """The common case without ranking work: the first location with stock, in static rank
    order, covers the line on its own (and may be opened). None when that is not so."""
    levels = stock.levels(ln.line.sku, ln.thresholds)
    for group in ln.groups:
        if len(group) != 1:
            return None
        cand = group[0]
        left = levels.get(cand.location.id)
        if not left:
            continue
        if left < ln.line.quantity:
            return None
        location_id = cand.location.id
        if (
            max_shipments is not None
            and location_id not in stock.opened
            and len(stock.opened) >= max_shipments
        ):
            return None
        return cand, left
    return None


def _cap_note(cart_rules: CartRules) -> str:
    caps = []
    if cart_rules.max_locations_per_line is not None:
        caps.append(f"at most {cart_rules.max_locations_per_line} location(s) per line")
    if cart_rules.max_shipments is not None:
        caps.append(f"at most {cart_rules.max_shipments} shipment(s) per cart")
    return "not used: " + " and ".join(caps)


def _greedy(usable: list[tuple[Candidate, int]], quantity: int) -> list[tuple[Candidate, int]]:
    plan = []
    remaining = quantity
    for cand, left in usable:
        if remaining == 0:
            break
        take = min(remaining, left)
        plan.append((cand, take))
        remaining -= take
    return plan


def _greedy_capped(
    usable: list[tuple[Candidate, int]],
    quantity: int,
    slots: int | None,
    new_allowed: int | None,
    open_locations: dict[str, int],
    look_ahead: bool,
) -> list[tuple[Candidate, int]]:
    """Greedy fill within caps. With `look_ahead`, a location is skipped when taking it would
    leave a remainder that the best remaining choices can no longer cover."""
    plan: list[tuple[Candidate, int]] = []
    remaining = quantity
    slots_left = len(usable) if slots is None else slots
    new_left = len(usable) if new_allowed is None else new_allowed
    for i, (cand, left) in enumerate(usable):
        if remaining == 0 or slots_left == 0:
            break
        is_new = cand.location.id not in open_locations
        if is_new and new_left == 0:
            continue
        take = min(remaining, left)
        rest = remaining - take
        if look_ahead and rest > 0:
            best = _best_cover(usable[i + 1 :], slots_left - 1, new_left - is_new, open_locations)
            if best < rest:
                continue
        plan.append((cand, take))
        remaining = rest
        slots_left -= 1
        new_left -= is_new
    return plan


def _best_cover(
    rest: list[tuple[Candidate, int]], slots: int, new: int, open_locations: dict[str, int]
) -> int:
    """The most that `slots` more locations could give, at most `new` of them not yet open."""
    if slots <= 0 or not rest:
        return 0
    if new >= slots:
        return sum(sorted((left for _, left in rest), reverse=True)[:slots])
    opened = sorted((left for c, left in rest if c.location.id in open_locations), reverse=True)
    fresh = sorted((left for c, left in rest if c.location.id not in open_locations), reverse=True)
    best = 0
    for take_new in range(min(new, slots, len(fresh)) + 1):
        best = max(best, sum(fresh[:take_new]) + sum(opened[: slots - take_new]))
    return best


def _take(ln: _Line, location_id: str, quantity: int, stock: _Stock) -> None:
    held = ln.allocations.get(location_id, 0)
    if not held:
        stock.opened[location_id] = stock.opened.get(location_id, 0) + 1
    ln.allocations[location_id] = held + quantity
    ln.allocated += quantity
    stock.take(ln.line.sku, location_id, quantity)


def _release(ln: _Line, stock: _Stock, why: str) -> None:
    """Give a line's stock back (it is denied, or reserved whole): its locations are no longer
    shipments of the cart unless another line uses them."""
    sku = ln.line.sku
    for location_id, quantity in ln.allocations.items():
        stock.give_back(sku, location_id, quantity)
        left = stock.opened[location_id] - 1
        if left:
            stock.opened[location_id] = left
        else:
            del stock.opened[location_id]
        if ln.notes is not None:
            ln.notes[location_id] = why
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
    stock.levels(sku, ln.thresholds)
    unknown = [c for c in ln.candidates if stock.left(sku, c) is None]
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
    # What the other lines of the cart hold is not there for this one.
    raw -= sum(
        other.allocated for other in stock.lines if other.line.sku == sku and other is not ln
    )
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
    never = datetime.max.replace(tzinfo=UTC)
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
                options.append((never, rank, cand, record))
            continue
        if latest_allowed is not None and restock > latest_allowed:
            too_late = restock if too_late is None else min(too_late, restock)
            failure = ReasonCode.RESTOCK_TOO_LATE
            detail = (
                f"the earliest restock ({too_late.date().isoformat()}) is more than "
                f"{backorder.within_days} days away"
            )
            continue
        options.append((restock, rank, cand, record))
    if not options:
        return None, failure, detail
    options.sort(key=lambda o: (o[0], o[1]))
    _, _, cand, record = options[0]
    return (cand, record), failure, detail


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
) -> Decision:
    denied = reserved = 0
    for ln in lines:
        if ln.status is _DENIED:
            denied += 1
        elif ln.status is _RESERVED:
            reserved += 1
    if denied and (denied == len(lines) or not cart_rules.partial_cart):
        outcome = _DENY
    elif reserved:
        outcome = _RESERVE
    else:
        outcome = _ALLOCATE
    decisions = tuple([_line_decision(ln, rules, stock, cart) for ln in lines])
    shipments: tuple[Shipment, ...] = ()
    if outcome is not _DENY:
        grouped: dict[str, list[ShipmentLine]] = {}
        for ln in lines:
            if ln.status is _DENIED:
                continue
            for location_id, quantity in ln.allocations.items():
                grouped.setdefault(location_id, []).append(
                    ShipmentLine(ln.index, ln.line.sku, quantity)
                )
        shipments = tuple([Shipment(loc, tuple(items)) for loc, items in grouped.items()])
    explanation = None
    if explain:
        explanation = CartExplanation(
            settings=tuple(_setting(n, v, o) for n, v, o in cart_rules.origins),
            summary=_cart_summary(outcome, lines, cart_rules, single, denied),
        )
    return Decision(
        decision=outcome,
        rule_set=rules.id,
        lines=decisions,
        shipments=shipments,
        cart_id=cart.cart_id,
        explanation=explanation,
    )


_STOCK_REASONS: Final = frozenset(
    {ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BELOW_SAFETY_STOCK, ReasonCode.SPLIT_LIMIT}
)


def _line_decision(ln: _Line, rules: RuleSet, stock: _Stock, cart: Cart) -> LineDecision:
    status = ln.status or _DENIED
    reserved = ln.reservation.quantity if ln.reservation is not None else 0
    available = None
    if (
        status is _DENIED
        and ln.available is not None
        and ln.reasons
        and ln.reasons[0] in _STOCK_REASONS
    ):
        available = ln.available
    return LineDecision(
        line=ln.index,
        sku=ln.line.sku,
        quantity=ln.line.quantity,
        status=status,
        allocated=ln.allocated,
        reserved=reserved,
        allocations=tuple([Allocation(loc, q) for loc, q in ln.allocations.items()]),
        reservation=ln.reservation,
        reasons=ln.reasons,
        message=ln.message,
        available=available,
        explanation=_line_explanation(ln, rules, stock, cart) if ln.notes is not None else None,
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
    stock.levels(sku, lr.thresholds)
    levels: list[int] = []
    unknown = False
    for cand in lr.candidates:
        left = stock.left(sku, cand)
        if left is None:
            unknown = True
        elif left:
            levels.append(min(left, MAX_QUANTITY))
    # One line draws on at most as many locations as the routing caps allow.
    cart_rules = rules.cart_rules(country, channel)
    caps = [c for c in (cart_rules.max_locations_per_line, cart_rules.max_shipments) if c]
    if caps:
        levels = sorted(levels, reverse=True)[: min(caps)]
    sellable = min(sum(levels), MAX_QUANTITY, lr.max_quantity or MAX_QUANTITY)
    probe = _Line(index=0, line=CartLine(sku=sku, quantity=1), rules=lr, candidates=lr.candidates)
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
