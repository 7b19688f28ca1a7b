"""Load test over HTTP: the engine's `POST /v1/allocations` beside a null endpoint of the same
framework, in one run, from a separate process on 127.0.0.1.

`python -m benchmarks.load [--duration S] [--connections N] [--rates F ...] [--json OUT]`
starts the upstream simulator, the service pointed at it (the demo's command line and
environment: the real adapters over HTTP, served from their cache once a warm-up has filled
it) and the null endpoint (`benchmarks.null_app`: Litestar, same server and settings, a fixed
answer the size of the engine's), then measures:

1. Maximum rate, closed loop: N connections each sending its next request as soon as the
   previous one is answered, against null, engine, null, engine (alternating cancels drift),
   with wrk when it is installed, else the built-in generator. The ratio engine/null is what
   the engine costs on top of the framework.
2. Fixed rate, open loop: requests scheduled at a constant rate (by default half of each
   endpoint's own maximum); latency is counted from the time a request was due, not from when
   it could be sent, so a stalled server shows in the percentiles instead of slowing the
   generator down (no coordinated omission). wrk has no fixed-rate mode, so this phase always
   uses the built-in generator.

The built-in generator is a lean HTTP/1.1 keep-alive client on asyncio protocols (prebuilt
request bytes, responses framed by Content-Length), so the measurement needs nothing but
Python. Its own cost per request is measured and reported, to show it is not the bottleneck.

On Linux with two CPUs or more, the services (one worker) are pinned to the first CPU and the
generator to the last, so "one core" means one core and the two never share one. Each run also
measures how much CPU other processes took meanwhile (column `others`); a disturbed run is
measured again (`--retries`), and what stays doubtful is said under the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import math
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Final

from benchmarks.null_app import BODY_FILE_VARIABLE, SERVERS

ROOT: Final = Path(__file__).resolve().parents[1]
CART: Final = Path("demo/carts/five-lines.json")
PATH: Final = "/v1/allocations"
HOST: Final = "127.0.0.1"
TARGET_RATIO: Final = 0.80
"""The engine should sustain at least this share of the null endpoint's requests/s."""
TARGET_P99_MS: Final = 5.0
"""...with p99 under this at half of its own maximum rate."""
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 5.0
WARM_REQUESTS: Final = 20
INTERFERENCE: Final = 0.10
"""Other processes busy for more than this share of a CPU during a run: it was disturbed."""


# --- the built-in generator --------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight (no pipelining)."""

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need = -1
        """Bytes of the response in flight (head and body), once its head is read."""
        self.status = 0
        self.busy = False
        self.due = 0.0
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a stream transport: TCP

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.need < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).lower()
                start = head.find(b"\ncontent-length:")
                if start < 0:
                    # Every server here frames a whole body by length; anything else is a fault.
                    self.driver.fail(self, "no content-length")
                    return
                stop = head.find(b"\r", start)
                self.need = end + 4 + int(head[start + 16 : stop if stop >= 0 else None])
                self.status = int(head[9:12])
            if len(buffer) < self.need:
                return
            del buffer[: self.need]
            self.need = -1
            self.driver.answered(self, self.status)
            if not buffer:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.driver.lost(self)


