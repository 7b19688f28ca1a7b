"""The cache, coalescing, retry and back-off in front of a source, and the circuit breaker: unit
tests with a scripted source and, where ages and back-off matter, an injected clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

import pytest

from engine.availability import (
    ConnectionFailed,
    NotAuthorised,
    RateLimited,
    RequestRejected,
    SourceAnswer,
    SourceError,
    StockRecord,
    UpstreamTimeout,
    UpstreamUnavailable,
    gather,
)
from engine.availability.breaker import BreakerSettings, BreakerState, CircuitBreaker
from engine.availability.cache import CachedSource, CacheSettings, retryable
from engine.availability.stats import SourceStats


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Scripted:
    """A source whose answers the test scripts: every SKU has `atp` units at location `a`,
    except those in `missing` (which it says it does not know); `failures` are returned, one per
    call, before it answers normally again."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.deadlines: list[float | None] = []
        self.failures: list[SourceError] = []
        self.missing: set[str] = set()
        self.atp = 5
        self.delay = delay

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def locations(self) -> frozenset[str]:
        return frozenset({"a"})

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        self.calls.append(sorted(skus))
        self.deadlines.append(deadline)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            return SourceAnswer(
                records=(), unknown_skus=frozenset(skus), errors=(self.failures.pop(0),)
            )
        missing = self.missing & set(skus)
        return SourceAnswer(
            records=tuple(
                StockRecord(sku=sku, location_id="a", atp=self.atp, source="scripted")
                for sku in sorted(skus)
                if sku not in missing
            ),
            unknown_skus=frozenset(missing),
            missing_skus=frozenset(missing),
        )


def cached(inner: Scripted, clock: Clock | None = None, **settings: object) -> CachedSource:
    options: dict[str, object] = {"fresh_for": 5.0, "stale_for": 60.0}
    options.update(settings)
    if clock is None:
        return CachedSource(inner, CacheSettings(**options))  # type: ignore[arg-type]
    return CachedSource(inner, CacheSettings(**options), clock=clock)  # type: ignore[arg-type]


def fetch(source: CachedSource, *skus: str, deadline: float | None = None) -> SourceAnswer:
    return asyncio.run(source.fetch(skus, deadline=deadline))


def atp(answer: SourceAnswer) -> dict[str, int]:
    return {record.sku: record.atp for record in answer.records}


# --- fresh, stale, expired ----------------------------------------------------------------------


def test_a_fresh_entry_is_served_without_a_call():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    first = fetch(source, "A")
    clock.advance(4.9)
    second = fetch(source, "A")
    assert inner.calls == [["A"]]
    assert atp(first) == atp(second) == {"A": 5}
    assert second.stale_skus == frozenset()
    assert second.oldest_age == pytest.approx(4.9)
    assert (source.stats.hits, source.stats.misses) == (1, 1)


def test_past_its_fresh_time_an_entry_is_fetched_again():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    fetch(source, "A")
    clock.advance(5.0)
    inner.atp = 7
    answer = fetch(source, "A")
    assert inner.calls == [["A"], ["A"]]
    assert atp(answer) == {"A": 7}
    assert answer.stale_skus == frozenset()
    assert answer.oldest_age == 0.0


def test_when_the_source_fails_a_stale_entry_is_served_flagged_with_its_age():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    fetch(source, "A")
    clock.advance(30.0)
    inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503, retry_after=1)]
    answer = fetch(source, "A")
    assert atp(answer) == {"A": 5}
    assert answer.stale_skus == {"A"}
    assert answer.unknown_skus == frozenset()
    assert answer.oldest_age == pytest.approx(30.0)
    assert [type(e) for e in answer.errors] == [UpstreamUnavailable]
    assert source.stats.stale_serves == 1
    assert source.stats.upstream_errors == {"UpstreamUnavailable": 1}


def test_past_its_stale_time_an_entry_is_no_longer_served():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    fetch(source, "A")
    clock.advance(60.0)
    inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503, retry_after=1)]
    answer = fetch(source, "A")
    assert answer.records == ()
    assert answer.unknown_skus == {"A"}
    assert answer.stale_skus == frozenset()
    assert answer.oldest_age is None
    assert source.entry("A") is None  # the TTL cache let it go
    assert source.stats.unanswered == 1


