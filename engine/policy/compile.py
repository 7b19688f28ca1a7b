"""From loaded rule files to a `RuleSet`: references checked, groups expanded, rules indexed.

Precedence, as the docs and every explanation state it: rules are read top to bottom (files in
name order); for each setting, the first enabled rule whose `match` fits sets it; a setting no
matching rule sets comes from `defaults`, and one `defaults` does not set from the built-in value.

Settings have a scope, checked here so a rule can never mean two things:
- cart settings (`routing.*`, `partial_cart`) come from rules that match only countries/channels;
- location settings (`safety_stock`, `min_atp`, and `ship_to` on a rule that matches `locations`)
  are resolved per location;
- every other setting is per line (SKU, tags, country, channel).

All of this work is done once, when rules load. Per cart, `RuleSet.line_rules` and
`RuleSet.cart_rules` are dictionary look-ups after the first cart with the same key.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from msgspec import UNSET

from engine.countries import COUNTRY_CODES
from engine.errors import Problem, RuleSetError, Severity
from engine.model import ReasonCode
from engine.policy.load import Loaded, LoadedFiles, Path_, _suggest, load_folder, load_texts
from engine.policy.schema import DenySpec, MatchSpec, RuleSpec, SettingsSpec
from engine.policy.sources import SourceConfig, compile_sources

__all__ = (
    "BUILT_IN",
    "CART_SETTINGS",
    "LOCATION_SETTINGS",
    "Backorder",
    "Candidate",
    "CartRules",
    "Location",
    "Origin",
    "RuleSet",
    "compile_files",
    "load_rule_set",
    "load_rule_set_texts",
    "rank_key",
)


@dataclass(frozen=True, slots=True)
class ShipTo:
    """A ship-to filter: `allow` (None: anywhere) and `deny`. Written by one rule as a whole,
    so a rule that lifts a restriction for some SKUs can stand before the rule it excepts."""

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    def permits(self, country: str) -> bool:
        return (self.allow is None or country in self.allow) and country not in self.deny


ANYWHERE: Final = ShipTo()

BUILT_IN: Final[dict[str, Any]] = {
    "ship_to": ANYWHERE,
    "safety_stock": 0,
    "min_atp": 0,
    "low_stock_threshold": 0,
    "max_quantity": None,
    "backorder.allowed": False,
    "backorder.max_quantity": None,
    "backorder.restock_required": True,
    "backorder.within_days": None,
    "backorder.split": True,
    "routing.criteria": ("priority",),
    "routing.max_shipments": None,
    "routing.max_locations_per_line": None,
    "unknown_availability": "deny",
    "partial_cart": False,
}
"""The value of every setting when neither a rule nor `defaults` sets it."""

CART_SETTINGS: Final = frozenset(
    {"routing.criteria", "routing.max_shipments", "routing.max_locations_per_line", "partial_cart"}
)
LOCATION_SETTINGS: Final = frozenset({"safety_stock", "min_atp"})
_WHOLE: Final = frozenset({"ship_to"})
_LAYERED: Final = frozenset({"ship_to"})
"""Settings a rule with `locations` and one without set separately (both must permit)."""
"""Settings written and resolved as a whole rather than key by key."""
_MEMO_LIMIT: Final = 65_536


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a setting's value was written: `defaults`, a rule, or the built-in value."""

    rule: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.file is None:
            return self.rule
        where = f"{Path(self.file).name}:{self.line}"
        return f"defaults ({where})" if self.rule == "defaults" else f"rule `{self.rule}` ({where})"


BUILT_IN_ORIGIN: Final = Origin("built-in")

DENY_CODES: Final = frozenset({ReasonCode.DENIED_BY_RULE, ReasonCode.NOT_SHIPPABLE})
"""The reason codes a deny rule may give; the others are findings of the engine."""


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    name: str
    country: str
    ships_to: frozenset[str]
    priority: int
    enabled: bool
    index: int
    """Position in the location files: the last tie-break of every ranking."""


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    origin: Origin
    sku_exact: frozenset[str] | None
    sku_regex: re.Pattern[str] | None
    tags: frozenset[str] | None
    countries: frozenset[str] | None
    channels: frozenset[str] | None
    locations: frozenset[str] | None
    settings: dict[str, tuple[Any, Origin]]
    """Each setting the rule writes, with the place it is written."""
    deny: DenySpec | None

    def matches_sku(self, sku: str, tags: frozenset[str]) -> bool:
        if (
            self.sku_exact is not None
            and sku not in self.sku_exact
            and (self.sku_regex is None or self.sku_regex.fullmatch(sku) is None)
        ):
            return False
        return self.tags is None or not self.tags.isdisjoint(tags)

    def matches_cart(self, country: str, channel: str | None) -> bool:
        if self.countries is not None and country not in self.countries:
            return False
        return self.channels is None or (channel is not None and channel in self.channels)


