"""A cache, request coalescing, deadlines and back-off in front of one upstream source.

The checkout must answer in milliseconds whether or not the inventory APIs do. `CachedSource`
wraps an adapter and is itself a `Source`:

- Each SKU's answer (its records, or "the upstream does not know it") is kept with the time it
  was fetched. Younger than `fresh_for` it is served as is; older, the upstream is asked again,
  and until `stale_for` the old answer is still served, flagged stale, when the upstream fails,
  is being backed off from, or has not answered by the cart's deadline (RFC 5861
  stale-if-error). Failures are never kept as data.
- Concurrent misses for one upstream item share one upstream request (a "flight"). An item is
  what a request asks for: a SKU, or a product whose variants are several SKUs (`upstream`); a
  flight asks for every SKU of its items and fills the cache for all of them. For an API that
  answers many items per request, misses arriving within `batch_window` of each other share one
  batched request, which goes as soon as it holds `batch_size` items. A cart that stops waiting
  (its deadline, a client gone) leaves the flight running for the others, and its answer still
  fills the cache.
- A flight's attempt lasts at most the source's `timeout` and never past the latest deadline of
  the carts waiting on it. No call is made when, its turn come (a concurrency slot free, its
  batch window over), less time is left than `MIN_RETRY_TIME`, or than the source usually takes
  while its carts had that much to begin with: it would most likely end after they stopped
  waiting (the flight is "shed"). An attempt is retried once, for a failure that says nothing
  about what was asked (an outage, not a 4xx or a rate limit), when that deadline leaves time
  for it.
- `Retry-After` is honoured: no call before it (0 or a date in the past: no wait, as if absent;
  more than `MAX_RETRY_AFTER`: that). A `CircuitBreaker` stops calls to a source whose calls
  keep failing and probes it to come back (`breaker_verdict` says what counts as failing); at
  most `max_concurrency` calls are under way at once.
- A flight that failed is logged once, here, as a warning (whichever carts waited on it, even
  none); every cart's answer carries the errors of the flights it waited on.

Everything is counted in `SourceStats`. The cache's own times (entry ages, the deadlines `fetch`
is given, `Retry-After`, the breaker) come from one monotonic `clock`, which tests replace; a
`fetch` deadline must be on that clock (`gather` and `Checkout` give `time.monotonic()`
instants, the default). What leaves the cache is a duration: the adapter is given
`time.monotonic()` plus its attempt's time (the `Source` protocol's clock), and waiting is
bounded on the event loop's own time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import inf
from typing import Any, Final, Literal

from cachetools import Cache, TTLCache

from engine.availability.breaker import BreakerSettings, BreakerState, CircuitBreaker, Permit
from engine.availability.record import StockRecord
from engine.availability.source import (
    NotAuthorised,
    RateLimited,
    Source,
    SourceAnswer,
    SourceError,
    UpstreamTimeout,
)
from engine.availability.stats import SourceStats

__all__ = (
    "CacheSettings",
    "CachedSource",
    "Entry",
    "breaker_verdict",
    "retry_after",
    "retryable",
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER: Final = 300.0
"""Seconds: a longer `Retry-After` is taken as this, so one odd header cannot silence a source
for hours (the breaker still backs off from a source that keeps refusing)."""
ATTEMPT_GRACE: Final = 0.005
"""Seconds an adapter is given past its attempt's deadline to hand over what it has before the
attempt is cut off (adapters stop at the deadline themselves; this bounds one that does not)."""
MIN_RETRY_TIME: Final = 0.010
"""Seconds: no call is made with less than this left before the carts' deadline, and a retry
only with more than this (or twice the source's usual latency, if longer) left."""
_LATENCY_WEIGHT: Final = 0.2
REFRESH_AT: Final = 0.8
"""The share of `fresh_for` after which an answer in use is refreshed ahead, by default: the
last fifth of its fresh time leaves the refresh time to come back (an upstream answering in
tens of milliseconds has a second for it with the default 5 s), for at most a quarter more
calls for an item in constant demand."""

_Held = Literal["skipped", "shed"]

_read: Final = Cache.__getitem__
"""An entry as stored, expired or not: `TTLCache`'s own indexing checks expiry with its timer
and moves the entry to the end of its eviction order, which costs ten times the read (1 µs,
paid per SKU and source on every cart). Ages are judged by the callers anyway (fresh, stale,
too old), and expired entries are removed on writes. Without the move, a full cache evicts the
entry written longest ago rather than the one used longest ago; an entry in use is written
again by its refresh ahead once per fresh time, so the two orders differ by less than that."""
_NONE: Final[frozenset[str]] = frozenset()
_NOTHING: Final = SourceAnswer(records=())
"""The answer about no SKU the source carries."""


def retry_after(error: SourceError) -> float | None:
    """Seconds `error` asks us to wait before calling again, at most `MAX_RETRY_AFTER`. None
    when it did not say, or said 0 or a date in the past (parsed as 0): nothing to wait for."""
    wait = error.retry_after
    if wait is None or not wait > 0:  # `not >`: a NaN is no wait either
        return None
    return min(wait, MAX_RETRY_AFTER)


def retryable(error: SourceError) -> bool:
    """Worth asking again at once: an outage (5xx, timeout, cut connection, bad body) with no
    `Retry-After` to wait for. Not a rate limit, a credentials problem or a rejected request."""
    return (
        error.outage
        and retry_after(error) is None
        and not isinstance(error, RateLimited | NotAuthorised)
    )


def breaker_verdict(errors: Collection[SourceError], *, queued_short: bool = False) -> bool | None:
    """How a call went, for the circuit breaker: True failed, False succeeded, None says nothing
    about the source's health (the call is not counted; a probe makes way for the next).

    An outage error is a failure: 5xx, timeout, cut or refused connection, bad body, and
    401/403 (never retried, but counted: until its credentials are fixed the source can answer
    no cart, and the breaker bounds what asking costs it, and our logs, to one probe per
    `open_for`, which notices the fix). Not counted:

    - a 429 with a `Retry-After`: the source is up and said when to call again, which is
      honoured; counting it as well would hold calls past what it asked. A 429 without one is
      a failure: the breaker is then the only back-off there is.
    - a timeout when `queued_short`: the flight waited for a concurrency slot and the carts'
      deadline then left the attempt less than the source's `timeout`; the time it lacked was
      lost to our own queueing. (A flight that did not wait is given all the time its carts
      have: its timeout counts, or a source that hangs would never open the breaker.)

    A rejected request or an item the source does not know is not about its health: with only
    those, the call succeeded."""
    unsure = False
    for error in errors:
        if not error.outage:
            continue
        told_when = isinstance(error, RateLimited) and retry_after(error) is not None
        if not (told_when or (queued_short and isinstance(error, UpstreamTimeout))):
            return True
        unsure = True
    return None if unsure else False


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How one source is cached and protected (from the rules' `sources`)."""

    fresh_for: float = 5.0
    """Seconds an answer is served without asking the upstream again."""
    stale_for: float = 300.0
    """Seconds an answer may still be served, flagged stale, when no fresh one can be had."""
    refresh_after: float | None = None
    """Seconds after which a fresh answer that a cart uses is also refreshed in the background,
    so that no cart has to wait for it once it expires; None: `REFRESH_AT` of `fresh_for`.
    `fresh_for` (or more) turns this off; 0 would ask again on every use, and is refused."""
    batch_window: float = 0.0
    """Seconds misses wait for others to share one batched request; 0 for APIs that answer one
    item per request (they share per item only)."""
    batch_size: int = 50
    """Upstream items in one batched request: a full batch is sent at once, without waiting for
    the rest of its window."""
    max_concurrency: int = 8
    """Upstream calls under way at once."""
    timeout: float = 1.0
    """Seconds one attempt may take, at most (a cart's deadline may leave less)."""
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    max_entries: int = 100_000

    def __post_init__(self) -> None:
        if self.refresh_after is not None and not self.refresh_after > 0:
            raise ValueError(f"refresh_after must be more than 0 seconds, not {self.refresh_after}")


@dataclass(frozen=True, slots=True)
class Entry:
    """What the upstream said of one SKU, and when."""

    records: tuple[StockRecord, ...]
    """The SKU's records from this source (none: it holds none at the source's locations)."""
    missing: bool
    """The upstream said it does not know the item (a mapping problem, not an outage)."""
    fetched_at: float
    """When the request that fetched it started, on the cache's monotonic clock: ages come
    from this."""
    fetched_wall: datetime
    """The same moment on the wall clock, for reports."""


class _Flight:
    """One upstream request planned or under way, for some upstream items, shared by every cart
    that waits on one of their SKUs."""

    __slots__ = (
        "budget",
        "deadline",
        "done",
        "errors",
        "full",
        "held",
        "keys",
        "outcomes",
        "queued",
        "refresh",
        "skus",
    )

    def __init__(self, done: asyncio.Future[None], deadline: float | None, now: float) -> None:
        self.done = done
        """Resolved when the flight is over, whatever came of it."""
        self.deadline = deadline
        """The latest deadline of the carts waiting on it (None: one of them has none)."""
        self.budget = None if deadline is None else deadline - now
        """Seconds the cart that opened it had then."""
        self.keys: set[Hashable] = set()
        """The upstream items asked for (a batch is full at `batch_size` of them)."""
        self.skus: list[str] = []
        """Every SKU of those items: the adapter is asked for all of them."""
        self.full = asyncio.Event()
        """Set when a batch is full: it goes without waiting for the rest of its window."""
        self.outcomes: dict[str, Entry] = {}
        """SKU -> the entry fetched; a SKU the upstream could not answer for has none."""
        self.errors: list[SourceError] = []
        self.held: _Held | None = None
        """Why no call at all was made for it, if none was."""
        self.queued = False
        """It waited for a concurrency slot."""
        self.refresh = False
        """A refresh ahead: no cart waited for it when it started (see `_refresh_ahead`)."""

    def wait_for(self, deadline: float | None) -> None:
        if self.deadline is not None:
            self.deadline = None if deadline is None else max(self.deadline, deadline)


class CachedSource:
    """A `Source` that answers from a cache in front of `inner` (see the module's doc).

    `upstream` maps each SKU the source carries to the upstream item a request asks for: SKUs
    of one item share a request (which asks for all of them), and a SKU not in it is answered
    (holding nothing) without a call, as the adapter would. Without it every SKU is its own
    item."""

    def __init__(
        self,
        inner: Source,
        settings: CacheSettings | None = None,
        *,
        upstream: Mapping[str, Hashable] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.inner = inner
        self.settings = settings = settings or CacheSettings()
        self._upstream = dict(upstream) if upstream is not None else None
        siblings: dict[Hashable, list[str]] = {}
        for sku, item in (upstream or {}).items():
            siblings.setdefault(item, []).append(sku)
        self._siblings = {item: tuple(skus) for item, skus in siblings.items()}
        """Upstream item -> every SKU it stands for."""
        self._clock = clock
        self._wall = wall
        self._fresh_for = settings.fresh_for
        self._stale_for = max(settings.fresh_for, settings.stale_for)
        self._refresh_after = (
            REFRESH_AT * settings.fresh_for
            if settings.refresh_after is None
            else settings.refresh_after
        )
        self._cache: TTLCache[str, Entry] = TTLCache(
            maxsize=settings.max_entries, ttl=self._stale_for, timer=clock
        )
        self._in_flight: dict[Hashable, _Flight] = {}
        """Upstream item -> the flight planned or under way for it."""
        self._window: _Flight | None = None
        """The batch still taking items (batching APIs only)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._refreshed: dict[Hashable, float] = {}
        """Upstream item -> when its last refresh was started: an answer fetched before that is
        not refreshed again (the refresh failed for it, even if it answered for the item's other
        SKUs; it expires, and the next cart's miss asks). Answers fetched since are newer."""
        self._refresh_calls = 0
        """Refresh flights under way: at most half the concurrency slots (see `_refresh_ahead`)."""
        self._slots = asyncio.Semaphore(max(1, settings.max_concurrency))
        self._not_before = float("-inf")
        """No call before this (`Retry-After`)."""
        self._typical: float | None = None
        """Moving average of successful calls' latency, to judge whether a call or a retry
        fits in the time left."""
        self.breaker = CircuitBreaker(settings.breaker, clock)
        self.stats = SourceStats()

    def successor(
        self,
        inner: Source,
        settings: CacheSettings,
        *,
        upstream: Mapping[str, Hashable] | None = None,
    ) -> CachedSource:
        """The cache for a changed configuration of the same source (a rule reload that adds a
        SKU, say), carrying on what this one knows about the source's health: kept answers of
        SKUs whose upstream item is unchanged, `Retry-After`, the breaker (when its settings
        are unchanged), the usual latency, the counters and, when the cap is unchanged, the
        concurrency slots, so old and new carts together never exceed it. A reload must not
        turn a source that is being backed off from into one that is called at once."""
        new = CachedSource(inner, settings, upstream=upstream, clock=self._clock, wall=self._wall)
        now = self._clock()
        for sku, entry in list(self._cache.items()):
            same_item = (
                upstream is None
                or self._upstream is None
                or (sku in upstream and upstream[sku] == self._upstream.get(sku))
            )
            if same_item and now - entry.fetched_at < new._stale_for:
                new._cache[sku] = entry
        new._not_before = self._not_before
        new._typical = self._typical
        new.stats = self.stats
        if settings.breaker == self.settings.breaker:
            new.breaker = self.breaker
        if settings.max_concurrency == self.settings.max_concurrency:
            new._slots = self._slots
        return new

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def locations(self) -> frozenset[str] | None:
        return self.inner.locations

    def entry(self, sku: str) -> Entry | None:
        """What is kept for `sku` (fresh or stale), if anything."""
        return self._cache.get(sku)

    def _lookup(self, sku: str) -> Entry | None:
        """The entry kept for `sku`, possibly past its stale time: the caller judges its age."""
        try:
            return _read(self._cache, sku)
        except KeyError:
            return None

    def answer_now(self, skus: Collection[str]) -> SourceAnswer | None:
        """The answer when every SKU asked (that the source carries) is fresh, without waiting
        for anything: the usual cart on a warm cache. None when something must be fetched or
        served stale; `fetch` then does it all (and counts it).
        What `fetch` would answer, built in one pass: every request on a warm cache pays for
        it, once per source asked."""
        now = self._clock()
        fresh_for = self._fresh_for
        upstream = self._upstream
        cache = self._cache
        refresh_after = self._refresh_after
        records: list[StockRecord] = []
        missing: list[str] = []
        oldest: Entry | None = None
        hits = 0
        ageing: list[tuple[str, Entry]] | None = None
        for sku in skus if isinstance(skus, set | frozenset) else dict.fromkeys(skus):
            if upstream is not None and sku not in upstream:
                continue
            try:
                entry = _read(cache, sku)
            except KeyError:
                return None
            fetched_at = entry.fetched_at
            age = now - fetched_at
            if age >= fresh_for:
                return None
            if age >= refresh_after:
                if ageing is None:
                    ageing = []
                ageing.append((sku, entry))
            hits += 1
            if entry.missing:
                missing.append(sku)
            records.extend(entry.records)
            if oldest is None or fetched_at < oldest.fetched_at:
                oldest = entry
        self.stats.hits += hits
        if ageing is not None:
            self._refresh_ahead(ageing, now)
        if oldest is None:
            return _NOTHING
        unknown = frozenset(missing) if missing else _NONE
        return SourceAnswer(
            records=tuple(records),
            unknown_skus=unknown,
            missing_skus=unknown,
            oldest_age=max(0.0, now - oldest.fetched_at),
            oldest_fetched=oldest.fetched_wall,
        )

    def backed_off(self, now: float | None = None) -> bool:
        """True when no call would be made now: the breaker is open or `Retry-After` runs."""
        now = self._clock() if now is None else now
        return now < self._not_before or self.breaker.blocked(now)

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        """Answer from fresh entries; ask the upstream for the rest, waiting until `deadline` (on
        the cache's clock) at most; serve what is kept (flagged stale) or unknown for what did
        not come. The answer carries the errors of the upstream requests it waited on; each
        failed request is also logged once, by the cache, however many carts shared it."""
        now = self._clock()
        stats = self.stats
        used: dict[str, Entry] = {}
        kept: dict[str, Entry] = {}
        need: list[str] = []
        ageing: list[tuple[str, Entry]] = []
        for sku in dict.fromkeys(skus):
            if self._upstream is not None and sku not in self._upstream:
                continue  # not carried: no stock at this source's locations, no call
            entry = self._lookup(sku)
            if entry is not None:
                age = now - entry.fetched_at
                if age < self._fresh_for:
                    stats.hits += 1
                    used[sku] = entry
                    if age >= self._refresh_after:
                        ageing.append((sku, entry))
                    continue
                if age < self._stale_for:
                    kept[sku] = entry
            stats.misses += 1
            need.append(sku)
        errors: list[SourceError] = []
        failed = need
        if need and self.backed_off(now):
            stats.skipped += len(need)
        elif need and deadline is not None and deadline <= now:
            stats.late += len(need)
        elif need:
            failed = await self._wait(need, deadline, used, errors)
        stale: set[str] = set()
        unknown: set[str] = set()
        if failed:
            now = self._clock()  # the wait may have taken a kept entry past its stale time
        for sku in failed:
            entry = kept.get(sku)
            if entry is None or now - entry.fetched_at >= self._stale_for:
                stats.unanswered += 1
                unknown.add(sku)
            else:
                stats.stale_serves += 1
                stale.add(sku)
                used[sku] = entry
        if ageing:  # after the cart's own calls, which must not queue behind refreshes
            self._refresh_ahead(ageing, self._clock())
        return self._answer(used, unknown, stale, errors)

    async def _wait(
        self,
        skus: list[str],
        deadline: float | None,
        used: dict[str, Entry],
        errors: list[SourceError],
    ) -> list[str]:
        """Join or start the flights for `skus` and wait for them until `deadline`; put what they
        fetched in `used` and their errors in `errors`. Returns the SKUs that got no answer."""
        flights = self._join(skus, deadline)
        waiting = [flight.done for flight in flights if not flight.done.done()]
        if waiting:
            left = None if deadline is None else deadline - self._clock()
            if left is None or left > 0:
                await asyncio.wait(waiting, timeout=left)
        stats = self.stats
        failed: list[str] = []
        for flight, mine in flights.items():
            if not flight.done.done():
                stats.late += len(mine)
                failed.extend(mine)
                continue
            errors.extend(flight.errors)
            unanswered = 0
            for sku in mine:
                entry = flight.outcomes.get(sku)
                if entry is None:
                    failed.append(sku)
                    unanswered += 1
                else:
                    used[sku] = entry
            if flight.held == "skipped":
                stats.skipped += unanswered
            elif flight.held == "shed":
                stats.shed += unanswered
        return failed

    def _answer(
        self,
        used: dict[str, Entry],
        unknown: set[str],
        stale: set[str],
        errors: list[SourceError],
    ) -> SourceAnswer:
        missing = frozenset(sku for sku, entry in used.items() if entry.missing)
        oldest = min(used.values(), key=lambda entry: entry.fetched_at, default=None)
        now = None if oldest is None else self._clock()
        return SourceAnswer(
            records=tuple(record for entry in used.values() for record in entry.records),
            unknown_skus=frozenset(unknown) | missing,
            missing_skus=missing,
            errors=tuple(errors),
            stale_skus=frozenset(stale),
            oldest_age=None if oldest is None or now is None else max(0.0, now - oldest.fetched_at),
            oldest_fetched=None if oldest is None else oldest.fetched_wall,
        )

    # --- flights ---------------------------------------------------------------------------

    def _key(self, sku: str) -> Hashable:
        return sku if self._upstream is None else self._upstream[sku]

    def _refresh_ahead(self, ageing: list[tuple[str, Entry]], now: float) -> None:
        """Ask again, in the background, for the SKUs of `ageing` (with their entries), whose
        answers are still fresh but near their end: carts go on being served from the cache,
        and none waits when they expire (refresh-ahead, a stale-while-revalidate that starts
        early). Optional work, so it gives way to the carts' own calls:

        - nothing is asked while the source is backed off from (breaker, `Retry-After`);
        - refreshes use at most half the source's call slots (none for a source of one call
          at a time), and only free ones: a refresh that would have to wait for a slot is
          dropped (see `_fly`), unless a cart's miss has joined it since, and is not retried,
          so a cart's miss never queues behind more than that half;
        - an item already in flight is not asked twice, and an answer whose refresh failed is
          not refreshed again (it expires, and the next cart's miss asks, breaker and all);
        - its flights are its own, never a cart's batch window (a cart's miss does join one
          for the same item). Like any call, each has the source's `timeout`."""
        limit = self.settings.max_concurrency // 2  # none for a source of one call at a time
        if self._refresh_calls >= limit or self._slots.locked() or self.backed_off(now):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # asked outside the service's loop (a script, a test): no flights
            return
        tried = self._refreshed
        if len(tried) > self.settings.max_entries:
            tried.clear()  # marks of answers long gone; at worst one more try each
        per_call = self.settings.batch_size if self.settings.batch_window > 0 else 1
        flight: _Flight | None = None
        for sku, entry in ageing:
            key = self._key(sku)
            if key in self._in_flight or tried.get(key, -inf) > entry.fetched_at:
                continue  # under way, or tried since this answer was fetched
            if self._lookup(sku) is not entry:
                continue  # renewed (or gone) since the cart read it: nothing to refresh
            if flight is None or len(flight.keys) >= per_call:
                if self._refresh_calls >= limit:
                    return
                flight = self._start(loop, None, now)
                flight.refresh = True
                flight.full.set()  # goes at once: no batch window to wait for
                self._refresh_calls += 1
            tried[key] = now
            self._add(flight, key, sku)
            self.stats.refreshes += 1

    def _join(self, skus: list[str], deadline: float | None) -> dict[_Flight, list[str]]:
        """The flights that will answer `skus` (joining those already planned or under way for
        their items, starting others), each with the SKUs of `skus` it answers."""
        flights: dict[_Flight, list[str]] = {}
        opened: set[_Flight] = set()
        loop = asyncio.get_running_loop()
        now = self._clock()
        batching = self.settings.batch_window > 0
        for sku in skus:
            key = self._key(sku)
            flight = self._in_flight.get(key)
            if flight is not None:
                if flight.refresh:  # a cart waits on it now: a call like its own, never dropped
                    flight.refresh = False
                    self._refresh_calls -= 1
                if flight not in opened:
                    self.stats.coalesced += 1
            elif batching:
                flight = self._window
                if flight is None:
                    flight = self._window = self._start(loop, deadline, now)
                    opened.add(flight)
                elif flight not in opened:
                    self.stats.batched += 1
                self._add(flight, key, sku)
                if len(flight.keys) >= self.settings.batch_size:
                    self._window = None  # full: takes no more, and goes now
                    flight.full.set()
            else:
                flight = self._start(loop, deadline, now)
                opened.add(flight)
                self._add(flight, key, sku)
            flight.wait_for(deadline)
            flights.setdefault(flight, []).append(sku)
        return flights

    def _add(self, flight: _Flight, key: Hashable, sku: str) -> None:
        flight.keys.add(key)
        flight.skus.extend(self._siblings.get(key, (sku,)))
        self._in_flight[key] = flight

    def _start(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None, now: float
    ) -> _Flight:
        flight = _Flight(loop.create_future(), deadline, now)
        task = loop.create_task(self._fly(flight))
        # Held here, not by any cart: a cart that stops waiting does not end the flight.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight

    async def _fly(self, flight: _Flight) -> None:
        try:
            if self.settings.batch_window > 0 and not flight.full.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.batch_window):
                        await flight.full.wait()
            if self._window is flight:
                self._window = None
            flight.queued = self._slots.locked()
            if flight.refresh and flight.queued:
                # Every slot taken since it was planned: dropped rather than queued ahead of
                # a cart's call. Its answers may be refreshed by a later cart.
                flight.held = "skipped"
                for key in flight.keys:
                    self._refreshed.pop(key, None)
                return
            async with self._slots:
                await self._call(flight)
        except Exception:  # never expected: the flight's SKUs are then simply unanswered
            log.exception("source %s: an upstream call failed unexpectedly", self.name)
        finally:
            if flight.refresh:
                self._refresh_calls -= 1
            for key in flight.keys:
                if self._in_flight.get(key) is flight:
                    del self._in_flight[key]
            if self._window is flight:
                self._window = None
            if not flight.done.done():
                flight.done.set_result(None)

    async def _call(self, flight: _Flight) -> None:
        """Ask the upstream for the flight's SKUs (see `_attempts`); log what went wrong, once
        for the flight whichever carts wait on it (even none)."""
        await self._attempts(flight)
        if not flight.errors:
            return
        messages = "; ".join(dict.fromkeys(error.message for error in flight.errors))
        if all(sku in flight.outcomes for sku in flight.skus):
            log.warning("source %s answered after failing: %s", self.name, messages)
        else:
            log.warning("source %s could not answer: %s", self.name, messages)

    async def _attempts(self, flight: _Flight) -> None:
        """One attempt, and one retry when it is worth it and fits; none when the source is
        backed off from or too little time is left. Keep what it answered; count everything."""
        skus = list(flight.skus)
        stats = self.stats
        settings = self.settings
        for attempt in range(2):
            # The adapter's clock first: its deadline below is then never past the carts'.
            started = time.monotonic()
            now = self._clock()
            left = None if flight.deadline is None else flight.deadline - now
            held: _Held | None = None
            permit: Permit | None = None
            if now < self._not_before:
                held = "skipped"
            elif left is not None and self._too_late(flight, left):
                held = "shed"
            else:
                permit = self.breaker.acquire(now)
                if permit is None:
                    held = "skipped"
            if permit is None:
                if not attempt:
                    flight.held = held
                return
            if attempt:
                stats.retries += 1
            timeout = settings.timeout if left is None else min(settings.timeout, left)
            queued_short = flight.queued and timeout < settings.timeout
            wall = self._wall()
            settled = False
            try:
                answer = await self._attempt(skus, timeout, started + timeout)
                done = self._clock()
                verdict = breaker_verdict(answer.errors, queued_short=queued_short)
                was = self.breaker.state
                if verdict is None:
                    self.breaker.release(permit)
                else:
                    self.breaker.record(permit, verdict, done)
                settled = True
            finally:
                if not settled:  # cancelled (the loop shutting down) or a bug of ours
                    self.breaker.abandon(permit, self._clock())
            stats.upstream_calls += 1
            stats.observe(done - now)
            self._log_breaker(was, answer.errors)
            for error in answer.errors:
                stats.error(error)
                flight.errors.append(error)
                wait = retry_after(error)
                if wait is not None:
                    self._not_before = max(self._not_before, done + wait)
            if verdict is False:
                elapsed = done - now
                typical = self._typical
                self._typical = (
                    elapsed if typical is None else typical + _LATENCY_WEIGHT * (elapsed - typical)
                )
            unanswered = answer.unknown_skus - answer.missing_skus
            records: dict[str, list[StockRecord]] = {}
            for record in answer.records:
                records.setdefault(record.sku, []).append(record)
            failed = []
            for sku in skus:
                if sku in unanswered:
                    failed.append(sku)
                    continue
                entry = Entry(
                    records=tuple(records.get(sku, ())),
                    missing=sku in answer.missing_skus,
                    fetched_at=now,
                    fetched_wall=wall,
                )
                self._cache[sku] = entry
                flight.outcomes[sku] = entry
            if not failed or not answer.errors or not all(map(retryable, answer.errors)):
                return
            if flight.refresh:
                return  # optional: not worth a second slot-holding attempt (a cart's miss retries)
            left = None if flight.deadline is None else flight.deadline - self._clock()
            if left is not None and left <= self._retry_time():
                return
            skus = failed

    async def _attempt(self, skus: list[str], timeout: float, deadline: float) -> SourceAnswer:
        """One call of the adapter, given `deadline` (a `time.monotonic()` instant, `timeout`
        from now) and cut off `ATTEMPT_GRACE` after it even if it ignores it; an exception
        becomes a failed answer."""
        try:
            async with asyncio.timeout(timeout + ATTEMPT_GRACE):
                return await self.inner.fetch(skus, deadline=deadline)
        except TimeoutError:
            error: SourceError = UpstreamTimeout(self.name, f"no answer within {timeout:.3g} s")
        except SourceError as exc:
            error = exc
        except Exception as exc:
            error = SourceError(self.name, f"{type(exc).__name__}: {exc}")
        return SourceAnswer(records=(), unknown_skus=frozenset(skus), errors=(error,))

    def _too_late(self, flight: _Flight, left: float) -> bool:
        """No call now: with `left` seconds before the carts' deadline it would most likely end
        after they all stopped waiting. That is when less than `MIN_RETRY_TIME` is left, or less
        than the source usually takes and the flight had that much when it opened (it lost the
        time waiting for a slot or its batch window). A flight whose carts never had that much
        is still called: a source slower than the budget on average may answer this one, and
        that is how one that got faster is noticed."""
        if left < MIN_RETRY_TIME:
            return True
        typical = self._typical
        return (
            typical is not None
            and left < typical
            and (flight.budget is None or flight.budget >= typical)
        )

    def _retry_time(self) -> float:
        typical = self._typical if self._typical is not None else MIN_RETRY_TIME / 2
        return max(MIN_RETRY_TIME, 2 * typical)

    def _log_breaker(self, was: BreakerState, errors: Collection[SourceError]) -> None:
        now = self.breaker.state
        if now is was:
            return
        if now is BreakerState.OPEN:
            last = next(iter(errors), None)
            log.warning(
                "source %s: circuit open for %g s after repeated failures%s; serving from cache",
                self.name,
                self.settings.breaker.open_for,
                f" (last: {last.message})" if last is not None else "",
            )
        elif now is BreakerState.CLOSED:
            log.info("source %s: circuit closed, the probe succeeded", self.name)

    # --- reporting -------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Counters, breaker and cache state, JSON-ready (for `GET /v1/sources`)."""
        now = self._clock()
        report = self.stats.describe()
        report["breaker"] = self.breaker.describe(now)
        report["retry_after_ms"] = round(max(0.0, self._not_before - now) * 1000)
        report["entries"] = len(self._cache)
        report["in_flight"] = len(set(self._in_flight.values()))
        report["settings"] = {
            "fresh_for_ms": round(self._fresh_for * 1000),
            "stale_for_ms": round(self._stale_for * 1000),
            "refresh_after_ms": round(self._refresh_after * 1000),
            "timeout_ms": round(self.settings.timeout * 1000),
            "max_concurrency": self.settings.max_concurrency,
            "batch_window_ms": self.settings.batch_window * 1000,
        }
        return report
