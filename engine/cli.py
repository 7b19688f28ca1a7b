"""Command line: `python -m engine check|test|decide|serve|simulator`.

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
from typing import Final, Literal

import msgspec

from engine.availability import Source
from engine.checkout import BUDGET_VARIABLE, DEFAULT_BUDGET_MS, Checkout, budget_seconds, utc_now
from engine.errors import AvailabilityFileError, Problem, RequestError, RuleSetError, Severity
from engine.logs import configure_logging
from engine.model import Cart, Decision
from engine.policy import RuleSet, load_folder, load_rule_set
from engine.policy.compile import compile_files
from engine.record import RECORD_SAMPLE_VARIABLE, RECORD_VARIABLE, recorder_from
from engine.reload import (
    DEFAULT_POLL_INTERVAL,
    WATCH_VARIABLE,
    RuleReloader,
    SourcesFor,
    keep_sources,
    watch_enabled,
)
from engine.service.auth import (
    API_KEYS_FILE_VARIABLE,
    SCOPES,
    ApiKeys,
    KeyFileError,
    digest,
    new_key,
)
from engine.service.problems import decode_error
from engine.simulate import command as simulate_command
from engine.sources.snapshot import SnapshotSource

__all__ = ("main",)

DEFAULT_RULES: Final = Path("rules")
DEFAULT_AVAILABILITY: Final = Path("demo/availability.json")
DEMO_SECRETS: Final = Path("demo/secrets.json")
"""The simulator's demo tokens (fake credentials for a fake upstream, so they may be shipped)."""
DEMO_API_KEYS: Final = Path("demo/api-keys.json")
"""The demo's API keys (their hashes); the keys themselves are public, printed by the demo."""
DEMO_KEYS: Final = {"decide": "demo-checkout-key", "admin": "demo-admin-key"}
ANONYMOUS_VARIABLE: Final = "ENGINE_ALLOW_ANONYMOUS"


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


def _test(args: argparse.Namespace) -> int:
    """Rule tests: decide each test's cart on its own availability and compare."""
    from engine.rule_tests import run_folder  # noqa: PLC0415 - keeps the other commands light

    return run_folder(args.rules, name_filter=args.filter)