@dataclass
class Measured:
    """What one run measured; times in milliseconds."""

    endpoint: str
    mode: str
    """`closed` (as fast as answers come) or `open` (a fixed rate)."""
    tool: str
    connections: int
    duration_s: float
    target_rate: float | None
    sent: int
    ok: int
    rate: float
    """2xx answers per second of the run."""
    errors: dict[str, int]
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float] = field(default_factory=dict)
    """How late the generator got to requests after they were due (open loop), already
    included in the latency: the generator's own share of it."""
    generator_cpu_us: float | None = None
    """The generator's CPU time per request (closed loop): its ceiling is about 1e6 / this."""
    others_cpu: float | None = None
    """CPUs' worth of time other processes (not the services, not the generator) took during
    the run: above a few percent they competed with the measurement."""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentiles(samples: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/p99.9/max by nearest rank, in milliseconds for samples in seconds."""
    if not samples:
        return {}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * scale

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "p99.9": rank(0.999),
        "max": ordered[-1] * scale,
    }


class _Driver:
    """Sends prebuilt requests over a set of connections, closed or open loop.

    Everything runs in protocol callbacks: an answer immediately sends the next request on the
    same connection (closed loop) or the oldest request waiting for one (open loop). Requests
    due while every connection is busy wait in a queue bounded by `max_outstanding` (beyond it
    they are counted as `overload`), and their wait counts in their latency."""

    def __init__(
        self,
        port: int,
        request: bytes,
        *,
        connections: int,
        timeout: float,
        max_outstanding: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time
        self.port = port
        self.request = request
        self.connections = connections
        self.timeout = timeout
        self.max_outstanding = max_outstanding
        self.live: set[_Connection] = set()
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[float] = collections.deque()
        self.closed_loop = False
        self.sending = False
        self.recording = False
        self.running = True
        self.sent = 0
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await asyncio.gather(*(self._connect() for _ in range(self.connections)))
        if not self.live:
            raise ConnectionError(f"nothing answers on {HOST}:{self.port}")

    async def _connect(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), HOST, self.port)
        except OSError:
            self._error("connect")
            return
        self.live.add(conn)
        self._next(conn, self.clock())

    def _error(self, kind: str) -> None:
        if self.recording:
            self.errors[kind] += 1

    def _send(self, conn: _Connection, due: float) -> None:
        assert conn.transport is not None
        now = self.clock()
        conn.busy, conn.due, conn.sent = True, due, now
        if self.recording:
            self.sent += 1
        conn.transport.write(self.request)

    def _next(self, conn: _Connection, now: float) -> None:
        """Give an idle connection its next request, if there is one."""
        if self.closed_loop:
            if self.sending:
                self._send(conn, now)
                return
        else:
            while self.waiting:
                due = self.waiting.popleft()
                if now - due > self.timeout:
                    self._error("timeout")
                    continue
                self._send(conn, due)
                return
        self.idle.append(conn)

    def answered(self, conn: _Connection, status: int) -> None:
        now = self.clock()
        conn.busy = False
        if self.recording:
            if 200 <= status < 300:
                self.latencies.append(now - conn.due)
            else:
                self.errors[f"HTTP {status}"] += 1
        self._next(conn, now)

    def fail(self, conn: _Connection, kind: str) -> None:
        if conn.busy:
            conn.busy = False
            self._error(kind)
        if conn.transport is not None:
            conn.transport.abort()

    def lost(self, conn: _Connection) -> None:
        self.live.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        if conn.busy:
            conn.busy = False
            self._error("connection")
        if self.running:
            task = self.loop.create_task(self._connect())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def due(self, when: float) -> None:
        """A request is due now (open loop). How late the generator got to it is its own lag;
        a wait for a free connection after that is the server's (it counts in the latency)."""
        if self.recording:
            self.lags.append(self.clock() - when)
        if self.idle:
            self._send(self.idle.pop(), when)
        elif len(self.waiting) < self.max_outstanding:
            self.waiting.append(when)
        else:
            self._error("overload")

    async def watchdog(self) -> None:
        """Abort a connection whose answer is later than `timeout` (counted as a timeout)."""
        while True:
            await asyncio.sleep(0.05)
            now = self.clock()
            for conn in list(self.live):
                if conn.busy and now - conn.sent > self.timeout:
                    self.fail(conn, "timeout")

    def start(self) -> None:
        self.sent = 0
        self.latencies, self.lags = [], []
        self.errors = collections.Counter()
        self.recording = True

    async def settle(self, limit: float) -> None:
        """Wait until nothing is in flight or waiting, at most `limit` seconds."""
        deadline = self.clock() + limit
        while (self.waiting or any(c.busy for c in self.live)) and self.clock() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self.running = False
        for conn in list(self.live):
            if conn.transport is not None:
                conn.transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)


async def _pause(seconds: float) -> None:
    """Sleep, in slices short enough to notice a signal soon."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        _stop_if_signalled()
        await asyncio.sleep(min(left, 0.1))


def http_request(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one POST of `body`, sent as they are for every request of a run."""
    lines = [f"POST {PATH} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _closed(
    endpoint: str, port: int, request: bytes, connections: int, duration: float, timeout: float
) -> Measured:
    driver = _Driver(port, request, connections=connections, timeout=timeout, max_outstanding=0)
    watchdog = asyncio.create_task(driver.watchdog())
    try:
        await driver.open()
        driver.closed_loop = True
        driver.sending = True
        driver.start()
        cpu, began = time.process_time(), driver.clock()
        for conn in list(driver.idle):
            driver.idle.remove(conn)
            driver._send(conn, driver.clock())
        await _pause(duration)
        driver.recording = False
        driver.sending = False
        elapsed, cpu = driver.clock() - began, time.process_time() - cpu
        await driver.settle(timeout)
    finally:
        watchdog.cancel()
        await driver.close()
    ok = len(driver.latencies)
    return Measured(
        endpoint=endpoint,
        mode="closed",
        tool="asyncio",
        connections=connections,
        duration_s=round(elapsed, 3),
        target_rate=None,
        sent=driver.sent,
        ok=ok,
        rate=ok / elapsed,
        errors=dict(driver.errors),
        latency_ms=percentiles(driver.latencies),
        generator_cpu_us=cpu / max(1, driver.sent) * 1e6,
    )


