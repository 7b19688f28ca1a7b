"""The upstream adapters, all four at once: the shared HTTP helper, every error path, and transport
failures against a real server on 127.0.0.1.

Contract tests against each API's documented payloads live in `test_adapters_<api>.py`; the
helpers here (building an adapter over `httpx.MockTransport`, in process) are shared with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.availability.source import (
    BadPayload,
    ConnectionFailed,
    NotAuthorised,
    RateLimited,
    RequestRejected,
    Source,
    SourceAnswer,
    SourceError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from engine.sources.catalog_api import CatalogApi
from engine.sources.dr_levels import DigitalRiverLevels
from engine.sources.dr_shopper import DigitalRiverShopper
from engine.sources.http import parse_retry_after, query_string, upstream_messages
from engine.sources.shoplazza import Shoplazza

PAYLOADS = Path(__file__).resolve().parent / "payloads"
TOKEN = "s3cret-token"
BASE = "http://upstream.test"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
Build = Callable[[httpx.AsyncClient], Source]


def payload(name: str) -> bytes:
    """A documented example payload, byte for byte as stored."""
    return (PAYLOADS / name).read_bytes()


def run(
    build: Build, handler: Handler, skus: Collection[str]
) -> tuple[SourceAnswer, list[httpx.Request]]:
    """Fetch `skus` from the adapter `build` makes over an in-process transport answering with
    `handler`; return the answer and every request the adapter made."""
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        response = handler(request)
        if not isinstance(response, httpx.Response):
            response = await response
        return response

    async def fetch() -> SourceAnswer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
            return await build(client).fetch(skus)

    return asyncio.run(fetch()), requests


def run_fetches(
    build: Build, handler: Handler, fetches: Sequence[Collection[str]]
) -> list[tuple[SourceAnswer, list[httpx.Request]]]:
    """Like `run`, but several fetches one after another from the same adapter (what it learns
    in one fetch is used in the next); each answer with the requests made for it."""
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        response = handler(request)
        if not isinstance(response, httpx.Response):
            response = await response
        return response

    async def fetch_all() -> list[tuple[SourceAnswer, list[httpx.Request]]]:
        results: list[tuple[SourceAnswer, list[httpx.Request]]] = []
        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
            source = build(client)
            for skus in fetches:
                before = len(requests)
                answer = await source.fetch(skus)
                results.append((answer, requests[before:]))
        return results

    return asyncio.run(fetch_all())


def dr_levels(client: httpx.AsyncClient, base_url: str = BASE, timeout: float = 1.0) -> Source:
    return DigitalRiverLevels(
        "dr-levels",
        client,
        base_url=base_url,
        token=TOKEN,
        items={"SKU-A": "item-a", "SKU-B": "item-b"},
        locations={"wh-1": "dub-dc"},
        timeout=timeout,
    )


def dr_shopper(client: httpx.AsyncClient, base_url: str = BASE, timeout: float = 1.0) -> Source:
    return DigitalRiverShopper(
        "dr-shopper",
        client,
        base_url=base_url,
        token=TOKEN,
        items={"SKU-A": "1001", "SKU-B": "1002"},
        location="dub-dc",
        timeout=timeout,
    )


def shoplazza(client: httpx.AsyncClient, base_url: str = BASE, timeout: float = 1.0) -> Source:
    return Shoplazza(
        "shoplazza",
        client,
        base_url=base_url,
        token=TOKEN,
        items={"SKU-A": ("prod-1", "var-a"), "SKU-B": ("prod-1", "var-b")},
        locations={"327627904831724000": "dub-dc"},
        timeout=timeout,
    )


def catalog(client: httpx.AsyncClient, base_url: str = BASE, timeout: float = 1.0) -> Source:
    return CatalogApi(
        "catalog",
        client,
        base_url=base_url,
        token=TOKEN,
        items={"SKU-A": "item_a", "SKU-B": "item_b"},
        location="dub-dc",
        timeout=timeout,
    )


ADAPTERS: dict[str, Callable[..., Source]] = {
    "dr-levels": dr_levels,
    "dr-shopper": dr_shopper,
    "shoplazza": shoplazza,
    "catalog": catalog,
}
REQUESTS_FOR_TWO_SKUS = {"dr-levels": 1, "dr-shopper": 1, "shoplazza": 1, "catalog": 2}
"""One batch, one batch, one product with two variants, two items."""
REQUESTS_FOR_TWO_SKUS_ON_400 = {**REQUESTS_FOR_TWO_SKUS, "dr-levels": 3, "catalog": 4}
"""A 400 is asked again: the batch in each other spelling of `inventoryItemIds`, each item without
`include[]=short`."""
BOTH = frozenset({"SKU-A", "SKU-B"})


def answering(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, headers=headers, content=body)


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


# -- the shared helper -------------------------------------------------------------------------


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:59:00 GMT", now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "2 seconds", "Sun, 99 Nov 2026"])
def test_retry_after_absent_or_unparseable(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        (b'{"errors": ["invalid UUID length: 10"]}', ["invalid UUID length: 10"]),
        (b'{"error": "store is not active"}', ["store is not active"]),
        (
            b'{"type": "bad_request", "errors": [{"code": "invalid_parameter", '
            b'"parameter": "inventoryItemIds", "message": "inventoryItemIds is required"}]}',
            ["inventoryItemIds is required"],
        ),
        (
            b'{"errors": {"error": [{"relation": "x", "code": "resource-not-found", '
            b'"description": "Product not found"}]}}',
            ["Product not found"],
        ),
        (b'{"message": "slow down"}', ["slow down"]),
        (b"<html>Bad Gateway</html>", []),
        (b"[1, 2]", []),
        (b"", []),
    ],
)
def test_upstream_messages(body: bytes, messages: list[str]) -> None:
    assert upstream_messages(body) == messages


def test_query_string_keeps_brackets_and_commas_literal() -> None:
    assert (
        query_string([("include[]", "on_hand"), ("productId", "1,2"), ("e", "a b&c")])
        == "include[]=on_hand&productId=1,2&e=a%20b%26c"
    )


# -- every error path of every adapter ---------------------------------------------------------

_STATUS_CASES = [
    pytest.param(401, {}, b'{"error": "unauthorised"}', NotAuthorised, None, id="401"),
    pytest.param(403, {}, b'{"errors": ["forbidden"]}', NotAuthorised, None, id="403"),
    pytest.param(429, {"Retry-After": "2"}, b"{}", RateLimited, 2.0, id="429-retry-after-2"),
    pytest.param(429, {}, b"", RateLimited, None, id="429-no-retry-after"),
    pytest.param(429, {"Retry-After": "later"}, b"", RateLimited, None, id="429-bad-retry-after"),
    pytest.param(500, {}, b'{"errors": ["boom"]}', UpstreamUnavailable, None, id="500"),
    pytest.param(502, {}, b"<html>Bad Gateway</html>", UpstreamUnavailable, None, id="502"),
    pytest.param(503, {}, b"", UpstreamUnavailable, None, id="503"),
    pytest.param(503, {"Retry-After": "7"}, b"", UpstreamUnavailable, 7.0, id="503-retry-after"),
    pytest.param(504, {}, b"", UpstreamUnavailable, None, id="504"),
    pytest.param(408, {}, b"", UpstreamUnavailable, None, id="408"),
    pytest.param(400, {}, b'{"errors": ["bad"]}', RequestRejected, None, id="400"),
    pytest.param(405, {}, b"", RequestRejected, None, id="405"),
    pytest.param(406, {}, b"", RequestRejected, None, id="406"),
    pytest.param(
        302, {"Location": "https://elsewhere.test/"}, b"", RequestRejected, None, id="302"
    ),
]


@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize(("status", "headers", "body", "error_class", "retry_after"), _STATUS_CASES)
def test_error_status(
    kind: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    error_class: type[SourceError],
    retry_after: float | None,
) -> None:
    answer, requests = run(ADAPTERS[kind], answering(status, body, headers), ["SKU-A", "SKU-B"])
    errors = REQUESTS_FOR_TWO_SKUS[kind]
    assert answer.records == ()
    assert answer.unknown_skus == BOTH
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [error_class] * errors
    assert [error.status for error in answer.errors] == [status] * errors
    assert [error.retry_after for error in answer.errors] == [retry_after] * len(answer.errors)
    assert all(error.source == kind for error in answer.errors)
    assert all(error.outage is (error_class is not RequestRejected) for error in answer.errors)
    on_400 = REQUESTS_FOR_TWO_SKUS_ON_400 if status == 400 else REQUESTS_FOR_TWO_SKUS
    assert len(requests) == on_400[kind]


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_rate_limited_with_http_date(kind: str) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    answer, _ = run(ADAPTERS[kind], answering(429, headers={"Retry-After": when}), ["SKU-A"])
    assert [type(error) for error in answer.errors] == [RateLimited]
    retry_after = answer.errors[0].retry_after
    assert retry_after is not None
    assert 25.0 < retry_after <= 30.0
    assert answer.unknown_skus == {"SKU-A"}
    assert answer.missing_skus == frozenset()


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_404_means_missing_not_an_outage(kind: str) -> None:
    answer, requests = run(
        ADAPTERS[kind], answering(404, b'{"error": "not found"}'), ["SKU-A", "SKU-B"]
    )
    assert answer.records == ()
    assert answer.unknown_skus == BOTH
    assert answer.missing_skus == BOTH
    assert answer.errors == ()
    assert len(requests) == REQUESTS_FOR_TWO_SKUS[kind]


_BAD_BODIES = [
    pytest.param(b"<html>hello</html>", id="html"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"data": [', id="truncated-json"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'{"unexpected": true}', id="object-of-the-wrong-shape"),
    pytest.param(b'{"data": "x", "products": 3, "variants": {}, "on_hand": 4}', id="wrong-types"),
]


@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize("body", _BAD_BODIES)
def test_bad_payload(kind: str, body: bytes) -> None:
    answer, requests = run(ADAPTERS[kind], answering(200, body), ["SKU-A", "SKU-B"])
    assert answer.records == ()
    assert answer.unknown_skus == BOTH
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [BadPayload] * REQUESTS_FOR_TWO_SKUS[kind]
    assert len(requests) == REQUESTS_FOR_TWO_SKUS[kind]


_TRANSPORT_FAILURES = [
    pytest.param(httpx.ReadTimeout("timed out"), UpstreamTimeout, id="read-timeout"),
    pytest.param(httpx.ConnectTimeout("timed out"), UpstreamTimeout, id="connect-timeout"),
    pytest.param(httpx.PoolTimeout("timed out"), UpstreamTimeout, id="pool-timeout"),
    pytest.param(httpx.ConnectError("refused"), ConnectionFailed, id="connect-error"),
    pytest.param(httpx.ReadError("reset"), ConnectionFailed, id="read-error"),
    pytest.param(httpx.RemoteProtocolError("closed"), ConnectionFailed, id="protocol-error"),
    pytest.param(httpx.DecodingError("bad gzip"), BadPayload, id="decoding-error"),
]


@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize(("exc", "error_class"), _TRANSPORT_FAILURES)
def test_transport_failure_in_process(
    kind: str, exc: Exception, error_class: type[SourceError]
) -> None:
    answer, _ = run(ADAPTERS[kind], raising(exc), ["SKU-A", "SKU-B"])
    assert answer.records == ()
    assert answer.unknown_skus == BOTH
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [error_class] * REQUESTS_FOR_TWO_SKUS[kind]


@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize("base_url", ["http://[::1", "not an address", "ftp://upstream.test"])
def test_an_address_that_cannot_be_asked_is_rejected_not_raised(kind: str, base_url: str) -> None:
    """Each fails before any connection is tried, so a real client touches no network here."""

    async def fetch() -> SourceAnswer:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await ADAPTERS[kind](client, base_url=base_url).fetch(["SKU-A"])

    answer = asyncio.run(fetch())
    assert answer.unknown_skus == {"SKU-A"}
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [RequestRejected]


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_error_messages_carry_the_upstream_words_never_the_token(kind: str) -> None:
    body = b'{"error": "token s3cret-token is not valid\\n for this store"}'
    answer, _ = run(ADAPTERS[kind], answering(401, body), ["SKU-A"])
    (error,) = answer.errors
    assert type(error) is NotAuthorised
    assert error.message.endswith(": token *** is not valid for this store")
    assert error.message.startswith("HTTP 401 from /")
    assert TOKEN not in str(error)


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_long_error_text_is_cut_short(kind: str) -> None:
    answer, _ = run(ADAPTERS[kind], answering(502, b"x" * 5000), ["SKU-A"])
    (error,) = answer.errors
    assert type(error) is UpstreamUnavailable
    assert error.message.endswith("x" * 199 + "…")
    assert len(error.message) < 300


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_skus_without_an_upstream_id_are_not_carried(kind: str) -> None:
    answer, requests = run(ADAPTERS[kind], answering(500), ["NOT-MAPPED", "ALSO-NOT"])
    assert answer == SourceAnswer(records=())
    assert requests == []


_CLASSES: dict[str, Callable[..., Source]] = {
    "dr-levels": DigitalRiverLevels,
    "dr-shopper": DigitalRiverShopper,
    "shoplazza": Shoplazza,
    "catalog": CatalogApi,
}
_ONE_SKU: dict[str, dict[str, Any]] = {
    "dr-levels": {"items": {"SKU-A": "item-a"}, "locations": {"wh-1": "dub-dc"}},
    "dr-shopper": {"items": {"SKU-A": "1001"}, "location": "dub-dc"},
    "shoplazza": {"items": {"SKU-A": ("p", "v")}, "locations": {"1": "dub-dc"}},
    "catalog": {"items": {"SKU-A": "item_a"}, "location": "dub-dc"},
}


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_no_token_no_auth_header(kind: str) -> None:
    def build(client: httpx.AsyncClient) -> Source:
        return _CLASSES[kind](kind, client, base_url=BASE, token=None, **_ONE_SKU[kind])

    _, requests = run(build, answering(503), ["SKU-A"])
    assert len(requests) == 1
    assert "authorization" not in requests[0].headers
    assert "access-token" not in requests[0].headers
    assert requests[0].headers["accept"] == "application/json"


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_name_and_locations(kind: str) -> None:
    async def build() -> Source:
        async with httpx.AsyncClient() as client:
            return ADAPTERS[kind](client)

    source = asyncio.run(build())
    assert source.name == kind
    assert source.locations == frozenset({"dub-dc"})


# -- transport failures against a real server on 127.0.0.1 -------------------------------------

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(serve: Serve) -> AsyncIterator[int]:
    """A server on 127.0.0.1 for the duration of the block; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def unused_port() -> int:
    """A port nothing listens on: bound, read, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def never_answers(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def _half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n"
        b'{"data": [{"locationId": "wh-1", "inventoryItemId": "item-a", "avail'
    )
    await writer.drain()


async def half_a_body_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _half_a_body(reader, writer)


async def half_a_body_then_reset(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _half_a_body(reader, writer)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def fetch_from_real_server(
    kind: str, serve: Serve | None, timeout: float
) -> tuple[SourceAnswer, float]:
    """Fetch SKU-A from a real server on 127.0.0.1 (or from a port nothing listens on)."""

    async def fetch(port: int) -> tuple[SourceAnswer, float]:
        async with httpx.AsyncClient(trust_env=False) as client:
            source = ADAPTERS[kind](client, base_url=f"http://127.0.0.1:{port}", timeout=timeout)
            started = time.monotonic()
            answer = await source.fetch(["SKU-A"])
            return answer, time.monotonic() - started

    async def main() -> tuple[SourceAnswer, float]:
        if serve is None:
            return await fetch(unused_port())
        async with serving(serve) as port:
            return await fetch(port)

    return asyncio.run(asyncio.wait_for(main(), 5.0))


_REAL_SERVER_CASES = [
    pytest.param(None, ConnectionFailed, id="connection-refused"),
    pytest.param(never_answers, UpstreamTimeout, id="accepts-and-never-answers"),
    pytest.param(half_a_body_then_close, ConnectionFailed, id="half-a-body-then-close"),
    pytest.param(half_a_body_then_reset, ConnectionFailed, id="half-a-body-then-reset"),
]


@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize(("serve", "error_class"), _REAL_SERVER_CASES)
def test_transport_failure_against_a_real_server(
    kind: str, serve: Serve | None, error_class: type[SourceError]
) -> None:
    answer, elapsed = fetch_from_real_server(kind, serve, timeout=0.2)
    assert answer.records == ()
    assert answer.unknown_skus == {"SKU-A"}
    assert answer.missing_skus == frozenset()
    assert [type(error) for error in answer.errors] == [error_class]
    assert elapsed < 0.5
    if error_class is UpstreamTimeout:
        assert elapsed >= 0.19
