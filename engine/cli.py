"""Command line: `python -m engine check|decide|serve|simulator`.

`decide` goes through `Checkout`, the same path as the service, so a cart decided here is decided
exactly as `POST /v1/allocations` would decide it. Availability comes from a snapshot file
(`--availability`) or from the upstream APIs the rules configure (`serve` by default when the
rules have `sources`; `decide --upstream`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

from engine.availability import Source
from engine.checkout import BUDGET_VARIABLE, DEFAULT_BUDGET_MS, Checkout, budget_seconds, utc_now
from engine.errors import AvailabilityFileError, Problem, RequestError, RuleSetError, Severity
from engine.model import Cart, Decision
from engine.policy import RuleSet, load_folder, load_rule_set
from engine.policy.compile import compile_files
from engine.service.problems import decode_error
from engine.sources.snapshot import SnapshotSource

__all__ = ("main",)

DEFAULT_RULES: Final = Path("rules")
DEFAULT_AVAILABILITY: Final = Path("demo/availability.json")
DEMO_SECRETS: Final = Path("demo/secrets.json")
"""The simulator's demo tokens (fake credentials for a fake upstream, so they may be shipped)."""


def _check(args: argparse.Namespace) -> int:
    folder: Path = args.rules
    loaded = load_folder(folder)
    rule_set: RuleSet | None = None
    try:
        rule_set = compile_files(loaded)
    except RuleSetError as exc:
        problems: list[Problem] = exc.problems
    else:
        problems = list(rule_set.warnings)
    for problem in problems:
        print(problem)
    errors = sum(p.severity is Severity.ERROR for p in problems)
    warnings = len(problems) - errors
    if rule_set is None:
        print(
            f"{folder}: {errors} error(s), {warnings} warning(s); the rules were not loaded",
            file=sys.stderr,
        )
        return 1
    print(
        f"{folder}: ok, rule set {rule_set.id}: {len(rule_set.locations)} locations, "
        f"{len(rule_set.catalog)} catalog items, {len(rule_set.rules)} rules"
        + (f", {warnings} warning(s)" if warnings else ""),
        file=sys.stderr,
    )
    return 1 if warnings and args.strict else 0


def _load_checkout(
    rules: Path,
    availability: Path | None,
    *,
    upstream: bool,
    now: datetime | None = None,
    budget: float = DEFAULT_BUDGET_MS / 1000,
) -> tuple[Checkout, str, Callable[[], Awaitable[None]] | None]:
    """The checkout, where its availability comes from, and what closes its upstream
    connections (None for a snapshot). Without a snapshot file named, the rules' upstream
    sources are used when `upstream` is set and the rules have any, else the demo snapshot."""
    rule_set = load_rule_set(rules)
    clock = (lambda: now) if now is not None else utc_now
    if availability is None and not (upstream and rule_set.sources):
        availability = DEFAULT_AVAILABILITY
    if availability is not None:
        source = SnapshotSource.from_file(availability, now)
        return Checkout(rule_set, [source], clock=clock, budget=budget), str(availability), None
    from engine.sources.upstream import build_sources, new_client  # noqa: PLC0415 - httpx

    client = new_client()
    sources: tuple[Source, ...] = build_sources(rule_set, client)
    origin = "the upstream APIs " + ", ".join(
        f"{s.name} ({s.api})" for s in rule_set.sources if s.location_ids
    )
    return Checkout(rule_set, sources, clock=clock, budget=budget), origin, client.aclose


