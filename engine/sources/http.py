"""One GET against an upstream inventory API, every failure turned into a typed `SourceError`.

The adapters differ in paths and payloads, not in how HTTP fails: a status, a timeout, a dropped
connection or a body that is not the documented shape all become the same few error classes here,
so the circuit breakers above can count them and no adapter can let one escape into a decision.
A 404 is not an error: it tells the adapter the upstream does not know the item, and what that
means is the adapter's to say.

Error messages carry a short excerpt of what the upstream said (both `{"errors": [...]}` and
`{"error": "..."}` shapes, and the like), cleaned of control characters and of the token.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from engine.availability.record import StockRecord
from engine.availability.source import (
    BadPayload,
    ConnectionFailed,
    NotAuthorised,
    RateLimited,
    RequestRejected,
    SourceAnswer,
    SourceError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from engine.logs import with_request_id

__all__ = (
    "AnswerBuilder",
    "NotFound",
    "Rejects",
    "bearer_headers",
    "bounded",
    "get_json",
    "group_skus",
    "parse_retry_after",
    "path_segment",
    "query_string",
    "upstream_messages",
    "utc",
)

T = TypeVar("T")
K = TypeVar("K")

Rejects = Callable[[int, Sequence[str]], bool]
"""Says, from a status and the upstream's error messages, that a failure is about what was asked
(`RequestRejected`) although the status would say outage."""

EXCERPT_LENGTH = 200
_MAX_MESSAGES = 5
_MESSAGE_KEYS = ("errors", "error", "message", "description", "detail", "title", "code")
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]+")
_SPACES = re.compile(r"\s+")


class NotFound(enum.Enum):
    """The upstream answered 404: it does not know what was asked."""

    NOT_FOUND = "not found"


def bearer_headers(token: str | None) -> dict[str, str]:
    """`accept: application/json`, and `Authorization: Bearer` when there is a token."""
    headers = {"accept": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


def path_segment(value: str) -> str:
    """An upstream id made safe as one path segment."""
    return quote(value, safe="")


def query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Percent-encoded query text that keeps `[]` in names and `,` in values as written, the way
    the upstream documentation spells them (`include[]=on_hand`, `productId=1,2`)."""
    return "&".join(f"{quote(key, safe='[]')}={quote(value, safe=',')}" for key, value in pairs)


def group_skus(skus: Iterable[str], mapping: Mapping[str, K]) -> dict[K, list[str]]:
    """Upstream id -> the SKUs asked for that it stands for, in a stable order. SKUs without an
    upstream id are left out: this source does not carry them."""
    grouped: dict[K, list[str]] = {}
    for sku in sorted(set(skus)):
        upstream = mapping.get(sku)
        if upstream is not None:
            grouped.setdefault(upstream, []).append(sku)
    return grouped


def utc(moment: datetime | None) -> datetime | None:
    """A naive timestamp from an upstream is taken as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date (a date in the
    past is 0). None when absent or unparseable."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _collect(value: Any, found: list[str], depth: int) -> None:
    if len(found) >= _MAX_MESSAGES or depth > 5:
        return
    if isinstance(value, str):
        if value.strip():
            found.append(value)
    elif isinstance(value, list):
        for element in value:
            _collect(element, found, depth + 1)
    elif isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            if key in value:
                _collect(value[key], found, depth + 1)
                if found and key != "errors":
                    return


def upstream_messages(body: bytes) -> list[str]:
    """The error messages of a JSON error body, in any of the usual shapes; [] when none."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    found: list[str] = []
    if isinstance(decoded, dict | list):
        _collect(decoded, found, 0)
    return found


