"""Invariants of `decide` over random rule sets, availability and carts (hypothesis).

Rule sets are written as YAML text and compiled through `tests.helpers.rules_from`, so the
generator exercises the same path as a merchandiser's files. Expectations are computed from the
generated model, or through the public `decide` and `RuleSet.line_rules`, never from engine
internals. Runs are derandomized (a failure reproduces on every run) and print their blob.

The invariants, checked on every generated cart by `test_decide_invariants`:
(a) per (SKU, location) the cart never takes more than allocatable = max(0, ATP - safety stock)
    (0 when ATP < min ATP), except unlimited records and stock taken under the `allocate`
    policy where the source gave no answer;
(b) stock comes only from enabled locations that ship to the destination (or the pickup location);
(c) a line not denied is covered exactly (allocated + reserved == requested); a denied line holds
    nothing;
(d) `decide` is deterministic, and `explain` changes nothing but the explanations;
(e) shipments group exactly the allocations of the lines not denied, and are empty on `deny`;
(f) the cart decision follows from the line statuses and `partial_cart`;
(g) at most `max_locations_per_line` locations per line, `max_shipments` locations per cart;
(h) lines are denied, limited and reserved as their rules say (max_quantity, the policies for
    unknown availability, backorder settings).
Three more tests check the thresholds against a first-match resolution of the model, one-line
carts against a greedy fill in routing order computed from the model, and the availability
answer (`assess`) against what `decide` then does.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.allocate import UNLIMITED, assess, decide
from engine.availability import Availability, StockRecord
from engine.model import (
    MAX_QUANTITY,
    Cart,
    CartLine,
    Decision,
    LineDecision,
    LineStatus,
    Outcome,
    ReasonCode,
)
from engine.policy import RuleSet
from engine.policy.schema import CRITERIA
from tests.helpers import NOW, allocations, cart, rules_from, stock

COUNTRIES = ("IE", "GB", "NL", "US", "DE")
EU = ("IE", "NL", "DE")
SKUS = ("SKU-A", "SKU-B", "SKU-C", "SKU-D")
UNKNOWN_SKU = "SKU-Z"
CART_SKUS = ("SKU-A", "SKU-A", "SKU-A", "SKU-B", "SKU-B", "SKU-C", "SKU-D", UNKNOWN_SKU)
"""What cart lines draw from, skewed so that carts often repeat a SKU."""
TAGS = ("red", "blue", "heavy")
CHANNELS = ("web", "wholesale")
GHOST = "ghost-loc"
"""A location the availability reports on but the rules do not define."""
STOCK_REASONS = {
    ReasonCode.INSUFFICIENT_STOCK,
    ReasonCode.BELOW_SAFETY_STOCK,
    ReasonCode.SPLIT_LIMIT,
}


class DUMPER(yaml.SafeDumper):
    """Writes shared values out in full: rule files refuse anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- strategies: rule files ---------------------------------------------------------------------


