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
from collections.abc import Awaitable, Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.compare import CALLS_PER_ROUND
from benchmarks.synthetic import NOW, availability, cached_sources, cart, warm_rule_set
from engine.availability import Availability, CachedSource, gather
from engine.checkout import DEFAULT_BUDGET_MS, Checkout
from engine.model import Outcome

CALLS = 100
"""Requests per round."""
SOURCES = 4


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _rounds(
    loop: asyncio.AbstractEventLoop, request: Callable[[], Awaitable[object]]
) -> Callable[[], None]:
    """One round: `CALLS` requests awaited one after another on the running loop."""

    async def many() -> None:
        for _ in range(CALLS):
            await request()

    return lambda: loop.run_until_complete(many())


def _hits_only(sources: tuple[CachedSource, ...], misses: list[int]) -> None:
    """No round missed the cache: what was measured is the warm path."""
    assert [source.stats.misses for source in sources] == misses


def test_gather_warm(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    """`gather` as `Checkout.allocate` calls it, for a 5-line cart whose SKUs every source
    holds fresh: each of the four sources answers from its cache, the answers are merged."""
    benchmark.group = "gather: warm cache"
    benchmark.name = f"gather x{CALLS}[5 lines, {SOURCES} sources, warm cache]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    rs = warm_rule_set(10, 100)
    c = cart(5)
    sources = cached_sources(rs, availability(rs, [line.sku for line in c.lines]), SOURCES)
    serving = {line.sku: rs.serving(line.sku, c.country, c.channel) for line in c.lines}
    budget = DEFAULT_BUDGET_MS / 1000

    def request() -> Awaitable[Availability]:
        deadline = time.monotonic() + budget
        return gather(serving, sources, rs.location_ids, serving, deadline=deadline)

    filled = loop.run_until_complete(request())  # fills the caches: the only misses
    assert sum(len(by_location) for by_location in filled.stock.values()) == 5 * 10
    misses = [source.stats.misses for source in sources]
    benchmark(_rounds(loop, request))
    _hits_only(sources, misses)


def test_checkout_warm(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    """The whole request behind `POST /v1/allocations` once the body is decoded: the locations
    each line may use, the gather from warm caches, `decide`, and the answer's freshness."""
    benchmark.group = "checkout: warm cache"
    benchmark.name = f"checkout x{CALLS}[5 lines x 10 locations, 100 rules, warm cache]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    rs = warm_rule_set(10, 100)
    c = cart(5)
    sources = cached_sources(rs, availability(rs, [line.sku for line in c.lines]), SOURCES)
    checkout = Checkout(rs, sources, clock=lambda: NOW)
    first = loop.run_until_complete(checkout.allocate(c))  # fills the caches
    assert first.decision is Outcome.ALLOCATE
    assert first.freshness is not None
    assert not first.freshness.stale
    misses = [source.stats.misses for source in sources]
    benchmark(_rounds(loop, lambda: checkout.allocate(c)))
    _hits_only(sources, misses)
