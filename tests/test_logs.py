"""Structured logs: the JSON line's shape, request ids, redaction, and routing uvicorn's lines.

`configure_logging` changes the process's root logger: every test that calls it restores the
loggers it touched (the `restore_logging` fixture), so other tests keep pytest's capture.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from engine.logs import (
    MAX_REQUEST_ID_LENGTH,
    JsonFormatter,
    RedactionFilter,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
    current_request_id,
    new_request_id,
    redact,
    request_id,
    request_id_for,
    valid_request_id,
    with_request_id,
)

GENERATED = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")
CREATED = 1795348800.123  # 2026-11-22T12:00:00.123Z
TOUCHED = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "litestar")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in (logging.getLogger(name) for name in TOUCHED)
    ]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def record(
    message: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
    level: int = logging.WARNING,
) -> logging.LogRecord:
    made = logging.getLogger("engine.test").makeRecord(
        "engine.test", level, "file.py", 1, message, args, exc_info, extra=extra
    )
    made.created = CREATED
    made.msecs = 123.0
    return made


def raised(error: Exception) -> Any:
    """`sys.exc_info()` for `error`, raised and caught."""

    def throw() -> None:
        raise error

    try:
        throw()
    except Exception:
        return sys.exc_info()


def as_json(formatted: str) -> dict[str, Any]:
    assert "\n" not in formatted
    decoded: dict[str, Any] = json.loads(formatted)
    return decoded


# --- the JSON line ----------------------------------------------------------------------------


def test_json_line_has_time_level_logger_message() -> None:
    assert as_json(JsonFormatter().format(record())) == {
        "time": "2026-11-22T12:00:00.123Z",
        "level": "WARNING",
        "logger": "engine.test",
        "message": "hello world",
    }


def test_json_line_carries_the_request_id_extras_and_the_exception() -> None:
    exc_info = raised(ValueError("boom\nsecond line"))
    made = record(
        extra={"source": "dr-levels", "skus": ("A", "B"), "level": "spoofed", "odd": object()},
        exc_info=exc_info,
    )
    token = request_id.set(b"req-1")
    try:
        line = as_json(JsonFormatter().format(made))
    finally:
        request_id.reset(token)
    exception = line.pop("exception")
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("ValueError: boom\nsecond line")
    assert line.pop("odd").startswith("<object object at ")
    assert line == {
        "time": "2026-11-22T12:00:00.123Z",
        "level": "WARNING",  # an extra cannot overwrite what the line is
        "logger": "engine.test",
        "message": "hello world",
        "request_id": "req-1",
        "source": "dr-levels",
        "skus": ["A", "B"],
    }


def test_the_request_id_stamped_where_logged_wins_over_the_formatters_context() -> None:
    made = record()
    token = request_id.set(b"where-logged")
    try:
        RequestIdFilter().filter(made)
    finally:
        request_id.reset(token)
    assert as_json(JsonFormatter().format(made))["request_id"] == "where-logged"
    assert "request_id" not in as_json(JsonFormatter().format(record()))


def test_text_lines_for_people() -> None:
    formatter = TextFormatter()
    made = record()
    token = request_id.set(b"req-7")
    try:
        with_id = formatter.format(made)
    finally:
        request_id.reset(token)
    assert with_id.endswith(" WARNING engine.test [req-7]: hello world")
    assert formatter.format(record()).endswith(" WARNING engine.test: hello world")


# --- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: [redacted]"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.x to dr", "sent Bearer [redacted] to dr"),
        ("basic dXNlcjpwYXNz", "basic [redacted]"),
        ("GET /levels?token=abc123&sku=A", "GET /levels?token=[redacted]&sku=A"),
        ("access_token=AAA refresh_token=BBB", "access_token=[redacted] refresh_token=[redacted]"),
        ("{'x-api-key': 'k 123', 'accept': 'json'}", "{'x-api-key': [redacted], 'accept': 'json'}"),
        ('{"authorization": "Bearer x y"}', '{"authorization": [redacted]}'),
        ("X-API-Key=abc; password=hunter2", "X-API-Key=[redacted]; password=[redacted]"),
        ("no token configured for dr-levels", "no token configured for dr-levels"),
        ("tokens: 5, bearer of bad news", "tokens: 5, bearer of bad news"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_messages_extras_and_exceptions() -> None:
    exc_info = raised(RuntimeError("upstream said: invalid token=s3cr3t"))
    made = record(
        "calling %s with %s",
        ("dr-levels", {"authorization": "Bearer s3cr3t"}),
        extra={
            "headers": {"Authorization": "Bearer s3cr3t", "accept": "application/json"},
            "api_token": "s3cr3t",
            "x-api-key": "s3cr3t",
            "url": "https://x.test/levels?token=s3cr3t",
            "calls": [{"secret": "s3cr3t"}],
            "count": 3,
        },
        exc_info=exc_info,
    )
    assert RedactionFilter().filter(made) is True
    line = as_json(JsonFormatter().format(made))
    assert "s3cr3t" not in json.dumps(line)
    assert line["message"] == "calling dr-levels with {'authorization': [redacted]}"
    assert line["headers"] == {"Authorization": "[redacted]", "accept": "application/json"}
    assert line["api_token"] == line["x-api-key"] == "[redacted]"
    assert line["url"] == "https://x.test/levels?token=[redacted]"
    assert line["calls"] == [{"secret": "[redacted]"}]
    assert line["count"] == 3
    assert line["exception"].endswith("RuntimeError: upstream said: invalid token=[redacted]")


def test_the_filter_leaves_a_clean_record_alone() -> None:
    made = record()
    RedactionFilter().filter(made)
    assert (made.msg, made.args) == ("hello %s", ("world",))


# --- request ids ------------------------------------------------------------------------------


def test_a_valid_incoming_id_is_kept() -> None:
    headers = [(b"host", b"x"), (b"x-request-id", b"3f2a-uuid.like:42_x"), (b"x-request-id", b"b")]
    assert request_id_for(headers) == b"3f2a-uuid.like:42_x"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"has space",
        b"semi;colon",
        b"new\nline",
        b"\xc3\xa9t\xc3\xa9",
        b"<script>",
        b"a" * (MAX_REQUEST_ID_LENGTH + 1),
    ],
)
def test_an_invalid_incoming_id_is_replaced(bad: bytes) -> None:
    assert not valid_request_id(bad)
    assert GENERATED.fullmatch(request_id_for([(b"x-request-id", bad)]).decode())


def test_the_longest_id_taken() -> None:
    longest = b"a" * MAX_REQUEST_ID_LENGTH
    assert request_id_for([(b"x-request-id", longest)]) == longest


def test_new_ids_are_unique_in_order_and_share_the_process_prefix() -> None:
    made = [request_id_for([(b"accept", b"*/*")]).decode() for _ in range(1000)] + [
        new_request_id() for _ in range(1000)
    ]
    assert all(GENERATED.fullmatch(m) for m in made)
    assert len({m.split("-")[0] for m in made}) == 1
    counts = [int(m.split("-")[1], 16) for m in made]
    assert counts == list(range(counts[0], counts[0] + 2000))  # across batches of ids made ahead


def test_ids_made_from_threads_are_unique() -> None:
    made: list[str] = []

    def make() -> None:
        made.extend(new_request_id() for _ in range(2000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_worker_makes_ids_of_its_own() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns of forking a process that has threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert GENERATED.fullmatch(child)
    assert child.split("-")[0] != parent.split("-")[0]


# --- the id sent upstream ---------------------------------------------------------------------


def test_with_request_id_outside_a_request_adds_nothing() -> None:
    headers = {"accept": "application/json"}
    assert current_request_id() is None
    assert with_request_id(headers) is headers


def test_with_request_id_adds_the_header_without_changing_the_given_one() -> None:
    headers = {"accept": "application/json"}
    token = request_id.set(b"req-9")
    try:
        sent = with_request_id(headers)
    finally:
        request_id.reset(token)
    assert sent == {"accept": "application/json", "x-request-id": "req-9"}
    assert headers == {"accept": "application/json"}


def test_a_task_started_during_a_request_sends_its_id_upstream() -> None:
    """As a cache flight does: the task a cart starts inherits the cart's context, so the
    upstream call it makes, after the cart's request has moved on, still names it."""
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(200, json={})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:

            async def flight() -> None:
                await asyncio.sleep(0)
                await client.get("http://up.test/levels", headers=with_request_id({"a": "b"}))

            token = request_id.set(b"cart-1")
            task = asyncio.get_running_loop().create_task(flight())
            request_id.reset(token)  # the request is over; the flight goes on
            await task
            await client.get("http://up.test/levels", headers=with_request_id({"a": "b"}))

    asyncio.run(run())
    assert seen == ["cart-1", None]


