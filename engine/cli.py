"""Command line: `python -m engine check|decide|serve`.

`decide` goes through `Checkout`, the same path as the service, so a cart decided here is decided
exactly as `POST /v1/allocations` would decide it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

from engine.checkout import Checkout, utc_now
from engine.errors import AvailabilityFileError, Problem, RequestError, RuleSetError, Severity
from engine.model import Cart
from engine.policy import RuleSet, load_folder, load_rule_set
from engine.policy.compile import compile_files
from engine.service.problems import decode_error
from engine.sources.snapshot import SnapshotSource

__all__ = ("main",)

DEFAULT_RULES: Final = Path("rules")
DEFAULT_AVAILABILITY: Final = Path("demo/availability.json")


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


def _load_checkout(rules: Path, availability: Path, now: datetime | None = None) -> Checkout:
    rule_set = load_rule_set(rules)
    source = SnapshotSource.from_file(availability, now)
    clock = (lambda: now) if now is not None else utc_now
    return Checkout(rule_set, [source], clock=clock)


def _decide(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.cart == "-" else Path(args.cart).read_bytes()
    try:
        cart = msgspec.json.decode(raw, type=Cart)
    except msgspec.DecodeError as exc:
        error = decode_error(exc)
        print(f"{args.cart}: {error.detail}", file=sys.stderr)
        return 2
    checkout = _load_checkout(args.rules, args.availability, args.now)
    try:
        decision = asyncio.run(checkout.allocate(cart, explain=args.explain))
    except RequestError as exc:
        fields = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        print(f"{args.cart}: {exc.detail}" + (f" ({fields})" if fields else ""), file=sys.stderr)
        return 2
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(decision), indent=2) + b"\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only `serve` needs the server

    from engine.service import create_app  # noqa: PLC0415 - keeps `check` fast to start

    checkout = _load_checkout(args.rules, args.availability)
    app = create_app(checkout)
    base = f"http://{args.host}:{args.port}"
    print(
        f"Serving rule set {checkout.rules.id} from {args.rules}/ with availability from "
        f"{args.availability}\n"
        f"  {base}/v1/allocations   (POST a cart)\n"
        f"  {base}/schema           (OpenAPI)\n"
        f"Try:\n  curl -s -X POST {base}/v1/allocations -H 'content-type: application/json' "
        """-d '{"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 2}]}'\n""",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


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
    decide.add_argument("--availability", type=Path, default=DEFAULT_AVAILABILITY)
    decide.add_argument("--explain", action="store_true")
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
    serve.add_argument("--availability", type=Path, default=DEFAULT_AVAILABILITY)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
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
