"""Faults and request counters, per simulated API.

A fault is applied in front of the API's own app (an ASGI wrapper), so it covers every path,
known or not, and the app itself stays a faithful copy of the documentation. Counters are kept
in the same place: what an adapter sent is counted before any fault decides what it gets back.
State is read on the server's event loop and written from tests on another thread: a lock
guards it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final

from msgspec import Struct

from engine.simulator.data import APIS, Api

__all__ = (
    "MALFORMED_BODY",
    "ApiCounters",
    "Board",
    "ErrorBody",
    "Fault",
    "FaultInjector",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

ErrorBody = Callable[[int, str], bytes]
"""(status, message) -> a JSON error body in the API's own style."""

MAX_LATENCY_MS: Final = 60_000
MALFORMED_BODY: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>"
    b"<body><h1>We will be back shortly</h1></body></html>\n"
)
"""Served with status 200 and `content-type: application/json`, as a misconfigured proxy does."""


class Fault(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """How one API misbehaves; the default (`Fault()`) is no fault.

    `latency_ms` combines with any one answer: `status` (with `retry_after` for 429 and 503),
    `malformed`, `wrong_shape` or `reset`. `refuse` stands alone: the port stops listening."""

    latency_ms: int = 0
    """Added before answering."""
    status: int | None = None
    """Answer every request with this status (400-599) and a JSON error body."""
    retry_after: int | None = None
    """Seconds, sent as `Retry-After` with `status` 429 or 503."""
    malformed: bool = False
    """200 with a body that is not JSON."""
    wrong_shape: bool = False
    """200 with valid JSON that is not the documented shape."""
    reset: bool = False
    """The real status line, headers and half of the body, then the connection is closed."""
    refuse: bool = False
    """The port refuses connections (ECONNREFUSED) until the fault is cleared."""

    def __post_init__(self) -> None:
        # Checked here rather than with `Meta`, so that a `Fault(...)` built in Python is
        # held to the same rules as one decoded from a request body.
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"`latency_ms` must be 0 to {MAX_LATENCY_MS}")
        if self.status is not None:
            if not 400 <= self.status <= 599:
                raise ValueError("`status` must be 400 to 599")
            try:
                HTTPStatus(self.status)
            except ValueError:
                raise ValueError(f"`status` {self.status} is not a known HTTP status") from None
        if self.retry_after is not None:
            if self.status not in (429, 503):
                raise ValueError("`retry_after` goes with `status` 429 or 503")
            if self.retry_after < 0:
                raise ValueError("`retry_after` must be 0 or more seconds")
        answers = [
            name
            for name, on in (
                ("status", self.status is not None),
                ("malformed", self.malformed),
                ("wrong_shape", self.wrong_shape),
                ("reset", self.reset),
                ("refuse", self.refuse),
            )
            if on
        ]
        if len(answers) > 1:
            raise ValueError(f"choose one of {', '.join(answers)}")
        if self.refuse and self.latency_ms:
            raise ValueError("`refuse` takes no `latency_ms`: nothing is answered")


NO_FAULT: Final = Fault()


class ApiCounters(Struct, frozen=True):
    """Requests one API has received since the last reset: in all, and per path."""

    total: int = 0
    paths: dict[str, int] = {}


class Board:
    """The faults and counters of every API; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = dict.fromkeys(APIS, NO_FAULT)
        self._paths: dict[str, dict[str, int]] = {api: {} for api in APIS}

    def fault(self, api: Api) -> Fault:
        with self._lock:
            return self._faults[api]

    def faults(self) -> dict[str, Fault]:
        with self._lock:
            return dict(self._faults)

    def set_fault(self, api: Api, fault: Fault) -> None:
        with self._lock:
            self._faults[api] = fault

    def count(self, api: Api, path: str) -> None:
        with self._lock:
            paths = self._paths[api]
            paths[path] = paths.get(path, 0) + 1

    def counters(self) -> dict[str, ApiCounters]:
        with self._lock:
            return {
                api: ApiCounters(total=sum(paths.values()), paths=dict(paths))
                for api, paths in self._paths.items()
            }

    def reset_counters(self) -> None:
        with self._lock:
            for paths in self._paths.values():
                paths.clear()


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class FaultInjector:
    """ASGI wrapper: counts each request, then answers it as the API's fault says."""

    def __init__(
        self, api: Api, app: ASGIApp, board: Board, error_body: ErrorBody, wrong_shape: bytes
    ) -> None:
        self._api = api
        self._app = app
        self._board = board
        self._error_body = error_body
        self._wrong_shape = wrong_shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self._board.count(self._api, scope["path"])
        fault = self._board.fault(self._api)
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            headers = []
            if fault.retry_after is not None:
                headers.append((b"retry-after", str(fault.retry_after).encode()))
            message = f"{HTTPStatus(fault.status).phrase} (simulated fault)"
            await _answer(send, fault.status, self._error_body(fault.status, message), headers)
        elif fault.malformed:
            await _answer(send, 200, MALFORMED_BODY)
        elif fault.wrong_shape:
            await _answer(send, 200, self._wrong_shape)
        elif fault.reset:
            await self._cut_short(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def _cut_short(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's real status and headers, half of its body, then return without finishing:
        the server closes the connection with the body incomplete."""
        started: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, keep)
        body = b"".join(chunks)
        declared = max(len(body), 2)
        headers = [
            (name, value)
            for name, value in started.get("headers", [])
            if name.lower() != b"content-length"
        ]
        headers.append((b"content-length", str(declared).encode()))
        await send(
            {
                "type": "http.response.start",
                "status": started.get("status", 200),
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": body[: declared // 2], "more_body": True})
