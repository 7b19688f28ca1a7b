"""Synthetic rule sets, availability, carts and sources of a chosen size, for benchmarks.

Deterministic (a seeded `random.Random`), so two runs measure the same work. The rules mix every
kind a merchandiser writes (thresholds per tag and location, ship-to, backorders, limits, deny
rules, channel routing), so `decide` resolves realistic precedence, not a trivial rule list.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from engine.availability import Availability, CachedSource, CacheSettings, SourceAnswer, StockRecord
from engine.checkout import Checkout
from engine.model import Cart, CartLine
from engine.policy import RuleSet, load_rule_set_texts

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
COUNTRIES = ["IE", "NL", "DE", "FR", "ES", "IT", "BE", "AT", "PL", "SE", "DK", "FI", "PT", "CZ"]
TAGS = ["apparel", "footwear", "home", "beauty", "electronics", "battery", "limited", "outlet"]
SKUS = 400
"""Catalog size: several times the largest cart, so a cart's SKUs are distinct and carts of
different sizes do not all draw on the same few items."""


def rule_text(locations: int, rules: int, skus: int = SKUS, seed: int = 7) -> str:
    """One rule file (locations, catalog, defaults and rules) as YAML text."""
    rng = random.Random(seed)
    lines = ["country_groups:", "  - name: eu", f"    countries: [{', '.join(COUNTRIES)}]"]
    lines.append("locations:")
    for i in range(locations):
        lines += [
            f"  - id: loc-{i:03d}",
            f"    country: {COUNTRIES[i % len(COUNTRIES)]}",
            "    ships_to: [eu]",
            f"    priority: {rng.randint(1, 20)}",
        ]
    lines.append("catalog:")
    for i in range(skus):
        tags = rng.sample(TAGS, 2)
        lines += [f"  - sku: SKU-{i:05d}", f"    tags: [{', '.join(tags)}]"]
    lines += [
        "defaults:",
        "  min_atp: 1",
        "  low_stock_threshold: 5",
        "  max_quantity: 100",
        "  backorder: {allowed: false, restock_required: true, within_days: 30}",
        "  routing:",
        "    criteria: [single_location, same_country, priority, most_stock]",
        "    max_shipments: 3",
        "    max_locations_per_line: 3",
        "rules:",
    ]
    for i in range(rules):
        kind = i % 6
        tag = TAGS[i % len(TAGS)]
        loc = f"loc-{rng.randrange(locations):03d}"
        name = f"  - name: rule-{i:04d}"
        if kind == 0:
            lines += [
                name,
                f"    match: {{tags: [{tag}], locations: [{loc}]}}",
                f"    safety_stock: {rng.randint(1, 5)}",
            ]
        elif kind == 1:
            lines += [
                name,
                f"    match: {{skus: ['SKU-{rng.randrange(skus // 10):04d}*']}}",
                "    backorder: {allowed: true, max_quantity: 20}",
            ]
        elif kind == 2:
            country = rng.choice(["US", "CA", "AU", "JP", "NZ", "BR"])
            lines += [
                name,
                f"    match: {{tags: [{tag}], countries: [{country}]}}",
                "    deny: {code: NOT_SHIPPABLE}",
            ]
        elif kind == 3:
            lines += [
                name,
                f"    match: {{tags: [{tag}], channels: [ch-{i}]}}",
                f"    max_quantity: {rng.randint(2, 10)}",
            ]
        elif kind == 4:
            lines += [
                name,
                f"    match: {{tags: [{tag}], locations: [{loc}]}}",
                "    ship_to: {deny: [PT]}",
            ]
        else:
            lines += [name, f"    match: {{channels: [ch-{i}]}}", "    routing: {max_shipments: 1}"]
    return "\n".join(lines) + "\n"


def rule_set(locations: int, rules: int, skus: int = SKUS, seed: int = 7) -> RuleSet:
    """A freshly compiled rule set: nothing resolved yet, as right after a reload."""
    return load_rule_set_texts([("synthetic.yaml", rule_text(locations, rules, skus, seed))])


@functools.cache
def warm_rule_set(locations: int, rules: int) -> RuleSet:
    """A rule set shared by the benchmarks that decide on a warm one (its look-ups memoised as
    in a running service): compiling 1,000 rules takes a good part of a second."""
    return rule_set(locations, rules)


def availability(rules: RuleSet, skus: list[str], seed: int = 11) -> Availability:
    rng = random.Random(seed)
    records = [
        StockRecord(
            sku=sku,
            location_id=loc.id,
            atp=rng.randint(0, 12),
            restock_time=NOW + timedelta(days=rng.randint(1, 60)),
        )
        for sku in skus
        for loc in rules.locations
    ]
    return Availability.from_records(records)


def cart(lines: int, seed: int = 3, country: str = "DE") -> Cart:
    rng = random.Random(seed)
    skus = rng.sample([f"SKU-{i:05d}" for i in range(SKUS)], lines)
    return Cart(
        country=country,  # type: ignore[arg-type]
        lines=tuple(CartLine(sku=sku, quantity=rng.randint(1, 6)) for sku in skus),
    )


class MemorySource:
    """An upstream that answers from memory for some locations: what fills a cache without a
    network (a warm cache never calls it again)."""

    def __init__(
        self, name: str, locations: frozenset[str], records: Collection[StockRecord]
    ) -> None:
        self._name = name
        self._locations = locations
        self._by_sku: dict[str, list[StockRecord]] = {}
        for record in records:
            if record.location_id in locations:
                self._by_sku.setdefault(record.sku, []).append(record)

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str]:
        return self._locations

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        return SourceAnswer(
            records=tuple(record for sku in skus for record in self._by_sku.get(sku, ()))
        )


WARM: CacheSettings = CacheSettings(fresh_for=3600.0, stale_for=7200.0)
"""Entries stay fresh for the whole run, so every round is a cache hit; what a hit costs does not
depend on how long it stays fresh. The other settings are the defaults."""


def cached_sources(rules: RuleSet, stock: Availability, count: int = 4) -> tuple[CachedSource, ...]:
    """`count` cached sources splitting the rule set's locations between them (as the demo's
    four upstream APIs do), each mapping every catalog SKU to an upstream item. Empty caches:
    the first gather fills them."""
    records = [record for by_location in stock.stock.values() for record in by_location.values()]
    upstream = {sku: f"item-{sku}" for sku in rules.catalog}
    ids = rules.location_ids
    return tuple(
        CachedSource(
            MemorySource(f"source-{i}", frozenset(ids[i::count]), records),
            WARM,
            upstream=upstream,
        )
        for i in range(count)
    )


def warm_checkout(
    lines: int = 5, locations: int = 10, rules: int = 100, sources: int = 4
) -> tuple[Checkout, Cart]:
    """The reference request of the warm-path benchmarks: a cart on the warm rule set and a
    `Checkout` over `sources` cached sources holding its SKUs (empty until the first cart
    fills them), on a fixed clock."""
    rs = warm_rule_set(locations, rules)
    c = cart(lines)
    cached = cached_sources(rs, availability(rs, [line.sku for line in c.lines]), sources)
    return Checkout(rs, cached, clock=lambda: NOW), c


def misses(checkout: Checkout) -> list[int]:
    """Each cached source's misses so far: the same before and after a measurement when every
    round was served from the cache, so what was measured is the warm path."""
    return [s.stats.misses for s in checkout.sources if isinstance(s, CachedSource)]
