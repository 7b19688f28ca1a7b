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

_DYNAMIC: Final = frozenset({"most_stock", "whole_line", "fewest_shipments"})


@dataclass(slots=True)
class _Line:
    index: int
    line: CartLine
    rules: LineRules
    candidates: tuple[Candidate, ...] = ()
    status: LineStatus | None = None
    reasons: tuple[ReasonCode, ...] = ()
    message: str | None = None
    allocations: dict[str, int] = field(default_factory=dict)
    reservation: Reservation | None = None
    available: int | None = None
    notes: dict[str, str] | None = None
    summary: str = ""

    @property
    def allocated(self) -> int:
        return sum(self.allocations.values())


class _Stock:
    """Allocatable stock per (SKU, location) for one cart, consumed as lines take it."""

    __slots__ = ("_availability", "_left")

    def __init__(self, availability: Availability) -> None:
        self._availability = availability
        self._left: dict[tuple[str, str], int | None] = {}

    def record(self, sku: str, location_id: str) -> StockRecord | None:
        by_location = self._availability.stock.get(sku)
        return None if by_location is None else by_location.get(location_id)

    def left(self, sku: str, cand: Candidate) -> int | None:
        """What is still allocatable here; None when the source could not say."""
        key = (sku, cand.location.id)
        try:
            return self._left[key]
        except KeyError:
            pass
        rec = self.record(sku, cand.location.id)
        value: int | None
        if rec is None:
            value = None if self.is_unknown(sku, cand.location.id) else 0
        elif rec.unlimited:
            value = UNLIMITED
        elif rec.atp < cand.min_atp:
            value = 0
        else:
            value = max(0, rec.atp - cand.safety_stock)
        self._left[key] = value
        return value

    def is_unknown(self, sku: str, location_id: str) -> bool:
        unknown = self._availability.unknown.get(sku)
        return unknown is not None and location_id in unknown

    def take(self, sku: str, location_id: str, quantity: int) -> None:
        key = (sku, location_id)
        current = self._left.get(key)
        if current is not None and current != UNLIMITED:
            self._left[key] = current - quantity

    def give_back(self, sku: str, location_id: str, quantity: int) -> None:
        key = (sku, location_id)
        current = self._left.get(key)
        if current is not None and current != UNLIMITED:
            self._left[key] = current + quantity


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
    lines = [_check_line(i, line, rules, cart, explain) for i, line in enumerate(cart.lines)]
    active = [ln for ln in lines if ln.status is None]
    open_locations: dict[str, None] = {}
    single = None
    if active and cart_rules.criteria[0] == "single_location":
        single = _single_location(active, cart_rules, stock, country)
    for ln in active:
        if single is not None:
            _take(ln, single.location.id, ln.line.quantity, stock)
            open_locations[single.location.id] = None
            ln.status = LineStatus.ALLOCATED
            if ln.notes is not None:
                ln.summary = f"the whole cart ships from {single.location.id} (single_location)"
            continue
        _fill(ln, cart_rules, stock, country, open_locations)
        if ln.allocated < ln.line.quantity:
            _shortfall(ln, cart_rules, stock, now, country, open_locations)
        else:
            ln.status = LineStatus.ALLOCATED
    return _decision(cart, lines, rules, cart_rules, stock, explain, single is not None)


# --- step 1: rules that deny a line outright ---------------------------------------------------


