"""Prometheus metrics at `GET /metrics`: request latency per route, decisions, sources, rules.

The decision endpoint has a per-request budget of a few hundred microseconds, and
`prometheus_client`'s own metric objects take a lock on every update (an `observe` costs
microseconds). So what moves per request is counted in plain integers, by the one event loop
that serves requests (as `SourceStats` does), and turned into metric families only when
scraped, by collectors registered on the `Metrics` object's own registry (many apps can live in
one process, in tests). The sources' counters and the rules' reload history are read at scrape
time too: they cost requests nothing.

One ASGI middleware does both per-request jobs, timing and the request id (`engine.logs`), and
wraps the whole app, router included: Litestar's `middleware=` runs after routing, per route, so
it never sees a 404, and adds an exception-handling layer to every route. It reads the matched
route's template (`/v1/rules/history`, never a raw path) from the scope, where the router leaves
it; a request that matched no route is counted under `route="unmatched"`, so a scan of random
paths cannot grow the number of series.
"""

from __future__ import annotations

import time
import typing
from bisect import bisect_left
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from litestar import Litestar, MediaType, Response, get
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine import __version__
from engine.availability.stats import LATENCY_BUCKETS_MS
from engine.logs import REQUEST_ID_HEADER, request_id, request_id_for
from engine.model import Decision, LineStatus, Outcome, ReasonCode
from engine.reload import Attempt, Trigger
from engine.reload import Outcome as ReloadOutcome

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from engine.checkout import Checkout
    from engine.reload import RuleReloader

__all__ = (
    "CONTENT_TYPE",
    "HTTP_BUCKETS",
    "UNMATCHED",
    "CheckoutCollector",
    "Metrics",
    "instrument",
    "metrics_handler",
)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""What `generate_latest` writes: the text format 0.0.4."""
HTTP_BUCKETS: Final = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds of the request latency histogram, in seconds: a decision takes a fraction of a
millisecond on cached availability, up to the time budget (150 ms by default) when it waits."""
UNMATCHED: Final = "unmatched"
_HTTP: str = "http"
"""A plain string: comparing with `ScopeType.HTTP`, a `StrEnum`, costs a reflected `__ne__`."""
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as labels; any other is `other` (a client may send any token)."""
_BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}

_HTTP_LE: Final = tuple(repr(float(bound)) for bound in HTTP_BUCKETS)
_SOURCE_LE: Final = tuple((f"le_{bound}", repr(bound / 1000)) for bound in LATENCY_BUCKETS_MS)
"""`/v1/sources`' cumulative bucket keys and the matching `le` values, in seconds."""

_Key = tuple[str, str, int]
"""Route template, method, status."""


def _histogram_buckets(counts: Iterable[int], total: int) -> list[tuple[str, float]]:
    """Cumulative `(le, count)` pairs for a `HistogramMetricFamily`, `+Inf` last."""
    buckets: list[tuple[str, float]] = []
    below = 0
    for bound, count in zip(_HTTP_LE, counts, strict=False):
        below += count
        buckets.append((bound, below))
    buckets.append(("+Inf", total))
    return buckets


