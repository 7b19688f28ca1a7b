"""Running the simulator: five uvicorn servers (control and one per API) on one event loop in a
background thread, so tests and the demo talk to the upstreams over real sockets.

Each server is given a socket bound here rather than a port to bind, so ports are known before
anything is served and a `refuse` fault can close the listening socket (connections are then
refused by the kernel, ECONNREFUSED) and bind the same port again when the fault is cleared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal, TypeVar

import msgspec
import uvicorn

from engine.simulator.apps import (
    catalog_app,
    control_app,
    dr_levels_app,
    dr_shopper_app,
    shoplazza_app,
)
from engine.simulator.data import (
    APIS,
    Api,
    UpstreamData,
    UpstreamFileError,
    as_api,
    load_upstream,
)
from engine.simulator.faults import ApiCounters, Board, Fault, FaultInjector
from engine.simulator.payloads import WRONG_SHAPE, error_body

__all__ = ("DEFAULT_DATA", "DEFAULT_PORT", "Simulator", "main", "run")

T = TypeVar("T")

Server = Literal["control", "dr-levels", "dr-shopper", "shoplazza", "catalog"]
SERVERS: Final[tuple[Server, ...]] = ("control", *APIS)
"""In port order: with a base port, control listens on it and each API on the next ones."""
DEFAULT_DATA: Final = Path("demo/upstream.json")
DEFAULT_PORT: Final = 8100
START_TIMEOUT: Final = 5.0
"""Seconds; starting takes a few milliseconds."""
GRACE_SECONDS: Final = 1
"""How long a stopping server lets a slow (delayed) answer finish before cancelling it."""
_UNFINISHED: Final = "ASGI callable returned without completing response."

log = logging.getLogger(__name__)


class _QuietReset(logging.Filter):
    """uvicorn reports a response left unfinished as an error; here it is the `reset` fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UNFINISHED


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Listener:
    """One uvicorn server on one port, which can stop listening and listen again."""

    def __init__(self, app: Callable[..., Any], host: str, sock: socket.socket) -> None:
        self._app = app
        self._host = host
        self._sock: socket.socket | None = sock
        self.port: int = sock.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        sock = self._sock if self._sock is not None else _bind(self._host, self.port)
        self._sock = None
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            http="h11",
            ws="none",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                sock.close()
                task.result()  # raises what stopped it
                raise RuntimeError(f"the server on port {self.port} stopped while starting")
            await asyncio.sleep(0.002)
        self._server, self._task = server, task

    async def close(self) -> None:
        """Stop listening (the socket is closed at once), then let open connections finish."""
        if self._sock is not None:  # never opened
            self._sock.close()
            self._sock = None
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        task, self._server, self._task = self._task, None, None
        await task