def country_refs(max_size: int = 3, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.sampled_from((*COUNTRIES, "eu")), min_size=min_size, max_size=max_size, unique=True
    )


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def sub_settings(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A non-empty subset of `fields` with drawn values."""
    return st.fixed_dictionaries({}, optional=fields).filter(bool)


SHIP_TO = sub_settings(
    {
        "allow": st.sampled_from([["eu", "GB", "US"], ["eu", "GB"], ["eu"]]) | country_refs(),
        "deny": country_refs(2),
    }
)
BACKORDER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "max_quantity": maybe(st.integers(0, 30)),
    "restock_required": st.booleans(),
    "within_days": maybe(st.integers(0, 60)),
    "split": st.booleans(),
}
BACKORDER = sub_settings({"allowed": st.booleans(), **BACKORDER_FIELDS})
# `single_location` may only lead the list (the rule checker refuses it anywhere else).
CRITERIA_LISTS = st.builds(
    lambda lead, rest: ([lead] if lead else []) + rest or ["priority"],
    st.sampled_from([None, "single_location"]),
    st.lists(
        st.sampled_from([c for c in CRITERIA if c != "single_location"]),
        min_size=0,
        max_size=4,
        unique=True,
    ),
)
ROUTING = sub_settings(
    {
        "criteria": CRITERIA_LISTS,
        "max_shipments": maybe(st.integers(1, 4)),
        "max_locations_per_line": maybe(st.integers(1, 3)),
    }
)
LOCATION_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "safety_stock": st.integers(0, 6),
    "min_atp": st.integers(0, 6),
    "ship_to": SHIP_TO,
}
LINE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "safety_stock": st.integers(0, 6),
    "min_atp": st.integers(0, 6),
    "ship_to": SHIP_TO,
    "low_stock_threshold": st.integers(0, 5),
    "max_quantity": maybe(st.integers(1, 60)),
    "backorder": BACKORDER,
    "unknown_availability": st.sampled_from(("deny", "reserve", "allocate")),
}
CART_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "routing": ROUTING,
    "partial_cart": st.booleans(),
}
DEFAULT_LINE_SETTINGS = sub_settings(
    {
        **{k: v for k, v in LINE_FIELDS.items() if k != "ship_to"},
        "backorder": st.fixed_dictionaries({"allowed": st.just(True)}, optional=BACKORDER_FIELDS),
        "unknown_availability": st.sampled_from(("reserve", "allocate", "allocate")),
    }
)
"""`defaults` for lines: no ship_to (it would deny every SKU), backorders allowed, and a policy
for unknown availability other than the built-in `deny` (so outages reach the policies)."""
LOCATION_SETTINGS = sub_settings(LOCATION_FIELDS)
LINE_SETTINGS = sub_settings(LINE_FIELDS)
CART_SETTINGS = sub_settings(CART_FIELDS)
UNCAPPED_CART_SETTINGS = sub_settings(
    {"routing": st.fixed_dictionaries({"criteria": CRITERIA_LISTS}), "partial_cart": st.booleans()}
)
DENY = st.sampled_from(
    ({}, {"message": "Not for you."}, {"code": "NOT_SHIPPABLE", "message": "No."})
)
SHIPS_TO = st.sampled_from([None, ["eu"], ["eu", "GB"], ["eu", "GB", "US"]]) | country_refs(4)
"""Where a location ships: its own country, wide lists (so most lines have candidates) or any."""
ONE_CHANNEL = st.sampled_from(CHANNELS).map(lambda channel: [channel])
CART_MATCH = st.fixed_dictionaries(
    {}, optional={"countries": country_refs(2, min_size=1), "channels": ONE_CHANNEL}
)
PRODUCT_MATCH = st.fixed_dictionaries(
    {},
    optional={
        "skus": st.lists(
            st.sampled_from((*SKUS, "SKU-[AB]", "SKU-*")), min_size=1, max_size=2, unique=True
        ),
        "tags": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True),
        "countries": country_refs(2, min_size=1),
        "channels": ONE_CHANNEL,
    },
)


@st.composite
def locations(draw: st.DrawFn) -> list[dict[str, Any]]:
    result = []
    for i in range(draw(st.integers(2, 6))):
        loc: dict[str, Any] = {
            "id": f"loc-{i}",
            "country": draw(st.sampled_from(COUNTRIES)),
            "priority": draw(st.integers(0, 4)),
        }
        ships_to = draw(SHIPS_TO)
        if ships_to is not None:
            loc["ships_to"] = ships_to
        if draw(st.integers(0, 4)) == 0:
            loc["enabled"] = False
        result.append(loc)
    return result


def location_match(location_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(
        PRODUCT_MATCH, st.lists(st.sampled_from(location_ids), min_size=1, max_size=3, unique=True)
    ).map(lambda m: {**m[0], "locations": m[1]})


RULE_KINDS = ("location", "location", "line", "line", "line", "deny", "cart", "cart")


@st.composite
def rule(draw: st.DrawFn, index: int, location_ids: list[str], caps: bool) -> dict[str, Any]:
    kind = draw(st.sampled_from(RULE_KINDS))
    spec: dict[str, Any] = {"name": f"rule-{index}"}
    if kind == "location":
        spec["match"] = draw(location_match(location_ids))
        spec.update(draw(LOCATION_SETTINGS))
    elif kind == "line":
        spec["match"] = draw(PRODUCT_MATCH)
        spec.update(draw(LINE_SETTINGS))
    elif kind == "deny":
        spec["match"] = draw(PRODUCT_MATCH)
        spec["deny"] = draw(DENY)
    else:
        spec["match"] = draw(CART_MATCH)
        spec.update(draw(CART_SETTINGS if caps else UNCAPPED_CART_SETTINGS))
    if draw(st.integers(0, 5)) == 0:
        spec["enabled"] = False
    return spec


# --- the model: the generated rules as data -----------------------------------------------------


def expand(refs: list[str]) -> frozenset[str]:
    countries: set[str] = set()
    for ref in refs:
        countries.update(EU if ref == "eu" else (ref,))
    return frozenset(countries)


@dataclass(frozen=True)
class Model:
    """The generated rule set as data, to compute expectations independently of the engine."""

    locations: list[dict[str, Any]]
    catalog: dict[str, frozenset[str]]
    defaults: dict[str, Any]
    rules: list[dict[str, Any]]

    def location(self, location_id: str) -> dict[str, Any]:
        return next(loc for loc in self.locations if loc["id"] == location_id)

    def index(self, location_id: str) -> int:
        return next(i for i, loc in enumerate(self.locations) if loc["id"] == location_id)

    def enabled(self, location_id: str) -> bool:
        return bool(self.location(location_id).get("enabled", True))

    def ships_to(self, location_id: str) -> frozenset[str]:
        loc = self.location(location_id)
        refs = loc.get("ships_to")
        return frozenset({loc["country"]}) if refs is None else expand(refs)

    def location_setting(
        self, name: str, sku: str, location_id: str, country: str, channel: str | None
    ) -> int:
        """The first enabled rule matching the line and location that sets `name`; else
        `defaults`; else the built-in 0."""
        tags = self.catalog.get(sku, frozenset())
        for spec in self.rules:
            if name not in spec or spec.get("enabled") is False:
                continue
            m = spec["match"]
            if "skus" in m and not any(fnmatch.fnmatchcase(sku, p) for p in m["skus"]):
                continue
            if "tags" in m and tags.isdisjoint(m["tags"]):
                continue
            if "countries" in m and country not in expand(m["countries"]):
                continue
            if "channels" in m and channel not in m["channels"]:
                continue
            if "locations" in m and location_id not in m["locations"]:
                continue
            value: int = spec[name]
            return value
        return int(self.defaults.get(name, 0))

    def allocatable(
        self, record: StockRecord, sku: str, location_id: str, country: str, channel: str | None
    ) -> int:
        if record.unlimited:
            return UNLIMITED
        safety = self.location_setting("safety_stock", sku, location_id, country, channel)
        min_atp = self.location_setting("min_atp", sku, location_id, country, channel)
        return 0 if record.atp < min_atp else max(0, record.atp - safety)


# --- strategies: availability and carts ---------------------------------------------------------


RECORD_EXTRA = st.fixed_dictionaries(
    {},
    optional={
        "unlimited": st.just(True),
        "backorderable": st.booleans(),
        "restock_time": st.tuples(st.integers(-5, 90), st.integers(0, 23), st.booleans()),
    },
)


def record_row(sku: str, location_id: str, atp: int, extra: dict[str, Any]) -> tuple[Any, ...]:
    extra = dict(extra)
    if extra.get("unlimited") and atp % 3:
        del extra["unlimited"]  # keep unlimited records rare
    if "restock_time" in extra:
        days, hours, naive = extra["restock_time"]
        restock = NOW + timedelta(days=days, hours=hours)
        extra["restock_time"] = restock.replace(tzinfo=None) if naive else restock
    return (sku, location_id, atp, extra)


@st.composite
def availability_for(draw: st.DrawFn, location_ids: list[str]) -> Availability:
    everywhere = [*location_ids, GHOST]
    rows: list[tuple[Any, ...]] = []
    unknown: dict[str, list[str]] = {}
    for sku in (*SKUS, UNKNOWN_SKU):
        if draw(st.integers(0, 2)) == 0:  # the source is down for this SKU
            unknown[sku] = draw(st.lists(st.sampled_from(everywhere), min_size=1, unique=True))
            continue
        cells = draw(
            st.lists(
                st.tuples(st.sampled_from(everywhere), st.integers(0, 40), RECORD_EXTRA),
                min_size=len(everywhere) // 2,
                max_size=len(everywhere),
                unique_by=lambda cell: cell[0],
            )
        )
        rows.extend(record_row(sku, loc, atp, extra) for loc, atp, extra in cells)
        if draw(st.booleans()):
            unknown[sku] = draw(st.lists(st.sampled_from(everywhere), min_size=1, unique=True))
    return stock(*rows, unknown=unknown)


@dataclass(frozen=True)
class Scenario:
    model: Model
    texts: tuple[str, str]
    availability: Availability
    cart: Cart

    def compile(self) -> RuleSet:
        return rules_from(*self.texts)

    def record(self, sku: str, location_id: str) -> StockRecord | None:
        return self.availability.stock.get(sku, {}).get(location_id)

    def unknown_at(self, sku: str, location_id: str) -> bool:
        """The source gave no answer here and there is no record."""
        return self.record(sku, location_id) is None and location_id in (
            self.availability.unknown.get(sku, frozenset())
        )


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=DUMPER, sort_keys=False)


@st.composite
def scenarios(
    draw: st.DrawFn, *, max_lines: int = 6, caps: bool = True, pickup: bool = True
) -> Scenario:
    locs = draw(locations())
    location_ids = [loc["id"] for loc in locs]
    catalog = {sku: draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)) for sku in SKUS}
    defaults: dict[str, Any] = {}
    if draw(st.booleans()):
        defaults.update(draw(DEFAULT_LINE_SETTINGS))
    if draw(st.booleans()):
        defaults.update(draw(CART_SETTINGS if caps else UNCAPPED_CART_SETTINGS))
    rules = [draw(rule(i, location_ids, caps)) for i in range(draw(st.integers(0, 6)))]

    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(CART_SKUS), st.integers(1, 6) | st.integers(1, 50)),
            min_size=1,
            max_size=max_lines,
        )
    )
    if len(lines) > 1 and draw(st.booleans()):
        lines[-1] = (lines[0][0], lines[-1][1])  # the same SKU on two lines
    fields: dict[str, Any] = {}
    channel = draw(maybe(st.sampled_from(CHANNELS)))
    if channel is not None:
        fields["channel"] = channel
    if pickup and draw(st.integers(0, 3)) == 0:
        fields["pickup_location"] = draw(st.sampled_from(location_ids))
    if draw(st.integers(0, 3)) == 0:
        fields["cart_id"] = "cart-1"
    country = draw(st.sampled_from(("IE", "IE", "GB", "NL", "US", "DE", "JP")))
    the_cart = cart(country, *lines, **fields)
    availability = draw(availability_for(location_ids))
    return build_scenario(locs, catalog, defaults, rules, availability, the_cart)


def build_scenario(
    locs: list[dict[str, Any]],
    catalog: dict[str, list[str]],
    defaults: dict[str, Any],
    rules: list[dict[str, Any]],
    availability: Availability,
    the_cart: Cart,
) -> Scenario:
    """A scenario from the model's parts: the rule files are written from them."""
    first = {"country_groups": [{"name": "eu", "countries": list(EU)}], "locations": locs}
    second: dict[str, Any] = {
        "catalog": [{"sku": sku, "tags": tags} for sku, tags in catalog.items()]
    }
    if defaults:
        second["defaults"] = defaults
    if rules:
        second["rules"] = rules
    model = Model(locs, {k: frozenset(v) for k, v in catalog.items()}, defaults, rules)
    return Scenario(model, (to_yaml(first), to_yaml(second)), availability, the_cart)


def without_explanations(decision: Decision) -> Decision:
    lines = tuple(msgspec.structs.replace(ln, explanation=None) for ln in decision.lines)
    return msgspec.structs.replace(decision, lines=lines, explanation=None)


def aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


# --- the checks ---------------------------------------------------------------------------------


def check_stock(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(a) never more than allocatable per (SKU, location), summed over the cart's lines."""
    c = s.cart
    totals: Counter[tuple[str, str]] = Counter()
    for ln in d.lines:
        for a in ln.allocations:
            assert a.quantity > 0, ("(a) allocation of a non-positive quantity", ln)
            totals[(ln.sku, a.location_id)] += a.quantity
    for (sku, location_id), total in totals.items():
        record = s.record(sku, location_id)
        if record is None:
            assert s.unknown_at(sku, location_id), ("(a) allocated with no stock", sku, location_id)
            policy = rules.line_rules(sku, c.country, c.channel).unknown_availability
            assert policy == "allocate", ("(a) unknown stock taken under", policy)
            continue
        allocatable = s.model.allocatable(record, sku, location_id, c.country, c.channel)
        assert total <= allocatable, ("(a) over-allocated", sku, location_id, total, allocatable)


def check_locations(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(b) only enabled locations that ship to the destination, or the pickup location."""
    c = s.cart
    for ln in d.lines:
        candidates = {
            cand.location.id for cand in rules.line_rules(ln.sku, c.country, c.channel).candidates
        }
        used = [a.location_id for a in ln.allocations]
        if ln.reservation is not None and ln.reservation.location_id is not None:
            used.append(ln.reservation.location_id)
        for location_id in used:
            assert location_id != GHOST, "(b) a location the rules do not define"
            assert s.model.enabled(location_id), ("(b) disabled location used", location_id)
            if c.pickup_location is not None:
                assert location_id == c.pickup_location, ("(b) not the pickup location", ln)
            else:
                assert c.country in s.model.ships_to(location_id), ("(b) does not ship", ln)
                assert location_id in candidates, ("(b) not a candidate", ln)


def check_quantities(s: Scenario, d: Decision) -> None:
    """(c) lines not denied are covered exactly; denied lines hold nothing."""
    assert len(d.lines) == len(s.cart.lines)
    for i, (ln, asked) in enumerate(zip(d.lines, s.cart.lines, strict=True)):
        assert (ln.line, ln.sku, ln.quantity) == (i, asked.sku, asked.quantity)
        assert ln.allocated == sum(a.quantity for a in ln.allocations), ln
        assert len({a.location_id for a in ln.allocations}) == len(ln.allocations), ln
        assert ln.reserved == (ln.reservation.quantity if ln.reservation is not None else 0), ln
        if ln.status is LineStatus.DENIED:
            assert ln.allocated == ln.reserved == 0, ("(c) denied line holds stock", ln)
            assert ln.allocations == (), ln
            assert ln.reservation is None, ln
            assert ln.reasons, ln
        else:
            assert ln.allocated + ln.reserved == ln.quantity, ("(c) not covered exactly", ln)
            assert ln.allocated >= 0, ln
            if ln.status is LineStatus.ALLOCATED:
                assert ln.reserved == 0, ln
            else:
                assert ln.reserved > 0, ln
        if ln.available is not None:
            assert ln.status is LineStatus.DENIED, ln
            assert 0 <= ln.available <= UNLIMITED, ("(c) impossible `available`", ln)
            assert ln.reasons[0] in STOCK_REASONS, ln
            split_limit = ln.reasons[0] is ReasonCode.SPLIT_LIMIT
            assert split_limit == (ln.available >= ln.quantity), ln


def check_determinism(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(d) same inputs, same decision: again, from a freshly compiled rule set, with explain."""
    assert decide(s.cart, s.availability, rules, NOW) == d, "(d) a second run differs"
    assert decide(s.cart, s.availability, s.compile(), NOW) == d, "(d) a fresh rule set differs"
    explained = decide(s.cart, s.availability, rules, NOW, explain=True)
    assert explained.explanation is not None
    assert without_explanations(explained) == d, "(d) explain changed the decision"
    ids = [loc["id"] for loc in s.model.locations]
    for ln in explained.lines:
        assert ln.explanation is not None
        explained_locations = ln.explanation.locations
        assert [loc.location_id for loc in explained_locations] == ids
        for loc in explained_locations:
            assert loc.allocated == next(
                (a.quantity for a in ln.allocations if a.location_id == loc.location_id), 0
            ), ("(d) explanation disagrees with the allocations", loc, ln)
            if loc.allocated or loc.reserved:
                assert loc.verdict == "used", loc


def check_shipments(d: Decision) -> None:
    """(e) shipments are the allocations of lines not denied, one per location."""
    if d.decision is Outcome.DENY:
        assert d.shipments == (), "(e) shipments on a denied cart"
        return
    expected = Counter(
        (a.location_id, ln.line, ln.sku, a.quantity)
        for ln in d.lines
        if ln.status is not LineStatus.DENIED
        for a in ln.allocations
    )
    shipped = Counter(
        (s.location_id, sl.line, sl.sku, sl.quantity) for s in d.shipments for sl in s.lines
    )
    assert shipped == expected, "(e) shipments do not match the allocations"
    locations = [s.location_id for s in d.shipments]
    assert len(set(locations)) == len(locations), "(e) two shipments from one location"
    assert all(s.lines for s in d.shipments), "(e) an empty shipment"


def check_outcome(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(f) the cart decision from the line statuses and `partial_cart`."""
    c = s.cart
    partial = rules.cart_rules(c.country, c.channel).partial_cart
    statuses = [ln.status for ln in d.lines]
    denied = statuses.count(LineStatus.DENIED)
    if denied and (denied == len(statuses) or not partial):
        expected = Outcome.DENY
    elif LineStatus.RESERVED in statuses:
        expected = Outcome.RESERVE
    else:
        expected = Outcome.ALLOCATE
    assert d.decision is expected, ("(f) cart decision", statuses, partial)
    assert d.rule_set == rules.id
    assert d.cart_id == c.cart_id


def check_caps(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(g) routing caps."""
    c = s.cart
    cart_rules = rules.cart_rules(c.country, c.channel)
    if cart_rules.max_locations_per_line is not None:
        for ln in d.lines:
            assert len(ln.allocations) <= cart_rules.max_locations_per_line, ("(g) per line", ln)
    if cart_rules.max_shipments is not None:
        used = {
            a.location_id
            for ln in d.lines
            if ln.status is not LineStatus.DENIED
            for a in ln.allocations
        }
        assert len(used) <= cart_rules.max_shipments, ("(g) shipments", used)


def serving(s: Scenario, lr: Any) -> list[str]:
    """The locations that may serve a line: the pickup location, or the candidates."""
    pickup = s.cart.pickup_location
    if pickup is not None:
        return [pickup] if pickup in lr.by_location else []
    return [cand.location.id for cand in lr.candidates]


def check_line_rules(s: Scenario, rules: RuleSet, d: Decision) -> None:
    """(h) denials, limits and reservations as the line's rules say."""
    c = s.cart
    for ln in d.lines:
        lr = rules.line_rules(ln.sku, c.country, c.channel)
        stock_checked = ln.status is not LineStatus.DENIED or ln.reasons[0] in STOCK_REASONS
        unknown = [loc for loc in serving(s, lr) if s.unknown_at(ln.sku, loc)]
        if stock_checked and unknown and lr.unknown_availability == "reserve":
            assert ln.status is not LineStatus.DENIED, ("(h) `reserve` policy denied", ln)
        cart_rules = rules.cart_rules(c.country, c.channel)
        uncapped = cart_rules.max_shipments is None and cart_rules.max_locations_per_line is None
        if stock_checked and unknown and lr.unknown_availability == "allocate" and uncapped:
            assert ln.status is LineStatus.ALLOCATED, ("(h) `allocate` policy not applied", ln)
        if ln.status is not LineStatus.DENIED:
            assert lr.known, ln
            assert lr.deny is None, ln
            assert lr.not_shippable is None, ln
            assert lr.max_quantity is None or in_cart(c, ln.sku) <= lr.max_quantity, ln
        elif ReasonCode.QUANTITY_LIMIT in ln.reasons:
            assert lr.max_quantity is not None, ln
            assert in_cart(c, ln.sku) > lr.max_quantity, ln
        if ln.status is LineStatus.ALLOCATED and ln.reasons:
            assert ln.reasons == (ReasonCode.AVAILABILITY_UNKNOWN,), ln
            assert lr.unknown_availability == "allocate", ln
            assert any(s.unknown_at(ln.sku, a.location_id) for a in ln.allocations), ln
        if ln.status is LineStatus.RESERVED:
            assert ln.reservation is not None
            if ln.reasons == (ReasonCode.AVAILABILITY_UNKNOWN,):
                assert lr.unknown_availability == "reserve", ln
                location_id = ln.reservation.location_id
                assert location_id is not None
                assert s.unknown_at(ln.sku, location_id), ("(h) reserved where stock is known", ln)
            else:
                check_backorder(s, lr, ln)


def in_cart(c: Any, sku: str) -> int:
    """Limits apply per order: the SKU's quantity over every line of the cart."""
    return sum(line.quantity for line in c.lines if line.sku == sku)


def check_backorder(s: Scenario, lr: Any, ln: LineDecision) -> None:
    backorder = lr.backorder
    reservation = ln.reservation
    assert reservation is not None
    assert backorder.allowed, ("(h) reserved without backorders allowed", ln)
    if backorder.max_quantity is not None:
        assert ln.reserved <= backorder.max_quantity, ("(h) over backorder.max_quantity", ln)
    if not backorder.split:
        assert ln.allocated == 0, ("(h) split although backorder.split is false", ln)
    assert reservation.location_id is not None
    record = s.record(ln.sku, reservation.location_id)
    assert record is not None, ("(h) backordered where the SKU has no record", ln)
    assert record.backorderable is not False, ("(h) source refuses backorders", ln)
    promised = aware(record.restock_time)
    if promised is not None and promised < NOW:
        promised = None  # a restock time already past is no promise
    assert aware(reservation.restock_time) == promised, ln
    restock = aware(reservation.restock_time)
    if backorder.restock_required:
        assert restock is not None, ("(h) no restock time although required", ln)
    if restock is not None and backorder.within_days is not None:
        assert restock <= NOW + timedelta(days=backorder.within_days), ("(h) too late", ln)


# --- the tests ----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios())
def test_decide_invariants(scenario):
    rules = scenario.compile()
    decision = decide(scenario.cart, scenario.availability, rules, NOW)
    check_stock(scenario, rules, decision)
    check_locations(scenario, rules, decision)
    check_quantities(scenario, decision)
    check_determinism(scenario, rules, decision)
    check_shipments(decision)
    check_outcome(scenario, rules, decision)
    check_caps(scenario, rules, decision)
    check_line_rules(scenario, rules, decision)


@PROPERTY_SETTINGS
@given(scenarios(max_lines=1))
def test_thresholds_are_those_of_the_first_matching_rule(scenario):
    """The safety stock and minimum ATP the engine applies at each location are those of the
    first enabled rule that matches the line and the location, then `defaults`, then 0; and
    every enabled location is there for click and collect."""
    rules = scenario.compile()
    c = scenario.cart
    model = scenario.model
    enabled = {loc["id"] for loc in model.locations if loc.get("enabled", True)}
    for sku in SKUS:
        lr = rules.line_rules(sku, c.country, c.channel)
        assert set(lr.by_location) == enabled
        for cand in lr.candidates:
            assert cand.location.id in enabled
            assert c.country in model.ships_to(cand.location.id)
        for location_id, cand in lr.by_location.items():
            for name in ("safety_stock", "min_atp"):
                expected = model.location_setting(name, sku, location_id, c.country, c.channel)
                assert getattr(cand, name) == expected, (sku, location_id, name)


def expected_plan(s: Scenario, rules: RuleSet) -> tuple[dict[str, int], int]:
    """For a one-line cart without caps: the greedy fill in routing order, from the model
    (single_location first when it leads the criteria), and the total allocatable."""
    c = s.cart
    sku, quantity = c.lines[0].sku, c.lines[0].quantity
    criteria = rules.cart_rules(c.country, c.channel).criteria
    levels: dict[str, int] = {}
    for cand in rules.line_rules(sku, c.country, c.channel).candidates:
        record = s.record(sku, cand.location.id)
        if record is not None:
            left = s.model.allocatable(record, sku, cand.location.id, c.country, c.channel)
            if left > 0:
                levels[cand.location.id] = left

    def rank(location_id: str, need: int) -> tuple[int, ...]:
        loc = s.model.location(location_id)
        left = levels[location_id]
        key = []
        for criterion in criteria:
            if criterion == "same_country":
                key.append(0 if loc["country"] == c.country else 1)
            elif criterion == "priority":
                key.append(loc["priority"])
            elif criterion == "most_stock":
                key.append(-left)
            elif criterion == "whole_line":
                key.append(0 if need and left >= need else 1)
            elif criterion == "fewest_shipments":
                key.append(1)  # nothing is open before the first line
        key.append(s.model.index(location_id))
        return tuple(key)

    total = min(sum(levels.values()), UNLIMITED)
    if criteria[0] == "single_location":
        covering = [loc for loc, left in levels.items() if left >= quantity]
        if covering:
            return {min(covering, key=lambda loc: rank(loc, 0)): quantity}, total
    plan: dict[str, int] = {}
    remaining = quantity
    for location_id in sorted(levels, key=lambda loc: rank(loc, quantity)):
        if remaining == 0:
            break
        take = min(remaining, levels[location_id])
        plan[location_id] = take
        remaining -= take
    return plan, total


@PROPERTY_SETTINGS
@given(scenarios(max_lines=1, caps=False, pickup=False))
def test_one_line_fills_greedily_in_routing_order(scenario):
    rules = scenario.compile()
    c = scenario.cart
    assert rules.cart_rules(c.country, c.channel).max_shipments is None
    decision = decide(c, scenario.availability, rules, NOW)
    (ln,) = decision.lines
    if ln.status is LineStatus.DENIED and ln.reasons[0] not in {
        *STOCK_REASONS,
        ReasonCode.AVAILABILITY_UNKNOWN,
    }:
        return  # denied by a rule before any stock was read
    plan, total = expected_plan(scenario, rules)
    if sum(plan.values()) == ln.quantity:
        assert ln.status is LineStatus.ALLOCATED, (ln, plan)
        assert ln.reasons == ()
        assert allocations(decision) == [plan]
    else:
        assert ln.reasons != (), (ln, plan)
        if ln.status is LineStatus.ALLOCATED:  # the rest at a location that could not say
            assert ln.reasons == (ReasonCode.AVAILABILITY_UNKNOWN,)
            known = {loc: q for loc, q in allocations(decision)[0].items() if loc in plan}
            assert known == plan
        if ln.available is not None:
            assert ln.available == total, (ln, plan)


@PROPERTY_SETTINGS
@given(scenarios(max_lines=1, caps=False, pickup=False))
def test_availability_answer_agrees_with_decide(scenario):
    """`assess` (GET /v1/availability) promises what `decide` then does for a one-line cart."""
    rules = scenario.compile()
    c = scenario.cart
    sku, quantity = c.lines[0].sku, c.lines[0].quantity
    lr = rules.line_rules(sku, c.country, c.channel)
    answer = assess(sku, c.country, c.channel, scenario.availability, rules, NOW)
    (ln,) = decide(c, scenario.availability, rules, NOW).lines
    assert answer.known == lr.known
    if not lr.known or lr.deny is not None or lr.not_shippable or not lr.candidates:
        assert ln.status is LineStatus.DENIED
        assert not answer.shippable
        assert answer.sellable == 0
        return
    assert answer.shippable
    _, total = expected_plan(scenario, rules)
    assert answer.sellable <= min(total, MAX_QUANTITY)
    assert answer.low_stock == (0 < answer.sellable <= lr.low_stock_threshold)
    # What the page promises is what checkout gives: `sellable` units in one line allocate,
    # and `orderable` says whether a line of one is accepted at all.
    if answer.sellable:
        promised = Cart(
            country=c.country, channel=c.channel, lines=(CartLine(sku, answer.sellable),)
        )
        (got,) = decide(promised, scenario.availability, rules, NOW).lines
        assert got.status is LineStatus.ALLOCATED, (answer, got)
    one = Cart(country=c.country, channel=c.channel, lines=(CartLine(sku, 1),))
    (first,) = decide(one, scenario.availability, rules, NOW).lines
    assert answer.orderable == (first.status is not LineStatus.DENIED), (answer, first)
    unknown = any(scenario.unknown_at(sku, cand.location.id) for cand in lr.candidates)
    assert answer.availability_unknown == unknown
    if ReasonCode.QUANTITY_LIMIT in ln.reasons:
        return
    if quantity <= answer.sellable:
        assert ln.status is LineStatus.ALLOCATED, (answer, ln)
        assert ln.reasons == ()
        return
    assert ln.reasons != (), (answer, ln)
    if ln.status is LineStatus.RESERVED and ln.reasons != (ReasonCode.AVAILABILITY_UNKNOWN,):
        assert answer.backorderable, (answer, ln)
        assert ln.reservation is not None
        assert aware(ln.reservation.restock_time) == aware(answer.restock_time)
    limit = lr.backorder.max_quantity
    if answer.backorderable and not unknown and (limit is None or limit >= quantity):
        assert ln.status is LineStatus.RESERVED, (answer, ln)


# --- examples found by the properties -----------------------------------------------------------


UNKNOWN_ALLOCATE = """\
locations:
  - {id: loc-0, country: IE}
catalog:
  - {sku: SKU-A}
defaults:
  unknown_availability: allocate
"""


def test_allocate_policy_serves_every_line_of_a_sku_with_unknown_availability():
    """Two lines of one SKU whose only location could not say: the `allocate` policy takes both
    there, as it would one line of the summed quantity."""
    rules = rules_from(UNKNOWN_ALLOCATE)
    unknown = stock(unknown={"SKU-A": ["loc-0"]})
    one_line = decide(cart("IE", ("SKU-A", 5)), unknown, rules, NOW)
    assert one_line.decision is Outcome.ALLOCATE
    two_lines = decide(cart("IE", ("SKU-A", 2), ("SKU-A", 3)), unknown, rules, NOW)
    assert [(ln.status, ln.reasons, ln.available) for ln in two_lines.lines] == [
        (LineStatus.ALLOCATED, (ReasonCode.AVAILABILITY_UNKNOWN,), None),
        (LineStatus.ALLOCATED, (ReasonCode.AVAILABILITY_UNKNOWN,), None),
    ]
    assert allocations(two_lines) == [{"loc-0": 2}, {"loc-0": 3}]
    assert two_lines.decision is Outcome.ALLOCATE


def test_allocate_policy_never_allocates_a_negative_quantity():
    rules = rules_from(UNKNOWN_ALLOCATE + "  backorder: {allowed: true, restock_required: false}\n")
    unknown = stock(unknown={"SKU-A": ["loc-0"]})
    decision = decide(cart("IE", ("SKU-A", 2), ("SKU-A", 3)), unknown, rules, NOW)
    for ln in decision.lines:
        assert all(a.quantity > 0 for a in ln.allocations), ln
        assert ln.allocated + ln.reserved == ln.quantity, ln
    for shipment in decision.shipments:
        assert all(line.quantity > 0 for line in shipment.lines), shipment