def _clean(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    text = _UNPRINTABLE.sub("?", _SPACES.sub(" ", text)).strip()
    if len(text) > EXCERPT_LENGTH:
        text = text[: EXCERPT_LENGTH - 1] + "…"
    return text


def _excerpt(response: httpx.Response, messages: Sequence[str], secret: str | None) -> str:
    return _clean("; ".join(messages) if messages else response.text, secret)


def _status_error(
    source: str, response: httpx.Response, path: str, secret: str | None, rejects: Rejects | None
) -> SourceError:
    status = response.status_code
    messages = upstream_messages(response.content)
    excerpt = _excerpt(response, messages, secret)
    message = f"HTTP {status} from {path}" + (f": {excerpt}" if excerpt else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in (401, 403):
        return NotAuthorised(source, message, status=status)
    if status == 429:
        return RateLimited(source, message, status=status, retry_after=retry_after)
    if rejects is not None and rejects(status, messages):
        return RequestRejected(source, message, status=status)
    if status == 408 or status >= 500:
        return UpstreamUnavailable(source, message, status=status, retry_after=retry_after)
    return RequestRejected(source, message, status=status)


async def get_json(
    client: httpx.AsyncClient,
    url: str,
    decoder: msgspec.json.Decoder[T],
    *,
    source: str,
    headers: Mapping[str, str],
    timeout: float,
    query: Sequence[tuple[str, str]] = (),
    secret: str | None = None,
    rejects: Rejects | None = None,
    deadline: float | None = None,
) -> T | NotFound:
    """GET `url` and decode a 2xx body with `decoder`; `NotFound.NOT_FOUND` on 404. Anything
    else raises the matching `SourceError` (named by `source`): 401/403 `NotAuthorised`, 429
    `RateLimited`, 408 and 5xx `UpstreamUnavailable` (both with `retry_after` when the upstream
    said), other statuses and an address that cannot be asked `RequestRejected`, no complete
    answer within `timeout` seconds `UpstreamTimeout`, a failed connection `ConnectionFailed`,
    a body that is not JSON or not the shape `BadPayload`. `secret` is scrubbed from every
    message. `deadline` (a `time.monotonic()` instant) shortens `timeout` to the time left, so
    the several requests of one fetch never outlast the attempt that asked for them."""
    path = url
    target = f"{url}?{query_string(query)}" if query else url
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise UpstreamTimeout(source, f"no time left to ask {url} before the deadline")
    try:
        path = httpx.URL(url).path
        async with asyncio.timeout(timeout):
            response = await client.get(
                target, headers=with_request_id(headers), timeout=httpx.Timeout(timeout)
            )
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise UpstreamTimeout(
            source, f"no complete answer from {path} within {timeout:.3g} s"
        ) from exc
    except httpx.DecodingError as exc:
        raise BadPayload(
            source, f"undecodable body from {path}: {_clean(str(exc), secret)}"
        ) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise RequestRejected(
            source, f"not an address to ask ({path}): {_clean(str(exc), secret)}"
        ) from exc
    except httpx.HTTPError as exc:
        detail = _clean(str(exc), secret)
        raise ConnectionFailed(
            source, f"{type(exc).__name__} on {path}" + (f": {detail}" if detail else "")
        ) from exc
    if response.status_code == 404:
        return NotFound.NOT_FOUND
    if not 200 <= response.status_code < 300:
        raise _status_error(source, response, path, secret, rejects)
    try:
        return decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        said = upstream_messages(response.content)
        upstream = f" (upstream said: {_clean('; '.join(said), secret)})" if said else ""
        raise BadPayload(
            source,
            f"HTTP {response.status_code} from {path}: not the documented shape: "
            f"{_clean(str(exc), secret)}{upstream}",
            status=response.status_code,
        ) from exc


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run the jobs concurrently, at most `limit` at a time."""
    gate = asyncio.Semaphore(max(1, limit))

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


class AnswerBuilder:
    """Collects what one `fetch` learnt: records, SKUs it could not answer for and why."""

    def __init__(self) -> None:
        self.records: list[StockRecord] = []
        self.unknown: set[str] = set()
        self.missing: set[str] = set()
        self.errors: list[SourceError] = []

    def failed(self, skus: Collection[str], error: SourceError) -> None:
        self.unknown.update(skus)
        self.errors.append(error)

    def not_known(self, skus: Collection[str]) -> None:
        """The upstream says it does not know these: unknown, and reported as missing."""
        self.unknown.update(skus)
        self.missing.update(skus)

    def answer(self) -> SourceAnswer:
        return SourceAnswer(
            records=tuple(self.records),
            unknown_skus=frozenset(self.unknown),
            missing_skus=frozenset(self.missing),
            errors=tuple(self.errors),
        )
