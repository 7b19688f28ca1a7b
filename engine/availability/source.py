"""The `Source` protocol: the seam every availability source plugs into.

A source answers for many SKUs at once and says which it could not answer for; it never raises
into a cart decision. The gather step turns "could not answer" into unknown locations, which the
rules' `unknown_availability` policy then decides about.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from msgspec import Struct

from engine.availability.record import StockRecord

__all__ = ("Source", "SourceAnswer")


class SourceAnswer(Struct, frozen=True):
    records: tuple[StockRecord, ...]
    unknown_skus: frozenset[str] = frozenset()
    """SKUs the source could not answer for (outage, no data)."""


class Source(Protocol):
    """An availability source. `locations` is the set of location ids it reports on, or None when
    it reports on every location of the rule set."""

    @property
    def name(self) -> str: ...

    @property
    def locations(self) -> frozenset[str] | None: ...

    async def fetch(self, skus: Collection[str]) -> SourceAnswer: ...
