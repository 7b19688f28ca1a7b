"""The cache, coalescing, retry and back-off in front of a source, and the circuit breaker: unit
tests with a scripted source and, where ages and back-off matter, an injected clock."""

from __future__ import annotations

import asyncio
import logging
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
    call, before it answers normally again; `raises` is raised out of every call while set.

    With a `clock`, a call takes `takes` seconds of it (or the next of `plan`), as an adapter
    keeping to its deadline would: given less time, it stops at the deadline with a timeout."""

    def __init__(
        self, *, delay: float = 0.0, clock: Clock | None = None, takes: float = 0.0
    ) -> None:
        self.calls: list[list[str]] = []
        self.deadlines: list[float | None] = []
        self.failures: list[SourceError] = []
        self.missing: set[str] = set()
        self.partial: set[str] = set()
        self.atp = 5
        self.delay = delay
        self.clock = clock
        self.takes = takes
        self.plan: list[float] = []
        self.raises: BaseException | None = None

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def locations(self) -> frozenset[str]:
        return frozenset({"a"})

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        self.calls.append(sorted(skus))
        self.deadlines.append(deadline)
        if self.raises is not None:
            raise self.raises
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.clock is not None:
            await asyncio.sleep(0)  # other flights run (and queue) meanwhile
            takes = self.plan.pop(0) if self.plan else self.takes
            allowed = takes if deadline is None else deadline - time.monotonic()
            if allowed < takes:
                self.clock.advance(max(0.0, allowed))
                return SourceAnswer(
                    records=(),
                    unknown_skus=frozenset(skus),
                    errors=(UpstreamTimeout("scripted", "no answer by the deadline"),),
                )
            self.clock.advance(takes)
        if self.failures:
            answered = sorted(self.partial & set(skus))  # what a failing call still answers
            return SourceAnswer(
                records=tuple(
                    StockRecord(sku=sku, location_id="a", atp=self.atp, source="scripted")
                    for sku in answered
                ),
                unknown_skus=frozenset(skus) - set(answered),
                errors=(self.failures.pop(0),),
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
    clock.advance(3.9)  # before the last fifth of its fresh time: no refresh ahead either
    second = fetch(source, "A")
    assert inner.calls == [["A"]]
    assert atp(first) == atp(second) == {"A": 5}
    assert second.stale_skus == frozenset()
    assert second.oldest_age == pytest.approx(3.9)
    assert (source.stats.hits, source.stats.misses, source.stats.refreshes) == (1, 1, 0)


def test_answer_now_only_when_every_sku_is_fresh():
    """The warm path: all fresh, an answer at once (counted as hits, with its age); anything to
    fetch or to serve stale, None, and nothing counted (`fetch` does it all)."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    assert source.answer_now({"A"}) is None
    fetch(source, "A", "B")
    clock.advance(2.0)
    now = source.answer_now({"A", "B"})
    assert now is not None
    assert atp(now) == {"A": 5, "B": 5}
    assert (now.unknown_skus, now.stale_skus, now.errors) == (frozenset(), frozenset(), ())
    assert now.oldest_age == pytest.approx(2.0)
    assert (source.stats.hits, source.stats.misses) == (2, 2)
    assert source.answer_now({"A", "C"}) is None  # C was never fetched
    clock.advance(3.0)  # 5 s: no longer fresh
    assert source.answer_now({"A"}) is None
    assert (source.stats.hits, source.stats.misses) == (2, 2)
    assert inner.calls == [["A"], ["B"]]  # fetched once each, by `fetch`


