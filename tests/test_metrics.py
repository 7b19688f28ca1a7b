"""`/metrics`: exact counts after known traffic, bounded labels, the sources' and the rules'
figures read at scrape time, and the request id the same middleware gives each request.

The app here is a small one built like the service's (a real `Checkout` on the demo rules, the
decision recorded by the handler, the middleware around the whole app), so what is counted is
what the service will count.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from litestar import Litestar, get, post
from litestar.params import Body, FromPath
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from engine.availability import SourceAnswer, StockRecord, UpstreamUnavailable
from engine.availability.breaker import BreakerSettings
from engine.availability.cache import CachedSource, CacheSettings
from engine.checkout import Checkout
from engine.logs import configure_logging, current_request_id
from engine.model import Cart, Decision
from engine.policy import load_rule_set
from engine.reload import RuleReloader
from engine.service.metrics import (
    CONTENT_TYPE,
    HTTP_BUCKETS,
    MAPPED_BREAKER_KEYS,
    MAPPED_SETTINGS_KEYS,
    MAPPED_SOURCE_KEYS,
    UNMATCHED,
    Metrics,
    instrument,
    metrics_handler,
)
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, NOW, RULES

ALLOCATE = {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}
DENY = {
    "country": "IE",
    "lines": [{"sku": "TEE-BLK-M", "quantity": 1}, {"sku": "NOPE", "quantity": 1}],
}
GENERATED = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


def named(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def demo_checkout() -> Checkout:
    return Checkout(
        load_rule_set(RULES), [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )


def small_app(checkout: Checkout, metrics: Metrics) -> Litestar:
    @post("/v1/allocations", status_code=200)
    async def allocations(data: Annotated[Cart, Body()]) -> Decision:
        decision = await checkout.allocate(data)
        metrics.record_decision(decision)
        return decision

    @get("/v1/items/{sku:str}")
    async def item(sku: FromPath[str]) -> dict[str, str | None]:
        logging.getLogger("engine.test").warning("looked at %s", sku)
        return {"sku": sku, "request_id": current_request_id()}

    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return instrument(Litestar([allocations, item, boom, metrics_handler(metrics)]), metrics)


@pytest.fixture
def checkout() -> Checkout:
    return demo_checkout()


@pytest.fixture
def metrics(checkout: Checkout) -> Metrics:
    return Metrics(checkout)


@pytest.fixture
def client(checkout: Checkout, metrics: Metrics) -> Iterator[TestClient[Litestar]]:
    with TestClient(small_app(checkout, metrics)) as test_client:
        yield test_client


def scrape(client: TestClient[Litestar]) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert (
        response.headers["content-type"]
        == CONTENT_TYPE
        == ("text/plain; version=0.0.4; charset=utf-8")
    )
    return samples(response.text)


# --- requests and decisions -------------------------------------------------------------------


def test_counts_match_the_traffic_exactly(client: TestClient[Litestar]) -> None:
    for cart in [ALLOCATE] * 5 + [DENY] * 2:
        assert client.post("/v1/allocations", json=cart).status_code == 200
    assert client.post("/v1/allocations", json={"country": "IE"}).status_code == 400
    found = scrape(client)
    route = {"route": "/v1/allocations", "method": "POST"}
    name = "engine_http_request_duration_seconds"
    assert value(found, f"{name}_count", **route, status="200") == 7
    assert value(found, f"{name}_bucket", **route, status="200", le="+Inf") == 7
    assert value(found, f"{name}_count", **route, status="400") == 1
    buckets = [
        value(found, f"{name}_bucket", **route, status="200", le=str(b)) for b in HTTP_BUCKETS
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] <= 7
    assert 0 < value(found, f"{name}_sum", **route, status="200") < 7
    assert named(found, "engine_decisions_total") == {
        frozenset({("outcome", "allocate")}): 5,
        frozenset({("outcome", "reserve")}): 0,
        frozenset({("outcome", "deny")}): 2,
    }
    assert named(found, "engine_decision_lines_total") == {
        frozenset({("status", "allocated")}): 7,
        frozenset({("status", "reserved")}): 0,
        frozenset({("status", "denied")}): 2,
    }
    reasons = named(found, "engine_decision_reasons_total")
    assert len(reasons) == 12
    assert {dict(k)["code"]: v for k, v in reasons.items() if v} == {"UNKNOWN_SKU": 2}
    # The scrape is answered while it is counted: it is the one request in flight.
    assert value(found, "engine_http_requests_in_flight") == 1
    assert value(found, "engine_build_info", version="0.1.0") == 1


def test_the_scrapes_are_counted_too(client: TestClient[Litestar]) -> None:
    scrape(client)
    found = scrape(client)
    labels = {"route": "/metrics", "method": "GET", "status": "200"}
    assert value(found, "engine_http_request_duration_seconds_count", **labels) == 1


def test_routes_are_labelled_by_template_and_the_rest_is_bounded(
    client: TestClient[Litestar],
) -> None:
    client.get("/v1/items/TEE-BLK-M?x=1")
    client.get("/v1/items/HOODIE-GRY-L")
    for path in ("/nope", "/v1/items", "/wp-admin/x.php?a=1"):
        assert client.get(path).status_code == 404
    assert client.request("BREW", "/v1/items/a").status_code == 405
    assert client.get("/boom").status_code == 500
    found = scrape(client)
    counts = {
        (dict(k)["route"], dict(k)["method"], dict(k)["status"]): v
        for k, v in named(found, "engine_http_request_duration_seconds_count").items()
    }
    assert counts == {
        ("/v1/items/{sku}", "GET", "200"): 2,
        (UNMATCHED, "GET", "404"): 3,
        (UNMATCHED, "other", "405"): 1,
        ("/boom", "GET", "500"): 1,
    }


def test_metrics_is_left_out_of_the_openapi_schema(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/metrics" not in paths
    assert "/v1/allocations" in paths


def test_a_bucket_holds_what_is_at_most_its_bound(metrics: Metrics) -> None:
    metrics.observe("/x", "GET", 200, 0.0002)
    metrics.observe("/x", "GET", 200, 0.00020001)
    metrics.observe("/x", "GET", 200, 5.0)
    found = samples(metrics.exposition().decode())
    name = "engine_http_request_duration_seconds_bucket"
    labels = {"route": "/x", "method": "GET", "status": "200"}
    assert value(found, name, **labels, le="0.0002") == 1
    assert value(found, name, **labels, le="0.0005") == 2
    assert value(found, name, **labels, le="1.0") == 2
    assert value(found, name, **labels, le="+Inf") == 3


# --- the middleware, directly -----------------------------------------------------------------


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/x", "headers": headers or []}


def test_an_error_no_handler_answered_counts_as_500(metrics: Metrics) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    async def run() -> None:
        with pytest.raises(RuntimeError):
            await metrics.middleware(broken)(http_scope(), None, None)  # type: ignore[arg-type]

    asyncio.run(run())
    assert {k: sum(s.counts) for k, s in metrics.series.items()} == {(UNMATCHED, "GET", 500): 1}
    assert metrics.in_flight == 0
    assert current_request_id() is None


def test_other_scopes_pass_through_untouched(metrics: Metrics) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, current_request_id()))

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    asyncio.run(metrics.middleware(app)(scope, None, None))  # type: ignore[arg-type]
    assert seen == [(scope, None)]
    assert metrics.series == {}


def test_the_request_id_header_is_added_to_any_headers(metrics: Metrics) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["path_template"] = "/x"
        await send({"type": "http.response.start", "status": 204, "headers": ((b"a", b"b"),)})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope([(b"x-request-id", b"abc")])
    asyncio.run(metrics.middleware(app)(scope, None, send))  # type: ignore[arg-type]
    assert sent[0]["headers"] == [(b"a", b"b"), (b"x-request-id", b"abc")]
    assert {k: sum(s.counts) for k, s in metrics.series.items()} == {("/x", "GET", 204): 1}


# --- request ids through the app --------------------------------------------------------------


def test_a_valid_request_id_is_echoed_and_seen_by_the_handler(
    client: TestClient[Litestar],
) -> None:
    response = client.get("/v1/items/A", headers={"x-request-id": "edge-42.a:b_c"})
    assert response.headers["x-request-id"] == "edge-42.a:b_c"
    assert response.json() == {"sku": "A", "request_id": "edge-42.a:b_c"}


@pytest.mark.parametrize("sent", ["has space", "x" * 129, 'quote"d', ""])
def test_an_invalid_request_id_is_replaced(client: TestClient[Litestar], sent: str) -> None:
    response = client.get("/v1/items/A", headers={"x-request-id": sent})
    made = response.headers["x-request-id"]
    assert GENERATED.fullmatch(made)
    assert response.json()["request_id"] == made


def test_each_request_gets_its_own_id_even_a_404(client: TestClient[Litestar]) -> None:
    ids = [client.get("/v1/items/A").headers["x-request-id"] for _ in range(20)]
    ids.append(client.get("/nope").headers["x-request-id"])
    assert len(set(ids)) == 21
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert current_request_id() is None


@pytest.fixture
def restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "litestar")]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_the_handlers_log_lines_carry_the_request_id(client: TestClient[Litestar]) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    response = client.get("/v1/items/A", headers={"x-request-id": "trace-1"})
    lines = [line for line in stream.getvalue().splitlines() if '"engine.test"' in line]
    assert len(lines) == 1
    assert '"message":"looked at A","request_id":"trace-1"' in lines[0]
    assert response.headers["x-request-id"] == "trace-1"


# --- the sources' figures ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Answers 5 units of every SKU at `dub-dc`, taking `takes` seconds of the clock; fails
    with a 503 while `failing`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.takes = 0.03
        self.failing = False

    @property
    def name(self) -> str:
        return "fake-api"

    @property
    def locations(self) -> frozenset[str]:
        return frozenset({"dub-dc"})

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        await asyncio.sleep(0)
        self.clock.now += self.takes
        if self.failing:
            error = UpstreamUnavailable("fake-api", "HTTP 503 from /levels", status=503)
            return SourceAnswer(records=(), unknown_skus=frozenset(skus), errors=(error,))
        return SourceAnswer(
            records=tuple(StockRecord(sku=s, location_id="dub-dc", atp=5) for s in sorted(skus))
        )


def cached_source() -> tuple[CachedSource, Upstream, Clock]:
    clock = Clock()
    upstream = Upstream(clock)
    settings = CacheSettings(
        fresh_for=5.0,
        stale_for=60.0,
        timeout=1.0,
        max_concurrency=4,
        breaker=BreakerSettings(failure_rate=0.5, window=4, min_calls=4, open_for=30.0),
    )
    return CachedSource(upstream, settings, clock=clock), upstream, clock


def test_a_cached_sources_counters_are_exposed_as_reported() -> None:
    source, upstream, clock = cached_source()

    async def traffic() -> None:
        await source.fetch(["A"])  # a miss: a call of 30 ms
        await source.fetch(["B"])  # a miss: a call of 30 ms
        await source.fetch(["A"])  # a hit
        clock.now += 10  # both past fresh
        upstream.failing = True
        upstream.takes = 0.2
        await source.fetch(["A"])  # a miss: a 503 in 200 ms, retried: the same; stale served
        await source.fetch(["B"])  # a miss: the breaker is open, no call; stale served

    asyncio.run(traffic())
    checkout = Checkout(load_rule_set(RULES), [source], clock=lambda: NOW)
    found = samples(Metrics(checkout).exposition().decode())
    report = checkout.stats()["sources"]["fake-api"]
    of = {"source": "fake-api"}

    def get(name: str, **labels: str) -> float:
        return value(found, name, **of, **labels)

    assert get("engine_source_cache_hits_total") == report["hits"] == 1
    assert get("engine_source_cache_misses_total") == report["misses"] == 4
    assert get("engine_source_cache_stale_serves_total") == report["stale_serves"] == 2
    assert get("engine_source_upstream_calls_total") == report["upstream_calls"] == 4
    assert get("engine_source_upstream_retries_total") == report["retries"] == 1
    assert get("engine_source_skipped_total") == report["skipped"] == 1
    assert get("engine_source_upstream_errors_total", kind="UpstreamUnavailable") == 2
    assert report["upstream_errors"] == {"UpstreamUnavailable": 2}
    for key in ("coalesced", "batched", "unanswered", "late", "shed"):
        assert get(f"engine_source_{key}_total") == report[key] == 0, key
    assert get("engine_source_cache_refreshes_total") == report["refreshes"] == 0
    assert get("engine_source_refresh_after_seconds") * 1000 == pytest.approx(
        report["settings"]["refresh_after_ms"]
    )
    assert get("engine_source_cache_entries") == report["entries"] == 2
    assert get("engine_source_upstream_in_flight") == 0
    assert get("engine_source_breaker_state") == 2  # open: 2 of the 4 calls of its window failed
    assert get("engine_source_breaker_opened_total") == 1
    assert get("engine_source_breaker_probe_in_seconds") == 30  # open_for: the clock stood
    assert get("engine_source_breaker_window_calls") == 0  # an open breaker forgets its window
    assert get("engine_source_breaker_window_failures") == 0
    assert get("engine_source_upstream_duration_seconds_count") == 4
    assert get("engine_source_upstream_duration_seconds_bucket", le="0.025") == 0
    assert get("engine_source_upstream_duration_seconds_bucket", le="0.05") == 2
    assert get("engine_source_upstream_duration_seconds_bucket", le="0.1") == 2
    assert get("engine_source_upstream_duration_seconds_bucket", le="0.25") == 4
    assert get("engine_source_upstream_duration_seconds_bucket", le="2.5") == 4
    assert get("engine_source_upstream_duration_seconds_bucket", le="+Inf") == 4
    assert get("engine_source_upstream_duration_seconds_sum") == pytest.approx(0.46)
    assert get("engine_source_upstream_duration_max_seconds") == pytest.approx(0.2)
    assert get("engine_source_fresh_for_seconds") == 5
    assert get("engine_source_stale_for_seconds") == 60
    assert get("engine_source_timeout_seconds") == 1
    assert get("engine_source_max_concurrency") == 4
    assert get("engine_source_batch_window_seconds") == 0
    assert get("engine_source_retry_after_seconds") == 0
    assert value(found, "engine_checkout_budget_seconds") == 0.15


def test_every_figure_a_source_reports_is_mapped() -> None:
    """A counter added to `CachedSource.report()` fails here until it is exposed."""
    source, _, _ = cached_source()
    source.breaker._open(source._clock())  # so the open-only figures are reported too
    report = source.report()
    assert set(report) == MAPPED_SOURCE_KEYS
    assert set(report["breaker"]) == MAPPED_BREAKER_KEYS
    assert set(report["settings"]) == MAPPED_SETTINGS_KEYS


def test_no_cached_source_no_source_series(metrics: Metrics) -> None:
    found = samples(metrics.exposition().decode())
    assert not [name for name, _ in found if name.startswith("engine_source_")]


# --- the rules --------------------------------------------------------------------------------


def test_rule_set_and_reloads(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder, ignore=shutil.ignore_patterns("tests"))
    checkout = Checkout(
        load_rule_set(folder), [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    reloader = RuleReloader(folder, checkout, watch=False)
    metrics = Metrics(checkout, reloader)

    def reloads() -> dict[tuple[str, str], float]:
        found = samples(metrics.exposition().decode())
        return {
            (dict(k)["trigger"], dict(k)["outcome"]): v
            for k, v in named(found, "engine_rule_reloads_total").items()
            if v
        }

    def gauges() -> tuple[str, float, float]:
        found = samples(metrics.exposition().decode())
        (labels,) = named(found, "engine_rule_set_info")
        return (
            dict(labels)["rule_set"],
            value(found, "engine_rule_reload_rejected"),
            value(found, "engine_rule_set_loaded_timestamp_seconds"),
        )

    live = checkout.rules.id
    assert reloads() == {("startup", "loaded"): 1}
    assert reloads() == {("startup", "loaded"): 1}  # scraping again counts nothing new
    assert gauges() == (live, 0, reloader.loaded_at.timestamp())
    asyncio.run(reloader.reload("api"))
    asyncio.run(reloader.reload("signal"))
    assert reloads() == {
        ("startup", "loaded"): 1,
        ("api", "unchanged"): 1,
        ("signal", "unchanged"): 1,
    }
    rules_file = folder / "rules.yaml"
    rules_file.write_text(rules_file.read_text() + "\n  - this is: [not valid\n")
    asyncio.run(reloader.reload("file"))
    assert reloads() == {
        ("startup", "loaded"): 1,
        ("api", "unchanged"): 1,
        ("signal", "unchanged"): 1,
        ("file", "rejected"): 1,
    }
    assert gauges()[:2] == (live, 1)
    found = samples(metrics.exposition().decode())
    assert len(named(found, "engine_rule_reloads_total")) == 4 * 3  # every pair, from 0