def test_failures_are_never_kept_as_data():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    inner.failures = [RequestRejected("scripted", "HTTP 400", status=400)]
    assert fetch(source, "A").unknown_skus == {"A"}
    assert source.entry("A") is None
    assert atp(fetch(source, "A")) == {"A": 5}
    assert inner.calls == [["A"], ["A"]]


def test_an_item_the_upstream_does_not_know_is_kept_as_missing_and_is_not_a_failure():
    clock, inner = Clock(), Scripted()
    inner.missing = {"LAMP"}
    source = cached(inner, clock)
    first = fetch(source, "LAMP", "A")
    second = fetch(source, "LAMP")
    assert sorted(inner.calls) == [["A"], ["LAMP"]]
    for answer in (first, second):
        assert answer.missing_skus == answer.unknown_skus == {"LAMP"}
        assert answer.errors == ()
    assert source.breaker.describe()["failures"] == 0


def test_a_sku_the_source_does_not_carry_costs_no_call():
    inner = Scripted()
    source = CachedSource(inner, CacheSettings(), upstream={"A": "item-a"})
    answer = fetch(source, "A", "NOT-CARRIED")
    assert inner.calls == [["A"]]
    assert atp(answer) == {"A": 5}
    assert answer.unknown_skus == frozenset()


# --- retry and Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UpstreamUnavailable("s", "503", status=503), True),
        (UpstreamTimeout("s", "slow"), True),
        (ConnectionFailed("s", "reset"), True),
        (UpstreamUnavailable("s", "503", status=503, retry_after=2), False),
        (RateLimited("s", "429", status=429), False),
        (NotAuthorised("s", "401", status=401), False),
        (RequestRejected("s", "400", status=400), False),
    ],
)
def test_which_failures_are_retried(error, expected):
    assert retryable(error) is expected


def test_an_outage_is_retried_once():
    inner = Scripted()
    inner.failures = [ConnectionFailed("scripted", "reset"), ConnectionFailed("scripted", "reset")]
    source = cached(inner)
    answer = fetch(source, "A", deadline=time.monotonic() + 1)
    assert inner.calls == [["A"], ["A"]]
    assert answer.unknown_skus == {"A"}
    assert len(answer.errors) == 2
    assert (source.stats.upstream_calls, source.stats.retries) == (2, 1)
    inner.failures = [ConnectionFailed("scripted", "reset")]
    answer = fetch(source, "B", deadline=time.monotonic() + 1)
    assert atp(answer) == {"B": 5}
    assert answer.stale_skus == frozenset()


def test_no_retry_when_the_deadline_leaves_no_time_for_one():
    inner = Scripted()
    inner.failures = [ConnectionFailed("scripted", "reset")]
    source = cached(inner)
    answer = fetch(source, "A", deadline=time.monotonic() + 0.005)
    assert inner.calls == [["A"]]
    assert answer.unknown_skus == {"A"}


def test_retry_after_means_no_call_before_it():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, fresh_for=0.0)
    fetch(source, "A")
    inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=2)]
    clock.advance(1.0)
    limited = fetch(source, "A")
    assert len(inner.calls) == 2  # no retry of a rate limit
    assert limited.stale_skus == {"A"}
    clock.advance(1.9)
    meanwhile = fetch(source, "A", "B")
    assert len(inner.calls) == 2
    assert meanwhile.stale_skus == {"A"}
    assert meanwhile.unknown_skus == {"B"}
    assert source.report()["retry_after_ms"] == 100
    clock.advance(0.1)
    after = fetch(source, "A", "B")
    assert sorted(inner.calls[2:]) == [["A"], ["B"]]
    assert after.stale_skus == frozenset()
    assert source.stats.skipped == 1


# --- the circuit breaker ------------------------------------------------------------------------


