"""The service's whole request for `POST /v1/allocations`, the app called as ASGI: the metrics
middleware, the framework's routing, the admission hook (the API key, the Content-Type), the
DTO's decode, the checkout on warm caches, the encode. Beside it, the null endpoint of the same
framework answering as many bytes: the floor the engine's request stands on.

No server and no sockets: parsing HTTP, the server's task per request and the network are not
measured (`make load` measures the same two apps over HTTP). A test client would cost about ten
times the app, hiding what this is here to notice: the layer around the engine growing slower.
The app's lifespan is not run; this route needs nothing it starts. As in test_gather.py, a
round is `CALLS` requests on one event loop made once, and the per-request time is the round's
divided by `CALLS` (`extra_info`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.compare import CALLS_PER_ROUND
from benchmarks.null_app import PATH, null_app
from benchmarks.synthetic import misses, warm_checkout
from engine.checkout import Checkout
from engine.model import Decision, Outcome
from engine.service import create_app
from engine.service.auth import ApiKeys, KeyEntry, digest

CALLS = 100
"""Requests per round."""
KEY = "benchmark-checkout-key"
GROUP = "service: POST /v1/allocations, ASGI"
ASGIApp = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Service:
    """The engine's app on warm caches, and what it answered the request that filled them."""

    app: ASGIApp
    checkout: Checkout
    body: bytes
    answer: bytes


def _scope(body: bytes, query: bytes = b"") -> dict[str, Any]:
    """The HTTP scope a server would pass for the request, made once; each call copies it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + KEY.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def _caller(app: ASGIApp, body: bytes, query: bytes = b"") -> Callable[[int], Awaitable[bytes]]:
    """`calls` requests one after another; the last one's answer, which must be a 200 (a
    failing request fails the benchmark rather than measuring a quick 4xx)."""
    scope = _scope(body, query)
    request = {"type": "http.request", "body": body, "more_body": False}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def calls(count: int) -> bytes:
        for _ in range(count):
            sent.clear()
            await app({**scope, "state": {}}, receive, send)
        answer = b"".join(m.get("body", b"") for m in sent[1:])
        assert sent[0]["status"] == 200, answer
        return answer

    return calls


def _rounds(
    loop: asyncio.AbstractEventLoop, calls: Callable[[int], Awaitable[bytes]]
) -> Callable[[], bytes]:
    """One round: `CALLS` requests awaited on the running loop."""
    return lambda: loop.run_until_complete(calls(CALLS))


@pytest.fixture(scope="module")
def service(loop: asyncio.AbstractEventLoop) -> Service:
    """The app around the checkout `test_checkout_warm` measures, with one key for `decide`;
    its first request fills the caches (the only misses) and is checked."""
    checkout, c = warm_checkout()
    keys = ApiKeys((KeyEntry("benchmark", ("decide",), digest(KEY)),))
    app = create_app(checkout, api_keys=keys)
    body = msgspec.json.encode(c)
    answer = loop.run_until_complete(_caller(app, body)(1))
    assert msgspec.json.decode(answer, type=Decision).decision is Outcome.ALLOCATE
    return Service(app, checkout, body, answer)


def test_null_endpoint(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, service: Service
) -> None:
    """The framework alone: the same route reads the cart's body and answers the engine's
    bytes for it."""
    benchmark.group = GROUP
    benchmark.name = f"service x{CALLS}[null endpoint]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    calls = _caller(null_app(service.answer), service.body)
    assert loop.run_until_complete(calls(1)) == service.answer
    benchmark(_rounds(loop, calls))


@pytest.mark.parametrize("explain", [False, True], ids=["decide", "explain"])
def test_service_warm(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, service: Service, explain: bool
) -> None:
    """The engine's app with an API key, 5 lines x 10 locations, 100 rules, warm caches; with
    `?explain=true`, the explanation too."""
    benchmark.group = GROUP
    size = "5 lines x 10 locations, 100 rules, warm cache, API key"
    benchmark.name = f"service x{CALLS}[{size}{', explain' if explain else ''}]"
    benchmark.extra_info[CALLS_PER_ROUND] = CALLS
    calls = _caller(service.app, service.body, b"explain=true" if explain else b"")
    answer = msgspec.json.decode(loop.run_until_complete(calls(1)), type=Decision)
    assert answer.decision is Outcome.ALLOCATE
    assert (answer.explanation is not None) is explain
    before = misses(service.checkout)
    benchmark(_rounds(loop, calls))
    assert misses(service.checkout) == before  # every round was the warm path