@dataclass(frozen=True, slots=True)
class Backorder:
    allowed: bool
    max_quantity: int | None
    restock_required: bool
    within_days: int | None
    split: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A location that may serve a line, with the thresholds that apply to it there."""

    location: Location
    safety_stock: int
    min_atp: int
    static_key: tuple[int, ...]
    origins: tuple[tuple[str, Any, Origin], ...]


RankKey = Callable[["Candidate", int, int, Container[str]], tuple[int, ...]]
"""(candidate, allocatable here, quantity needed, locations the cart already uses) -> sort key."""

_DYNAMIC: Final = {
    "most_stock": "-left",
    "whole_line": "(0 if need and left >= need else 1)",
    "fewest_shipments": "(0 if c.location.id in opened else 1)",
}
_STATIC: Final = ("same_country", "priority")


@functools.cache
def rank_key(criteria: tuple[str, ...]) -> RankKey:
    """Compile routing criteria into one sort-key function, once per distinct list.

    Static criteria (same country, priority) are precomputed per candidate in `static_key`;
    dynamic ones (stock, whole line, open locations) are read at decision time. The generated
    expression only ever contains the fixed fragments above, never text from a rule file.
    """
    parts: list[str] = []
    static = 0
    for criterion in criteria:
        if criterion in _STATIC:
            parts.append(f"c.static_key[{static}]")
            static += 1
        elif criterion in _DYNAMIC:
            parts.append(_DYNAMIC[criterion])
    parts.append("c.location.index")
    source = f"lambda c, left, need, opened: ({', '.join(parts)},)"
    return cast(RankKey, eval(source, {"__builtins__": {}}))  # noqa: S307 - fixed fragments


@dataclass(frozen=True, slots=True)
class CartRules:
    """Settings that apply to a whole cart, for one (country, channel)."""

    criteria: tuple[str, ...]
    max_shipments: int | None
    max_locations_per_line: int | None
    partial_cart: bool
    origins: tuple[tuple[str, Any, Origin], ...]
    rank: RankKey = field(init=False)
    dynamic: bool = field(init=False)
    """True when the ranking depends on stock or on the cart, so candidates must be sorted."""
    static_first: bool = field(init=False)
    """True when every static criterion comes before every dynamic one."""
    line_memo: dict[str, LineRules] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )
    """SKU -> `RuleSet.line_rules` for this (country, channel), kept by `decide` for catalog
    SKUs: a cart's look-up is then one dictionary read (bounded by the catalog's size)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", rank_key(self.criteria))
        object.__setattr__(self, "dynamic", not set(_DYNAMIC).isdisjoint(self.criteria))
        kinds = [c in _DYNAMIC for c in self.criteria if c in _DYNAMIC or c in _STATIC]
        object.__setattr__(self, "static_first", kinds == sorted(kinds))


@dataclass(frozen=True, slots=True)
class LineRules:
    """Everything the rules say about one SKU for one (country, channel)."""

    known: bool
    deny: DenySpec | None
    deny_origin: Origin | None
    not_shippable: str | None
    """Why the SKU may not go to the country at all, or None."""
    max_quantity: int | None
    low_stock_threshold: int
    unknown_availability: str
    backorder: Backorder
    candidates: tuple[Candidate, ...]
    """Enabled locations that may send this SKU to the country, best static rank first."""
    groups: tuple[tuple[Candidate, ...], ...]
    """The candidates in rank groups: within a group only the dynamic criteria (stock, whole
    line, open locations) decide the order, so a group of one needs no stock read to rank."""
    thresholds: dict[str, tuple[int, int]]
    """Candidate location id -> (min ATP, safety stock): what reading stock needs, flat."""
    by_location: dict[str, Candidate]
    """Every enabled location with its thresholds, shipping or not (for click and collect)."""
    excluded: tuple[tuple[str, str], ...]
    """(location id, why) for each location that may not serve this line."""
    origins: tuple[tuple[str, Any, Origin], ...]
    ready: bool = field(init=False)
    """Known, not denied, shippable and with candidates: only the per-order maximum and a pickup
    location can still deny the line (so checking a cart line is one test in the usual case)."""
    lead: tuple[tuple[str, int, int], ...] = field(init=False)
    """(location id, min ATP, safety stock) of the leading groups of one candidate, in rank
    order: where a fill reads stock first, with no ranking to do (up to the first tie that
    stock may decide), with what reading it needs at hand."""
    serving: frozenset[str] = field(init=False)
    """The locations whose stock the line may draw on (none when the rules deny it outright):
    what the gather step asks the sources about, known before any cart."""

    def __post_init__(self) -> None:
        ready = self.known and self.deny is None and self.not_shippable is None
        object.__setattr__(self, "ready", ready and bool(self.candidates))
        serving = frozenset(c.location.id for c in self.candidates) if ready else frozenset()
        object.__setattr__(self, "serving", serving)
        lead: list[tuple[str, int, int]] = []
        for group in self.groups:
            if len(group) != 1:
                break
            lead.append((group[0].location.id, group[0].min_atp, group[0].safety_stock))
        object.__setattr__(self, "lead", tuple(lead))