class _Runtime:
    """The running servers and their shared state; its coroutines run on the server loop."""

    def __init__(self, host: str, board: Board, listeners: Mapping[Server, _Listener]) -> None:
        self.host = host
        self.board = board
        self.listeners = dict(listeners)
        self._lock = asyncio.Lock()
        """One change of listening state at a time (asyncio locks bind to a loop on first use)."""

    def urls(self) -> dict[str, str]:
        return {name: _url(self.host, listener.port) for name, listener in self.listeners.items()}

    def faults(self) -> dict[str, Fault]:
        return self.board.faults()

    def counters(self) -> dict[str, ApiCounters]:
        return self.board.counters()

    def reset_counters(self) -> None:
        self.board.reset_counters()

    async def apply_fault(self, api: Api, fault: Fault) -> None:
        """Set the fault; close or reopen the port when `refuse` changes. Returns once the port
        is in its new state."""
        async with self._lock:
            self.board.set_fault(api, fault)
            listener = self.listeners[api]
            if fault.refuse and listener.listening:
                await listener.close()
            elif not fault.refuse and not listener.listening:
                try:
                    await listener.open()
                except BaseException:
                    self.board.set_fault(api, Fault(refuse=True))
                    raise

    async def clear_faults(self) -> None:
        await asyncio.gather(*(self.apply_fault(api, Fault()) for api in APIS))

    async def open_all(self) -> None:
        results = await asyncio.gather(
            *(listener.open() for listener in self.listeners.values()), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await self.close_all()
            raise failures[0]

    async def close_all(self) -> None:
        async with self._lock:
            await asyncio.gather(*(listener.close() for listener in self.listeners.values()))


class Simulator:
    """The four upstream APIs and the control app on 127.0.0.1 (by default), served from a
    background thread. Use as a context manager:

        with Simulator("demo/upstream.json") as sim:
            httpx.get(sim.url("dr-levels") + "/inventory-levels", ...)

    `port=0` (the default) takes free ports; a base port puts control on it and dr-levels,
    dr-shopper, shoplazza and catalog on the four after it. `now` anchors relative dates in
    the data (default: when the data is loaded)."""

    def __init__(
        self,
        data: UpstreamData | Path | str = DEFAULT_DATA,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        now: datetime | None = None,
    ) -> None:
        if not (port == 0 or 0 < port <= 65535 - len(APIS)):
            raise ValueError(f"port must be 0 or 1 to {65535 - len(APIS)}, not {port}")
        self._data = data if isinstance(data, UpstreamData) else load_upstream(data, now)
        self._host = host
        self._port = port
        self._board = Board()
        self._runtime: _Runtime | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._quiet = _QuietReset()

    @property
    def data(self) -> UpstreamData:
        return self._data

    def _apps(self, runtime: _Runtime) -> dict[Server, Callable[..., Any]]:
        data = self._data
        apps = {
            "dr-levels": dr_levels_app(data.dr_levels),
            "dr-shopper": dr_shopper_app(data.dr_shopper),
            "shoplazza": shoplazza_app(data.shoplazza),
            "catalog": catalog_app(data.catalog),
        }
        wrapped: dict[Server, Callable[..., Any]] = {"control": control_app(runtime)}
        for api in APIS:
            wrapped[api] = FaultInjector(
                api, apps[api], self._board, partial(error_body, api), WRONG_SHAPE[api]
            )
        return wrapped

    def start(self) -> Simulator:
        """Bind every port, start serving, and return once all five servers accept."""
        if self._thread is not None:
            raise RuntimeError("a Simulator starts once")
        runtime = _Runtime(self._host, self._board, {})
        apps = self._apps(runtime)
        sockets: dict[Server, socket.socket] = {}
        try:
            for offset, name in enumerate(SERVERS):
                sockets[name] = _bind(self._host, self._port + offset if self._port else 0)
        except OSError:
            for sock in sockets.values():
                sock.close()
            raise
        runtime.listeners = {
            name: _Listener(apps[name], self._host, sock) for name, sock in sockets.items()
        }
        self._runtime = runtime
        logging.getLogger("uvicorn.error").addFilter(self._quiet)
        self._thread = threading.Thread(
            target=self._run, args=(runtime,), name="upstream-simulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the simulator did not start within {START_TIMEOUT} s")
        if self._failure is not None:
            self._thread.join(START_TIMEOUT)
            logging.getLogger("uvicorn.error").removeFilter(self._quiet)
            raise self._failure
        return self

    def _run(self, runtime: _Runtime) -> None:
        asyncio.run(self._serve(runtime))

    async def _serve(self, runtime: _Runtime) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await runtime.open_all()
        except BaseException as exc:  # handed to `start`, which raises it
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        await runtime.close_all()

    def stop(self) -> None:
        """Stop every server and the thread; idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(START_TIMEOUT)
        logging.getLogger("uvicorn.error").removeFilter(self._quiet)
        if thread.is_alive():
            raise RuntimeError("the simulator did not stop")

    def __enter__(self) -> Simulator:
        """Starts the simulator, unless `start()` already has."""
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> _Runtime:
        if self._runtime is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the simulator is not running")
        return self._runtime

    def _call(self, make: Callable[[_Runtime], Coroutine[Any, Any, T]]) -> T:
        runtime = self._running()
        if threading.current_thread() is self._thread or self._loop is None:
            raise RuntimeError("call the simulator from another thread than its own")
        return asyncio.run_coroutine_threadsafe(make(runtime), self._loop).result(START_TIMEOUT)

    def url(self, api: str) -> str:
        """Base URL of `api` (`dr-levels`, `dr-shopper`, `shoplazza`, `catalog`, `control`)."""
        urls = self._running().urls()
        if api not in urls:
            raise ValueError(f"no API `{api}`: one of {', '.join(urls)}")
        return urls[api]

    def urls(self) -> dict[str, str]:
        return self._running().urls()

    def set_fault(self, api: str, fault: Fault) -> None:
        """Make `api` misbehave; returns once in effect (a refused port is closed)."""
        name = as_api(api)
        if name is None:
            raise ValueError(f"no API `{api}`: one of {', '.join(APIS)}")
        checked = msgspec.convert(msgspec.to_builtins(fault), Fault)
        self._call(lambda runtime: runtime.apply_fault(name, checked))

    def clear_faults(self) -> None:
        """Every API answers normally again (refused ports listen again)."""
        self._call(lambda runtime: runtime.clear_faults())

    def faults(self) -> dict[str, Fault]:
        return self._running().faults()

    def counters(self) -> dict[str, ApiCounters]:
        """Requests per API since the last reset: in all, and per path."""
        return self._running().counters()

    def reset_counters(self) -> None:
        self._running().reset_counters()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine simulator",
        description="Serve the four upstream inventory APIs from a data file, with faults.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="control port; the APIs take the next four (0: any free ports)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    return parser


def _banner(sim: Simulator, data_path: Path | str) -> str:
    urls = sim.urls()
    control = urls["control"]
    lines = [f"Upstream simulator, data from {data_path}"]
    lines += [f"  {name:<11} {url}" for name, url in urls.items()]
    lines.append(
        f'Faults: curl -s -X PUT {control}/faults/dr-levels -d \'{{"status": 503, '
        f'"retry_after": 5}}\'; clear: curl -s -X DELETE {control}/faults'
    )
    lines.append(f"Counters: curl -s {control}/counters")
    levels = sim.data.dr_levels
    if levels.tokens and levels.levels:
        lines.append(
            f"Try: curl -s -H 'Authorization: Bearer {levels.tokens[0]}' "
            f"'{urls['dr-levels']}/inventory-levels?inventoryItemIds="
            f"{levels.levels[0].inventory_item_id}'"
        )
    return "\n".join(lines)


def run(
    data: UpstreamData | Path | str = DEFAULT_DATA,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM), printing where: control on `port`, the
    APIs on the next four. Raises `UpstreamFileError` for a bad data file and `OSError` when a
    port cannot be bound."""
    sim = Simulator(data, host=host, port=port).start()
    shown = data if not isinstance(data, UpstreamData) else "memory"
    print(_banner(sim, shown), flush=True)
    done = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sim.stop()
    print("Upstream simulator stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine simulator [--host] [--port 8100] [--data demo/upstream.json]`."""
    args = _parser().parse_args(argv)
    host: str = args.host
    port: int = args.port
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(args.data, host=host, port=port)
    except (UpstreamFileError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        ports = f"ports {port}-{port + len(APIS)}" if port else "free ports"
        print(f"cannot listen on {host} ({ports}): {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