async def _open(
    endpoint: str,
    port: int,
    request: bytes,
    *,
    rate: float,
    connections: int,
    duration: float,
    timeout: float,
    max_outstanding: int,
    spin: float,
) -> Measured:
    """Requests due at `rate` for `duration`. A timer can wake the loop late (by up to a
    millisecond with epoll or libuv, about 0.1 ms with `select`), which would delay sends: the
    last `spin` seconds before a send are spent polling instead, so requests leave on time for
    a little of the generator's CPU."""
    driver = _Driver(
        port,
        request,
        connections=connections,
        timeout=timeout,
        max_outstanding=max_outstanding,
    )
    watchdog = asyncio.create_task(driver.watchdog())
    clock = driver.clock
    total = max(1, round(rate * duration))
    interval = 1.0 / rate
    margin = spin
    try:
        await driver.open()
        driver.start()
        began = clock() + 0.005
        sent = 0
        while sent < total:
            _stop_if_signalled()
            now = clock()
            while sent < total and began + sent * interval <= now:
                driver.due(began + sent * interval)
                sent += 1
            if sent >= total:
                break
            delay = began + sent * interval - clock()
            await asyncio.sleep(delay - margin if delay > margin else 0)
        await driver.settle(timeout + 0.1)
        elapsed = clock() - began
        driver.recording = False
        unanswered = len(driver.waiting) + sum(c.busy for c in driver.live)
        if unanswered:
            driver.errors["unanswered"] += unanswered
    finally:
        watchdog.cancel()
        await driver.close()
    ok = len(driver.latencies)
    return Measured(
        endpoint=endpoint,
        mode="open",
        tool="asyncio",
        connections=connections,
        duration_s=round(elapsed, 3),
        target_rate=round(rate, 1),
        sent=total,
        ok=ok,
        rate=ok / elapsed,
        errors=dict(driver.errors),
        latency_ms=percentiles(driver.latencies),
        send_lag_ms=percentiles(driver.lags),
    )


def _select_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def spin_margin(loop_name: str) -> float:
    """Seconds of polling before each send: what the loop's timers may be late by."""
    return 0.0011 if loop_name == "uvloop" else 0.0002


def _run_loop(measurement: Callable[[], Coroutine[Any, Any, Measured]], loop_name: str) -> Measured:
    """Run one measurement on a fresh event loop, with the garbage collector paused (its pauses
    would be the generator's, not the server's)."""
    gc.collect()
    gc.disable()
    try:
        if loop_name == "uvloop":
            import uvloop  # noqa: PLC0415 - optional

            return uvloop.run(measurement())  # type: ignore[no-any-return]
        # `select` takes its timeout in microseconds; epoll rounds it up to a millisecond.
        with asyncio.Runner(loop_factory=_select_loop) as runner:
            return runner.run(measurement())
    finally:
        gc.enable()


# --- wrk ---------------------------------------------------------------------------------------

_WRK_DONE: Final = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADRESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def _wrk_script(body: bytes, headers: dict[str, str], folder: Path) -> Path:
    script = folder / "post.lua"
    text = body.decode()
    quote = "=" * next(n for n in range(1, 10) if f"]{'=' * n}]" not in text)
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    lines.append(f"wrk.body = [{quote}[{text}]{quote}]")
    script.write_text("\n".join(lines) + "\n" + _WRK_DONE)
    return script