UNKNOWN_SKU_RULES: Final = LineRules(
    known=False,
    deny=None,
    deny_origin=None,
    not_shippable=None,
    max_quantity=None,
    low_stock_threshold=0,
    unknown_availability="deny",
    backorder=Backorder(False, None, True, None, True),
    candidates=(),
    groups=(),
    thresholds={},
    by_location={},
    excluded=(),
    origins=(),
)
"""What the rules say about a SKU not in the catalog: nothing; it is denied before use."""


@dataclass
class RuleSet:
    """A compiled, immutable-by-convention rule set. Look-ups are memoised: pure functions of the
    rules, so sharing them across carts cannot change a decision."""

    id: str
    digest: str
    files: tuple[str, ...]
    locations: tuple[Location, ...]
    location_by_id: dict[str, Location]
    country_groups: dict[str, frozenset[str]]
    catalog: dict[str, frozenset[str]]
    defaults: dict[str, tuple[Any, Origin]]
    rules: tuple[_Rule, ...]
    warnings: tuple[Problem, ...] = ()
    channels: frozenset[str] = frozenset()
    """Every channel some rule matches on; other channels decide as no channel."""
    sources: tuple[SourceConfig, ...] = ()
    """The upstream APIs availability comes from, with their SKU and location mappings."""
    _sku_rules: dict[str, tuple[_Rule, ...]] = field(default_factory=dict, repr=False)
    _line_memo: dict[tuple[str, str, str | None], LineRules] = field(
        default_factory=dict, repr=False
    )
    _cart_memo: dict[tuple[str, str | None], CartRules] = field(default_factory=dict, repr=False)

    @property
    def location_ids(self) -> tuple[str, ...]:
        return tuple(loc.id for loc in self.locations)

    def cart_rules(self, country: str, channel: str | None) -> CartRules:
        if channel is not None and channel not in self.channels:
            channel = None  # no rule names it: it decides like a cart without a channel
        key = (country, channel)
        found = self._cart_memo.get(key)
        if found is None:
            if len(self._cart_memo) >= _MEMO_LIMIT:
                self._cart_memo.clear()
            found = self._cart_memo[key] = self._resolve_cart(country, channel)
        return found

    def line_rules(self, sku: str, country: str, channel: str | None) -> LineRules:
        if sku not in self.catalog:
            return UNKNOWN_SKU_RULES  # nothing to resolve, and nothing to remember
        if channel is not None and channel not in self.channels:
            channel = None
        key = (sku, country, channel)
        found = self._line_memo.get(key)
        if found is None:
            if len(self._line_memo) >= _MEMO_LIMIT:
                self._line_memo.clear()
            found = self._line_memo[key] = self._resolve_line(sku, country, channel)
        return found

    def serving(
        self, sku: str, country: str, channel: str | None, pickup: str | None = None
    ) -> frozenset[str]:
        """The locations whose availability a line may use: its candidates, or only the pickup
        location for click and collect; none for a SKU the rules deny outright or do not know.
        What `Checkout` asks the sources about, and what a simulation must have recorded."""
        lr = self.line_rules(sku, country, channel)
        if pickup is None:
            return lr.serving
        allowed = lr.known and lr.deny is None and lr.not_shippable is None
        return frozenset((pickup,)) if allowed and pickup in lr.by_location else frozenset()

    # --- resolution (first call per key) --------------------------------------------------------

    def _first(
        self, rules: Iterable[_Rule], setting: str, location: str | None = None
    ) -> tuple[Any, Origin]:
        for rule in rules:
            if setting in rule.settings and (
                location is None or rule.locations is None or location in rule.locations
            ):
                return rule.settings[setting]
        return self.defaults[setting]

    def _resolve_cart(self, country: str, channel: str | None) -> CartRules:
        rules = [r for r in self.rules if r.matches_cart(country, channel)]
        values = {s: self._first(rules, s) for s in sorted(CART_SETTINGS)}
        return CartRules(
            criteria=values["routing.criteria"][0],
            max_shipments=values["routing.max_shipments"][0],
            max_locations_per_line=values["routing.max_locations_per_line"][0],
            partial_cart=values["partial_cart"][0],
            # As the line settings' origins: plain values (lists, not tuples) for explanations.
            origins=tuple((s, _plain(v), o) for s, (v, o) in values.items()),
        )

    def _rules_for_sku(self, sku: str) -> tuple[_Rule, ...]:
        found = self._sku_rules.get(sku)
        if found is None:
            tags = self.catalog.get(sku, frozenset())
            found = tuple(r for r in self.rules if r.matches_sku(sku, tags))
            if len(self._sku_rules) >= _MEMO_LIMIT:
                self._sku_rules.clear()
            self._sku_rules[sku] = found
        return found

    def _resolve_line(self, sku: str, country: str, channel: str | None) -> LineRules:
        cart = self.cart_rules(country, channel)
        known = sku in self.catalog
        matching = [r for r in self._rules_for_sku(sku) if r.matches_cart(country, channel)]
        line_level = [r for r in matching if r.locations is None]
        location_level = [r for r in matching if r.locations is not None]
        origins: list[tuple[str, Any, Origin]] = []

        def setting(name: str) -> Any:
            value, origin = self._first(line_level, name)
            origins.append((name, _plain(value), origin))
            return value

        deny: DenySpec | None = None
        deny_origin: Origin | None = None
        for rule in line_level:
            if rule.deny is not None:
                deny, deny_origin = rule.deny, rule.origin
                origins.append(("deny", rule.deny.code.value, rule.origin))
                break
        ship_to: ShipTo = setting("ship_to")
        not_shippable = None
        if not ship_to.permits(country):
            not_shippable = f"this SKU {_ship_to_refusal(ship_to, country)} ({origins[-1][2]})"
        backorder = Backorder(
            allowed=setting("backorder.allowed"),
            max_quantity=setting("backorder.max_quantity"),
            restock_required=setting("backorder.restock_required"),
            within_days=setting("backorder.within_days"),
            split=setting("backorder.split"),
        )
        max_quantity = setting("max_quantity")
        low_stock = setting("low_stock_threshold")
        unknown = setting("unknown_availability")

        candidates: list[Candidate] = []
        by_location: dict[str, Candidate] = {}
        excluded: list[tuple[str, str]] = []
        for loc in self.locations:
            if not loc.enabled:
                excluded.append((loc.id, "the location is disabled"))
                continue
            loc_origins: list[tuple[str, Any, Origin]] = []
            values: dict[str, Any] = {}
            for name in ("safety_stock", "min_atp", "ship_to"):
                pool = matching if name in LOCATION_SETTINGS else location_level
                value, origin = self._first(pool, name, loc.id)
                if name == "ship_to" and origin.rule in {"defaults", "built-in"}:
                    value = ANYWHERE  # defaults speak of the line, not of a location
                elif origin.rule != "built-in":
                    loc_origins.append((name, _plain(value), origin))
                values[name] = value
            cand = Candidate(
                location=loc,
                safety_stock=values["safety_stock"],
                min_atp=values["min_atp"],
                static_key=_static_key(loc, country, cart.criteria),
                origins=tuple(loc_origins),
            )
            by_location[loc.id] = cand
            if country not in loc.ships_to:
                excluded.append((loc.id, f"ships to {_countries(loc.ships_to)}, not {country}"))
            elif not values["ship_to"].permits(country):
                origin = next(o for n, _, o in loc_origins if n == "ship_to")
                refusal = _ship_to_refusal(values["ship_to"], country, "send this SKU")
                excluded.append((loc.id, f"{refusal} ({origin})"))
            else:
                candidates.append(cand)
        candidates.sort(key=lambda c: c.static_key)
        groups = _rank_groups(candidates, cart)
        return LineRules(
            known=known,
            deny=deny,
            deny_origin=deny_origin,
            not_shippable=not_shippable,
            max_quantity=max_quantity,
            low_stock_threshold=low_stock,
            unknown_availability=unknown,
            backorder=backorder,
            candidates=tuple(candidates),
            groups=groups,
            thresholds={c.location.id: (c.min_atp, c.safety_stock) for c in candidates},
            by_location=by_location,
            excluded=tuple(excluded),
            origins=tuple(origins),
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary of the rule set, for `GET /v1/rules`."""
        return {
            "id": self.id,
            "digest": self.digest,
            "files": [Path(f).name for f in self.files],
            "locations": [
                {
                    "id": loc.id,
                    "name": loc.name,
                    "country": loc.country,
                    "ships_to": sorted(loc.ships_to),
                    "priority": loc.priority,
                    "enabled": loc.enabled,
                }
                for loc in self.locations
            ],
            "country_groups": {k: sorted(v) for k, v in self.country_groups.items()},
            "sources": [source.describe() for source in self.sources],
            "catalog_size": len(self.catalog),
            "defaults": {k: _plain(v) for k, (v, _) in self.defaults.items()},
            "rules": [
                {
                    "name": r.name,
                    "file": Path(r.origin.file or "").name,
                    "line": r.origin.line,
                    "sets": sorted(r.settings) + (["deny"] if r.deny else []),
                }
                for r in self.rules
            ],
            "warnings": [str(w) for w in self.warnings],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, ShipTo):
        return {"allow": _plain(value.allow), "deny": _plain(value.deny)}
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    return value


def _ship_to_refusal(ship_to: ShipTo, country: str, verb: str = "ship") -> str:
    if ship_to.allow is not None and country not in ship_to.allow:
        return f"may {verb} only to {_countries(ship_to.allow)}"
    return f"may not {verb} to {country}"


def _countries(codes: frozenset[str]) -> str:
    ordered = sorted(codes)
    if len(ordered) > 8:
        return ", ".join(ordered[:8]) + f" and {len(ordered) - 8} more"
    return ", ".join(ordered) if ordered else "nowhere"


def _rank_groups(candidates: list[Candidate], cart: CartRules) -> tuple[tuple[Candidate, ...], ...]:
    """Split statically sorted candidates into groups of equal static rank. When a dynamic
    criterion comes before a static one, the static order means nothing: one group of all."""
    if not candidates:
        return ()
    if not cart.static_first:
        return (tuple(candidates),)
    groups: list[list[Candidate]] = [[candidates[0]]]
    for cand in candidates[1:]:
        if cand.static_key[:-1] == groups[-1][0].static_key[:-1] and cart.dynamic:
            groups[-1].append(cand)
        else:
            groups.append([cand])
    return tuple(tuple(g) for g in groups)


def _static_key(loc: Location, country: str, criteria: tuple[str, ...]) -> tuple[int, ...]:
    """The static criteria in their order, then the location's place in the files."""
    key: list[int] = []
    for criterion in criteria:
        if criterion == "same_country":
            key.append(0 if loc.country == country else 1)
        elif criterion == "priority":
            key.append(loc.priority)
    key.append(loc.index)
    return tuple(key)


# --- checking and compiling ---------------------------------------------------------------------


def _flatten(spec: SettingsSpec) -> dict[str, Any]:
    """The settings a spec writes, as `section.key` leaves; unwritten ones are left out."""
    flat: dict[str, Any] = {}
    for name in SettingsSpec.__struct_fields__:
        value = getattr(spec, name)
        if value is UNSET:
            continue
        if isinstance(value, msgspec.Struct) and name not in _WHOLE:
            for sub in value.__struct_fields__:
                leaf = getattr(value, sub)
                if leaf is not UNSET:
                    flat[f"{name}.{sub}"] = leaf
        else:
            flat[name] = value
    return flat


class _Compiler:
    def __init__(self, loaded: LoadedFiles) -> None:
        self.loaded = loaded
        self.problems: list[Problem] = list(loaded.problems)
        self.groups: dict[str, frozenset[str]] = {}
        self.broken_groups = loaded.broken.get("country_groups", set())
        self.broken_locations = loaded.broken.get("locations", set())
        self.used_groups: set[str] = set()

    def error(self, item: Loaded[Any], sub: Path_, message: str, *, key: bool = False) -> None:
        self.problems.append(item.problem(sub, message, key=key))

    def warn(self, item: Loaded[Any], sub: Path_, message: str) -> None:
        self.problems.append(item.problem(sub, message, severity=Severity.WARNING))

    def countries(self, item: Loaded[Any], sub: Path_, refs: Iterable[str]) -> frozenset[str]:
        result: set[str] = set()
        for i, ref in enumerate(refs):
            if ref in COUNTRY_CODES:
                result.add(ref)
            elif ref in self.groups:
                result |= self.groups[ref]
                self.used_groups.add(ref)
            elif ref in self.broken_groups:
                continue
            elif ref.lower() in self.groups:
                self.error(
                    item,
                    (*sub, i),
                    f"`{ref}`: country group names are lower case (`{ref.lower()}`)",
                )
            elif ref.upper() in COUNTRY_CODES and ref.upper() not in self.groups:
                self.error(
                    item, (*sub, i), f"`{ref}`: write country codes in capitals (`{ref.upper()}`)"
                )
            else:
                choices = sorted(self.groups) + sorted(COUNTRY_CODES)
                groups = ", ".join(sorted(self.groups)) or "none are defined"
                self.error(
                    item,
                    (*sub, i),
                    f"`{ref}` is neither an ISO 3166-1 alpha-2 country "
                    f"code nor a country group{_suggest(ref, choices)} "
                    f"(country groups: {groups})",
                )
        return frozenset(result)

    def unique(self, items: list[Loaded[Any]], attr: str, noun: str) -> list[Loaded[Any]]:
        seen: dict[str, Loaded[Any]] = {}
        kept = []
        for item in items:
            value = getattr(item.spec, attr)
            if value in seen:
                first = seen[value]
                self.error(
                    item,
                    (attr,),
                    f"{noun} `{value}` is defined twice (first at "
                    f"{Path(first.source.file).name}:{first.line}); each needs its own {attr}",
                )
                continue
            seen[value] = item
            kept.append(item)
        return kept

    def compile(self) -> RuleSet:
        loaded = self.loaded
        for group in self.unique(loaded.country_groups, "name", "country group"):
            members: set[str] = set()
            for i, ref in enumerate(group.spec.countries):
                if ref in COUNTRY_CODES:
                    members.add(ref)
                elif ref.upper() in COUNTRY_CODES:
                    self.error(
                        group,
                        ("countries", i),
                        f"`{ref}`: write country codes in capitals (`{ref.upper()}`)",
                    )
                else:
                    self.error(
                        group,
                        ("countries", i),
                        f"`{ref}` is not an ISO 3166-1 alpha-2 "
                        f"country code{_suggest(ref.upper(), sorted(COUNTRY_CODES))}; "
                        "a country group lists countries only",
                    )
            self.groups[group.spec.name] = frozenset(members)

        locations: list[Location] = []
        for index, item in enumerate(self.unique(loaded.locations, "id", "location")):
            spec = item.spec
            ships = (
                self.countries(item, ("ships_to",), spec.ships_to)
                if spec.ships_to is not None
                else frozenset({spec.country})
            )
            locations.append(
                Location(
                    spec.id,
                    spec.name or spec.id,
                    spec.country,
                    ships,
                    spec.priority,
                    spec.enabled,
                    index,
                )
            )
        if not loaded.locations and not any(p.severity is Severity.ERROR for p in self.problems):
            file = loaded.files[0] if loaded.files else "rules"
            self.problems.append(
                Problem(
                    file,
                    1,
                    1,
                    "the rule set defines no `locations`: "
                    "add at least one location stock ships from",
                )
            )
        location_by_id = {loc.id: loc for loc in locations}

        catalog: dict[str, frozenset[str]] = {}
        for item in self.unique(loaded.catalog, "sku", "catalog item"):
            catalog[item.spec.sku] = frozenset(item.spec.tags)
        all_tags = frozenset().union(*catalog.values()) if catalog else frozenset()

        defaults: dict[str, tuple[Any, Origin]] = {
            k: (v, BUILT_IN_ORIGIN) for k, v in BUILT_IN.items()
        }
        if len(loaded.defaults) > 1:
            first = loaded.defaults[0]
            for extra in loaded.defaults[1:]:
                self.error(
                    extra,
                    (),
                    "`defaults` is written twice (first at "
                    f"{Path(first.source.file).name}:{first.line}); keep one",
                    key=True,
                )
        if loaded.defaults:
            item = loaded.defaults[0]
            for name, value in _flatten(item.spec).items():
                defaults[name] = (
                    self.setting_value(item, name, value),
                    _origin_of(item, "defaults", name),
                )

        sources = compile_sources(loaded, location_by_id, self.problems)

        rules: list[_Rule] = []
        rule_items: list[Loaded[RuleSpec]] = []
        for item in self.unique(loaded.rules, "name", "rule"):
            rule = self.rule(item, location_by_id, catalog, all_tags)
            if rule is not None and item.spec.enabled:
                rules.append(rule)
                rule_items.append(item)
        self.shadowed(rules, rule_items, catalog)
        for group in loaded.country_groups:
            if group.spec.name in self.groups and group.spec.name not in self.used_groups:
                self.warn(
                    group,
                    ("name",),
                    f"country group `{group.spec.name}` is not used by any location or rule",
                )

        errors = [p for p in self.problems if p.severity is Severity.ERROR]
        if errors:
            raise RuleSetError(self.problems)
        rule_set = RuleSet(
            id=loaded.digest[:12],
            digest=loaded.digest,
            files=loaded.files,
            locations=tuple(locations),
            location_by_id=location_by_id,
            country_groups=self.groups,
            catalog=catalog,
            defaults=defaults,
            rules=tuple(rules),
            warnings=(),
            channels=frozenset().union(*(r.channels or () for r in rules)),
            sources=sources,
        )
        self.unreachable_locations(rule_set, loaded.locations)
        rule_set.warnings = tuple(sorted(self.problems))
        return rule_set

    def unreachable_locations(self, rule_set: RuleSet, items: list[Loaded[Any]]) -> None:
        """Warn of an enabled location that no SKU of the catalog may ever be sent from: for
        every country it ships to (and every channel the rules know), the rules keep it out.
        Judged by resolving the rules as a cart would, so it is bounded: a catalog too large
        for that at load time is not judged (the warning is a help, not a guarantee)."""
        enabled = {loc.id for loc in rule_set.locations if loc.enabled}
        countries = sorted(frozenset().union(*(loc.ships_to for loc in rule_set.locations)))
        channels: list[str | None] = [None, *sorted(rule_set.channels)]
        work = len(rule_set.catalog) * len(countries) * len(channels)
        if not enabled or not rule_set.catalog or work > _LOCATION_CHECK_LIMIT:
            return
        usable: set[str] = set()
        for sku in rule_set.catalog:
            for country in countries:
                for channel in channels:
                    lr = rule_set._resolve_line(sku, country, channel)
                    if lr.deny is None and lr.not_shippable is None:
                        usable.update(cand.location.id for cand in lr.candidates)
                    if usable >= enabled:
                        return
        for item in items:
            location_id = item.spec.id
            if location_id in enabled and location_id not in usable:
                self.warn(
                    item,
                    ("id",),
                    f"location `{location_id}` can never send anything: for every SKU and every "
                    "country it ships to, a rule or default keeps it out (ship_to, deny); only "
                    "click and collect can still use it",
                )

    def setting_value(self, item: Loaded[Any], name: str, value: Any) -> Any:
        if name == "ship_to":
            allow = (
                None
                if value.allow is UNSET
                else self.countries(item, ("ship_to", "allow"), value.allow)
            )
            deny = (
                frozenset()
                if value.deny is UNSET
                else self.countries(item, ("ship_to", "deny"), value.deny)
            )
            return ShipTo(allow, deny)
        if name == "routing.criteria":
            self.check_criteria(item, value)
        return value

    def check_criteria(self, item: Loaded[Any], criteria: tuple[str, ...]) -> None:
        seen: set[str] = set()
        for i, criterion in enumerate(criteria):
            where = ("routing", "criteria", i)
            if criterion in seen:
                self.error(item, where, f"`{criterion}` is listed twice in the routing criteria")
            elif criterion == "single_location" and i:
                self.error(
                    item,
                    where,
                    "`single_location` decides before any other criterion, so it must come "
                    "first in the list",
                )
            seen.add(criterion)

    def rule(
        self,
        item: Loaded[RuleSpec],
        location_by_id: dict[str, Location],
        catalog: dict[str, frozenset[str]],
        all_tags: frozenset[str],
    ) -> _Rule | None:
        spec = item.spec
        match: MatchSpec = spec.match
        settings = {
            name: (self.setting_value(item, name, value), _origin_of(item, spec.name, name))
            for name, value in _flatten(spec).items()
        }
        deny = spec.deny if spec.deny is not UNSET else None
        if deny is not None and deny.code not in DENY_CODES:
            allowed = ", ".join(sorted(c.value for c in DENY_CODES))
            self.error(
                item,
                ("deny", "code"),
                f"`{deny.code.value}` describes what the engine finds, not a rule's choice; a "
                f"deny rule may use {allowed}",
            )
        if not settings and deny is None:
            self.error(
                item,
                ("name",),
                f"rule `{spec.name}` sets nothing: add a setting "
                "(for example `safety_stock: 2` or `deny: {}`) or remove the rule",
            )
        for i, loc_id in enumerate(match.locations):
            if loc_id not in location_by_id and loc_id not in self.broken_locations:
                self.error(
                    item,
                    ("match", "locations", i),
                    f"no location has the id `{loc_id}`{_suggest(loc_id, list(location_by_id))}",
                )
        countries = self.countries(item, ("match", "countries"), match.countries)

        product_match = bool(match.skus or match.tags)
        for name in settings:
            if name in CART_SETTINGS and (product_match or match.locations):
                self.error(
                    item,
                    (name.split(".")[0],),
                    f"`{name.split('.')[0]}` applies to a "
                    "whole cart, so the rule that sets it may match only `countries` "
                    "and `channels`: move it to such a rule or to `defaults`",
                    key=True,
                )
            elif match.locations and name not in LOCATION_SETTINGS and name not in _WHOLE:
                self.error(
                    item,
                    (name.split(".")[0],),
                    f"`{name.split('.')[0]}` applies to a "
                    "whole line, so it cannot be set by a rule that matches `locations`; "
                    "such a rule may set safety_stock, min_atp and ship_to",
                    key=True,
                )
        if deny is not None and match.locations:
            self.error(
                item,
                ("deny",),
                "a rule that matches `locations` cannot `deny` a line; "
                "to stop a location serving these SKUs use `ship_to: {deny: [...]}`",
                key=True,
            )

        exact = frozenset(p for p in match.skus if not _is_pattern(p))
        patterns = [p for p in match.skus if _is_pattern(p)]
        regex = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
            if patterns
            else None
        )
        self.never_matches(item, exact, patterns, catalog, all_tags, location_by_id)
        return _Rule(
            name=spec.name,
            origin=Origin(spec.name, item.source.file, item.line),
            sku_exact=exact if match.skus else None,
            sku_regex=regex,
            tags=frozenset(match.tags) if match.tags else None,
            countries=countries if match.countries else None,
            channels=frozenset(match.channels) if match.channels else None,
            locations=frozenset(match.locations) if match.locations else None,
            settings=settings,
            deny=deny,
        )

    def shadowed(
        self, rules: list[_Rule], items: list[Loaded[RuleSpec]], catalog: dict[str, frozenset[str]]
    ) -> None:
        """Warn of a setting that can never apply: an earlier rule sets it first for everything
        this rule matches (the first matching rule wins, per setting). Matching is judged on the
        catalog as it is, so a rule is never called shadowed because of a SKU that may come."""
        matched = [
            frozenset(sku for sku, tags in catalog.items() if rule.matches_sku(sku, tags))
            for rule in rules
        ]
        for j, (later, item) in enumerate(zip(rules, items, strict=True)):
            if not matched[j]:
                continue  # it matches nothing: `never_matches` has said so
            names = [*later.settings, *(["deny"] if later.deny is not None else [])]
            dead: dict[str, _Rule] = {}
            for name in names:
                for i in range(j):
                    earlier = rules[i]
                    sets = earlier.deny is not None if name == "deny" else name in earlier.settings
                    if name in _LAYERED and (earlier.locations is None) != (
                        later.locations is None
                    ):
                        continue  # a product's and a location's `ship_to` both apply
                    if sets and matched[j] <= matched[i] and _covers(earlier, later):
                        dead[name] = earlier
                        break
            if not dead:
                continue
            if len(dead) == len(names):
                by = ", ".join(
                    f"`{name}` by `{rule.name}` ({_where(rule)})" for name, rule in dead.items()
                )
                self.warn(
                    item,
                    ("name",),
                    f"rule `{later.name}` never applies: earlier rules that match everything it "
                    f"matches set all it sets first ({by}); remove it or move it above them",
                )
                continue
            for name, rule in dead.items():
                self.warn(
                    item,
                    tuple(name.split(".")),
                    f"rule `{later.name}`: `{name}` here never applies: rule `{rule.name}` "
                    f"({_where(rule)}) sets it first for everything this rule matches",
                )

    def never_matches(
        self,
        item: Loaded[RuleSpec],
        exact: frozenset[str],
        patterns: list[str],
        catalog: dict[str, frozenset[str]],
        all_tags: frozenset[str],
        location_by_id: dict[str, Location],
    ) -> None:
        match = item.spec.match
        name = item.spec.name
        for i, tag in enumerate(match.tags):
            if tag not in all_tags:
                self.warn(
                    item,
                    ("match", "tags", i),
                    f"rule `{name}`: no catalog item has the "
                    f"tag `{tag}`{_suggest(tag, sorted(all_tags))}, so this never matches it",
                )
        for i, pattern in enumerate(match.skus):
            if not any(fnmatch.fnmatchcase(sku, pattern) for sku in catalog):
                self.warn(
                    item,
                    ("match", "skus", i),
                    f"rule `{name}`: `{pattern}` matches no "
                    f"SKU of the catalog{_suggest(pattern, sorted(catalog))}",
                )
        if match.skus and match.tags:
            tags = frozenset(match.tags)
            if not any(
                (sku in exact or any(fnmatch.fnmatchcase(sku, p) for p in patterns))
                and not tags.isdisjoint(item_tags)
                for sku, item_tags in catalog.items()
            ):
                self.warn(
                    item,
                    ("match",),
                    f"rule `{name}` can never match: no catalog item "
                    "matches both its `skus` and its `tags`",
                )
        if match.locations and all(
            loc in location_by_id and not location_by_id[loc].enabled for loc in match.locations
        ):
            self.warn(
                item,
                ("match", "locations"),
                f"rule `{name}` matches only disabled locations, so it never applies",
            )