def _check_line(index: int, line: CartLine, rules: RuleSet, cart: Cart, explain: bool) -> _Line:
    lr = rules.line_rules(line.sku, cart.country, cart.channel)
    ln = _Line(index=index, line=line, rules=lr, notes={} if explain else None)
    if not lr.known:
        _deny(ln, (ReasonCode.UNKNOWN_SKU,), "the SKU is not in the catalog")
    elif lr.deny is not None:
        ln.message = lr.deny.message
        _deny(ln, (lr.deny.code,), f"denied by {lr.deny_origin}")
    elif lr.not_shippable is not None:
        _deny(ln, (ReasonCode.NOT_SHIPPABLE,), lr.not_shippable)
    elif lr.max_quantity is not None and line.quantity > lr.max_quantity:
        origin = next(o for n, _, o in lr.origins if n == "max_quantity")
        _deny(
            ln,
            (ReasonCode.QUANTITY_LIMIT,),
            f"{line.quantity} requested, at most {lr.max_quantity} per line ({origin})",
        )
    else:
        pickup = cart.pickup_location
        if pickup is None:
            ln.candidates = lr.candidates
        else:
            found = lr.by_location.get(pickup)
            ln.candidates = (found,) if found is not None else ()
        if not ln.candidates:
            why = (
                f"the pickup location {pickup} cannot serve it"
                if pickup is not None
                else f"no enabled location may send it to {cart.country}"
            )
            _deny(ln, (ReasonCode.NOT_SHIPPABLE,), why)
    return ln


def _deny(ln: _Line, reasons: tuple[ReasonCode, ...], summary: str) -> None:
    ln.status = LineStatus.DENIED
    ln.reasons = reasons
    ln.summary = summary


# --- step 2: one location for the whole cart ----------------------------------------------------


def _single_location(
    active: list[_Line], cart_rules: CartRules, stock: _Stock, country: str
) -> Candidate | None:
    need: dict[str, int] = {}
    for ln in active:
        need[ln.line.sku] = need.get(ln.line.sku, 0) + ln.line.quantity
    by_sku = {ln.line.sku: ln for ln in active}
    common: set[str] | None = None
    for ln in active:
        ids = {c.location.id for c in ln.candidates}
        common = ids if common is None else common & ids
    if not common:
        return None
    best: tuple[tuple[int, ...], Candidate] | None = None
    for loc_id in common:
        total = 0
        cand: Candidate | None = None
        for sku, quantity in need.items():
            cand = by_sku[sku].rules.by_location[loc_id]
            left = stock.left(sku, cand)
            if left is None or left < quantity:
                break
            total += min(left, UNLIMITED)
        else:
            assert cand is not None
            key = _rank_key(cand, cart_rules.criteria, country, total, 0, set())
            if best is None or key < best[0]:
                best = (key, cand)
    return None if best is None else best[1]


def _rank_key(
    cand: Candidate,
    criteria: tuple[str, ...],
    country: str,
    left: int,
    need: int,
    open_locations: set[str] | dict[str, None],
) -> tuple[int, ...]:
    key: list[int] = []
    for criterion in criteria:
        if criterion == "same_country":
            key.append(0 if cand.location.country == country else 1)
        elif criterion == "priority":
            key.append(cand.location.priority)
        elif criterion == "most_stock":
            key.append(-left)
        elif criterion == "whole_line":
            key.append(0 if need and left >= need else 1)
        elif criterion == "fewest_shipments":
            key.append(0 if cand.location.id in open_locations else 1)
    key.append(cand.location.index)
    return tuple(key)


# --- step 3: greedy fill ------------------------------------------------------------------------


def _ranked(
    ln: _Line, cart_rules: CartRules, stock: _Stock, country: str, open_locations: dict[str, None]
) -> list[tuple[Candidate, int]]:
    """Candidates with known, positive allocatable stock, best first."""
    sku = ln.line.sku
    usable = []
    for cand in ln.candidates:
        left = stock.left(sku, cand)
        if left:
            usable.append((cand, left))
    if len(usable) > 1 and not _DYNAMIC.isdisjoint(cart_rules.criteria):
        need = ln.line.quantity
        usable.sort(
            key=lambda cl: _rank_key(
                cl[0], cart_rules.criteria, country, cl[1], need, open_locations
            )
        )
    return usable