def _load_checkout(
    rules: Path,
    availability: Path | None,
    *,
    upstream: bool,
    now: datetime | None = None,
    budget: float = DEFAULT_BUDGET_MS / 1000,
) -> tuple[Checkout, str, Callable[[], Awaitable[None]] | None, SourcesFor]:
    """The checkout, where its availability comes from, what closes its upstream connections
    (None for a snapshot), and what builds the sources of a reloaded rule set. Without a
    snapshot file named, the rules' upstream sources are used when `upstream` is set and the
    rules have any, else the demo snapshot."""
    rule_set = load_rule_set(rules)
    clock = (lambda: now) if now is not None else utc_now
    if availability is None and not (upstream and rule_set.sources):
        availability = DEFAULT_AVAILABILITY
    if availability is not None:
        source = SnapshotSource.from_file(availability, now)
        checkout = Checkout(rule_set, [source], clock=clock, budget=budget)
        return checkout, str(availability), None, keep_sources
    from engine.sources.upstream import UpstreamSources, new_client  # noqa: PLC0415 - httpx

    client = new_client()
    sources_for = UpstreamSources(client)
    sources: tuple[Source, ...] = sources_for(rule_set)
    origin = "the upstream APIs " + ", ".join(
        f"{s.name} ({s.api})" for s in rule_set.sources if s.location_ids
    )
    checkout = Checkout(rule_set, sources, clock=clock, budget=budget)
    return checkout, origin, client.aclose, sources_for


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
    checkout, _, close, _ = _load_checkout(
        args.rules, args.availability, upstream=args.upstream, now=args.now, budget=budget
    )

    async def run() -> Decision:
        try:
            return await checkout.allocate(cart, explain=args.explain or args.format == "text")
        finally:
            if close is not None:
                await close()

    try:
        decision = asyncio.run(run())
    except RequestError as exc:
        fields = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        print(f"{args.cart}: {exc.detail}" + (f" ({fields})" if fields else ""), file=sys.stderr)
        return 2
    if args.format == "text":
        from engine.explain_text import render  # noqa: PLC0415 - only the text format needs it

        sys.stdout.write(render(decision, cart))
        return 0
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(decision), indent=2) + b"\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only `serve` needs the server

    from engine.service import create_app  # noqa: PLC0415 - keeps `check` fast to start

    budget = _budget(args)
    if budget is None:
        return 2
    configure_logging(args.log_level, json=args.log_format == "json")
    if args.watch_interval <= 0:
        print("--watch-interval must be above 0 seconds", file=sys.stderr)
        return 2
    try:
        recorder = recorder_from(args.record, args.record_sample)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    api_keys = _api_keys(args)
    if api_keys is False:
        return 2
    checkout, origin, close, sources_for = _load_checkout(
        args.rules, args.availability, upstream=True, budget=budget
    )
    closers = [close] if close is not None else []
    if recorder is not None:
        checkout.recorder = recorder
        recorder.start()
        closers.append(recorder.aclose)
    # One line per upstream request at INFO would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    watch = watch_enabled(args.watch)
    reloader = RuleReloader(
        args.rules,
        checkout,
        sources_for=sources_for,
        watch=watch,
        poll_interval=args.watch_interval,
    )
    app = create_app(
        checkout,
        on_shutdown=closers,
        reloader=reloader,
        api_keys=api_keys or None,
    )
    base = f"http://{args.host}:{args.port}"
    also = (["on every edit"] if watch else []) + (
        [f"on kill -HUP {os.getpid()}"] if hasattr(signal, "SIGHUP") else []
    )
    decide_key, admin_key = (
        (DEMO_KEYS["decide"], DEMO_KEYS["admin"])
        if getattr(args, "demo_keys", False)
        else ("$KEY", "$ADMIN_KEY")
    )
    auth = f' -H "authorization: Bearer {decide_key}"' if api_keys else ""
    admin_auth = f' -H "authorization: Bearer {admin_key}"' if api_keys else ""
    if api_keys:
        keys_line = (
            f"API keys: {', '.join(api_keys.names)} (from {args.api_keys})"
            + (
                f"; the demo's: {DEMO_KEYS['decide']} (decide), {DEMO_KEYS['admin']} "
                "(decide, admin)"
                if getattr(args, "demo_keys", False)
                else ""
            )
            + "\n"
        )
    else:
        keys_line = "No API keys: every route is open (--allow-anonymous)\n"
    print(
        f"Serving rule set {checkout.rules.id} from {args.rules}/ with availability from "
        f"{origin}, within {round(budget * 1000)} ms per cart\n"
        f"  {base}/v1/allocations   (POST a cart)\n"
        f"  {base}/v1/sources       (cache, upstream and breaker counters)\n"
        f"  {base}/metrics          (Prometheus)\n"
        f"  {base}/v1/rules/reload  (POST: reload {args.rules}/"
        + "".join(f"; also {what}" for what in also)
        + ")\n"
        f"  {base}/schema           (OpenAPI)\n"
        + keys_line
        + f"Try:\n  curl -s -X POST {base}/v1/allocations{auth} "
        "-H 'content-type: application/json' "
        """-d '{"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}'\n"""
        f"  curl -s {base}/v1/rules{admin_auth}\n",
        flush=True,
    )
    if recorder is not None:
        print(f"Recording {recorder.sample:.0%} of decisions to {recorder.path}", flush=True)
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (for at most
    # --shutdown-timeout seconds), then runs the app's shutdown: nothing a checkout waits on is
    # cut off by a deploy.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,  # keep the handlers configure_logging set
        access_log=False,
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
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
        if args.api_keys is None and not args.allow_anonymous:
            args.api_keys, args.demo_keys = DEMO_API_KEYS, True
        return _serve(args)
    finally:
        simulator.terminate()
        try:
            simulator.wait(5)
        except subprocess.TimeoutExpired:
            simulator.kill()


def _simulate(args: argparse.Namespace) -> int:
    """Decide recorded carts under the live rules and a candidate; report what changes."""
    return simulate_command(
        carts=args.carts,
        candidate=args.rules,
        live=args.live,
        availability=args.availability,
        default_availability=DEFAULT_AVAILABILITY,
        show=args.show,
        output=args.format,
        now=args.now,
        out=sys.stdout,
        err=sys.stderr,
    )


def _show(text: str) -> int | None:
    """`--show N` or `--show all` (None)."""
    if text == "all":
        return None
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"a number of carts or `all`, not {text!r}")
    return number


def _record_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"append sampled decisions, with their availability, to this JSON lines file for "
        f"`simulate` (default: ${RECORD_VARIABLE}; off when unset)",
    )
    parser.add_argument(
        "--record-sample",
        type=float,
        default=None,
        metavar="RATE",
        help=f"share of decisions recorded, 0 to 1 (default: ${RECORD_SAMPLE_VARIABLE}, else 1)",
    )


def _shutdown_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="on SIGTERM, seconds to let requests in flight finish (default: 10)",
    )