def _wrk(
    wrk: str, endpoint: str, port: int, script: Path, connections: int, duration: float
) -> Measured:
    """`wrk -t1 -cN -dS`: one thread, so it stays on one core like the server."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "2s"]
    command += ["-s", str(script), f"http://{HOST}:{port}{PATH}"]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 30, check=False
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("LOADRESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    n = [float(x) for x in line.split()[1:]]
    requests, micros, connect, read, write, status, timeouts = n[:7]
    errors = {"connect": connect, "read": read, "write": write, "non-2xx": status}
    errors["timeout"] = timeouts
    ok = int(requests - status)
    return Measured(
        endpoint=endpoint,
        mode="closed",
        tool="wrk",
        connections=connections,
        duration_s=round(micros / 1e6, 3),
        target_rate=None,
        sent=int(requests),
        ok=ok,
        rate=ok / (micros / 1e6),
        errors={k: int(v) for k, v in errors.items() if v},
        latency_ms=dict(
            zip(("p50", "p90", "p99", "p99.9", "max"), (x / 1000 for x in n[7:]), strict=True)
        ),
    )


# --- the processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def free_port_block(size: int) -> int:
    """A port p such that p..p+size-1 are free now (the simulator takes five in a row)."""
    for _ in range(50):
        base = free_port()
        if base + size > 65535:
            continue
        taken: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                taken.append(sock)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
        return base
    raise RuntimeError("no block of free ports")


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux `/proc`; elsewhere none are found)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents[ppid].append(int(entry.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Services:
    """The simulator, the engine and the null app as subprocesses, each in its own session so
    that stopping it stops its workers too; stopped on exit, whatever ended the run."""

    def __init__(self, server: str, workers: int, folder: Path, cpus: set[int] | None) -> None:
        self.server = server
        self.workers = workers
        self.folder = folder
        self.cpus = cpus
        self.processes: list[_Process] = []
        self.pids: set[int] = set()
        self.sim_port = 0
        self.engine_port = 0
        self.null_port = 0
        self.headers: dict[str, str] = {}
        """What every request carries: the demo's API key for deciding, when the service
        enforces keys (the null endpoint gets the same bytes and ignores it)."""
        self.admin_headers: dict[str, str] = {}

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> _Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = _Process(name, popen, log)
        self.processes.append(process)
        self.pids.add(popen.pid)
        if self.cpus is not None:
            # Before the interpreter has started any thread or worker: they all inherit it.
            with contextlib.suppress(OSError):
                os.sched_setaffinity(popen.pid, self.cpus)
        print(f"  started {name} (pid {popen.pid}): {' '.join(command[1:])}", flush=True)
        return process

    def _wait(self, process: _Process, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            _stop_if_signalled()
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited:\n{self.tail(process)}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{process.name} did not answer at {url}") from None
                time.sleep(0.05)

    @staticmethod
    def tail(process: _Process, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(process.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _app_command(self, app: str, port: int) -> list[str]:
        if app == "engine" and self.server == "serve":
            command = [sys.executable, "-m", "engine", "serve", "--host", HOST]
            return [*command, "--port", str(port), "--log-level", "warning"]
        command = [sys.executable, "-m", "benchmarks.null_app", "--app", app]
        server = "uvicorn" if self.server == "serve" else self.server
        command += ["--server", server, "--workers", str(self.workers)]
        return [*command, "--host", HOST, "--port", str(port)]

    def start(self, cart: bytes) -> bytes:
        """Start everything, warm the engine; returns its answer to `cart`."""
        from engine.record import RECORD_SAMPLE_VARIABLE, RECORD_VARIABLE  # noqa: PLC0415
        from engine.simulator.data import APIS  # noqa: PLC0415
        from engine.sources.upstream import SECRETS_FILE_VARIABLE, env_name  # noqa: PLC0415

        # What the environment may say about sources, keys or recording is not the demo's.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_SOURCE_")}
        unset = (RECORD_VARIABLE, RECORD_SAMPLE_VARIABLE, "ENGINE_API_KEYS_FILE")
        for name in (*unset, "ENGINE_ALLOW_ANONYMOUS", SECRETS_FILE_VARIABLE):
            base_env.pop(name, None)
        self.sim_port = free_port_block(len(APIS) + 1)
        command = [sys.executable, "-m", "engine", "simulator", "--host", HOST]
        simulator = self._start("simulator", [*command, "--port", str(self.sim_port)], base_env)
        engine_env = dict(base_env)
        for offset, api in enumerate(APIS, 1):
            engine_env[env_name(api, "URL")] = f"http://{HOST}:{self.sim_port + offset}"
        engine_env[SECRETS_FILE_VARIABLE] = "demo/secrets.json"
        engine_env.update(self._keys())
        self.engine_port = free_port()
        engine = self._start("engine", self._app_command("engine", self.engine_port), engine_env)
        self._wait(simulator, f"http://{HOST}:{self.sim_port}/health")
        self._wait(engine, f"http://{HOST}:{self.engine_port}/health")
        answer = self.warm(self.engine_port, cart, "engine", self.headers)
        decision = json.loads(answer)
        if decision.get("freshness", {}).get("stale") is not False:
            raise RuntimeError(f"the engine's warm-up answer is not fresh: {answer[:300]!r}")
        body_file = self.folder / "null-body.json"
        body_file.write_bytes(answer)
        self.null_port = free_port()
        null = self._start(
            "null",
            self._app_command("null", self.null_port),
            {**base_env, BODY_FILE_VARIABLE: str(body_file)},
        )
        self._wait(null, f"http://{HOST}:{self.null_port}/health")
        self.warm(self.null_port, cart, "null", self.headers)
        self.pids.update(pid for p in self.processes for pid in _children(p.popen.pid))
        return answer

    def _keys(self) -> dict[str, str]:
        """The engine's environment for API keys: the demo's keys file, as `make run` uses,
        so each request pays for its key check as in production. None when this version of
        the engine has no keys."""
        try:
            from engine.cli import DEMO_API_KEYS, DEMO_KEYS  # noqa: PLC0415
            from engine.service.auth import API_KEYS_FILE_VARIABLE  # noqa: PLC0415
        except ImportError:
            return {}
        self.headers = {"Authorization": f"Bearer {DEMO_KEYS['decide']}"}
        self.admin_headers = {"Authorization": f"Bearer {DEMO_KEYS['admin']}"}
        return {API_KEYS_FILE_VARIABLE: str(DEMO_API_KEYS)}

    @staticmethod
    def warm(port: int, cart: bytes, name: str, headers: dict[str, str]) -> bytes:
        """A few carts, so the engine's cache and its resolved rules are filled."""
        answer = b""
        for _ in range(WARM_REQUESTS):
            request = urllib.request.Request(
                f"http://{HOST}:{port}{PATH}",
                data=cart,
                headers={"content-type": "application/json", **headers},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status != 200:
                    raise RuntimeError(f"{name} answered {response.status} to the cart")
                answer = response.read()
        return answer

    def sources(self) -> dict[str, Any]:
        """The engine's cache and upstream counters."""
        url = f"http://{HOST}:{self.engine_port}/v1/sources"
        request = urllib.request.Request(url, headers=self.admin_headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def scrape(self) -> dict[str, float]:
        """What the engine's `/metrics` counts: cart requests answered 200 and decisions made
        (to check the counters move with the load the generator saw answered)."""
        url = f"http://{HOST}:{self.engine_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        counted = {"requests": 0.0, "decisions": 0.0}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("engine_http_request_duration_seconds_count{") and (
                'route="/v1/allocations"' in name and 'status="200"' in name
            ):
                counted["requests"] += float(value)
            elif name.startswith("engine_decisions_total{"):
                counted["decisions"] += float(value)
        return counted

    def stop(self) -> None:
        """SIGTERM to each process group, then SIGKILL to what is left after a grace period."""
        for process in self.processes:
            self.pids.update(_children(process.popen.pid))
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in reversed(self.processes):
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {process.name} did not stop in time; killed", flush=True)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(1)
        while any(alive(pid) for pid in self.pids) and time.monotonic() < deadline + 2:
            time.sleep(0.05)


@contextlib.contextmanager
def services(server: str, workers: int, folder: Path, cpus: set[int] | None) -> Iterator[Services]:
    running = Services(server, workers, folder, cpus)
    try:
        yield running
    finally:
        running.stop()


class CpuWatch:
    """How much CPU processes other than ours took during a run (Linux `/proc`), to tell a
    quiet measurement from one that shared the machine."""

    def __init__(self, pids: set[int]) -> None:
        self.pids = pids
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._began: tuple[float, float, float] | None = None

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait were busy.
        numbers = [int(x) for x in fields[:8]]
        return sum(numbers) - numbers[3] - numbers[4]

    def _ours(self) -> float:
        total = 0
        for pid in {*self.pids, os.getpid()}:
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                # utime stime cutime cstime: the children reaped (wrk) count as ours.
                total += sum(int(x) for x in fields[11:15])
        return total

    def start(self) -> None:
        busy = self._busy()
        self._began = None if busy is None else (busy, self._ours(), time.monotonic())

    def wait_quiet(self, limit: float) -> None:
        """Wait, at most `limit` seconds, for a second in which others were (nearly) idle."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.start()
            time.sleep(0.5)
            others = self.stop()
            if others is None or others <= INTERFERENCE / 2:
                return

    def stop(self) -> float | None:
        """CPUs' worth of time the others took since `start`."""
        busy = self._busy()
        if busy is None or self._began is None:
            return None
        busy0, ours0, when0 = self._began
        seconds = time.monotonic() - when0
        others = (busy - busy0) - (self._ours() - ours0)
        return max(0.0, others / self.ticks / seconds) if seconds > 0 else None


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Settings:
    duration: float
    fixed_duration: float
    connections: int
    rates: list[float]
    generator: str
    loop: str
    server: str
    workers: int
    timeout: float
    max_outstanding: int
    spin: bool
    retries: int
    pin: bool
    cart: Path
    warm_up: float


def _cpus(pin: bool, workers: int) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): the last CPU for the generator, the first `workers` for
    the server; None (no pinning) when pinning is off, impossible, or the server would need the
    generator's CPU."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or workers >= len(cpus):
        return None, None
    return set(cpus[:workers]), {cpus[-1]}


def _server_name(settings: Settings) -> str:
    if settings.server != "serve":
        return f"{settings.server} ({settings.workers} worker{'s' * (settings.workers > 1)})"
    fast = all(_importable(name) for name in ("uvloop", "httptools"))
    picked = "httptools + uvloop" if fast else "h11 + asyncio"
    return f"python -m engine serve: uvicorn, {picked} (1 worker)"


def _revision() -> str | None:
    """The commit measured, and whether the work tree differed from it: the engine changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "engine"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" with local changes to engine/" if changed else "")


def _importable(name: str) -> bool:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec(name) is not None


def _counters(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, int]]:
    """What each source's cache did during the measurement."""
    keys = ("hits", "misses", "coalesced", "stale_serves", "upstream_calls", "unanswered")
    return {
        name: {k: after["sources"][name][k] - stats.get(k, 0) for k in keys}
        for name, stats in before["sources"].items()
        if name in after["sources"]
    }


def measure(settings: Settings) -> dict[str, Any]:
    """Start the services, run both phases, stop everything; the results as JSON data."""
    cart = (ROOT / settings.cart).read_bytes()
    wrk = shutil.which("wrk") if settings.generator in {"auto", "wrk"} else None
    if settings.generator == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed (use --generator asyncio)")
    server_cpus, generator_cpus = _cpus(settings.pin, settings.workers)
    result: dict[str, Any] = {
        "server": _server_name(settings),
        "workers": settings.workers,
        "cart": str(settings.cart),
        "connections": settings.connections,
        "generator": {"closed_loop": "wrk" if wrk else "asyncio", "open_loop": "asyncio"},
        "generator_loop": settings.loop,
        "pinned": {
            "server": sorted(server_cpus) if server_cpus else None,
            "generator": sorted(generator_cpus) if generator_cpus else None,
        },
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "revision": _revision(),
    }
    print(f"Load test: {result['server']}; generator {result['generator']}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="engine-load-") as tmp,
        services(settings.server, settings.workers, Path(tmp), server_cpus) as running,
    ):
        answer = running.start(cart)
        result["answer_bytes"] = len(answer)
        if generator_cpus is not None:
            os.sched_setaffinity(0, generator_cpus)
        ports = {"null": running.null_port, "engine": running.engine_port}
        script = _wrk_script(cart, running.headers, Path(tmp)) if wrk else None
        requests = {e: http_request(ports[e], cart, running.headers) for e in ports}
        result["api_key"] = bool(running.headers)
        before = running.sources()
        watch = CpuWatch(running.pids)

        retries = settings.retries

        def watched(measured: Callable[[], Measured]) -> Measured:
            """Run a measurement; again (keeping the quieter) while another process took a
            share of the CPUs during it and retries are left."""
            nonlocal retries
            best: Measured | None = None
            while True:
                _stop_if_signalled()
                watch.start()
                run = measured()
                run.others_cpu = watch.stop()
                if best is None or (run.others_cpu or 0) < (best.others_cpu or 0):
                    best = run
                if (best.others_cpu or 0) <= INTERFERENCE or retries <= 0:
                    return best
                retries -= 1
                print(f"  (others took {run.others_cpu:.0%} of a CPU: measuring again)", flush=True)
                watch.wait_quiet(10.0)

        def closed_asyncio(endpoint: str, duration: float) -> Callable[[], Measured]:
            coroutine = partial(
                _closed,
                endpoint,
                ports[endpoint],
                requests[endpoint],
                settings.connections,
                duration,
                settings.timeout,
            )
            return partial(_run_loop, coroutine, settings.loop)

        for endpoint in ("null", "engine"):  # discarded: connections, caches, branch warm-up
            closed_asyncio(endpoint, settings.warm_up)()
        scraped = running.scrape()
        print(f"Phase 1: maximum rate, closed loop, {settings.connections} connections", flush=True)
        closed: list[Measured] = []
        for endpoint in ("null", "engine", "null", "engine"):
            if wrk is not None and script is not None:
                run = watched(
                    partial(
                        _wrk,
                        wrk,
                        endpoint,
                        ports[endpoint],
                        script,
                        settings.connections,
                        settings.duration,
                    )
                )
            else:
                run = watched(closed_asyncio(endpoint, settings.duration))
            closed.append(run)
            print(f"  {endpoint:6} {run.rate:9,.0f} requests/s  ({run.tool})", flush=True)
        best = {e: _mean([r.rate for r in closed if r.endpoint == e]) for e in ("null", "engine")}
        if wrk is not None:
            # The built-in generator against the faster endpoint: does it keep up with wrk?
            check = watched(closed_asyncio("null", settings.duration))
            result["asyncio_check"] = asdict(check)
            print(f"  null   {check.rate:9,.0f} requests/s  (asyncio)", flush=True)

        print("Phase 2: fixed rate, open loop (latency from the time each request was due)")
        opened: list[Measured] = []
        for fraction in settings.rates:
            for endpoint in ("null", "engine"):
                fixed = partial(
                    _open,
                    endpoint,
                    ports[endpoint],
                    requests[endpoint],
                    rate=best[endpoint] * fraction,
                    connections=settings.connections,
                    duration=settings.fixed_duration,
                    timeout=settings.timeout,
                    max_outstanding=settings.max_outstanding,
                    spin=spin_margin(settings.loop) if settings.spin else 0.0,
                )
                run = watched(partial(_run_loop, fixed, settings.loop))
                opened.append(run)
                p99 = run.latency_ms.get("p99", math.nan)
                print(
                    f"  {endpoint:6} {fraction:4.0%} {run.target_rate:7,.0f}/s  p99 {p99:.2f} ms"
                    f"  errors {run.error_count}",
                    flush=True,
                )
        result["cache"] = _counters(before, running.sources())
        after = running.scrape()
        engine_runs = [r for r in [*closed, *opened] if r.endpoint == "engine"]
        result["metrics"] = {
            "answered": sum(r.ok for r in engine_runs),
            "requests": after["requests"] - scraped["requests"],
            "decisions": after["decisions"] - scraped["decisions"],
            "in_flight_allowance": settings.connections * len(engine_runs),
        }
    result["processes"] = sorted(running.pids)
    result["max_rate"] = {
        "runs": [asdict(r) for r in closed],
        "null": best["null"],
        "engine": best["engine"],
        "ratio": best["engine"] / best["null"],
        **engine_cost(best["null"], best["engine"], settings.workers),
    }
    result["fixed_rate"] = [asdict(r) for r in opened]
    cpu_runs = [r for r in [*closed, *_checks(result)] if r.generator_cpu_us]
    if cpu_runs:
        cpu_us = _mean([r.generator_cpu_us or 0.0 for r in cpu_runs])
        result["generator_cpu_us_per_request"] = cpu_us
        result["generator_ceiling"] = 1e6 / cpu_us
    half = [r for r in opened if r.endpoint == "engine" and r.target_rate]
    at_half = next(
        (r for r, f in zip(half, settings.rates, strict=False) if math.isclose(f, 0.5)), None
    )
    result["targets"] = {
        "ratio_min": TARGET_RATIO,
        "ratio_met": result["max_rate"]["ratio"] >= TARGET_RATIO,
        "p99_ms_max_at_half_rate": TARGET_P99_MS,
        "p99_met": None
        if at_half is None
        else at_half.latency_ms.get("p99", math.inf) < TARGET_P99_MS and not at_half.errors,
    }
    return result


def engine_cost(null_rate: float, engine_rate: float, workers: int = 1) -> dict[str, float]:
    """The engine's own time per request over HTTP, in µs: its time per request at its maximum
    rate less the null endpoint's, and what the ratio target leaves it (`TARGET_RATIO`'s share
    of the null's rate). At the maximum rate every worker is busy, so a request takes a worker
    `workers / rate`. Unlike the ratio, it does not move when the server or the framework gets
    faster or slower. If the generator rather than the server held the null endpoint back,
    the null's time comes out too long and the engine's own too short."""
    null_us = workers * 1e6 / null_rate
    engine_us = workers * 1e6 / engine_rate
    return {
        "null_us_per_request": null_us,
        "engine_us_per_request": engine_us,
        "engine_cost_us": engine_us - null_us,
        "engine_budget_us": null_us / TARGET_RATIO - null_us,
    }


def _checks(result: dict[str, Any]) -> list[Measured]:
    check = result.get("asyncio_check")
    return [Measured(**check)] if check else []


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _ms(latency: dict[str, float], key: str) -> str:
    return f"{latency[key]:.2f}" if key in latency else "-"


def _others(run: dict[str, Any]) -> str:
    share = run.get("others_cpu")
    return "-" if share is None else f"{share:.0%}"


LATE_MS: Final = 1.0
"""A generator whose p99 send lag is above this was late itself (or starved of its CPU)."""


def report(result: dict[str, Any]) -> str:
    """The results as text tables, with what makes them doubtful said below them."""
    out = [
        "",
        f"Server: {result['server']}; answer {result['answer_bytes']} bytes; cart "
        f"{result['cart']}; {result['connections']} connections",
        f"CPUs: {result['cpus']}; server pinned to {result['pinned']['server']}, generator to "
        f"{result['pinned']['generator']}; Python {result['python']}; revision "
        f"{result['revision'] or 'unknown'}",
        "",
        "Maximum rate (closed loop, alternating runs)",
        f"  {'endpoint':8} {'tool':8} {'requests/s':>11} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'others':>7}",
    ]
    for run in result["max_rate"]["runs"]:
        latency = run["latency_ms"]
        out.append(
            f"  {run['endpoint']:8} {run['tool']:8} {run['rate']:11,.0f} {_ms(latency, 'p50'):>8} "
            f"{_ms(latency, 'p90'):>8} {_ms(latency, 'p99'):>8} "
            f"{sum(run['errors'].values()):7} {_others(run):>7}"
        )
    rates = result["max_rate"]
    met = "met" if result["targets"]["ratio_met"] else "NOT met"
    out.append(
        f"  mean: null {rates['null']:,.0f}/s, engine {rates['engine']:,.0f}/s; ratio "
        f"engine/null {rates['ratio']:.2f} (target >= {TARGET_RATIO:.2f}: {met})"
    )
    out.append(
        f"  per request: null {rates['null_us_per_request']:,.0f} µs, engine "
        f"{rates['engine_us_per_request']:,.0f} µs; the engine's own "
        f"{rates['engine_cost_us']:,.0f} µs (the ratio target leaves it "
        f"{rates['engine_budget_us']:,.0f} µs)"
    )
    out += [
        "",
        "Fixed rate (open loop; latency in ms from when each request was due)",
        f"  {'endpoint':8} {'target/s':>9} {'done/s':>8} {'errors':>7} {'p50':>6} {'p90':>6} "
        f"{'p99':>6} {'p99.9':>6} {'max':>6} {'send lag p50/p99':>16} {'others':>7}",
    ]
    for run in result["fixed_rate"]:
        latency, lag = run["latency_ms"], run["send_lag_ms"]
        errors = ", ".join(f"{k} {v}" for k, v in run["errors"].items()) or "0"
        out.append(
            f"  {run['endpoint']:8} {run['target_rate']:9,.0f} {run['rate']:8,.0f} {errors:>7} "
            + " ".join(f"{_ms(latency, k):>6}" for k in ("p50", "p90", "p99", "p99.9", "max"))
            + f" {_ms(lag, 'p50') + '/' + _ms(lag, 'p99'):>16} {_others(run):>7}"
        )
    p99_met = result["targets"]["p99_met"]
    if p99_met is not None:
        out.append(
            f"  engine p99 at half its maximum rate under {TARGET_P99_MS:g} ms: "
            + ("met" if p99_met else "NOT met")
        )
    out.append("")
    if "generator_ceiling" in result:
        check = result.get("asyncio_check")
        also = f"; it reached {check['rate']:,.0f}/s against null" if check else ""
        out.append(
            f"Built-in generator: {result['generator_cpu_us_per_request']:.0f} µs of CPU per "
            f"request, a ceiling of about {result['generator_ceiling']:,.0f} requests/s on its "
            f"core{also}."
        )
    cache = result.get("cache", {})
    if cache:
        out.append(
            "Engine cache during the run: "
            + "; ".join(
                f"{name} {c['hits']:,} hits, {c['misses']} misses, "
                f"{c['upstream_calls']} upstream calls"
                for name, c in cache.items()
                if c["hits"] or c["misses"] or c["upstream_calls"]
            )
            + "."
        )
    counted = result.get("metrics")
    if counted:
        extra = counted["requests"] - counted["answered"]
        verdict = (
            "consistent"
            if 0 <= extra <= counted["in_flight_allowance"]
            and counted["decisions"] == counted["requests"]
            else "NOT consistent"
        )
        out.append(
            f"Engine /metrics during the measured runs: {counted['requests']:,.0f} cart requests "
            f"answered 200 and {counted['decisions']:,.0f} decisions counted, for "
            f"{counted['answered']:,} answers the generator saw ({verdict}: a run may end with "
            f"up to {counted['in_flight_allowance']} answers in flight)."
        )
    runs = [*result["max_rate"]["runs"], *result["fixed_rate"]]
    busy = [r["others_cpu"] for r in runs if r.get("others_cpu") is not None]
    if busy and max(busy) > INTERFERENCE:
        out.append(
            f"Warning: other processes used up to {max(busy):.0%} of a CPU during a run "
            "(column `others`): the machine was shared, so rates and tails are doubtful."
        )
    late = [r["send_lag_ms"]["p99"] for r in result["fixed_rate"] if r["send_lag_ms"]]
    if late and max(late) > LATE_MS:
        out.append(
            f"Warning: the generator sent requests up to {max(late):.1f} ms late (p99 send "
            "lag); that lateness is in the latencies: the generator was starved or too slow."
        )
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds per maximum-rate run; fixed-rate runs take twice that (default: 5)",
    )
    parser.add_argument("--connections", type=int, default=8, help="(default: 8)")
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[0.5],
        metavar="FRACTION",
        help="fixed rates as fractions of each endpoint's maximum (default: 0.5)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds, for tests")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="for the maximum rate: wrk when installed (auto), or the built-in one",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the built-in generator's event loop (default: asyncio)",
    )
    parser.add_argument(
        "--server",
        choices=("serve", *SERVERS),
        default="serve",
        help="serve: `python -m engine serve` and uvicorn.run as it calls it (default); or one "
        "of benchmarks.null_app's servers for both apps: uvicorn-h11, uvicorn-httptools, "
        "granian, hypercorn",
    )
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    parser.add_argument(
        "--max-outstanding",
        type=int,
        default=1000,
        help="requests waiting for a free connection before new ones count as overload",
    )
    parser.add_argument(
        "--no-spin",
        dest="spin",
        action="store_false",
        help="sleep until each send instead of polling the last moments before it (less CPU; "
        "sends up to 0.3 ms late, 1 ms with uvloop)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        help="runs measured again, in all, when other processes took more than "
        f"{INTERFERENCE * 100:.0f}%% of a CPU during them (default: 3; 0 with --quick)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the OS place the server and the generator",
    )
    parser.add_argument("--cart", type=Path, default=CART)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed or a run had errors"
    )
    return parser


