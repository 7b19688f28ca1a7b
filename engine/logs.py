"""Structured logs: one JSON object per line, a request id on every line, no secrets.

Each request gets an id: the caller's `X-Request-ID` when it is a sane value (bounded length,
a charset that cannot break a log line or a header), else a new one made from a per-process
random prefix and a counter (cheaper than a UUID, unique enough to find one request's lines).
It lives in a context variable, so every line logged while serving the request carries it, and
so does every task started meanwhile (a cache flight opened by the cart inherits it): the
upstream requests send it on (`with_request_id`), and their failures are logged with it.

A `RedactionFilter` on the handler scrubs what looks like a credential (`Bearer ...`,
`authorization: ...`, `token=...`, `x-api-key` and the like) from messages, extras and
exception text before any formatter sees them: the adapters already keep tokens out of their
messages; this catches what a future line forgets.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Final, TextIO

import msgspec

__all__ = (
    "MAX_REQUEST_ID_LENGTH",
    "REDACTED",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RedactionFilter",
    "RequestIdFilter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "new_request_id",
    "redact",
    "request_id",
    "request_id_for",
    "valid_request_id",
    "with_request_id",
)

REQUEST_ID_HEADER: Final = b"x-request-id"
"""As ASGI servers give header names: lower case."""
UPSTREAM_HEADER: Final = "x-request-id"
MAX_REQUEST_ID_LENGTH: Final = 128
_VALID_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_REQUEST_ID_LENGTH)
"""What is taken from a caller: enough for UUIDs, trace ids and ULIDs; nothing that could split
a log line, inject a header or carry markup."""

request_id: ContextVar[bytes | None] = ContextVar("request_id", default=None)
"""The id of the request being served (None outside of one), as the `x-request-id` header
carries it: ASCII bytes, decoded only when a line is logged or an upstream call is made."""


_BATCH: Final = 256


class _Ids:
    """Ids made ahead, `_BATCH` at a time: this process's random prefix (unique across workers
    and restarts) and a counter. A request then takes one with a `list.pop()`: formatting one
    per request costs more, and it is paid on every request."""

    __slots__ = ("count", "lock", "pool", "prefix")

    def __init__(self) -> None:
        self.pool: list[bytes] = []
        self.lock = threading.Lock()
        self.prefix = b""
        self.count = 0
        self.reseed()

    def reseed(self) -> None:
        self.pool.clear()
        self.prefix = secrets.token_hex(6).encode() + b"-"
        self.count = 0
        self.lock = threading.Lock()

    def take(self) -> bytes:
        """The next id, making a batch first when none is left."""
        with self.lock:  # two threads refilling at once would make the same ids
            if not self.pool:
                start = self.count
                self.count = start + _BATCH
                prefix = self.prefix
                # Newest first: `pop()` takes from the end, so ids go out in order. Built,
                # then added at once: a `pop()` elsewhere never sees half a batch.
                batch = [b"%s%x" % (prefix, n) for n in range(start + _BATCH, start, -1)]
                self.pool.extend(batch)
            return self.pool.pop()


_ids = _Ids()
_pool = _ids.pool
if hasattr(os, "register_at_fork"):
    # A forked worker must not hand out its parent's ids.
    os.register_at_fork(after_in_child=_ids.reseed)


def new_request_id() -> str:
    """A fresh id: this process's random prefix and a counter, e.g. `3f9a1c2b7d4e-1a`."""
    return request_id_for(()).decode("ascii")


def valid_request_id(value: bytes) -> bool:
    """Whether a caller's `X-Request-ID` may be used as given."""
    return _VALID_ID.fullmatch(value) is not None


