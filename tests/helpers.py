"""Helpers to build rule sets from YAML text, carts and availability with exact numbers."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.availability import Availability, StockRecord
from engine.model import Cart, CartLine, Decision
from engine.policy import RuleSet, load_rule_set_texts

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
DEMO_AVAILABILITY = ROOT / "demo" / "availability.json"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEMO_LOCATIONS = ["dub-dc", "ams-dc", "lon-store", "nyc-3pl", "ber-dropship", "old-cork"]
"""The demo's locations, in the order of rules/locations.yaml."""


def rules_from(*texts: str, names: Iterable[str] | None = None) -> RuleSet:
    """Compile rule files given as YAML texts (dedented), named rules-0.yaml, rules-1.yaml..."""
    names = list(names) if names is not None else [f"rules-{i}.yaml" for i in range(len(texts))]
    return load_rule_set_texts(
        [(name, textwrap.dedent(text)) for name, text in zip(names, texts, strict=True)]
    )


def stock(*rows: tuple[Any, ...], unknown: dict[str, Iterable[str]] | None = None) -> Availability:
    """Availability from (sku, location_id, atp) rows, optionally with a fourth element: a dict
    of extra `StockRecord` fields (restock_time, backorderable, unlimited...)."""
    records = []
    for row in rows:
        sku, location_id, atp = row[:3]
        extra = row[3] if len(row) > 3 else {}
        records.append(StockRecord(sku=sku, location_id=location_id, atp=atp, **extra))
    return Availability.from_records(records, {k: frozenset(v) for k, v in (unknown or {}).items()})


def cart(country: str, *lines: tuple[str, int], **fields: Any) -> Cart:
    return Cart(
        country=country,  # type: ignore[arg-type]
        lines=tuple(CartLine(sku=sku, quantity=q) for sku, q in lines),
        **fields,
    )


def allocations(decision: Decision) -> list[dict[str, int]]:
    """Per line, location id -> allocated quantity: the shape most assertions compare."""
    return [{a.location_id: a.quantity for a in line.allocations} for line in decision.lines]
