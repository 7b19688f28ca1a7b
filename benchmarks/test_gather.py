"""The warm-cache path of a request: availability gathered through `CachedSource`s whose entries
are fresh, alone and followed by the decision (`Checkout.allocate`, as the service runs it).

A gather is a coroutine, so it needs a running event loop. A loop per call (`asyncio.run`) costs
more than the gather itself, and even `run_until_complete` on one loop adds some 10% per call;
no request pays either, as the service's loop is already running. So each round runs `CALLS`
requests one after another inside a single `run_until_complete` on a loop made once: the table
shows the time of the whole round, and `benchmarks.compare` divides it by `CALLS` (from
`extra_info`) to report it per request, the loop's start and stop shared by all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.compare import CALLS_PER_ROUND
from benchmarks.synthetic import misses, warm_checkout
from engine.availability import Availability, gather
from engine.checkout import DEFAULT_BUDGET_MS
from engine.model import Outcome

CALLS = 100
"""Requests per round."""
SOURCES = 4


def _rounds(
    loop: asyncio.AbstractEventLoop, request: Callable[[], Awaitable[object]]
) -> Callable[[], None]:
    """One round: `CALLS` requests awaited one after another on the running loop."""

    async def many() -> None:
        for _ in range(CALLS):
            await request()

    return lambda: loop.run_until_complete(many())


def test_gather_warm(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    """`gather` as `Checkout.allocate` calls it, for a 5-line cart whose SKUs every source
    holds fresh: each of the four sources answers from its cache, the answers are merged."""
    benchmark.group = "gather: warm cache"
    benchmark.name = f"gather x{CALLS}[5 lines, {SOURCES} sources, warm cache]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    checkout, c = warm_checkout(sources=SOURCES)
    rs, sources = checkout.live
    serving = {line.sku: rs.serving(line.sku, c.country, c.channel) for line in c.lines}
    budget = DEFAULT_BUDGET_MS / 1000

    def request() -> Awaitable[Availability]:
        deadline = time.monotonic() + budget
        return gather(serving, sources, rs.location_ids, serving, deadline=deadline)

    filled = loop.run_until_complete(request())  # fills the caches: the only misses
    assert sum(len(by_location) for by_location in filled.stock.values()) == 5 * 10
    before = misses(checkout)
    benchmark(_rounds(loop, request))
    assert misses(checkout) == before  # every round was the warm path


def test_checkout_warm(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    """The whole request behind `POST /v1/allocations` once the body is decoded: the locations
    each line may use, the gather from warm caches, `decide`, and the answer's freshness."""
    benchmark.group = "checkout: warm cache"
    benchmark.name = f"checkout x{CALLS}[5 lines x 10 locations, 100 rules, warm cache]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    checkout, c = warm_checkout(sources=SOURCES)
    first = loop.run_until_complete(checkout.allocate(c))  # fills the caches
    assert first.decision is Outcome.ALLOCATE
    assert first.freshness is not None
    assert not first.freshness.stale
    before = misses(checkout)
    benchmark(_rounds(loop, lambda: checkout.allocate(c)))
    assert misses(checkout) == before  # every round was the warm path