_SIGNALLED: list[int] = []
"""The signals received: a run checks between steps, since the exception a signal raises can
be lost (raised inside a `__del__`, Python only prints it)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _SIGNALLED.append(signum)
    if len(_SIGNALLED) == 1:  # a second Ctrl-C must not cut the stopping of the services short
        _stop_if_signalled()


def _stop_if_signalled() -> None:
    """Raise what the first signal received means: leave through `finally`, which stops the
    services."""
    if _SIGNALLED:
        if _SIGNALLED[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + _SIGNALLED[0])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.server == "serve" and args.workers != 1:
        print("`engine serve` runs one worker; use --server to try several", file=sys.stderr)
        return 2
    quick = args.quick
    settings = Settings(
        duration=0.3 if quick else args.duration,
        fixed_duration=0.6 if quick else 2 * args.duration,
        connections=args.connections,
        rates=args.rates,
        generator="asyncio" if quick and args.generator == "auto" else args.generator,
        loop=args.loop,
        server=args.server,
        workers=args.workers,
        timeout=args.timeout,
        max_outstanding=args.max_outstanding,
        spin=args.spin,
        retries=(0 if quick else 3) if args.retries is None else args.retries,
        pin=args.pin,
        cart=args.cart,
        warm_up=0.1 if quick else 1.0,
    )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        result = measure(settings)
    except (RuntimeError, OSError) as exc:
        print(f"load test failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("load test interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    runs = [*result["max_rate"]["runs"], *result["fixed_rate"]]
    failed = any(run["errors"] for run in runs) or not all(
        v is not False for k, v in result["targets"].items() if k.endswith("_met")
    )
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