def _fill(
    ln: _Line, cart_rules: CartRules, stock: _Stock, country: str, open_locations: dict[str, None]
) -> None:
    usable = _ranked(ln, cart_rules, stock, country, open_locations)
    quantity = ln.line.quantity
    ln.available = min(sum(left for _, left in usable), UNLIMITED)
    slots = cart_rules.max_locations_per_line
    new_allowed = (
        None
        if cart_rules.max_shipments is None
        else max(0, cart_rules.max_shipments - len(open_locations))
    )
    if slots is None and new_allowed is None:
        plan = _greedy(usable, quantity)
    else:
        plan = _greedy_capped(usable, quantity, slots, new_allowed, open_locations, True)
        if sum(q for _, q in plan) < quantity:
            plain = _greedy_capped(usable, quantity, slots, new_allowed, open_locations, False)
            if sum(q for _, q in plain) > sum(q for _, q in plan):
                plan = plain
    for cand, take in plan:
        _take(ln, cand.location.id, take, stock)
        open_locations[cand.location.id] = None
    if ln.notes is not None:
        used = {c.location.id for c, _ in plan}
        covered = sum(q for _, q in plan) >= quantity
        for cand, _ in usable:
            if cand.location.id not in used:
                ln.notes[cand.location.id] = (
                    "not needed: locations ranked higher covered the line"
                    if covered
                    else _cap_note(cart_rules)
                )


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
    open_locations: dict[str, None],
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
            others = [
                lft
                for c, lft in usable[i + 1 :]
                if c.location.id in open_locations or new_left - is_new > 0
            ]
            others.sort(reverse=True)
            if sum(others[: slots_left - 1]) < rest:
                continue
        plan.append((cand, take))
        remaining = rest
        slots_left -= 1
        new_left -= is_new
    return plan


def _take(ln: _Line, location_id: str, quantity: int, stock: _Stock) -> None:
    ln.allocations[location_id] = ln.allocations.get(location_id, 0) + quantity
    stock.take(ln.line.sku, location_id, quantity)


def _release(ln: _Line, stock: _Stock) -> None:
    for location_id, quantity in ln.allocations.items():
        stock.give_back(ln.line.sku, location_id, quantity)
    ln.allocations.clear()


# --- step 4: what is still short ----------------------------------------------------------------


