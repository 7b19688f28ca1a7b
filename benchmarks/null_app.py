"""The null endpoint of the load test, and a launcher that serves it or the engine under a
chosen ASGI server.

The null app is the same framework as the service (Litestar) with one POST route that reads
the body and answers fixed JSON bytes: what is left of a request once the engine's own work is
taken out. Comparing the two on the same server and settings shows what the engine costs on
top of the framework, and the framework's rate is the ceiling the engine can approach.

`python -m benchmarks.null_app --app null|engine --server NAME --workers N --port P` serves
either app: `uvicorn` exactly as `python -m engine serve` calls it (so the server and event
loop are whatever uvicorn picks from what is installed), or a server pinned down for a
comparison. `--app engine` builds the service as `engine serve` does (the rules' upstream
sources, hot reload as configured by the environment), for servers that `serve` cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from litestar import Litestar, MediaType, Request, Response, get, post

__all__ = ("SERVERS", "create_engine_app", "create_null_app", "null_app", "serve")

BODY_FILE_VARIABLE: Final = "LOAD_NULL_BODY_FILE"
"""A file holding the bytes the null endpoint answers (the engine's answer to the cart)."""
DEFAULT_BODY: Final = b'{"decision":"allocate","padding":"' + b"x" * 1150 + b'"}'
"""About the size of the engine's answer to the 5-line demo cart, when no file is given."""
SERVERS: Final = ("uvicorn", "uvicorn-h11", "uvicorn-httptools", "granian", "hypercorn")
"""`uvicorn`: as `engine serve` runs it (its choice of loop and HTTP parser); the others fixed."""
PATH: Final = "/v1/allocations"


def null_app(body: bytes = DEFAULT_BODY) -> Litestar:
    """Litestar with the engine's route path answering `body`, and `/health`."""

    @post(PATH, status_code=200)
    async def allocations(request: Request[None, None, None]) -> Response[bytes]:
        await request.body()  # the body is read, as the engine reads it, then ignored
        return Response(body, media_type=MediaType.JSON)

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[allocations, health], openapi_config=None)


def create_null_app() -> Litestar:
    """Factory for servers that import the app in each worker: the body from the environment."""
    path = os.environ.get(BODY_FILE_VARIABLE)
    return null_app(Path(path).read_bytes() if path else DEFAULT_BODY)


def create_engine_app() -> Litestar:
    """The service as `python -m engine serve` builds it (upstream sources from the rules and
    `ENGINE_SOURCE_*`/`ENGINE_SECRETS_FILE`; the budget, hot reload and API keys from the
    environment)."""
    from engine.checkout import budget_seconds  # noqa: PLC0415 - only this app needs the engine
    from engine.cli import DEFAULT_RULES, _load_checkout  # noqa: PLC0415
    from engine.reload import DEFAULT_POLL_INTERVAL, RuleReloader, watch_enabled  # noqa: PLC0415
    from engine.service import create_app  # noqa: PLC0415

    checkout, _, close, sources_for = _load_checkout(
        DEFAULT_RULES, None, upstream=True, budget=budget_seconds()
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    reloader = RuleReloader(
        DEFAULT_RULES,
        checkout,
        sources_for=sources_for,
        watch=watch_enabled(None),
        poll_interval=DEFAULT_POLL_INTERVAL,
    )
    keys = os.environ.get("ENGINE_API_KEYS_FILE")
    if keys:
        from engine.service.auth import ApiKeys  # noqa: PLC0415 - engines with API keys

        return create_app(
            checkout,
            on_shutdown=[close] if close else [],
            reloader=reloader,
            api_keys=ApiKeys.from_file(Path(keys)),
        )
    return create_app(checkout, on_shutdown=[close] if close else [], reloader=reloader)


FACTORIES: Final[dict[str, Callable[[], Litestar]]] = {
    "null": create_null_app,
    "engine": create_engine_app,
}


def serve(app: str, server: str, host: str, port: int, workers: int = 1) -> None:
    """Serve `app` (`null` or `engine`) until SIGTERM or Ctrl-C. Several workers need the app
    as an import string (each worker builds its own), so every server is given the factory."""
    target = f"{__name__}:create_{app}_app"
    if server.startswith("uvicorn"):
        import uvicorn  # noqa: PLC0415

        if server == "uvicorn" and workers == 1:
            # Exactly the call `engine serve` makes.
            uvicorn.run(
                FACTORIES[app](), host=host, port=port, log_level="warning", access_log=False
            )
            return
        fixed = {"uvicorn-h11": ("asyncio", "h11"), "uvicorn-httptools": ("uvloop", "httptools")}
        loop, http = fixed.get(server, ("auto", "auto"))
        uvicorn.run(
            target,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop=loop,  # type: ignore[arg-type]
            http=http,  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,
        )
    elif server == "granian":
        from granian import Granian  # noqa: PLC0415 - optional, for comparisons only
        from granian.constants import Interfaces  # noqa: PLC0415
        from granian.log import LogLevels  # noqa: PLC0415

        Granian(
            target,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_level=LogLevels.warning,
            log_access=False,
        ).serve()
    elif server == "hypercorn":
        from hypercorn.config import Config  # noqa: PLC0415 - optional, for comparisons only

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.loglevel = "WARNING"
        if workers == 1:
            from hypercorn.asyncio import serve as hypercorn_serve  # noqa: PLC0415

            asyncio.run(hypercorn_serve(FACTORIES[app](), config))  # type: ignore[arg-type]
        else:
            from hypercorn.run import run  # noqa: PLC0415

            config.workers = workers
            config.application_path = f"{target}()"
            run(config)
    else:
        raise ValueError(f"unknown server {server!r}; one of {', '.join(SERVERS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.null_app", description=__doc__)
    parser.add_argument("--app", choices=tuple(FACTORIES), default="null")
    parser.add_argument("--server", choices=SERVERS, default="uvicorn")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    try:
        serve(args.app, args.server, args.host, args.port, args.workers)
    except KeyboardInterrupt:
        pass
    except ImportError as exc:
        print(f"{args.server} is not installed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
