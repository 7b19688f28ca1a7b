"""Counters per source: what the cache answered, what went upstream and how it went.

Plain integers kept by the one event loop that serves carts, so counting costs next to nothing;
`describe` gives them as JSON-ready values for the metrics endpoint (`GET /v1/sources`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Final

from engine.availability.source import SourceError

__all__ = ("LATENCY_BUCKETS_MS", "SourceStats")

LATENCY_BUCKETS_MS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)
"""Upper bounds of the upstream latency histogram, in milliseconds. Reported cumulatively, as
Prometheus does: `le_50` counts every call that took at most 50 ms."""


@dataclass
class SourceStats:
    """Counts since start. "SKU answers" count once per SKU per cart. A miss the upstream did
    not answer for the cart is counted once more, by why: `late`, `skipped` or `shed`, or else
    a call was made and failed (see `upstream_errors`); it is then a `stale_serves` or an
    `unanswered`."""

    hits: int = 0
    """SKU answers from a fresh cache entry."""
    misses: int = 0
    """SKU answers that needed the upstream (no entry, or one past its fresh time), whether or
    not a call could be made for them: those backed off from count here and in `skipped`."""
    coalesced: int = 0
    """Misses that joined a request another cart (or a refresh ahead) had already made or
    planned for the same upstream item (the same SKU, or another variant of the product)."""
    batched: int = 0
    """Misses sent in a batched request another cart opened (different items, one request)."""
    refreshes: int = 0
    """Upstream items asked again in the background because a cart used their answer near the
    end of its fresh time (`refresh_after`): served from the cache meanwhile, counted as hits."""
    stale_serves: int = 0
    """SKU answers from an entry past its fresh time, because no fresh one could be had."""
    unanswered: int = 0
    """SKU answers left unknown: no fresh data could be had and nothing young enough was kept."""
    late: int = 0
    """SKU answers whose upstream request had not come back by the cart's deadline (or whose
    cart's deadline had passed before it could ask)."""
    upstream_calls: int = 0
    """Calls made to the upstream (a retry is a call)."""
    retries: int = 0
    skipped: int = 0
    """SKU answers for which no call was made because the source was backed off from: the
    breaker was open or the source had asked us to wait (`Retry-After`)."""
    shed: int = 0
    """SKU answers for which no call was made because, when its turn came (a concurrency slot
    free, the batch window over), less time was left before the carts' deadline than the source
    usually takes to answer (or than `MIN_RETRY_TIME`)."""
    upstream_errors: dict[str, int] = field(default_factory=dict)
    """Error class name (`UpstreamTimeout`, `BadPayload`...) -> count."""
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, seconds: float) -> None:
        """One upstream call took `seconds`, whatever its outcome."""
        self.latency_count += 1
        self.latency_sum += seconds
        self.latency_max = max(self.latency_max, seconds)
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, seconds * 1000)] += 1

    def error(self, error: SourceError) -> None:
        name = type(error).__name__
        self.upstream_errors[name] = self.upstream_errors.get(name, 0) + 1

    def describe(self) -> dict[str, Any]:
        buckets: dict[str, int] = {}
        below = 0
        for bound, count in zip(LATENCY_BUCKETS_MS, self.latency_buckets, strict=False):
            below += count
            buckets[f"le_{bound}"] = below
        buckets["le_inf"] = self.latency_count
        return {
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "batched": self.batched,
            "refreshes": self.refreshes,
            "stale_serves": self.stale_serves,
            "unanswered": self.unanswered,
            "late": self.late,
            "upstream_calls": self.upstream_calls,
            "retries": self.retries,
            "skipped": self.skipped,
            "shed": self.shed,
            "upstream_errors": dict(sorted(self.upstream_errors.items())),
            "latency_ms": {
                "count": self.latency_count,
                "sum": round(self.latency_sum * 1000, 3),
                "max": round(self.latency_max * 1000, 3),
                "buckets": buckets,
            },
        }