_LOCATION_CHECK_LIMIT: Final = 5_000
"""Rule resolutions `unreachable_locations` may spend when rules load (SKUs x countries x
channels): a few tenths of a second at most."""


def _covers(earlier: _Rule, later: _Rule) -> bool:
    """Does `earlier` match every cart and location `later` matches (SKUs aside)?"""
    for mine, theirs in (
        (earlier.countries, later.countries),
        (earlier.channels, later.channels),
        (earlier.locations, later.locations),
    ):
        if mine is not None and (theirs is None or not theirs <= mine):
            return False
    return True


def _where(rule: _Rule) -> str:
    return f"{Path(rule.origin.file or '').name}:{rule.origin.line}"


def _origin_of(item: Loaded[Any], rule: str, setting: str) -> Origin:
    """The place a setting is written: the line of its own key, not of the rule."""
    mark = item.source.mark((*item.path, *setting.split(".")), key=True)
    return Origin(rule, item.source.file, mark.line)


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def compile_files(loaded: LoadedFiles) -> RuleSet:
    """Check and compile loaded files; raises `RuleSetError` with every problem found."""
    return _Compiler(loaded).compile()


def load_rule_set(folder: Path) -> RuleSet:
    """Load, check and compile the rule files of a folder."""
    return compile_files(load_folder(folder))


def load_rule_set_texts(texts: list[tuple[str, str]]) -> RuleSet:
    """Load, check and compile rule files given as (name, text) pairs; for tests and tools."""
    return compile_files(load_texts(texts))