class _Series:
    """One route/method/status latency histogram: per-bucket counts (the last one past every
    bound) and the sum of seconds."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(HTTP_BUCKETS) + 1)
        self.total = 0.0


class Metrics:
    """The service's metrics and the registry they are exposed from: request latency and
    decision counters (kept here), the checkout's sources and the rules (read when scraped)."""

    def __init__(
        self,
        checkout: Checkout,
        reloader: RuleReloader | None = None,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.series: dict[_Key, _Series] = {}
        self.in_flight = 0
        self.outcomes: dict[str, int] = dict.fromkeys(Outcome, 0)
        self.line_statuses: dict[str, int] = dict.fromkeys(LineStatus, 0)
        self.reasons: dict[str, int] = dict.fromkeys(ReasonCode, 0)
        self.registry.register(_ServiceCollector(self))
        self.registry.register(CheckoutCollector(checkout, reloader))

    def record_decision(self, decision: Decision) -> None:
        """Count a decision: its outcome, each line's status and each line's reasons."""
        outcomes = self.outcomes
        outcomes[decision.decision] = outcomes.get(decision.decision, 0) + 1
        statuses = self.line_statuses
        reasons = self.reasons
        for line in decision.lines:
            statuses[line.status] = statuses.get(line.status, 0) + 1
            for code in line.reasons:
                reasons[code] = reasons.get(code, 0) + 1

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request (what the middleware does, inlined)."""
        series = self.series.get((route, method, status))
        if series is None:
            series = self.series[route, method, status] = _Series()
        series.counts[bisect_left(HTTP_BUCKETS, seconds)] += 1
        series.total += seconds

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app` (the whole Litestar app's handler, see `instrument`): time each HTTP
        request by route, method and status; give it a request id (the caller's valid
        `X-Request-ID`, else a new one), set for everything the request logs or starts, and
        sent back as `x-request-id`.

        Every call made here is paid on every request, in a service whose whole request costs
        a few hundred Python calls: lookups are `[]` in `try` (free unless they miss), not
        `.get()`; the send wrapper returns `send`'s awaitable rather than being a coroutine
        itself. The request id is not reset afterwards: an ASGI server runs each request in a
        task of its own, whose context ends with it."""
        all_series = self.series
        clock = time.perf_counter
        bounds = HTTP_BUCKETS
        methods = _METHODS
        current = request_id
        metrics = self

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != _HTTP:
                await app(scope, receive, send)
                return
            raw = request_id_for(scope["headers"])
            current.set(raw)
            status = 500  # unless the app answers: it ended in an error no handler caught

            def send_with_id(message: Message) -> Awaitable[None]:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    try:
                        headers = message["headers"]
                    except KeyError:
                        headers = ()
                    if type(headers) is list:  # Litestar's: a new list per response
                        headers.append((REQUEST_ID_HEADER, raw))
                    else:
                        message["headers"] = [*headers, (REQUEST_ID_HEADER, raw)]
                return send(message)

            metrics.in_flight += 1
            start = clock()
            try:
                await app(scope, receive, send_with_id)
            finally:
                elapsed = clock() - start
                metrics.in_flight -= 1
                method = scope["method"]  # type: ignore[typeddict-item]  # an HTTP scope
                try:
                    route = scope["path_template"] or UNMATCHED
                except KeyError:  # no route matched: the router did not set it
                    route = UNMATCHED
                key = (route, method if method in methods else "other", status)
                try:
                    series = all_series[key]
                except KeyError:
                    series = all_series[key] = _Series()
                series.counts[bisect_left(bounds, elapsed)] += 1
                series.total += elapsed

        return observed


def instrument(app: Litestar, metrics: Metrics) -> Litestar:
    """Put `metrics`' middleware around all of `app`, routing included (the way Litestar puts
    CORS there), so unmatched paths are counted too. Returns `app`."""
    app.asgi_handler = metrics.middleware(app.asgi_handler)
    return app


def metrics_handler(
    metrics: Metrics, path: str = "/metrics", *, opt: Mapping[str, Any] | None = None
) -> HTTPRouteHandler:
    """`GET /metrics` in the Prometheus text format, left out of the OpenAPI schema. `opt` is
    the route's (an API key `scope`, say, for an app that admits by it)."""

    headers = {"content-type": CONTENT_TYPE}  # as is: a media type would get a 2nd charset

    @get(path, include_in_schema=False, media_type=MediaType.TEXT, opt=dict(opt or {}))
    async def scrape() -> Response[bytes]:
        return Response(metrics.exposition(), headers=headers)

    return scrape


class _ServiceCollector(Collector):
    """What the middleware and `record_decision` counted, as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        build = GaugeMetricFamily(
            "engine_build_info", "The running engine's version", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build
        latency = HistogramMetricFamily(
            "engine_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template (`unmatched`: no route), "
            "method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), series in sorted(metrics.series.items()):
            counts = list(series.counts)
            count = sum(counts)
            latency.add_metric(
                [route, method, str(status)],
                _histogram_buckets(counts, count),
                series.total,
            )
        yield latency
        yield GaugeMetricFamily(
            "engine_http_requests_in_flight",
            "HTTP requests being answered",
            value=metrics.in_flight,
        )
        yield _counter(
            "engine_decisions",
            "Carts decided, by outcome",
            "outcome",
            metrics.outcomes,
        )
        yield _counter(
            "engine_decision_lines",
            "Cart lines decided, by status",
            "status",
            metrics.line_statuses,
        )
        yield _counter(
            "engine_decision_reasons",
            "Reason codes given on decided lines (a line may give several)",
            "code",
            metrics.reasons,
        )


def _counter(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in list(counts.items()):
        family.add_metric([str(value)], count)
    return family


_SOURCE_COUNTERS: Final = {
    "hits": ("engine_source_cache_hits", "SKU answers from a fresh cache entry"),
    "misses": ("engine_source_cache_misses", "SKU answers that needed the upstream"),
    "stale_serves": (
        "engine_source_cache_stale_serves",
        "SKU answers served stale because no fresh one could be had",
    ),
    "coalesced": (
        "engine_source_coalesced",
        "Misses that joined an upstream request another cart had made",
    ),
    "batched": (
        "engine_source_batched",
        "Misses sent in a batched upstream request another cart opened",
    ),
    "refreshes": (
        "engine_source_cache_refreshes",
        "Upstream items refreshed in the background near the end of their fresh time",
    ),
    "unanswered": (
        "engine_source_unanswered",
        "SKU answers left unknown: no fresh data and nothing young enough kept",
    ),
    "late": (
        "engine_source_late",
        "SKU answers whose upstream request had not come back by the cart's deadline",
    ),
    "skipped": (
        "engine_source_skipped",
        "SKU answers with no call made: breaker open or Retry-After running",
    ),
    "shed": (
        "engine_source_shed",
        "SKU answers with no call made: too little time left before the deadline",
    ),
    "upstream_calls": ("engine_source_upstream_calls", "Calls made to the upstream"),
    "retries": ("engine_source_upstream_retries", "Upstream calls that were retries"),
}
"""`CachedSource.report()` counters -> metric name (without `_total`) and help."""
_SOURCE_GAUGES: Final = {
    "entries": ("engine_source_cache_entries", "SKU answers kept in the cache", 1.0),
    "in_flight": (
        "engine_source_upstream_in_flight",
        "Upstream requests planned or under way",
        1.0,
    ),
    "retry_after_ms": (
        "engine_source_retry_after_seconds",
        "Time left before the upstream may be called again (Retry-After)",
        0.001,
    ),
}
_SOURCE_SETTINGS: Final = {
    "fresh_for_ms": ("engine_source_fresh_for_seconds", "Configured fresh time", 0.001),
    "stale_for_ms": ("engine_source_stale_for_seconds", "Configured stale time", 0.001),
    "refresh_after_ms": (
        "engine_source_refresh_after_seconds",
        "Configured age at which an answer in use is refreshed ahead",
        0.001,
    ),
    "timeout_ms": ("engine_source_timeout_seconds", "Configured upstream timeout", 0.001),
    "max_concurrency": (
        "engine_source_max_concurrency",
        "Configured upstream calls at once",
        1.0,
    ),
    "batch_window_ms": (
        "engine_source_batch_window_seconds",
        "Configured batch window",
        0.001,
    ),
}
_BREAKER_GAUGES: Final = {
    "calls": ("engine_source_breaker_window_calls", "Calls in the breaker's window", 1.0),
    "failures": (
        "engine_source_breaker_window_failures",
        "Failed calls in the breaker's window",
        1.0,
    ),
    "probe_in_ms": (
        "engine_source_breaker_probe_in_seconds",
        "Time before the open breaker lets a probe call through (0 unless open)",
        0.001,
    ),
}
MAPPED_SOURCE_KEYS: Final = frozenset(
    {*_SOURCE_COUNTERS, *_SOURCE_GAUGES, "upstream_errors", "latency_ms", "breaker", "settings"}
)
"""The keys of `CachedSource.report()` the collector maps (a test keeps this complete)."""
MAPPED_BREAKER_KEYS: Final = frozenset({*_BREAKER_GAUGES, "state", "opened"})
MAPPED_SETTINGS_KEYS: Final = frozenset(_SOURCE_SETTINGS)


class CheckoutCollector(Collector):
    """Reads `checkout.stats()` (what `GET /v1/sources` shows) and the reloader's history
    when scraped: per source (`source` label) cache, coalescing, upstream, latency and breaker
    figures; the rule set in force and the reloads by trigger and outcome."""

    def __init__(self, checkout: Checkout, reloader: RuleReloader | None = None) -> None:
        self._checkout = checkout
        self._reloader = reloader
        self._reloads: dict[tuple[str, str], int] = {
            (trigger, outcome): 0
            for trigger in typing.get_args(Trigger)
            for outcome in typing.get_args(ReloadOutcome)
        }
        self._counted: Attempt | None = None
        """The newest attempt counted into `_reloads` (the history keeps only the last ones)."""

    def collect(self) -> Iterator[Metric]:
        checkout = self._checkout
        stats = checkout.stats()
        yield GaugeMetricFamily(
            "engine_checkout_budget_seconds",
            "Time one cart may wait for availability",
            value=stats.get("budget_ms", 0) / 1000,
        )
        rule_set = GaugeMetricFamily(
            "engine_rule_set_info", "The rule set in force (value 1)", labels=["rule_set"]
        )
        rule_set.add_metric([checkout.rules.id], 1)
        yield rule_set
        yield from self._sources(stats.get("sources", {}))
        if self._reloader is not None:
            yield from self._rules(self._reloader)

    def _sources(self, sources: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        label = ["source"]
        counters = {
            key: CounterMetricFamily(name, help_text, labels=label)
            for key, (name, help_text) in _SOURCE_COUNTERS.items()
        }
        gauges = {
            key: GaugeMetricFamily(name, help_text, labels=label)
            for key, (name, help_text, _) in {**_SOURCE_GAUGES, **_SOURCE_SETTINGS}.items()
        }
        errors = CounterMetricFamily(
            "engine_source_upstream_errors",
            "Failed upstream calls, by kind of error",
            labels=["source", "kind"],
        )
        latency = HistogramMetricFamily(
            "engine_source_upstream_duration_seconds",
            "Time upstream calls took, whatever their outcome",
            labels=label,
        )
        latency_max = GaugeMetricFamily(
            "engine_source_upstream_duration_max_seconds",
            "The longest upstream call since start",
            labels=label,
        )
        state = GaugeMetricFamily(
            "engine_source_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=label,
        )
        opened = CounterMetricFamily(
            "engine_source_breaker_opened", "Times the circuit breaker opened", labels=label
        )
        window = {
            key: GaugeMetricFamily(name, help_text, labels=label)
            for key, (name, help_text, _) in _BREAKER_GAUGES.items()
        }
        for name, report in sorted(sources.items()):
            values = [name]
            for key, counter in counters.items():
                counter.add_metric(values, report.get(key, 0))
            for key, (_, _, scale) in _SOURCE_GAUGES.items():
                gauges[key].add_metric(values, report.get(key, 0) * scale)
            settings = report.get("settings", {})
            for key, (_, _, scale) in _SOURCE_SETTINGS.items():
                gauges[key].add_metric(values, settings.get(key, 0) * scale)
            for kind, count in sorted(report.get("upstream_errors", {}).items()):
                errors.add_metric([name, kind], count)
            timing = report.get("latency_ms", {})
            cumulative: dict[str, int] = timing.get("buckets", {})
            latency.add_metric(
                values,
                [(le, cumulative.get(key, 0)) for key, le in _SOURCE_LE]
                + [("+Inf", timing.get("count", 0))],
                timing.get("sum", 0) / 1000,
            )
            latency_max.add_metric(values, timing.get("max", 0) / 1000)
            breaker = report.get("breaker", {})
            state.add_metric(values, _BREAKER_STATES.get(breaker.get("state", "closed"), 0))
            opened.add_metric(values, breaker.get("opened", 0))
            for key, (_, _, scale) in _BREAKER_GAUGES.items():
                window[key].add_metric(values, breaker.get(key, 0) * scale)
        yield from counters.values()
        yield errors
        yield latency
        yield latency_max
        yield from gauges.values()
        yield state
        yield opened
        yield from window.values()

    def _rules(self, reloader: RuleReloader) -> Iterator[Metric]:
        history = list(reloader.history)
        fresh: list[Attempt] = []
        for attempt in reversed(history):
            if attempt is self._counted:
                break
            fresh.append(attempt)
        for attempt in fresh:
            key = (attempt.trigger, attempt.outcome)
            self._reloads[key] = self._reloads.get(key, 0) + 1
        if history:
            self._counted = history[-1]
        reloads = CounterMetricFamily(
            "engine_rule_reloads",
            "Loads of the rules folder (the first at startup), by trigger and outcome "
            "(`rejected`: the rules had errors; the previous set stayed in force)",
            labels=["trigger", "outcome"],
        )
        for (trigger, outcome), count in sorted(self._reloads.items()):
            reloads.add_metric([trigger, outcome], count)
        yield reloads
        yield GaugeMetricFamily(
            "engine_rule_reload_rejected",
            "1 while the last reload was rejected and no good one has replaced it",
            value=0 if reloader.last_rejected is None else 1,
        )
        yield GaugeMetricFamily(
            "engine_rule_set_loaded_timestamp_seconds",
            "When the rule set in force was loaded (Unix time)",
            value=reloader.loaded_at.timestamp(),
        )
