"""Synthetic rule sets, availability and carts of a chosen size, for benchmarks.

Deterministic (a seeded `random.Random`), so two runs measure the same work. The rules mix every
kind a merchandiser writes (thresholds per tag and location, ship-to, backorders, limits, deny
rules, channel routing), so `decide` resolves realistic precedence, not a trivial rule list.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from engine.availability import Availability, StockRecord
from engine.model import Cart, CartLine
from engine.policy import RuleSet, load_rule_set_texts

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
COUNTRIES = ["IE", "NL", "DE", "FR", "ES", "IT", "BE", "AT", "PL", "SE", "DK", "FI", "PT", "CZ"]
TAGS = ["apparel", "footwear", "home", "beauty", "electronics", "battery", "limited", "outlet"]


def rule_set(locations: int, rules: int, skus: int = 400, seed: int = 7) -> RuleSet:
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
    return load_rule_set_texts([("synthetic.yaml", "\n".join(lines) + "\n")])


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
    skus = rng.sample([f"SKU-{i:05d}" for i in range(400)], lines)
    return Cart(
        country=country,  # type: ignore[arg-type]
        lines=tuple(CartLine(sku=sku, quantity=rng.randint(1, 6)) for sku in skus),
    )