def _budget(args: argparse.Namespace) -> float | None:
    """The time budget from `--budget-ms` or the environment; None (said why) when invalid."""
    try:
        return budget_seconds(args.budget_ms)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _decide(args: argparse.Namespace) -> int:
    budget = _budget(args)
    if budget is None:
        return 2
    raw = sys.stdin.buffer.read() if args.cart == "-" else Path(args.cart).read_bytes()
    try:
        cart = msgspec.json.decode(raw, type=Cart)
    except msgspec.DecodeError as exc:
        error = decode_error(exc)
        print(f"{args.cart}: {error.detail}", file=sys.stderr)
        return 2
    checkout, _, close = _load_checkout(
        args.rules, args.availability, upstream=args.upstream, now=args.now, budget=budget
    )

    async def run() -> Decision:
        try:
            return await checkout.allocate(cart, explain=args.explain)
        finally:
            if close is not None:
                await close()

    try:
        decision = asyncio.run(run())
    except RequestError as exc:
        fields = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        print(f"{args.cart}: {exc.detail}" + (f" ({fields})" if fields else ""), file=sys.stderr)
        return 2
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(decision), indent=2) + b"\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only `serve` needs the server

    from engine.service import create_app  # noqa: PLC0415 - keeps `check` fast to start

    budget = _budget(args)
    if budget is None:
        return 2
    checkout, origin, close = _load_checkout(
        args.rules, args.availability, upstream=True, budget=budget
    )
    # One line per upstream request at INFO would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(checkout, on_shutdown=[close] if close is not None else [])
    base = f"http://{args.host}:{args.port}"
    print(
        f"Serving rule set {checkout.rules.id} from {args.rules}/ with availability from "
        f"{origin}, within {round(budget * 1000)} ms per cart\n"
        f"  {base}/v1/allocations   (POST a cart)\n"
        f"  {base}/v1/sources       (cache, upstream and breaker counters)\n"
        f"  {base}/schema           (OpenAPI)\n"
        f"Try:\n  curl -s -X POST {base}/v1/allocations -H 'content-type: application/json' "
        """-d '{"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}'\n""",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The simulator in its own process, then the service pointed at it (what `make run` does):
    the demo's availability goes through the real adapters over HTTP."""
    import subprocess  # noqa: PLC0415 - only the demo starts processes
    import time  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from engine.sources.upstream import SECRETS_FILE_VARIABLE, env_name  # noqa: PLC0415

    sim_port: int = args.simulator_port
    command = [sys.executable, "-m", "engine", "simulator", "--host", args.host]
    command += ["--port", str(sim_port)]
    simulator = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module

    def stop(signum: int, frame: object) -> None:
        # uvicorn shuts down on SIGTERM, then raises it again with our handler in place:
        # exiting through Python (not the default handler) runs the `finally` below, so the
        # simulator never outlives the demo.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        health = f"http://{args.host}:{sim_port}/health"
        deadline = time.monotonic() + 15
        while True:
            if simulator.poll() is not None:
                print("the simulator did not start (see above)", file=sys.stderr)
                return 1
            try:
                with urllib.request.urlopen(health, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    print(f"the simulator did not answer at {health}", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        for offset, name in enumerate(("dr-levels", "dr-shopper", "shoplazza", "catalog"), 1):
            os.environ[env_name(name, "URL")] = f"http://{args.host}:{sim_port + offset}"
        os.environ.setdefault(SECRETS_FILE_VARIABLE, str(DEMO_SECRETS))
        args.availability = None
        return _serve(args)
    finally:
        simulator.terminate()
        try:
            simulator.wait(5)
        except subprocess.TimeoutExpired:
            simulator.kill()


def _budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget-ms",
        type=int,
        default=None,
        help="time one cart may wait for availability, all sources together "
        f"(default: ${BUDGET_VARIABLE}, else {DEFAULT_BUDGET_MS})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate rule files; exit 1 on any error")
    check.add_argument("rules", nargs="?", type=Path, default=DEFAULT_RULES)
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=_check)

    decide = sub.add_parser("decide", help="decide a cart from a JSON file ('-' for stdin)")
    decide.add_argument("cart")
    decide.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    decide.add_argument(
        "--availability",
        type=Path,
        default=None,
        help=f"a snapshot file (default: {DEFAULT_AVAILABILITY}, unless --upstream)",
    )
    decide.add_argument(
        "--upstream",
        action="store_true",
        help="ask the upstream APIs the rules configure (sources.yaml) instead of a snapshot",
    )
    decide.add_argument("--explain", action="store_true")
    _budget_option(decide)
    decide.add_argument(
        "--now",
        type=datetime.fromisoformat,
        default=None,
        help="decide as of this ISO 8601 time (default: now)",
    )
    decide.set_defaults(func=_decide)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    serve.add_argument(
        "--availability",
        type=Path,
        default=None,
        help="serve from this snapshot file instead of the upstream APIs the rules configure",
    )
    serve.add_argument("--log-level", default="info")
    _budget_option(serve)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser(
        "demo", help="the simulator and the service pointed at it, on the demo (make run)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--simulator-port", type=int, default=8100)
    demo.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    demo.add_argument("--log-level", default="info")
    _budget_option(demo)
    demo.set_defaults(func=_demo)

    sub.add_parser(
        "simulator",
        help="serve the four upstream inventory APIs from demo data, with fault switches",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulator"]:
        # The simulator parses its own options (argparse cannot hand them over untouched).
        from engine.simulator import main as simulator_main  # noqa: PLC0415

        return simulator_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RuleSetError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("the rules have errors; run `python -m engine check` for details", file=sys.stderr)
        return 1
    except (AvailabilityFileError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return code
