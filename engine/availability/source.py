"""The `Source` protocol: the seam every availability source plugs into.

A source answers for many SKUs at once and says which it could not answer for; it never raises
into a cart decision. What went wrong travels in the answer as typed `SourceError`s, so the gather
step (and the cache and circuit breakers above it) can count and react without parsing logs. The
gather step turns "could not answer" into unknown locations, which the rules'
`unknown_availability` policy then decides about.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from msgspec import Struct

from engine.availability.record import StockRecord

__all__ = (
    "BadPayload",
    "ConnectionFailed",
    "NotAuthorised",
    "RateLimited",
    "RequestRejected",
    "Source",
    "SourceAnswer",
    "SourceError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
)


class SourceError(Exception):
    """A source could not answer (for some or all of the SKUs asked). Never raised into `decide`.

    `outage` says whether the failure is about the source's health (it counts toward circuit
    breaking and allows serving stale data) or about what was asked (a bad request)."""

    outage = True

    def __init__(
        self,
        source: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message
        self.status = status
        self.retry_after = retry_after
        """Seconds the source asked us to wait before calling again (429 / 503 `Retry-After`)."""


class NotAuthorised(SourceError):
    """401 or 403: the credentials are missing, wrong or lack the scope."""


class RateLimited(SourceError):
    """429: too many requests; `retry_after` says when to call again, when the source said."""


class UpstreamUnavailable(SourceError):
    """5xx (or 408): the source failed or is overloaded."""


class UpstreamTimeout(SourceError):
    """No (complete) answer within the time allowed."""


class ConnectionFailed(SourceError):
    """Refused, reset or dropped connections, DNS failures: the source could not be reached."""


class BadPayload(SourceError):
    """The body is not JSON, or not the documented shape."""


class RequestRejected(SourceError):
    """400, 405, 406 and the like: the source refused what we asked (a mapping or adapter bug,
    not an outage)."""

    outage = False


class SourceAnswer(Struct, frozen=True):
    records: tuple[StockRecord, ...]
    unknown_skus: frozenset[str] = frozenset()
    """SKUs the source could not answer for (outage, no data, or an item it does not know)."""
    missing_skus: frozenset[str] = frozenset()
    """The part of `unknown_skus` the source says it does not know (404 or left out of a batch):
    a configuration problem to report, not an outage."""
    errors: tuple[SourceError, ...] = ()
    """What went wrong while answering, one per failed upstream request."""
    stale_skus: frozenset[str] = frozenset()
    """SKUs answered from data kept past its fresh time, because the source failed, was being
    backed off from, or did not answer before the deadline (RFC 5861 stale-if-error)."""
    oldest_age: float | None = None
    """Seconds since the oldest upstream data in the answer was fetched; None when the source
    does not keep track (a snapshot, an adapter used without a cache) or answered from none."""
    oldest_fetched: datetime | None = None
    """When that oldest data was fetched (wall clock), for reports and logs."""


class Source(Protocol):
    """An availability source. `locations` is the set of location ids it reports on, or None when
    it reports on every location of the rule set.

    `fetch` is given the cart's `deadline`, a `time.monotonic()` instant: a source should answer
    by then with what it has. One that ignores it is not waited for past it (see `gather`)."""

    @property
    def name(self) -> str: ...

    @property
    def locations(self) -> frozenset[str] | None: ...

    async def fetch(
        self, skus: Collection[str], *, deadline: float | None = None
    ) -> SourceAnswer: ...
