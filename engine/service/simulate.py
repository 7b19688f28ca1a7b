"""`POST /v1/rules/simulate`: `python -m engine simulate` for an admin, over HTTP.

The body gives candidate rule files by name and, optionally, the carts (recorded decisions or
bare carts); without carts, the service's own recording is read (its last `last` decisions). The
answer is the report `--format json` prints. Compiling the candidate and simulating run in a
worker thread, one simulation at a time, so carts go on being decided meanwhile.

A simulation's body carries rule files and thousands of recorded carts, far more than a cart:
this route takes up to `SIMULATE_MAX_BODY_BYTES`, the others keep their own limit. Since the
handler reads the body itself, `_SimulateOperation` documents it: with msgspec's own schema of
`SimulateRequest`, which is what the decoder enforces.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import MediaType, Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from msgspec import Meta, Struct

from engine.availability import Availability, gather
from engine.checkout import Checkout
from engine.errors import FieldError, InvalidRequest, RuleSetError, Severity
from engine.model import schema_pattern
from engine.policy import RuleSet, load_rule_set_texts
from engine.reload import shown_problems
from engine.service.auth import requires
from engine.service.problems import (
    DECODE_ERRORS,
    decode_error,
    invalid_rules,
    invalid_rules_response,
    problem_response,
    problem_responses,
)
from engine.simulate import CartsFileError, Entry, Report, parse_entry, read_carts, simulate

__all__ = ("MAX_CARTS", "SIMULATE_MAX_BODY_BYTES", "SimulateRequest", "simulate_handler")

SIMULATE_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
"""About 15,000 recorded five-line carts with their availability, or far more bare carts."""
MAX_CARTS: Final = 100_000
DEFAULT_LAST: Final = 10_000
GATHER_SECONDS: Final = 5.0
"""How long bare carts' availability may take to gather from the service's sources (once for
all of them); what has not come by then is unknown, as for any cart."""
_FILE_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.ya?ml$")


class SimulateRequest(Struct, frozen=True, forbid_unknown_fields=True):
    files: Annotated[dict[str, str], Meta(min_length=1, max_length=100)]
    """Candidate rule files, name -> YAML text; read in name order, as in a folder."""
    carts: Annotated[list[msgspec.Raw], Meta(max_length=MAX_CARTS)] | None = None
    """Recorded decisions or bare carts; default: the service's recording."""
    show: Annotated[int, Meta(ge=0)] | Literal["all"] = 20
    """Changed carts reported in detail (and explained)."""
    last: Annotated[int, Meta(ge=1, le=MAX_CARTS)] = DEFAULT_LAST
    """Without `carts`: how many of the most recent recorded decisions to simulate."""


_REQUEST_DECODER: Final = msgspec.json.Decoder(SimulateRequest)


class _Prepared(Struct, frozen=True):
    request: SimulateRequest
    candidate: RuleSet
    entries: list[Entry]
    carts: str
    name: str
    """How a cart without a `cart_id` is called: its index in the request, or its line."""
    read_s: float


def _prepare(body: bytes, checkout: Checkout) -> _Prepared:
    """Decode the body, read the carts, compile the candidate (in a worker thread)."""
    started = time.perf_counter()
    try:
        request = _REQUEST_DECODER.decode(body)
    except DECODE_ERRORS as exc:
        raise decode_error(exc) from None
    for name in request.files:
        if not _FILE_NAME.fullmatch(name):
            message = "a rule file name is letters, digits, `.`, `-`, `_`, ending in .yaml"
            raise InvalidRequest(
                f"$.files: {name!r}: {message}", (FieldError(f"$.files.{name}", message),)
            )
    if request.carts is not None:
        entries = []
        for index, raw in enumerate(request.carts):
            try:
                entries.append(parse_entry(raw, index))
            except DECODE_ERRORS as exc:
                error = decode_error(exc, "the cart")
                path = f"$.carts[{index}]"
                fields = tuple(
                    FieldError(path + e.field.removeprefix("$"), e.message) for e in error.errors
                )
                raise InvalidRequest(
                    "; ".join(f"{f.field}: {f.message}" for f in fields), fields
                ) from None
        carts, name = f"the request ({len(entries)} carts)", "carts[{}]"
    else:
        recorder = checkout.recorder
        if recorder is None:
            message = "no carts given, and the service records none (serve --record FILE)"
            raise InvalidRequest(f"$.carts: {message}", (FieldError("$.carts", message),))
        recorder.flush()
        entries = read_carts(recorder.path, last=request.last)
        carts, name = f"the recording (its last {len(entries)} decisions)", "line {}"
    # After the body: a malformed request is a 400 whatever its rules say.
    candidate = load_rule_set_texts(sorted(request.files.items()))
    return _Prepared(request, candidate, entries, carts, name, time.perf_counter() - started)


