"""A decision's explanation as plain text a merchandiser can read.

`?explain=true` answers JSON for programs; `python -m engine decide --format text`,
`POST /v1/allocations?explain=text` and the rule tests' failure reports show the same facts
laid out for people: the cart, then per line what it got and why, every location considered
with its verdict and numbers, and each setting with the rule (file:line) that set it. Nothing
here decides anything: it only reads a `Decision` made with `explain=True`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC
from typing import Any, Final

from engine.model import (
    Cart,
    Decision,
    LineDecision,
    LineStatus,
    LocationExplanation,
    LocationVerdict,
    ReasonCode,
    SettingOrigin,
)

__all__ = (
    "REASON_WORDS",
    "describe_origin",
    "describe_value",
    "render",
    "render_cart",
    "render_line",
    "render_shipments",
)

REASON_WORDS: Final[dict[ReasonCode, str]] = {
    ReasonCode.UNKNOWN_SKU: "the SKU is not in the catalog",
    ReasonCode.DENIED_BY_RULE: "a rule denies it for this destination or channel",
    ReasonCode.NOT_SHIPPABLE: "no location may send it to the destination",
    ReasonCode.QUANTITY_LIMIT: "more than the per-order maximum was asked for",
    ReasonCode.INSUFFICIENT_STOCK: "not enough stock at the locations that may serve it",
    ReasonCode.BELOW_SAFETY_STOCK: (
        "stock exists, but not enough after safety stock and minimum ATP"
    ),
    ReasonCode.BACKORDER_NOT_ALLOWED: "the source says this item cannot be backordered",
    ReasonCode.BACKORDER_LIMIT: "the shortfall exceeds what one order may reserve",
    ReasonCode.RESTOCK_UNKNOWN: "a backorder needs a known restock time and none is known",
    ReasonCode.RESTOCK_TOO_LATE: "the restock is further away than the rules allow",
    ReasonCode.SPLIT_LIMIT: (
        "stock exists, but only across more locations or shipments than allowed"
    ),
    ReasonCode.AVAILABILITY_UNKNOWN: "the source could not say what is available",
}
"""Each reason code in words (the docs' reason table), so a reader needs no glossary."""

_VERDICT_WORDS: Final = {
    LocationVerdict.USED: "used",
    LocationVerdict.PASSED_OVER: "passed over",
    LocationVerdict.EXCLUDED: "excluded",
}
_VERDICT_WIDTH: Final = max(len(word) for word in _VERDICT_WORDS.values())
_INDENT: Final = "  "


def render(decision: Decision, cart: Cart | None = None) -> str:
    """The whole decision as text. `cart`, when given, adds where it goes (a decision does not
    say). A decision made without `explain` renders too, without locations and settings."""
    out = render_cart(decision, cart)
    for line in decision.lines:
        out.append("")
        out.extend(render_line(line))
    out.append("")
    out.extend(render_shipments(decision))
    return "\n".join(out) + "\n"


def render_cart(
    decision: Decision, cart: Cart | None = None, *, only: Collection[str] | None = None
) -> list[str]:
    """The cart's heading, its summary and the cart-wide settings (only those named in `only`,
    when given: a failure report shows the settings that bear on what failed)."""
    where = ""
    if decision.cart_id is not None:
        where += f" {decision.cart_id}"
    if cart is not None:
        where += f" to {cart.country}"
        if cart.channel is not None:
            where += f", channel {cart.channel}"
        if cart.pickup_location is not None:
            where += f", collected at {cart.pickup_location}"
    out = [f"Cart{where}: {decision.decision.value} (rule set {decision.rule_set})"]
    explanation = decision.explanation
    if explanation is not None:
        summary = explanation.summary
        prefix = f"{decision.decision.value}: "
        out.append(_INDENT + (summary[len(prefix) :] if summary.startswith(prefix) else summary))
        out.extend(_settings_block(explanation.settings, only))
    if decision.freshness is not None:
        age = decision.freshness.oldest_age_ms
        state = "some of it stale" if decision.freshness.stale else "fresh"
        out.append(f"{_INDENT}availability: {state}, the oldest {age} ms old")
    return out


def render_line(
    line: LineDecision, *, only: Collection[str] | None = None, brief: bool = False
) -> list[str]:
    """One line: what it got, why (the engine's summary, which names the deciding rule), its
    reasons in words, every location with verdict, detail and numbers, and the settings with
    the rule that set each (only those named in `only`, when given; none when `brief`)."""
    got = _outcome_words(line)
    out = [f"Line {line.line}: {line.quantity} × {line.sku}: {got}"]
    explanation = line.explanation
    if explanation is not None and explanation.summary and explanation.summary != got:
        out.append(f"{_INDENT}why: {explanation.summary}")
    if line.reasons:
        words = "; ".join(f"{code.value} ({REASON_WORDS[code]})" for code in line.reasons)
        out.append(f"{_INDENT}reasons: {words}")
    if line.message is not None:
        out.append(f"{_INDENT}message: {line.message}")
    if explanation is None or brief:
        return out
    if explanation.locations:
        out.append(f"{_INDENT}locations:")
        out.extend(_locations_block(explanation.locations))
    out.extend(_settings_block(explanation.settings, only))
    return out


def render_shipments(decision: Decision) -> list[str]:
    """Where the cart ships from: each location with the lines (and units) it sends."""
    if not decision.shipments:
        why = " (the cart is denied)" if decision.decision.value == "deny" else ""
        return [f"Shipments: none{why}"]
    out = ["Shipments:"]
    for shipment in decision.shipments:
        items = ", ".join(f"{s.quantity} × {s.sku} (line {s.line})" for s in shipment.lines)
        out.append(f"{_INDENT}{shipment.location_id}: {items}")
    return out


def describe_origin(setting: SettingOrigin) -> str:
    """Who set a setting: `rule `name`, file:line`, `defaults, file:line` or `built-in`."""
    if setting.file is None:
        return setting.rule
    where = f"{setting.file}:{setting.line}"
    if setting.rule == "defaults":
        return f"defaults, {where}"
    return f"rule `{setting.rule}`, {where}"


def describe_value(setting: str, value: Any) -> str:
    """A setting's value in words: `null` limits read `no limit`, lists are written out."""
    if setting == "ship_to" and isinstance(value, dict):
        allow, deny = value.get("allow"), value.get("deny") or []
        parts = []
        if allow is not None:
            parts.append("only to " + (", ".join(map(str, allow)) or "nowhere"))
        if deny:
            parts.append("not to " + ", ".join(map(str, deny)))
        return "; ".join(parts) or "no restriction"
    if value is None:
        return "no limit"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


# --- pieces -------------------------------------------------------------------------------------


def _outcome_words(line: LineDecision) -> str:
    """What the line got, in one phrase: allocations, reservation, or the denial."""
    parts = []
    if line.allocations:
        parts.append(
            "allocated " + ", ".join(f"{a.quantity} from {a.location_id}" for a in line.allocations)
        )
    reservation = line.reservation
    if reservation is not None:
        text = f"reserved {reservation.quantity}"
        if reservation.location_id is not None:
            text += f" at {reservation.location_id}"
        if reservation.restock_time is not None:
            restock = reservation.restock_time.astimezone(UTC).date().isoformat()
            text += f" against the restock of {restock}"
        else:
            text += " (no restock date)"
        parts.append(text)
    if line.status is LineStatus.DENIED:
        text = "denied"
        if line.available is not None:
            text += f", {line.available} available"
        parts = [text]
    return "; ".join(parts) or line.status.value


def _numbers(location: LocationExplanation) -> str:
    """ATP, safety stock and what that leaves, where the location reported stock."""
    if location.atp is None:
        return ""
    if location.safety_stock is None:
        return f"ATP {location.atp}"
    if location.allocatable is None:
        return "stock not tracked (unlimited)"
    return (
        f"ATP {location.atp}, safety stock {location.safety_stock} → "
        f"{location.allocatable} allocatable"
    )


def _locations_block(locations: Iterable[LocationExplanation]) -> list[str]:
    rows = list(locations)
    width = max(len(loc.location_id) for loc in rows)
    out = []
    for loc in rows:
        text = loc.detail
        numbers = _numbers(loc)
        # A detail that already gives the ATP ("nothing allocatable: ATP 2, ...") says enough.
        if numbers and f"ATP {loc.atp}" not in text:
            text = f"{text}; {numbers}" if text else numbers
        verdict = _VERDICT_WORDS[loc.verdict]
        out.append(f"{_INDENT * 2}{loc.location_id:<{width}}  {verdict:<{_VERDICT_WIDTH}}  {text}")
    return out


def _settings_block(settings: Iterable[SettingOrigin], only: Collection[str] | None) -> list[str]:
    """Each setting with its value and origin; a location setting once per value and origin,
    with the locations it applies to (`safety_stock: 2 at dub-dc, ams-dc (rule ...)`)."""
    written: dict[tuple[str, str, str, bool], list[str]] = {}
    for s in settings:
        if only is not None and s.setting not in only:
            continue
        key = (
            s.setting,
            describe_value(s.setting, s.value),
            describe_origin(s),
            s.location_id is None,
        )
        where = written.setdefault(key, [])
        if s.location_id is not None:
            where.append(s.location_id)
    if not written:
        return []
    out = [f"{_INDENT}settings:"]
    for (name, value, origin, _), where in written.items():
        at = f" at {', '.join(where)}" if where else ""
        out.append(f"{_INDENT * 2}{name}: {value}{at} ({origin})")
    return out