def test_a_warm_gather_starts_no_task(monkeypatch):
    """Every source answers at once from memory: the gather never makes a task (nor waits)."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    fetch(source, "A")

    def no_task(*args, **kwargs):
        raise AssertionError("a task was started")

    async def run():
        monkeypatch.setattr(asyncio, "ensure_future", no_task)
        return await gather(["A"], [source], ["a"], deadline=time.monotonic() + 1)

    availability = asyncio.run(run())
    assert availability.stock["A"]["a"].atp == 5


async def settled(source: CachedSource) -> None:
    """Wait for every flight the cache has started (refreshes ahead have no cart waiting)."""
    while source._tasks:
        await asyncio.gather(*source._tasks)


def test_an_entry_used_near_the_end_of_its_fresh_time_is_refreshed_in_the_background():
    """Refresh-ahead: in the last fifth of its fresh time an entry is served at once, and its
    item is asked again meanwhile, so the cart that comes after it expired finds a new one and
    does not wait for the upstream."""
    clock, inner = Clock(), Scripted(delay=0.05)
    source = cached(inner, clock)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(4.2)
        inner.atp = 7
        served = source.answer_now({"A"})
        assert served is not None  # at once, from the cache, while the refresh runs
        assert atp(served) == {"A": 5}
        assert served.oldest_age == pytest.approx(4.2)
        assert source.answer_now({"A"}) is not None  # one refresh in flight, not a second
        assert inner.calls == [["A"]]  # the refresh is a task of its own, not run yet
        await settled(source)
        clock.advance(1.0)  # 5.2 s after the first fetch: expired, but refreshed at 4.2 s
        again = source.answer_now({"A"})
        assert again is not None
        assert atp(again) == {"A": 7}
        assert again.oldest_age == pytest.approx(1.0)

    asyncio.run(run())
    assert inner.calls == [["A"], ["A"]]
    stats = source.stats
    assert (stats.hits, stats.misses, stats.refreshes, stats.coalesced) == (3, 1, 1, 0)
    assert stats.upstream_calls == 2
    assert source.report()["settings"]["refresh_after_ms"] == 4000


def test_refreshes_use_at_most_half_the_call_slots_and_never_wait_for_one():
    """Refreshing is optional work: at most half of a source's calls at once, and a refresh
    whose flight finds every slot taken (carts' calls) is dropped, not queued ahead of them;
    the answers it would have renewed are refreshed by a later use."""
    clock, inner = Clock(), Scripted(delay=0.02)
    source = cached(inner, clock, max_concurrency=4)
    items = {"A", "B", "C", "D"}

    async def run() -> None:
        await asyncio.gather(*(source.fetch([sku]) for sku in sorted(items)))
        clock.advance(4.5)
        source.answer_now(items)
        assert (source.stats.refreshes, source._refresh_calls) == (2, 2)  # half of 4 slots
        await settled(source)
        source.answer_now(items)  # the two others
        assert source.stats.refreshes == 4
        await settled(source)
        assert len(inner.calls) == 8

        clock.advance(4.5)  # every answer ageing again
        source.answer_now({"A"})  # planned while slots are free...
        for _ in range(4):
            await source._slots.acquire()  # ...which carts' calls then take
        await asyncio.sleep(0)
        assert source._refresh_calls == 0  # its flight saw no free slot: dropped
        assert len(inner.calls) == 8
        assert source.answer_now({"B"}) is not None  # nothing planned while none is free
        assert source.stats.refreshes == 5
        for _ in range(4):
            source._slots.release()
        source.answer_now({"A"})  # A was not marked tried: refreshed now
        await settled(source)

    asyncio.run(run())
    assert len(inner.calls) == 9
    assert source.stats.refreshes == 6


def test_a_failed_refresh_is_not_tried_again_for_the_same_answer():
    """A refresh that fails leaves the entry as it was: it is served until its fresh time
    ends, as without refreshing, and is not refreshed again by every cart that uses it
    meanwhile (a failure the breaker does not count would otherwise cost a call per cart)."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(4.5)
        inner.failures = [RequestRejected("scripted", "HTTP 400", status=400)] * 100
        for _ in range(100):
            kept = source.answer_now({"A"})
            assert kept is not None
            assert kept.oldest_age == pytest.approx(4.5)
            await settled(source)
        clock.advance(1.0)  # expired: the next cart's miss asks, and succeeds
        inner.failures = []
        assert atp(await source.fetch(["A"])) == {"A": 5}
        clock.advance(4.5)  # the new entry may be refreshed again
        source.answer_now({"A"})
        await settled(source)

    asyncio.run(run())
    assert inner.calls == [["A"], ["A"], ["A"], ["A"]]
    assert source.stats.refreshes == 2
    assert source.stats.upstream_errors == {"RequestRejected": 1}


def test_fetch_refreshes_ahead_too():
    """A cart with a miss goes through `fetch`, which refreshes its ageing hits as well."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(4.5)
        answer = await source.fetch(["A", "B"])  # B a miss, A ageing
        assert atp(answer) == {"A": 5, "B": 5}
        assert answer.oldest_age == pytest.approx(4.5)
        await settled(source)

    asyncio.run(run())
    assert sorted(map(tuple, inner.calls)) == [("A",), ("A",), ("B",)]
    assert (source.stats.refreshes, source.stats.misses, source.stats.hits) == (1, 2, 1)


def test_a_refresh_that_answered_for_only_some_variants_is_not_repeated_for_the_others():
    """Two SKUs of one upstream item: the refresh answers for one and fails for the other
    (an outage, so retryable; refreshes are not retried). The one left with its old answer is
    not refreshed again by every cart that reads it; the renewed one is, once it ages."""
    clock, inner = Clock(), Scripted()
    source = CachedSource(
        inner, CacheSettings(fresh_for=5.0), upstream={"S1": "K", "S2": "K"}, clock=clock
    )

    async def run() -> None:
        await source.fetch(["S1", "S2"])
        clock.advance(4.5)
        inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503)]
        inner.partial = {"S1"}  # the failing call still answers for S1
        source.answer_now({"S1", "S2"})
        await settled(source)
        for _ in range(5):
            assert source.answer_now({"S2"}) is not None  # old, fresh: served, not refreshed
            await settled(source)

    asyncio.run(run())
    assert inner.calls == [["S1", "S2"], ["S1", "S2"]]
    assert source.stats.refreshes == 1
    assert source.entry("S1").fetched_at > source.entry("S2").fetched_at


def test_no_refresh_ahead_while_backed_off_busy_or_turned_off():
    """Nothing is refreshed while the source is backed off, while every call slot is taken,
    when turned off, or at all for a source of one call at a time (a refresh would hold the
    slot a cart's miss needs)."""
    clock, inner = Clock(), Scripted()
    off = cached(inner, clock, refresh_after=5.0)  # = fresh_for: never ahead
    backed_off = cached(inner, clock)
    busy = cached(inner, clock, max_concurrency=2)
    single = cached(inner, clock, max_concurrency=1)

    async def run() -> None:
        for source, sku in ((off, "A"), (backed_off, "B"), (busy, "C"), (single, "D")):
            await source.fetch([sku])
        backed_off._not_before = clock() + 60  # as a Retry-After would set it
        clock.advance(4.5)
        for _ in range(2):
            await busy._slots.acquire()  # both call slots taken (carts' misses under way)
        assert off.answer_now({"A"}) is not None
        assert backed_off.answer_now({"B"}) is not None
        assert busy.answer_now({"C"}) is not None
        assert single.answer_now({"D"}) is not None
        assert (busy.stats.refreshes, len(busy._in_flight)) == (0, 0)
        await asyncio.sleep(0)
        for _ in range(2):
            busy._slots.release()
        assert busy.answer_now({"C"}) is not None  # a slot free again: now it refreshes
        await settled(busy)

    asyncio.run(run())
    assert inner.calls == [["A"], ["B"], ["C"], ["D"], ["C"]]
    assert [s.stats.refreshes for s in (off, backed_off, busy, single)] == [0, 0, 1, 0]


def test_a_cart_that_joins_a_refresh_is_answered_even_when_every_slot_is_then_taken():
    """A refresh that a cart's miss has joined is no longer optional: it queues for a slot
    like the cart's own call would, instead of being dropped with the cart waiting on it."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, max_concurrency=2)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(4.5)
        # A cart, scheduled first, that will run once A has expired...
        joined = asyncio.ensure_future(source.fetch(["A"], deadline=clock() + 2.0))
        source.answer_now({"A"})  # ...and a refresh of A, planned while a slot is free
        for _ in range(2):
            await source._slots.acquire()  # every slot taken before the flight gets one
        clock.advance(1.0)
        await asyncio.sleep(0.01)  # the cart misses A and joins the refresh's flight
        assert not joined.done()  # queued, not dropped
        for _ in range(2):
            source._slots.release()
        answer = await joined
        assert atp(answer) == {"A": 5}
        assert answer.unknown_skus == frozenset()

    asyncio.run(run())
    assert inner.calls == [["A"], ["A"]]
    assert (source.stats.refreshes, source.stats.coalesced, source.stats.skipped) == (1, 1, 0)
    assert source._refresh_calls == 0


def test_a_refresh_of_a_batching_source_neither_opens_nor_joins_a_cart_batch():
    """A refresh goes at once in a flight of its own: a cart's miss does not wait in a batch
    window with it (nor take its longer deadline), and is not counted as batched."""
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, batch_window=0.01)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(4.5)
        answer = await source.fetch(["A", "B"], deadline=clock() + 0.15)
        assert atp(answer) == {"A": 5, "B": 5}
        await settled(source)

    asyncio.run(run())
    assert sorted(map(tuple, inner.calls)) == [("A",), ("A",), ("B",)]
    assert (source.stats.batched, source.stats.refreshes) == (0, 1)


def test_refresh_after_shorter_than_the_default():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, refresh_after=1.0)

    async def run() -> None:
        await source.fetch(["A"])
        clock.advance(0.9)
        source.answer_now({"A"})
        clock.advance(0.2)
        source.answer_now({"A"})
        await settled(source)

    asyncio.run(run())
    assert inner.calls == [["A"], ["A"]]
    assert source.stats.refreshes == 1


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_refreshing_on_every_use_is_refused(seconds):
    with pytest.raises(ValueError, match="refresh_after must be more than 0 seconds"):
        CacheSettings(refresh_after=seconds)


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


def test_answer_now_is_what_fetch_answers_on_a_warm_cache():
    """Built in one pass for speed, the warm answer must still be `fetch`'s: the records of
    every SKU, a SKU the upstream does not know as unknown and missing, a SKU the source does
    not carry left out, and the age and time of the oldest entry used."""
    clock, inner = Clock(), Scripted()
    inner.missing = {"GONE"}
    carried = {"A": "A", "B": "B", "GONE": "GONE"}
    source = CachedSource(inner, CacheSettings(fresh_for=5.0), upstream=carried, clock=clock)
    fetch(source, "A")
    clock.advance(1.0)
    fetch(source, "B", "GONE")
    clock.advance(1.5)
    now = source.answer_now(["B", "GONE", "A", "NOT-CARRIED", "A"])
    fetched = fetch(source, "A", "B", "GONE", "NOT-CARRIED")
    assert now is not None
    assert sorted(now.records, key=lambda r: r.sku) == sorted(fetched.records, key=lambda r: r.sku)
    assert [r.sku for r in now.records] == ["B", "A"]
    assert now.unknown_skus == now.missing_skus == fetched.missing_skus == frozenset({"GONE"})
    assert (now.errors, now.stale_skus) == ((), frozenset())
    assert now.oldest_age == fetched.oldest_age == pytest.approx(2.5)
    assert now.oldest_fetched == fetched.oldest_fetched == source.entry("A").fetched_wall
    assert source.stats.hits == 3 + 3  # each SKU counted once, by each
    assert source.answer_now({"NOT-CARRIED"}) == SourceAnswer(records=())


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
        # Retry-After: 0, or a date in the past (parsed as 0): nothing to wait for.
        (UpstreamUnavailable("s", "503", status=503, retry_after=0.0), True),
        (UpstreamUnavailable("s", "503", status=503, retry_after=-3.0), True),
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
    clock = Clock()
    inner = Scripted(clock=clock, takes=0.045)
    inner.failures = [ConnectionFailed("scripted", "reset")]
    source = cached(inner, clock)
    answer = fetch(source, "A", deadline=clock.now + 0.05)
    assert inner.calls == [["A"]]  # 5 ms left after the first attempt: no retry
    assert answer.unknown_skus == {"A"}
    assert (source.stats.upstream_calls, source.stats.retries) == (1, 0)


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
    assert source.stats.skipped == 2  # the cart's two SKU answers that got no call


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

    async def run() -> tuple[SourceAnswer, float, float]:
        started = time.monotonic()
        answer = await source.fetch(["A"], deadline=started + 0.05)
        return answer, started, time.monotonic() - started

    answer, started, took = asyncio.run(run())
    assert took < 0.06
    assert answer.unknown_skus == {"A"}
    assert source.stats.late == 1
    # The adapter was given the attempt's deadline: no later than the cart's.
    (given,) = inner.deadlines
    assert given is not None
    assert given <= started + 0.05


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


# --- our own queueing is not an upstream failure ------------------------------------------------


async def arrive(source: CachedSource, clock: Clock, skus: list[str], budget: float) -> None:
    """Carts for `skus`, one SKU each, arriving at once with `budget` seconds of `clock`."""
    deadline = clock.now + budget
    await asyncio.gather(*(source.fetch([sku], deadline=deadline) for sku in skus))


def burst(source: CachedSource, clock: Clock, skus: list[str], budget: float) -> None:
    asyncio.run(arrive(source, clock, skus, budget))


def test_flights_queued_behind_max_concurrency_do_not_open_the_breaker():
    # A healthy source answering in 80 ms, one call at a time, carts with 150 ms: the second
    # flight of each burst gets the slot with 70 ms left, less than the source takes.
    clock = Clock()
    inner = Scripted(clock=clock, takes=0.08)
    source = cached(inner, clock, max_concurrency=1)

    async def run() -> None:
        for n in range(3):
            await arrive(source, clock, [f"S{n}-{i}" for i in range(3)], 0.150)
            clock.advance(1.0)

    asyncio.run(run())
    assert source.breaker.state is BreakerState.CLOSED
    assert source.breaker.describe()["failures"] == 0
    # No doomed request: one call per burst, the queued flights were shed (no call, no error).
    assert len(inner.calls) == 3
    assert source.stats.upstream_errors == {}
    assert (source.stats.shed, source.stats.unanswered) == (6, 6)


def test_a_queued_attempt_cut_short_by_the_deadline_says_nothing_of_the_source():
    clock = Clock()
    inner = Scripted(clock=clock, takes=0.05)
    source = cached(inner, clock, max_concurrency=1)
    fetch(source, "WARM")  # the source usually takes 50 ms
    # The first flight takes 100 ms; the second gets the slot with 100 ms left (more than the
    # source usually takes, so it is called) but would take 500 ms this once.
    inner.plan = [0.1, 0.5]
    burst(source, clock, ["A", "B"], 0.2)
    assert len(inner.calls) == 3
    assert source.stats.upstream_errors == {"UpstreamTimeout": 1}
    assert source.breaker.describe()["calls"] == 2  # WARM and A; B's timeout is not counted
    assert source.breaker.describe()["failures"] == 0
    assert source._typical == pytest.approx(0.06)  # nor fed into the usual latency


def test_a_timeout_with_all_the_time_the_carts_had_counts_against_the_source():
    # A source that hangs must still open the breaker, though carts give it less than `timeout`.
    clock = Clock()
    inner = Scripted(clock=clock, takes=0.05)
    source = cached(inner, clock, breaker=BreakerSettings(window=3, min_calls=3))
    fetch(source, "WARM")
    inner.takes = 5.0
    burst(source, clock, ["A"], 0.15)
    assert source.breaker.describe()["failures"] == 1
    burst(source, clock, ["B"], 0.15)
    assert source.breaker.state is BreakerState.OPEN


def test_carts_that_never_had_the_usual_latency_still_get_a_call():
    # The usual latency was learnt from a caller with no deadline; 150 ms carts are not shed for
    # good on its account: how else would a source that got faster be noticed?
    clock = Clock()
    inner = Scripted(clock=clock, takes=0.3)
    source = cached(inner, clock)
    fetch(source, "SLOW")
    inner.takes = 0.05
    burst(source, clock, ["A"], 0.15)
    assert len(inner.calls) == 2
    assert source.entry("A") is not None
    assert source.stats.shed == 0


def test_no_call_with_less_than_min_retry_time_left():
    clock = Clock()
    inner = Scripted()
    source = cached(inner, clock)
    answer = fetch(source, "A", deadline=clock.now + 0.005)
    assert inner.calls == []
    assert answer.unknown_skus == {"A"}
    assert source.stats.shed == 1


# --- a probe that does not report ---------------------------------------------------------------


def open_breaker(source: CachedSource, inner: Scripted) -> None:
    """Two failed calls (an attempt and its retry) open a breaker of window 2."""
    inner.failures = [ConnectionFailed("scripted", "reset"), ConnectionFailed("scripted", "reset")]
    fetch(source, "A")
    assert source.breaker.state is BreakerState.OPEN


def test_a_probe_ended_by_a_cancellation_out_of_the_adapter_opens_the_breaker_again():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, breaker=BreakerSettings(window=2, min_calls=2, open_for=5.0))
    open_breaker(source, inner)
    clock.advance(5.0)
    inner.raises = asyncio.CancelledError()
    assert fetch(source, "A").unknown_skus == {"A"}
    assert len(inner.calls) == 3
    assert source.breaker.state is BreakerState.OPEN  # not half-open for good
    assert source.breaker.opened == 2
    clock.advance(5.0)
    inner.raises = None
    assert atp(fetch(source, "A")) == {"A": 5}  # the next probe goes, and closes it
    assert source.breaker.state is BreakerState.CLOSED


def test_a_probe_cancelled_at_loop_shutdown_is_released():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, breaker=BreakerSettings(window=2, min_calls=2, open_for=5.0))
    open_breaker(source, inner)
    clock.advance(5.0)
    inner.delay = 10.0

    async def leave() -> asyncio.Future[SourceAnswer]:
        cart = asyncio.ensure_future(source.fetch(["A"]))  # the probe's flight starts...
        await asyncio.sleep(0.01)
        return cart  # ...and the loop shuts down under it, cancelling it

    assert asyncio.run(leave()).cancelled()
    assert len(inner.calls) == 3
    assert source.breaker.state is BreakerState.OPEN
    assert source._in_flight == {}
    clock.advance(5.0)
    inner.delay = 0.0
    assert atp(fetch(source, "A")) == {"A": 5}
    assert source.breaker.state is BreakerState.CLOSED


def test_a_probe_that_never_reports_is_given_up_on_after_open_for():
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(window=2, min_calls=2, open_for=5.0), clock)
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, True)
    clock.advance(5.0)
    lost = breaker.acquire()
    assert lost is not None
    assert lost.probe
    clock.advance(4.9)
    assert breaker.acquire() is None
    clock.advance(0.1)
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe
    breaker.record(lost, False)  # too late: it no longer decides
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire() is None
    breaker.record(probe, False)
    assert breaker.state is BreakerState.CLOSED


def test_a_released_probe_makes_way_for_the_next():
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(window=2, min_calls=2, open_for=5.0), clock)
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, True)
    clock.advance(5.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.blocked()
    again = breaker.acquire()
    assert again is not None
    assert again.probe


# --- breaker bookkeeping ------------------------------------------------------------------------


def test_a_call_granted_before_an_open_probe_close_cycle_is_not_counted_in_the_new_window():
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(window=4, min_calls=2, open_for=5.0), clock)
    early = breaker.acquire()
    assert early is not None
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, True)
    clock.advance(5.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record(probe, False)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(early, True)
    assert breaker.describe() == {"state": "closed", "calls": 0, "failures": 0, "opened": 1}


def test_a_429_with_retry_after_does_not_count_toward_the_breaker():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, fresh_for=0.0, breaker=BreakerSettings(window=2, min_calls=2))
    for i in range(4):
        inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=1)]
        assert fetch(source, f"S{i}").unknown_skus == {f"S{i}"}
        clock.advance(1.0)
    assert len(inner.calls) == 4
    assert source.breaker.state is BreakerState.CLOSED
    assert source.breaker.describe()["calls"] == 0


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("scripted", "HTTP 429", status=429),
        RateLimited("scripted", "HTTP 429", status=429, retry_after=0.0),
        NotAuthorised("scripted", "HTTP 401", status=401),
        NotAuthorised("scripted", "HTTP 403", status=403),
    ],
    ids=["429", "429-retry-after-0", "401", "403"],
)
def test_a_429_without_retry_after_and_401_403_count_toward_the_breaker(error):
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, breaker=BreakerSettings(window=2, min_calls=2))
    for i in range(2):
        inner.failures = [error]
        fetch(source, f"S{i}")
    assert len(inner.calls) == 2  # never retried
    assert source.breaker.state is BreakerState.OPEN


# --- Retry-After: past dates and the cap --------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, -3.0], ids=["zero", "past-date"])
def test_retry_after_zero_or_in_the_past_is_no_wait(seconds):
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503, retry_after=seconds)]
    answer = fetch(source, "A")
    assert inner.calls == [["A"], ["A"]]  # an outage with nothing to wait for: retried
    assert atp(answer) == {"A": 5}
    assert source.report()["retry_after_ms"] == 0
    inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=seconds)]
    fetch(source, "B")
    assert atp(fetch(source, "C")) == {"C": 5}  # no back-off
    assert len(inner.calls) == 4
    assert source.stats.skipped == 0


def test_a_retry_after_longer_than_the_cap_is_taken_as_the_cap():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock)
    inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=86_400)]
    fetch(source, "A")
    assert source.report()["retry_after_ms"] == 300_000
    clock.advance(299.9)
    fetch(source, "B")
    assert len(inner.calls) == 1
    clock.advance(0.1)
    assert atp(fetch(source, "B")) == {"B": 5}
    assert len(inner.calls) == 2


# --- one request per upstream item --------------------------------------------------------------


def test_carts_for_variants_of_one_product_share_one_request_that_fills_every_variant():
    inner = Scripted(delay=0.02)
    upstream = {"RED-S": "shirt", "RED-M": "shirt", "RED-L": "shirt", "MUG": "mug"}
    source = CachedSource(inner, CacheSettings(), upstream=upstream)

    async def run() -> list[SourceAnswer]:
        return await asyncio.gather(source.fetch(["RED-S"]), source.fetch(["RED-M"]))

    small, medium = asyncio.run(run())
    assert inner.calls == [["RED-L", "RED-M", "RED-S"]]
    assert (atp(small), atp(medium)) == ({"RED-S": 5}, {"RED-M": 5})
    assert source.stats.coalesced == 1
    assert atp(fetch(source, "RED-L")) == {"RED-L": 5}  # from the same answer
    assert len(inner.calls) == 1
    assert source.stats.hits == 1


def test_a_batch_asks_for_every_sku_of_its_items():
    inner = Scripted()
    upstream = {"RED-S": "shirt", "RED-M": "shirt", "MUG": "mug"}
    source = CachedSource(inner, CacheSettings(batch_window=0.01), upstream=upstream)

    async def run() -> None:
        await asyncio.gather(source.fetch(["RED-S"]), source.fetch(["MUG"]))

    asyncio.run(run())
    assert inner.calls == [["MUG", "RED-M", "RED-S"]]
    assert source.entry("RED-M") is not None


# --- logging ------------------------------------------------------------------------------------

FAILED_503 = "source scripted could not answer: HTTP 503"


def test_a_failed_flight_is_logged_once_even_when_no_cart_waits_for_it(caplog):
    inner = Scripted(delay=0.02)
    inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503, retry_after=1)]
    source = cached(inner)

    async def run() -> None:
        cart = asyncio.ensure_future(source.fetch(["A"]))
        await asyncio.sleep(0.005)
        cart.cancel()  # the client went away
        await asyncio.gather(*source._tasks)

    with caplog.at_level(logging.WARNING, logger="engine.availability"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [FAILED_503]


def test_every_cart_on_a_failed_flight_has_its_error_and_it_is_logged_once(caplog):
    inner = Scripted(delay=0.02)
    inner.failures = [UpstreamUnavailable("scripted", "HTTP 503", status=503, retry_after=1)]
    source = cached(inner)

    async def run() -> list[SourceAnswer]:
        first = asyncio.ensure_future(gather(["A"], [source], ["a"]))
        second = asyncio.ensure_future(source.fetch(["A"]))
        await first
        return [await second]

    with caplog.at_level(logging.WARNING, logger="engine.availability"):
        (answer,) = asyncio.run(run())
    assert len(inner.calls) == 1
    assert [type(error) for error in answer.errors] == [UpstreamUnavailable]
    assert [r.getMessage() for r in caplog.records] == [FAILED_503]


# --- counters mean what they say ----------------------------------------------------------------


def test_skipped_counts_sku_answers_backed_off_from():
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, breaker=BreakerSettings(window=2, min_calls=2))
    open_breaker(source, inner)
    fetch(source, "A", "B")
    fetch(source, "B", "C")
    assert len(inner.calls) == 2
    assert source.stats.skipped == 4
    assert source.stats.misses == 5  # backed-off SKUs are misses too


def test_skipped_counts_each_cart_waiting_on_a_flight_not_made():
    # The first flight's 429 arrives while the second (one SKU, two carts) is planned.
    clock, inner = Clock(), Scripted()
    source = cached(inner, clock, max_concurrency=1)
    inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=5)]

    async def run() -> None:
        await asyncio.gather(source.fetch(["A"]), source.fetch(["B"]), source.fetch(["B"]))

    asyncio.run(run())
    assert inner.calls == [["A"]]
    assert source.stats.skipped == 2
    assert source.stats.coalesced == 1


def test_a_full_batch_goes_at_once():
    inner = Scripted()
    source = cached(inner, batch_window=5.0, batch_size=3)

    async def run() -> None:
        await asyncio.gather(*(source.fetch([f"S{i}"]) for i in range(3)))

    async def bounded() -> None:
        await asyncio.wait_for(run(), timeout=1.0)  # far less than the 5 s window

    asyncio.run(bounded())
    assert inner.calls == [["S0", "S1", "S2"]]


def test_no_flight_or_task_is_left_behind():
    clock = Clock()
    inner = Scripted(delay=0.01)
    source = cached(inner, clock, max_concurrency=1, batch_window=0.002, batch_size=2)
    inner.failures = [ConnectionFailed("scripted", "reset")]

    async def run() -> None:
        gone = asyncio.ensure_future(source.fetch(["GONE"]))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(
            source.fetch(["A", "B", "C"]),  # a full batch, then a batch its window ends
            source.fetch(["C", "D"], deadline=clock.now + 0.005),  # joins it, stops waiting
            source.fetch(["E"], deadline=clock.now),  # already late: no flight
        )
        await source.fetch(["S"], deadline=clock.now + 0.005)  # too little time left: shed
        await asyncio.gather(*source._tasks)
        await asyncio.sleep(0)  # the tasks' done callbacks
        assert source._in_flight == {}
        assert source._tasks == set()
        assert source._window is None

    asyncio.run(run())
    assert len(inner.calls) == 3  # the first failed and was retried
    assert (source.stats.shed, source.stats.late) == (1, 3)
    assert source.report()["in_flight"] == 0


# --- a reload that changes the source's configuration ------------------------------------------


def test_a_reconfigured_source_keeps_what_it_knows_of_the_upstream():
    clock, inner = Clock(), Scripted()
    source = CachedSource(
        inner,
        CacheSettings(fresh_for=0.0, stale_for=60.0),
        upstream={"A": "a", "B": "b"},
        clock=clock,
    )
    fetch(source, "A", "B")
    inner.failures = [RateLimited("scripted", "HTTP 429", status=429, retry_after=30)]
    clock.advance(1.0)
    fetch(source, "A")
    calls = len(inner.calls)
    # The catalog gained C and B now names another upstream item: a reload rebuilds the cache.
    after = source.successor(
        inner,
        CacheSettings(fresh_for=0.0, stale_for=60.0),
        upstream={"A": "a", "B": "b2", "C": "c"},
    )
    assert after.backed_off()  # Retry-After carries on: no call at once after a reload
    answer = fetch(after, "A", "B", "C")
    assert len(inner.calls) == calls
    assert answer.stale_skus == {"A"}  # kept: same upstream item
    assert answer.unknown_skus == {"B", "C"}  # B's item changed, C is new
    assert after.stats is source.stats
    assert after.breaker is source.breaker
    clock.advance(30.0)
    fetch(after, "B", "C")
    assert len(inner.calls) > calls