# --- configure_logging ------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_routes_everything_through_one_json_handler() -> None:
    stream = io.StringIO()
    logging.getLogger("uvicorn").addHandler(logging.StreamHandler(io.StringIO()))
    logging.getLogger("uvicorn").propagate = False
    configure_logging("info", stream=stream)
    configure_logging("info", stream=stream)  # again: still one handler
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "\x1b[1mStarted\x1b[0m"}
    )
    logging.getLogger("engine.x").debug("not at info")
    token = request_id.set(b"req-3")
    try:
        logging.getLogger("engine.x").warning("auth %s", "Bearer abcdef123")
    finally:
        request_id.reset(token)
    lines = [as_json(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        del line["time"]
    assert lines == [
        {"level": "INFO", "logger": "uvicorn.error", "message": "Started server process [42]"},
        {
            "level": "WARNING",
            "logger": "engine.x",
            "message": "auth Bearer [redacted]",
            "request_id": "req-3",
        },
    ]


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_without_a_log_config_keeps_the_handlers() -> None:
    handler = configure_logging("warning", json=False, stream=io.StringIO())
    uvicorn.Config(app=None, log_config=None, log_level="info")  # configures logging
    assert logging.getLogger().handlers == [handler]
    assert logging.getLogger("uvicorn").handlers == []
    assert logging.getLogger("uvicorn.error").propagate
    assert isinstance(handler.formatter, TextFormatter)
    assert logging.getLogger().level == logging.WARNING