def test_the_breaker_opens_on_the_failure_rate_then_probes_once():
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failure_rate=0.5, window=4, min_calls=4), clock)
    for failed in (False, True, False):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, failed)
    assert breaker.state is BreakerState.CLOSED  # 3 calls: fewer than min_calls
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, True)  # 2 of 4 failed
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is None
    clock.advance(4.99)
    assert breaker.blocked()
    clock.advance(0.01)
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire() is None  # one probe at a time
    breaker.record(probe, True)
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 2
    clock.advance(5.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record(probe, False)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.describe() == {"state": "closed", "calls": 0, "failures": 0, "opened": 2}


def test_the_breaker_keeps_only_the_last_window_of_calls():
    breaker = CircuitBreaker(BreakerSettings(failure_rate=0.8, window=4, min_calls=4), Clock())
    for failed in (True, True, True, False, False, False, False):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, failed)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.describe() == {"state": "closed", "calls": 4, "failures": 0, "opened": 0}


def test_a_call_under_way_when_the_breaker_opened_does_not_close_it():
    breaker = CircuitBreaker(BreakerSettings(window=2, min_calls=2), Clock())
    early = breaker.acquire()
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, True)
    assert breaker.state is BreakerState.OPEN
    assert early is not None
    breaker.record(early, False)
    assert breaker.state is BreakerState.OPEN


def test_an_open_breaker_serves_from_the_cache_without_calls_then_probes_to_close():
    clock, inner = Clock(), Scripted()
    source = cached(
        inner, clock, fresh_for=1.0, breaker=BreakerSettings(window=4, min_calls=4, open_for=5.0)
    )
    fetch(source, "A")
    clock.advance(2.0)
    inner.failures = [UpstreamTimeout("scripted", "slow") for _ in range(10)]
    for _ in range(4):
        assert fetch(source, "A").stale_skus == {"A"}
    assert source.breaker.state is BreakerState.OPEN
    # One success and three failures (a first attempt, its retry, another first attempt) are
    # the four calls of the window; the retry of the last was not made.
    assert (source.stats.upstream_calls, source.stats.retries) == (4, 1)
    calls = len(inner.calls)
    clock.advance(4.0)
    answer = fetch(source, "A", "B")
    assert len(inner.calls) == calls
    assert (answer.stale_skus, answer.unknown_skus) == ({"A"}, {"B"})
    assert source.report()["breaker"] == {
        "state": "open",
        "calls": 0,
        "failures": 0,
        "opened": 1,
        "probe_in_ms": 1000,
    }
    clock.advance(1.0)
    inner.failures.clear()
    answer = fetch(source, "A")
    assert len(inner.calls) == calls + 1
    assert answer.stale_skus == frozenset()
    assert source.breaker.state is BreakerState.CLOSED


def test_a_missing_item_or_a_rejected_request_does_not_open_the_breaker():
    inner = Scripted()
    inner.missing = {f"M{i}" for i in range(10)}
    source = cached(inner, breaker=BreakerSettings(window=2, min_calls=2))
    for i in range(10):
        fetch(source, f"M{i}")
    inner.failures = [RequestRejected("scripted", "HTTP 400", status=400) for _ in range(3)]
    for i in range(3):
        fetch(source, f"R{i}")
    assert source.breaker.state is BreakerState.CLOSED


# --- coalescing, batching, deadlines ------------------------------------------------------------


def test_concurrent_misses_for_one_sku_share_one_call():
    inner = Scripted(delay=0.02)
    source = cached(inner)

    async def run() -> list[SourceAnswer]:
        return await asyncio.gather(*(source.fetch(["A"]) for _ in range(50)))

    answers = asyncio.run(run())
    assert inner.calls == [["A"]]
    assert all(atp(answer) == {"A": 5} for answer in answers)
    assert sum(len(answer.errors) for answer in answers) == 0
    assert (source.stats.misses, source.stats.coalesced) == (50, 49)