_SCHEMA_KEYS: Final = frozenset({"items", "additionalProperties", "propertyNames", "not"})
_SCHEMA_LISTS: Final = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})


def _openapi_schema(json_schema: dict[str, Any]) -> Schema:
    """A JSON Schema as msgspec writes it, as Litestar's `Schema` (same words, its field names)."""
    aliases = Schema.field_aliases()
    return Schema(**{aliases.get(k, k): _schema_value(k, v) for k, v in json_schema.items()})


def _schema_value(key: str, value: Any) -> Any:
    if key in _SCHEMA_KEYS and isinstance(value, dict):
        return _openapi_schema(value)
    if key in _SCHEMA_LISTS:
        return [_openapi_schema(v) for v in value]
    if key == "properties":
        return {name: _openapi_schema(v) for name, v in value.items()}
    if key == "pattern":
        return schema_pattern(value)
    return value


def _request_schema() -> Schema:
    """`SimulateRequest` as msgspec decodes it, and the file names `_prepare` takes."""
    _, components = msgspec.json.schema_components([SimulateRequest])
    schema = _openapi_schema(components[SimulateRequest.__name__])
    files = (schema.properties or {})["files"]
    assert isinstance(files, Schema)
    files.property_names = Schema(pattern=_FILE_NAME.pattern)
    return schema


@dataclass
class _SimulateOperation(Operation):
    """The route reads its body itself (to decode it in a worker thread), so Litestar finds no
    `data` to document: the request body is set here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={MediaType.JSON.value: OpenAPIMediaType(schema=_request_schema())},
            required=True,
        )


def simulate_handler(checkout: Checkout) -> HTTPRouteHandler:
    """The route, a closure over the service's checkout (its live rules, sources, recorder)."""
    one_at_a_time = asyncio.Lock()

    @post(
        "/v1/rules/simulate",
        status_code=200,
        request_max_body_size=SIMULATE_MAX_BODY_BYTES,
        summary="Simulate candidate rules on recorded carts (admin)",
        description="Decide recorded carts under the live rules and the candidate files given, "
        "and report how many decisions change and how, then each changed cart with the rules "
        "responsible: the report of `python -m engine simulate --format json`. Body: "
        '`{"files": {"rules.yaml": "..."}, "carts": [...], "show": 20}`; without `carts`, the '
        "service's recording (`serve --record`), its `last` 10,000 decisions. 422 "
        "(`/problems/invalid-rules`) lists the candidate's problems. Needs the `admin` scope.",
        tags=["rules"],
        **requires("admin", json_body=True),
        operation_class=_SimulateOperation,
        responses={
            200: ResponseSpec(
                Report, generate_examples=False, description="The simulation's report"
            ),
            **problem_responses(400, 401, 403, 413, 415),
            422: invalid_rules_response(),
        },
    )
    async def simulate_rules(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Admin: needs the `admin` scope when the service has API keys."""
        body = await request.body()
        async with one_at_a_time:
            try:
                prepared = await asyncio.to_thread(_prepare, body, checkout)
            except RuleSetError as exc:
                return _invalid(request, exc)
            except CartsFileError as exc:
                return problem_response(
                    request, 500, "Internal error", f"the recording cannot be read: {exc}"
                )
            live, sources = checkout.rules, checkout.sources
            now = checkout.clock()
            snapshot: Availability | None = None
            bare = {
                line.sku
                for e in prepared.entries
                if e.availability is None
                for line in e.cart.lines
            }
            if bare:
                locations = {*live.location_ids, *prepared.candidate.location_ids}
                deadline = time.monotonic() + GATHER_SECONDS
                snapshot = await gather(bare, sources, locations, deadline=deadline)
            request_show = prepared.request.show
            report = await asyncio.to_thread(
                lambda: msgspec.json.encode(
                    simulate(
                        prepared.entries,
                        live,
                        prepared.candidate,
                        now=now,
                        snapshot=snapshot,
                        show=None if request_show == "all" else request_show,
                        labels=("live", "candidate"),
                        folders=("", ""),
                        carts=prepared.carts,
                        name=prepared.name,
                        read_s=prepared.read_s,
                    )
                )
            )
        return Response(report, media_type=MediaType.JSON)

    return simulate_rules


def _invalid(request: Request[Any, Any, Any], exc: RuleSetError) -> Response[bytes]:
    errors = [p for p in exc.problems if p.severity is Severity.ERROR]
    first = f", the first: {errors[0]}" if errors else ""
    return invalid_rules(
        request.url.path,
        f"{len(errors)} error(s) in the candidate rules{first}. Nothing was simulated.",
        shown_problems(exc.problems),
    )
