"""The request path in one place: gather availability for a cart, then decide it.

The service and the CLI both call `Checkout`, so `python -m engine decide` answers exactly as
`POST /v1/allocations` does. The rule set and the sources built for it are swapped together, as
one `Live` pair (`replace_rules`): a request reads the pair once, so it always decides with one
consistent rule set and the sources that go with it, whatever a reload does meanwhile.

Each cart has one time budget for all its sources together: they are asked concurrently, and
what has not come by the deadline is taken from stale cache entries or is unknown (the rules'
`unknown_availability` decides). The answer says whether any input was stale, and how old the
oldest was.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec

from engine.allocate import assess, decide
from engine.availability import Availability, Source, gather
from engine.availability.cache import CachedSource
from engine.errors import FieldError, UnknownReference
from engine.model import AvailabilityAnswer, Cart, Decision, Freshness
from engine.policy import RuleSet

if TYPE_CHECKING:
    from engine.record import Recorder

__all__ = (
    "BUDGET_VARIABLE",
    "DEFAULT_BUDGET_MS",
    "Checkout",
    "Live",
    "budget_seconds",
    "freshness",
    "utc_now",
)

DEFAULT_BUDGET_MS: Final = 150
"""Time one cart may spend waiting for availability, all sources together."""
BUDGET_VARIABLE: Final = "ENGINE_BUDGET_MS"


def utc_now() -> datetime:
    return datetime.now(UTC)


def budget_seconds(budget_ms: int | None = None, env: Mapping[str, str] | None = None) -> float:
    """The time budget: `budget_ms` if given, else `ENGINE_BUDGET_MS`, else 150 ms. Raises
    ValueError for a value that is not a whole number of milliseconds from 1 to 60000."""
    if budget_ms is None:
        text = (os.environ if env is None else env).get(BUDGET_VARIABLE)
        if text is None or not text.strip():
            return DEFAULT_BUDGET_MS / 1000
        try:
            budget_ms = int(text)
        except ValueError:
            raise ValueError(f"{BUDGET_VARIABLE} must be milliseconds, not {text!r}") from None
    if not 1 <= budget_ms <= 60_000:
        raise ValueError(f"the time budget must be 1 to 60000 ms, not {budget_ms}")
    return budget_ms / 1000


def freshness(availability: Availability) -> Freshness | None:
    """What an answer says of its inputs' age; None when no source kept track."""
    if availability.oldest_age is None:
        return None
    return Freshness(stale=availability.stale, oldest_age_ms=round(availability.oldest_age * 1000))


class Live(NamedTuple):
    """The rule set in force and the sources built for it: replaced only as a pair, so a cart
    never asks sources configured by one rule set about the locations of another."""

    rules: RuleSet
    sources: tuple[Source, ...]


class Checkout:
    """Decides carts against a rule set and a set of availability sources, each cart within
    `budget` seconds of waiting for them."""

    def __init__(
        self,
        rules: RuleSet,
        sources: Sequence[Source],
        clock: Callable[[], datetime] = utc_now,
        *,
        budget: float = DEFAULT_BUDGET_MS / 1000,
        recorder: Recorder | None = None,
    ) -> None:
        self.live = Live(rules, tuple(sources))
        self.clock = clock
        self.budget = budget
        self.recorder = recorder
        """Keeps a sample of decisions with their inputs, for `python -m engine simulate`."""

    def stats(self) -> dict[str, Any]:
        """Per cached source: cache, coalescing, upstream and breaker counters (JSON-ready)."""
        return {
            "budget_ms": round(self.budget * 1000),
            "sources": {
                source.name: source.report()
                for source in self.sources
                if isinstance(source, CachedSource)
            },
        }

    @property
    def rules(self) -> RuleSet:
        return self.live.rules

    @property
    def sources(self) -> tuple[Source, ...]:
        return self.live.sources

    def replace_rules(self, rules: RuleSet, sources: Sequence[Source] | None = None) -> None:
        """Put `rules` in force, with `sources` built for them (None: keep the current ones).
        One assignment: carts being decided keep the pair they started with."""
        self.live = Live(rules, self.live.sources if sources is None else tuple(sources))

    async def allocate(self, cart: Cart, *, explain: bool = False) -> Decision:
        """Gather what the cart's lines may draw on, then decide. Only locations that may serve
        a line are asked about it: a line denied by a rule, or a SKU no location of a source
        may send to the destination, costs no upstream call."""
        deadline = time.monotonic() + self.budget
        rules, sources = self.live
        if cart.pickup_location is not None and cart.pickup_location not in rules.location_by_id:
            raise UnknownReference(
                f"there is no location `{cart.pickup_location}` to collect from",
                (FieldError("$.pickup_location", "no location has this id"),),
            )
        serving: dict[str, frozenset[str]] = {}
        for line in cart.lines:
            where = rules.serving(line.sku, cart.country, cart.channel, cart.pickup_location)
            if where:
                # A SKU on several lines has the same rules, so the same locations.
                serving[line.sku] = where
        availability = await gather(
            serving, sources, rules.location_ids, serving, deadline=deadline
        )
        now = self.clock()
        decision = decide(cart, availability, rules, now, explain=explain)
        fresh = freshness(availability)
        if fresh is not None:
            decision = msgspec.structs.replace(decision, freshness=fresh)
        recorder = self.recorder
        # The draw comes first: an unsampled cart pays for nothing else.
        if recorder is not None and random.random() < recorder.sample:  # noqa: S311 - sampling
            recorder.record(cart, availability, decision, now)
        return decision

    async def availability(
        self, skus: Sequence[str], country: str, channel: str | None = None
    ) -> AvailabilityAnswer:
        deadline = time.monotonic() + self.budget
        rules, sources = self.live
        wanted = list(dict.fromkeys(skus))
        serving = {sku: where for sku in wanted if (where := rules.serving(sku, country, channel))}
        availability = await gather(
            serving, sources, rules.location_ids, serving, deadline=deadline
        )
        now = self.clock()
        return AvailabilityAnswer(
            country=country,
            rule_set=rules.id,
            items=tuple(assess(sku, country, channel, availability, rules, now) for sku in wanted),
            freshness=freshness(availability),
        )