def _shortfall(
    ln: _Line,
    cart_rules: CartRules,
    stock: _Stock,
    now: datetime,
    country: str,
    open_locations: dict[str, None],
) -> None:
    sku = ln.line.sku
    lr = ln.rules
    quantity = ln.line.quantity
    unknown = [c for c in ln.candidates if stock.left(sku, c) is None]
    policy = lr.unknown_availability
    if unknown and policy == "allocate":
        target = _open_unknown(ln, unknown, cart_rules, open_locations)
        if target is not None:
            _take(ln, target.location.id, quantity - ln.allocated, stock)
            open_locations[target.location.id] = None
            ln.status = LineStatus.ALLOCATED
            ln.reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
            ln.summary = (
                f"allocated at {target.location.id} although its availability is "
                f"unknown (unknown_availability: allocate, {_origin(lr, policy)})"
            )
            return
    if unknown and policy == "reserve":
        if ln.allocations and not lr.backorder.split:
            _release(ln, stock)
        ln.reservation = Reservation(
            quantity=quantity - ln.allocated, location_id=unknown[0].location.id
        )
        ln.status = LineStatus.RESERVED
        ln.reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
        ln.summary = (
            f"reserved at {unknown[0].location.id}: its availability is unknown "
            f"(unknown_availability: reserve, {_origin(lr, policy)})"
        )
        return

    short_reason = _short_reason(ln, stock, cart_rules)
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
            f"{ln.allocated} of {quantity} allocatable and backorders are not allowed ({origin})",
        )
        return
    to_reserve = quantity - ln.allocated
    if ln.allocations and not backorder.split:
        to_reserve = quantity
    if backorder.max_quantity is not None and to_reserve > backorder.max_quantity:
        _deny_short(
            ln,
            stock,
            (short_reason, ReasonCode.BACKORDER_LIMIT),
            f"{to_reserve} would have to be reserved, at most {backorder.max_quantity} "
            f"may be ({_origin(lr, 'backorder.max_quantity')})",
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
        if ln.notes is not None:
            for location_id in ln.allocations:
                ln.notes[location_id] = (
                    "released: the line may not be part allocated and part reserved "
                    f"(backorder.split: false, {_origin(lr, 'backorder.split')})"
                )
        _release(ln, stock)
    restock = record.restock_time if record is not None else None
    ln.reservation = Reservation(
        quantity=to_reserve, location_id=cand.location.id, restock_time=restock
    )
    ln.status = LineStatus.RESERVED
    ln.reasons = (short_reason,)
    when = f"restock {restock.isoformat()}" if restock else "no restock time known"
    ln.summary = f"reserved {to_reserve} at {cand.location.id} ({when})"


def _origin(lr: LineRules, setting: str) -> Origin:
    for name, _, origin in lr.origins:
        if name == setting:
            return origin
    return Origin("built-in")


def _open_unknown(
    ln: _Line, unknown: list[Candidate], cart_rules: CartRules, open_locations: dict[str, None]
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


def _short_reason(ln: _Line, stock: _Stock, cart_rules: CartRules) -> ReasonCode:
    """Why known stock did not cover the line: caps, thresholds, or plain shortage."""
    sku = ln.line.sku
    quantity = ln.line.quantity
    if (ln.available or 0) >= quantity:
        return ReasonCode.SPLIT_LIMIT
    raw = 0
    for cand in ln.candidates:
        record = stock.record(sku, cand.location.id)
        if record is not None:
            raw += record.atp
    if raw >= quantity:
        return ReasonCode.BELOW_SAFETY_STOCK
    return ReasonCode.INSUFFICIENT_STOCK


def _restock_location(
    ln: _Line, stock: _Stock, now: datetime
) -> tuple[tuple[Candidate, StockRecord | None] | None, ReasonCode, str]:
    """The location to reserve at: earliest known restock first, then routing rank."""
    backorder = ln.rules.backorder
    sku = ln.line.sku
    options: list[tuple[datetime, int, Candidate, StockRecord | None]] = []
    failure = ReasonCode.RESTOCK_UNKNOWN
    detail = "no location has a known restock time"
    latest_allowed = (
        None if backorder.within_days is None else now + timedelta(days=backorder.within_days)
    )
    never = datetime.max.replace(tzinfo=UTC)
    for rank, cand in enumerate(ln.candidates):
        record = stock.record(sku, cand.location.id)
        if record is not None and record.backorderable is False:
            if failure is ReasonCode.RESTOCK_UNKNOWN:
                failure = ReasonCode.BACKORDER_NOT_ALLOWED
                detail = f"{cand.location.id} does not take backorders for this SKU"
            continue
        restock = _aware(record.restock_time) if record is not None else None
        if restock is None:
            if backorder.restock_required:
                continue
            options.append((never, rank, cand, record))
            continue
        if latest_allowed is not None and restock > latest_allowed:
            failure = ReasonCode.RESTOCK_TOO_LATE
            detail = (
                f"the earliest restock ({restock.date().isoformat()}) is more than "
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


def _deny_short(ln: _Line, stock: _Stock, reasons: tuple[ReasonCode, ...], summary: str) -> None:
    _release(ln, stock)
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
    denied = sum(1 for ln in lines if ln.status is LineStatus.DENIED)
    if denied and (denied == len(lines) or not cart_rules.partial_cart):
        outcome = Outcome.DENY
    elif any(ln.status is LineStatus.RESERVED for ln in lines):
        outcome = Outcome.RESERVE
    else:
        outcome = Outcome.ALLOCATE
    decisions = tuple(_line_decision(ln, rules, stock, cart) for ln in lines)
    shipments: tuple[Shipment, ...] = ()
    if outcome is not Outcome.DENY:
        grouped: dict[str, list[ShipmentLine]] = {}
        for ln in lines:
            if ln.status is LineStatus.DENIED:
                continue
            for location_id, quantity in ln.allocations.items():
                grouped.setdefault(location_id, []).append(
                    ShipmentLine(line=ln.index, sku=ln.line.sku, quantity=quantity)
                )
        order = rules.location_by_id
        shipments = tuple(
            Shipment(location_id=loc, lines=tuple(items))
            for loc, items in sorted(grouped.items(), key=lambda kv: order[kv[0]].index)
        )
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


def _line_decision(ln: _Line, rules: RuleSet, stock: _Stock, cart: Cart) -> LineDecision:
    status = ln.status or LineStatus.DENIED
    reserved = ln.reservation.quantity if ln.reservation is not None else 0
    available = None
    if (
        status is LineStatus.DENIED
        and ln.available is not None
        and ln.reasons
        and ln.reasons[0]
        in {ReasonCode.INSUFFICIENT_STOCK, ReasonCode.BELOW_SAFETY_STOCK, ReasonCode.SPLIT_LIMIT}
    ):
        available = ln.available
    return LineDecision(
        line=ln.index,
        sku=ln.line.sku,
        quantity=ln.line.quantity,
        status=status,
        allocated=ln.allocated,
        reserved=reserved,
        allocations=tuple(
            Allocation(location_id=loc, quantity=q) for loc, q in ln.allocations.items()
        ),
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
    if record is None:
        return None
    if record.unlimited:
        return UNLIMITED
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
    if location_id in notes:
        return LocationVerdict.PASSED_OVER, notes[location_id]
    if record.atp < cand.min_atp:
        origin = next((o for n, _, o in cand.origins if n == "min_atp"), "defaults")
        return LocationVerdict.EXCLUDED, (
            f"ATP {record.atp} is under the minimum ATP {cand.min_atp} ({origin})"
        )
    if not record.unlimited and record.atp - cand.safety_stock <= 0:
        return LocationVerdict.PASSED_OVER, (
            f"nothing allocatable: ATP {record.atp}, safety stock {cand.safety_stock}"
        )
    if ln.status is LineStatus.DENIED:
        return LocationVerdict.PASSED_OVER, "its stock was released: the line is denied"
    return LocationVerdict.PASSED_OVER, "its stock was taken by earlier lines of the cart"


def _line_summary(ln: _Line) -> str:
    if ln.status is LineStatus.ALLOCATED:
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
            sellable=0,
            low_stock=False,
            backorderable=False,
            reasons=(reason,),
        )
    stock = _Stock(availability)
    sellable = 0
    unknown = False
    for cand in lr.candidates:
        left = stock.left(sku, cand)
        if left is None:
            unknown = True
        else:
            sellable += left
    sellable = min(sellable, MAX_QUANTITY)
    probe = _Line(index=0, line=CartLine(sku=sku, quantity=1), rules=lr, candidates=lr.candidates)
    restock = None
    backorderable = False
    if lr.backorder.allowed and lr.backorder.max_quantity != 0:
        chosen, _, _ = _restock_location(probe, stock, now)
        if chosen is not None:
            backorderable = True
            record = chosen[1]
            restock = record.restock_time if record is not None else None
    reasons: tuple[ReasonCode, ...] = ()
    if unknown and sellable == 0:
        reasons = (ReasonCode.AVAILABILITY_UNKNOWN,)
    elif sellable == 0:
        reasons = (_short_reason(probe, stock, _NO_CAPS),)
    return SkuAvailability(
        sku=sku,
        known=True,
        shippable=True,
        sellable=sellable,
        low_stock=0 < sellable <= lr.low_stock_threshold,
        backorderable=backorderable,
        availability_unknown=unknown,
        restock_time=restock,
        reasons=reasons,
    )


_NO_CAPS: Final = CartRules(
    criteria=("priority",),
    max_shipments=None,
    max_locations_per_line=None,
    partial_cart=False,
    origins=(),
)
