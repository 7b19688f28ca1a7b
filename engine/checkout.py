"""The request path in one place: gather availability for a cart, then decide it.

The service and the CLI both call `Checkout`, so `python -m engine decide` answers exactly as
`POST /v1/allocations` does. The rule set is swapped as a whole (`replace_rules`): a request
reads `self.rules` once, so it always decides with one consistent rule set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from engine.allocate import assess, decide
from engine.availability import Source, gather
from engine.errors import FieldError, UnknownReference
from engine.model import AvailabilityAnswer, Cart, Decision
from engine.policy import RuleSet

__all__ = ("Checkout", "utc_now")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Checkout:
    """Decides carts against a rule set and a set of availability sources."""

    def __init__(
        self,
        rules: RuleSet,
        sources: Sequence[Source],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.rules = rules
        self.sources = tuple(sources)
        self.clock = clock

    def replace_rules(self, rules: RuleSet) -> None:
        self.rules = rules

    async def allocate(self, cart: Cart, *, explain: bool = False) -> Decision:
        """Gather what the cart's lines may draw on, then decide. Only locations that may serve
        a line are asked about it: a line denied by a rule, or a SKU no location of a source
        may send to the destination, costs no upstream call."""
        rules = self.rules
        if cart.pickup_location is not None and cart.pickup_location not in rules.location_by_id:
            raise UnknownReference(
                f"there is no location `{cart.pickup_location}` to collect from",
                (FieldError("$.pickup_location", "no location has this id"),),
            )
        serving: dict[str, set[str]] = {}
        for line in cart.lines:
            if line.sku not in rules.catalog:
                continue
            lr = rules.line_rules(line.sku, cart.country, cart.channel)
            if lr.deny is not None or lr.not_shippable is not None:
                continue
            if cart.pickup_location is not None:
                where = {cart.pickup_location} if cart.pickup_location in lr.by_location else set()
            else:
                where = {cand.location.id for cand in lr.candidates}
            serving.setdefault(line.sku, set()).update(where)
        availability = await gather(serving, self.sources, rules.location_ids, serving)
        return decide(cart, availability, rules, self.clock(), explain=explain)

    async def availability(
        self, skus: Sequence[str], country: str, channel: str | None = None
    ) -> AvailabilityAnswer:
        rules = self.rules
        wanted = list(dict.fromkeys(skus))
        serving: dict[str, set[str]] = {}
        for sku in wanted:
            if sku in rules.catalog:
                lr = rules.line_rules(sku, country, channel)
                if lr.deny is None and lr.not_shippable is None:
                    serving[sku] = {cand.location.id for cand in lr.candidates}
        availability = await gather(serving, self.sources, rules.location_ids, serving)
        now = self.clock()
        return AvailabilityAnswer(
            country=country,
            rule_set=rules.id,
            items=tuple(assess(sku, country, channel, availability, rules, now) for sku in wanted),
        )