def test_a_caller_that_gives_up_leaves_the_shared_call_to_the_others():
    inner = Scripted(delay=0.05)
    source = cached(inner)

    async def run() -> SourceAnswer:
        first = asyncio.ensure_future(source.fetch(["A"]))
        await asyncio.sleep(0.005)
        second = asyncio.ensure_future(source.fetch(["A"]))
        await asyncio.sleep(0.005)
        first.cancel()
        return await second

    answer = asyncio.run(run())
    assert inner.calls == [["A"]]
    assert atp(answer) == {"A": 5}
    assert source.entry("A") is not None


def test_misses_within_the_batch_window_share_one_batched_call():
    inner = Scripted()
    source = cached(inner, batch_window=0.01)

    async def run() -> list[SourceAnswer]:
        return await asyncio.gather(*(source.fetch([f"S{i}", "COMMON"]) for i in range(20)))

    answers = asyncio.run(run())
    assert len(inner.calls) == 1
    assert inner.calls[0] == sorted(["COMMON", *(f"S{i}" for i in range(20))])
    assert all(len(answer.records) == 2 for answer in answers)
    assert (source.stats.batched, source.stats.coalesced) == (19, 19)


def test_a_full_batch_goes_without_taking_more():
    inner = Scripted()
    source = cached(inner, batch_window=0.01, batch_size=3)

    async def run() -> None:
        await asyncio.gather(*(source.fetch([f"S{i}"]) for i in range(7)))

    asyncio.run(run())
    assert sorted(len(call) for call in inner.calls) == [1, 3, 3]


def test_without_a_batch_window_each_upstream_item_is_its_own_call():
    inner = Scripted()
    source = CachedSource(
        inner, CacheSettings(), upstream={"RED-S": "shirt", "RED-M": "shirt", "MUG": "mug"}
    )
    fetch(source, "RED-S", "RED-M", "MUG")
    assert sorted(inner.calls) == [["MUG"], ["RED-M", "RED-S"]]


def test_concurrent_calls_are_capped_per_source():
    inner = Scripted(delay=0.02)
    source = cached(inner, max_concurrency=2)
    running = 0
    most = 0
    fetch_inner = inner.fetch

    async def counting(skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await fetch_inner(skus, deadline=deadline)
        finally:
            running -= 1

    inner.fetch = counting  # type: ignore[method-assign]

    async def run() -> None:
        await asyncio.gather(*(source.fetch([f"S{i}"]) for i in range(6)))

    asyncio.run(run())
    assert len(inner.calls) == 6
    assert most == 2


def test_a_slow_source_is_not_waited_for_past_the_deadline():
    inner = Scripted(delay=1.0)
    source = cached(inner)

    async def run() -> tuple[SourceAnswer, float]:
        started = time.monotonic()
        answer = await source.fetch(["A"], deadline=started + 0.05)
        return answer, time.monotonic() - started

    answer, took = asyncio.run(run())
    assert took < 0.06
    assert answer.unknown_skus == {"A"}
    assert source.stats.late == 1
    # The adapter was given the attempt's deadline: no later than the cart's.
    (given,) = inner.deadlines
    assert given is not None


def test_gather_returns_by_the_deadline_even_from_a_source_that_ignores_it():
    inner = Scripted(delay=1.0)

    async def run() -> float:
        started = time.monotonic()
        availability = await gather(["A"], [inner], ["a"], deadline=started + 0.05)
        assert availability.unknown == {"A": frozenset({"a"})}
        return time.monotonic() - started

    assert asyncio.run(run()) < 0.065


def test_the_counters_are_json_ready():
    stats = SourceStats()
    for seconds in (0.003, 0.02, 3.0):
        stats.observe(seconds)
    stats.error(UpstreamTimeout("s", "slow"))
    report = stats.describe()
    assert report["latency_ms"]["count"] == 3
    assert report["latency_ms"]["max"] == 3000.0
    assert report["latency_ms"]["buckets"]["le_5"] == 1
    assert report["latency_ms"]["buckets"]["le_25"] == 2
    assert report["latency_ms"]["buckets"]["le_2500"] == 2
    assert report["latency_ms"]["buckets"]["le_inf"] == 3
    assert report["upstream_errors"] == {"UpstreamTimeout": 1}