def _key_options(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    parser.add_argument(
        "--api-keys",
        type=Path,
        default=None,
        help=f"the API keys file (default: ${API_KEYS_FILE_VARIABLE}"
        + (f", else the demo's {DEMO_API_KEYS}" if demo else "")
        + "); `python -m engine keys new` makes one",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=os.environ.get(ANONYMOUS_VARIABLE, "").lower() in {"1", "true", "yes"},
        help=f"run with every route open when no keys are given (or {ANONYMOUS_VARIABLE}=1)",
    )


def _api_keys(args: argparse.Namespace) -> ApiKeys | Literal[False] | None:
    """The keys to enforce; None to run open (only when allowed); False: refuse to start."""
    path = args.api_keys
    if path is None and os.environ.get(API_KEYS_FILE_VARIABLE):
        path = args.api_keys = Path(os.environ[API_KEYS_FILE_VARIABLE])
    if path is None:
        if args.allow_anonymous:
            return None
        print(
            f"no API keys: give --api-keys FILE or {API_KEYS_FILE_VARIABLE} (make one with "
            f"`python -m engine keys new --name NAME --scope decide`), or run with every route "
            f"open with --allow-anonymous ({ANONYMOUS_VARIABLE}=1)",
            file=sys.stderr,
        )
        return False
    try:
        return ApiKeys.from_file(path)
    except KeyFileError as exc:
        print(str(exc), file=sys.stderr)
        return False


def _keys(args: argparse.Namespace) -> int:
    """`keys new`: a fresh key, and the entry that lets it in (the file keeps only its hash)."""
    key = new_key()
    entry = {"name": args.name, "scopes": sorted(set(args.scope)), "sha256": digest(key)}
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print(f'entry for the keys file ({API_KEYS_FILE_VARIABLE}), under "keys":')
    print(msgspec.json.encode(entry).decode())
    return 0


def _budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget-ms",
        type=int,
        default=None,
        help="time one cart may wait for availability, all sources together "
        f"(default: ${BUDGET_VARIABLE}, else {DEFAULT_BUDGET_MS})",
    )


def _log_options(parser: argparse.ArgumentParser, *, default: str = "json") -> None:
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=default,
        help="json: one JSON object per line, for log collectors; text: for people "
        f"(default: {default})",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reload the rules when a file in the folder changes "
        f"(default: on; {WATCH_VARIABLE}=0 turns it off)",
    )
    parser.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"how often to look at the rules folder (default: {DEFAULT_POLL_INTERVAL:g})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate rule files; exit 1 on any error")
    check.add_argument("rules", nargs="?", type=Path, default=DEFAULT_RULES)
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=_check)

    test = sub.add_parser(
        "test", help="run the rule tests in <rules>/tests/; exit 1 on any failure"
    )
    test.add_argument("rules", nargs="?", type=Path, default=DEFAULT_RULES)
    test.add_argument("--filter", default=None, help="only the tests whose name contains this text")
    test.set_defaults(func=_test)

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
    decide.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json (default), or text: the explanation for people (implies --explain)",
    )
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
    _log_options(serve)
    _shutdown_option(serve)
    _key_options(serve)
    _budget_option(serve)
    _watch_options(serve)
    _record_options(serve)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser(
        "demo", help="the simulator and the service pointed at it, on the demo (make run)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--simulator-port", type=int, default=8100)
    demo.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    _log_options(demo, default="text")  # the demo is read by people
    _shutdown_option(demo)
    _key_options(demo, demo=True)
    _budget_option(demo)
    _watch_options(demo)
    _record_options(demo)
    demo.set_defaults(func=_demo)

    simulate = sub.add_parser(
        "simulate",
        help="decide recorded carts under the live rules and a candidate; show what changes",
    )
    simulate.add_argument(
        "--carts",
        type=Path,
        required=True,
        help="JSON lines: decisions recorded by `serve --record`, or bare carts",
    )
    simulate.add_argument("--rules", type=Path, required=True, help="the candidate rules folder")
    simulate.add_argument(
        "--live",
        type=Path,
        default=DEFAULT_RULES,
        help=f"the live rules (default: {DEFAULT_RULES})",
    )
    simulate.add_argument(
        "--availability",
        type=Path,
        default=None,
        help=f"a snapshot for bare carts (default: {DEFAULT_AVAILABILITY}) and, when given, for "
        "stock a recording does not hold (else unknown)",
    )
    simulate.add_argument(
        "--show",
        type=_show,
        default=20,
        metavar="N|all",
        help="changed carts shown in detail, with the rules responsible (default: 20)",
    )
    simulate.add_argument("--format", choices=("text", "json"), default="text")
    simulate.add_argument(
        "--now",
        type=datetime.fromisoformat,
        default=None,
        help="the time bare carts are decided at (default: now); recorded ones keep theirs",
    )
    simulate.set_defaults(func=_simulate)

    keys = sub.add_parser("keys", help="API keys: `keys new` makes one")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="a fresh key and its entry for the keys file")
    new.add_argument("--name", required=True, help="who uses it, e.g. checkout-web")
    new.add_argument(
        "--scope", action="append", choices=SCOPES, required=True, help="repeat for several"
    )
    new.set_defaults(func=_keys)

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