def request_id_for(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request's id from its ASGI headers (the first `x-request-id`, when valid), else a new
    one. Run on every request: kept to a scan of the headers and a `pop()`."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _VALID_ID.fullmatch(value) is not None:
                return value
            break
    try:
        return _pool.pop()
    except IndexError:
        return _ids.take()


def current_request_id() -> str | None:
    current = request_id.get()
    return None if current is None else current.decode("ascii")


def with_request_id(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers` plus `x-request-id` when a request is being served, for an upstream call:
    the upstream's logs then name the request that caused the call."""
    current = request_id.get()
    if current is None:
        return headers
    return {**headers, UPSTREAM_HEADER: current.decode("ascii")}


# --- redaction ------------------------------------------------------------------------------

REDACTED: Final = "[redacted]"
_CREDENTIAL_NAMES: Final = (
    r"proxy-authorization|authorization|x-api-key|api[-_]?key|access[-_]?token|"
    r"refresh[-_]?token|id[-_]?token|client[-_]?secret|token|secret|password|passwd|"
    r"set-cookie|cookie"
)
_NAMED_SECRET: Final = re.compile(
    rf"""(?ix)
    (\b(?:{_CREDENTIAL_NAMES})\b["']?\s*[:=]\s*)   # the name, a quote maybe, `:` or `=`
    (?:"[^"]*"|'[^']*'|(?:(?:bearer|basic|token)\s+)?[^\s"',;&)}}\]]+)
    """
)
_SCHEME_SECRET: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{4,}=*")
_SECRET_KEY: Final = re.compile(rf"(?i)^(?:{_CREDENTIAL_NAMES})$|(?:token|secret|password)$")


def redact(text: str) -> str:
    """`text` with credential-looking values replaced by `[redacted]` (the names are kept, so a
    line still says what was there)."""
    text = _NAMED_SECRET.sub(rf"\1{REDACTED}", text)
    return _SCHEME_SECRET.sub(rf"\1 {REDACTED}", text)


def _redact_value(key: str, value: Any, depth: int = 0) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_redact_value("", v, depth + 1) for v in value]
    return value


_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))
) | {"message", "asctime", "taskName", "request_id", "color_message"}
"""LogRecord attributes that are not `extra` fields (`color_message`: uvicorn's ANSI copy of
its message)."""


def _extras(record: logging.LogRecord) -> Iterable[str]:
    return [k for k in vars(record) if k not in _RECORD_FIELDS and not k.startswith("_")]


class RedactionFilter(logging.Filter):
    """Scrub credentials from a record's message, `extra` fields and exception text, in place,
    so every formatter (and any other handler after this one) sees the scrubbed record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format is the formatter's to report
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key in _extras(record):
            setattr(record, key, _redact_value(key, getattr(record, key)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestIdFilter(logging.Filter):
    """Stamp the current request id on the record where it is logged (the formatter may run
    elsewhere, a queue handler's thread say, where the context is not the request's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            setattr(record, "request_id", current_request_id())  # noqa: B010 - not a LogRecord field
        return True


# --- formatting -----------------------------------------------------------------------------


def _iso_utc(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: `2026-11-22T12:00:00.123Z`."""
    seconds, millis = divmod(round(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _as_text(value: Any) -> str:
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time`, `level`, `logger`, `message`, then
    `request_id` when there is one, `exception` and `stack` when any, then the `extra` fields
    (which cannot overwrite those). A value JSON cannot hold is written as its `str`."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder(enc_hook=_as_text)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = getattr(record, "request_id", None) or current_request_id()
        if current is not None:
            line["request_id"] = current
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key in _extras(record):
            line.setdefault(key, getattr(record, key))
        try:
            return self._encoder.encode(line).decode()
        except (TypeError, ValueError, OverflowError):
            # A key JSON cannot hold (a non-string dict key deep in an extra, say).
            return self._encoder.encode({k: str(v) for k, v in line.items()}).decode()


class TextFormatter(logging.Formatter):
    """For people at a terminal: `time level logger [request id]: message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(_request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        current = getattr(record, "request_id", None) or current_request_id()
        setattr(record, "_request_tag", f" [{current}]" if current else "")  # noqa: B010
        return super().format(record)


_HANDED_OVER: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "litestar")
"""Loggers that libraries give handlers of their own: emptied, so they reach ours."""


def _level(level: int | str) -> int | str:
    if isinstance(level, str):
        name = level.strip().upper()
        return 5 if name == "TRACE" else name  # uvicorn's extra level
    return level


def configure_logging(
    level: int | str = logging.INFO, *, json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line, uvicorn's and Litestar's included, through one handler on the root
    logger: JSON lines (`json`), or text for people; credentials redacted, the request id
    stamped. Replaces the root logger's handlers, so calling it again does not double lines.

    Run uvicorn with `log_config=None`, or it installs its own handlers over these."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level))
    for name in _HANDED_OVER:
        logger = logging.getLogger(name)
        for old in logger.handlers[:]:
            logger.removeHandler(old)
        logger.propagate = True
    return handler
