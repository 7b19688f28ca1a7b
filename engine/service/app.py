"""The Litestar application: routes, strict request decoding, and problem+json errors.

Request bodies are decoded by msgspec in strict mode (`"5"` is not `5`) through `StrictDTO`,
so the generated OpenAPI still describes the `Cart` struct. Handlers are closures over one
`Checkout`, so no per-request dependency resolution sits on the hot path. One middleware around
the whole app times every request and gives it a request id; `GET /metrics` shows that, the
decisions and the sources' counters to Prometheus (`engine.service.metrics`).

The OpenAPI document is held to what the service does (tests/test_fuzz.py fuzzes the service
against it): request structs say they refuse unknown fields, every error is documented as the
problem+json it is, and routes answering encoded bytes name the shape of those bytes.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypedDict
from urllib.parse import parse_qsl

import msgspec
from litestar import HttpMethod, Litestar, MediaType, Request, Response, get, post, route
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.dto import MsgspecDTO
from litestar.enums import ParamType
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.params import Body, QueryParameter
from litestar.typing import FieldDefinition

from engine import __version__
from engine.checkout import Checkout
from engine.countries import CountryCode
from engine.errors import FieldError, InvalidRequest
from engine.explain_text import render
from engine.model import (
    CHANNEL_PATTERN,
    MAX_LINES,
    AvailabilityAnswer,
    Cart,
    Decision,
    Sku,
    schema_pattern,
)
from engine.reload import RuleReloader
from engine.service.admin import rule_admin_handlers
from engine.service.auth import SECURITY_SCHEME, ApiKeys, requires
from engine.service.metrics import Metrics, instrument, metrics_handler
from engine.service.problems import (
    DECODE_ERRORS,
    MAX_BODY_BYTES,
    decode_error,
    exception_handlers,
    problem_response,
    problem_responses,
    require_json,
)
from engine.service.simulate import simulate_handler

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = ("MAX_BODY_BYTES", "Readiness", "create_app", "readiness")


_CART_DECODER: Final = msgspec.json.Decoder(Cart)
_ENCODER: Final = msgspec.json.Encoder()


class StrictDTO(MsgspecDTO[Cart]):
    """Decode the body with a strict msgspec decoder; describe it in OpenAPI as `Cart`."""

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return _CART_DECODER.decode(value)
        except DECODE_ERRORS as exc:
            raise decode_error(exc) from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(Cart))


class _StructSchemas(StructSchemaPlugin):
    """Litestar's schemas of msgspec structs, saying what msgspec enforces: a struct that
    forbids unknown fields has `additionalProperties: false`, and a constrained
    `tuple[X, ...]` field has items X (Litestar reads the `...` as a second item type, giving
    `oneOf [X, {}]`, which every X also matches: no valid body would conform). Litestar 2 keeps
    the plugin it extends in a private module; should it move, the import fails at startup."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        struct = field_definition.type_
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            prop = (schema.properties or {}).get(field.encode_name)
            if not isinstance(field.type, msgspec.inspect.VarTupleType):
                continue
            if isinstance(prop, Schema) and isinstance(prop.items, Schema) and prop.items.one_of:
                kept = [item for item in prop.items.one_of if item != Schema()]
                prop.items = kept[0] if len(kept) == 1 else Schema(one_of=kept)
        _schema_patterns(schema)
        return schema


def _schema_patterns(schema: Schema) -> None:
    """Give every pattern in `schema` as JSON Schema reads it (see `schema_pattern`)."""
    if schema.pattern is not None:
        schema.pattern = schema_pattern(schema.pattern)
    nested = [
        *(schema.properties or {}).values(),
        *(schema.one_of or ()),
        *(schema.any_of or ()),
        *(schema.all_of or ()),
        *([schema.items] if schema.items is not None else []),
    ]
    for inner in nested:
        if isinstance(inner, Schema):
            _schema_patterns(inner)


def _string_schema(annotated: Any) -> Schema:
    """The schema of an `Annotated[str, Meta(...)]`, for where Litestar drops the `Meta` (the
    items of a list parameter)."""
    meta = next(m for m in typing.get_args(annotated)[1:] if isinstance(m, msgspec.Meta))
    return Schema(
        type=OpenAPIType.STRING,
        min_length=meta.min_length,
        max_length=meta.max_length,
        pattern=None if meta.pattern is None else schema_pattern(meta.pattern),
    )


def _ok(data_container: Any, description: str) -> dict[int, ResponseSpec]:
    """The 200 of a route that answers bytes it encoded itself: Litestar would say "a string"."""
    return {200: ResponseSpec(data_container, generate_examples=False, description=description)}


_EXPLAIN_VALUES: Final = ("false", "true", "text")
_EXPLAIN_MODES: Final[dict[str, str | None]] = {
    "false": None,
    "0": None,
    "true": "json",
    "1": "json",
    "text": "text",
}
"""`explain` as a boolean (as before: `true`/`false`/`1`/`0`, any case) or `text`."""


_EXPLAIN_DESCRIPTION: Final = (
    "`true`: add explanations to the JSON; `text`: answer the explanation as plain text; "
    "`false` (default): no explanation"
)


def _explain_query(query_string: bytes) -> str | None:
    """What the query string's `explain` asks for (see `_explain_mode`); the last one given
    when repeated, as Litestar reads a parameter. Read here rather than declared as a handler
    parameter: Litestar's query parsing and validation cost some 12 µs per cart, and nearly
    every cart sends no query at all. `_DecisionOperation` documents it."""
    if not query_string:
        return None
    value = None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, errors="replace")
    for name, given in pairs:
        if name == "explain":
            value = given
    return None if value is None else _explain_mode(value)


def _explain_mode(value: str) -> str | None:
    """What `?explain=` asks for: None, `json` or `text`; anything else is a 400 naming it."""
    try:
        return _EXPLAIN_MODES[value.lower()]
    except KeyError:
        message = "use true, false or text"
        raise InvalidRequest(
            f"explain: `{value}` is not an explain option; {message}",
            (FieldError("explain", message),),
        ) from None


@dataclass
class _DecisionOperation(Operation):
    """The decision's OpenAPI operation: the `explain` query parameter (read by the handler
    itself, see `_explain_query`); a 200 is JSON, or plain text with `explain=text`."""

    def __post_init__(self) -> None:
        self.parameters = [
            *(self.parameters or ()),
            Parameter(
                name="explain",
                param_in=ParamType.QUERY,
                required=False,
                description=_EXPLAIN_DESCRIPTION,
                schema=Schema(
                    type=OpenAPIType.STRING,
                    enum=list(_EXPLAIN_VALUES),
                    description=_EXPLAIN_DESCRIPTION,
                    default="false",
                ),
            ),
        ]
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content[MediaType.TEXT.value] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description="The decision explained for people (`explain=text`)",
                )
            )


class SourceHealth(TypedDict):
    health: Literal["ok", "degraded", "down"]
    breaker: str
    """The source's circuit breaker: `closed`, `half_open` or `open`."""
    retry_after_ms: int


class _Ready(TypedDict):
    status: Literal["ready", "draining"]
    rule_set: str
    sources: dict[str, SourceHealth]


class Readiness(_Ready, total=False):
    """What `/ready` says (a dict, as `readiness` builds it; the type documents it). The keys
    that may be missing are declared apart: under `from __future__ import annotations`, Python
    3.11 does not see `NotRequired`, and the schema would say they are always there."""

    rules_loaded_at: datetime | None
    """With a rules folder: when the rules in force were loaded."""
    last_reload_rejected: bool


def readiness(
    checkout: Checkout, reloader: RuleReloader | None, *, draining: bool = False
) -> Readiness:
    """What `/ready` says: the rule set in force and each upstream source's health."""
    sources: dict[str, SourceHealth] = {}
    for name, report in checkout.stats()["sources"].items():
        state = report["breaker"]["state"]
        health: Literal["ok", "degraded", "down"] = "ok"
        if state == "open":
            health = "down"
        elif state != "closed" or report["retry_after_ms"] > 0:
            health = "degraded"
        sources[name] = {
            "health": health,
            "breaker": state,
            "retry_after_ms": report["retry_after_ms"],
        }
    body: Readiness = {
        "status": "draining" if draining else "ready",
        "rule_set": checkout.rules.id,
        "sources": sources,
    }
    if reloader is not None:
        status = reloader.status()
        body["rules_loaded_at"] = status.get("loaded_at")
        body["last_reload_rejected"] = "last_rejected" in status
    return body


def _admission(api_keys: ApiKeys | None) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """The app's one `before_request`: the key, for a route whose `opt` names a `scope`, then
    the Content-Type, for one that takes a JSON body (`opt["json_body"]`), so 401/403 come
    before 415 and both before the body is read. A hook, not guards: Litestar copies the route
    handler for each guard call, which costs more than the check itself."""

    async def admit(request: Request[Any, Any, Any]) -> None:
        opt = request.scope["route_handler"].opt
        scope = opt.get("scope")
        if scope is not None and api_keys is not None:
            api_keys.check(request.scope["headers"], scope)
        if opt.get("json_body"):
            await require_json(request)

    return admit


def create_app(
    checkout: Checkout,
    *,
    debug: bool = False,
    on_shutdown: Sequence[Callable[[], Awaitable[Any]]] = (),
    reloader: RuleReloader | None = None,
    api_keys: ApiKeys | None = None,
    metrics: Metrics | None = None,
) -> Litestar:
    """Build the app around one `Checkout` (its rule set may be replaced while running).
    `on_shutdown` closes what the checkout's sources hold open (the upstream HTTP client).
    With a `reloader` (the checkout's rules folder) the rules reload on file edits, SIGHUP and
    `POST /v1/rules/reload`, and `GET /v1/rules/history` lists the loads. With `api_keys`
    every route that names a scope needs a key that has it; without, the service is open (the
    command line refuses that unless told to). `metrics` (by default a new one, on its own
    registry) is what `GET /metrics` shows."""
    if metrics is None:
        metrics = Metrics(checkout, reloader)
    record_decision = metrics.record_decision

    @post(
        "/v1/allocations",
        dto=StrictDTO,
        return_dto=None,
        status_code=200,
        summary="Decide a cart",
        description="Allocate, reserve or deny each line of a cart, with reasons. "
        "`explain=true` adds, per line, every location considered and the rule behind "
        "each setting; `explain=text` answers the same explanation as plain text "
        "(`text/plain`), for people.",
        tags=["decisions"],
        operation_class=_DecisionOperation,
        **requires("decide", json_body=True),
        responses=problem_responses(400, 401, 403, 413, 415, 422),
    )
    async def allocations(
        request: Request[Any, Any, Any],
        data: Annotated[Cart, Body(title="Cart", description="The lines and where they go")],
    ) -> Response[Decision]:
        mode = _explain_query(request.scope["query_string"])
        decision = await checkout.allocate(data, explain=mode is not None)
        record_decision(decision)
        if mode == "text":
            text: Response[Any] = Response(render(decision, data), media_type=MediaType.TEXT)
            return text
        # Encoded here by one msgspec encoder: Litestar's own serialisation of a struct costs
        # some 30 µs more per cart (its type-encoder lookups), for the same bytes.
        encoded: Response[Any] = Response(_ENCODER.encode(decision), media_type=MediaType.JSON)
        return encoded

    @get(
        "/v1/availability",
        summary="Availability of SKUs for a destination",
        tags=["availability"],
        **requires("decide"),
        responses=problem_responses(400, 401, 403),
    )
    async def availability(
        sku: Annotated[
            list[Sku],
            QueryParameter(
                min_items=1,
                max_items=MAX_LINES,
                description="Repeat for several SKUs",
                schema_extra={"items": _string_schema(Sku)},
            ),
        ],
        country: Annotated[CountryCode, QueryParameter(description="ISO 3166-1 alpha-2")],
        channel: Annotated[
            str | None,
            QueryParameter(
                pattern=CHANNEL_PATTERN,
                max_length=40,
                description="Sales channel",
                schema_extra={"pattern": schema_pattern(CHANNEL_PATTERN)},
            ),
        ] = None,
    ) -> AvailabilityAnswer:
        return await checkout.availability(sku, country, channel)

    @get(
        "/v1/rules",
        summary="The active rule set (admin)",
        tags=["rules"],
        **requires("admin"),
        responses={
            **_ok(dict[str, Any], "The rule set: locations, catalog size, defaults, rules"),
            **problem_responses(401, 403),
        },
    )
    async def rules() -> Response[bytes]:
        body = checkout.rules.describe()
        if reloader is not None:
            body.update(reloader.status())  # loaded_at; last_rejected while a bad edit stands
        return Response(msgspec.json.encode(body), media_type=MediaType.JSON)

    @get(
        "/v1/sources",
        summary="Availability sources: cache, upstream and breaker counters (admin)",
        tags=["operations"],
        **requires("admin"),
        responses={
            **_ok(dict[str, Any], "The budget, and each cached source's counters"),
            **problem_responses(401, 403),
        },
    )
    async def sources() -> Response[bytes]:
        return Response(msgspec.json.encode(checkout.stats()), media_type=MediaType.JSON)

    # Load balancers probe with HEAD: the server sends the GET's headers without its body.
    @route(
        "/health",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="Liveness",
        tags=["operations"],
    )
    async def health() -> dict[str, str]:
        return {"status": "ok", "rule_set": checkout.rules.id}

    draining = False

    async def drain() -> None:
        nonlocal draining
        draining = True

    @route(
        "/ready",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="Readiness: rules loaded, and each source's health",
        description="200 while the service decides carts: the rule set in force and, per "
        "upstream source, `ok`, `degraded` (its breaker is half-open or it asked to back off: "
        "answers may be stale) or `down` (breaker open: its SKUs are served stale or unknown). "
        "A source's outage does not make the service unready, since carts are still decided; "
        "503 once it is shutting down.",
        tags=["operations"],
        responses={
            **_ok(Readiness, "Ready: the rule set in force, and each source's health"),
            **problem_responses(503),
        },
    )
    async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
        if draining:
            return problem_response(
                request,
                503,
                "Service Unavailable",
                "the service is shutting down: send requests to another instance",
            )
        body = readiness(checkout, reloader)
        return Response(msgspec.json.encode(body), media_type=MediaType.JSON)

    simulate_rules = simulate_handler(checkout)  # admin; its own, larger body limit
    scrape = metrics_handler(metrics)  # open, like /health and /ready
    app = Litestar(
        route_handlers=[
            allocations,
            availability,
            rules,
            sources,
            health,
            ready,
            scrape,
            simulate_rules,
        ]
        + (rule_admin_handlers(reloader) if reloader is not None else []),
        exception_handlers=exception_handlers,
        before_request=_admission(api_keys),
        request_max_body_size=MAX_BODY_BYTES,
        on_startup=[reloader.start] if reloader is not None else [],
        on_shutdown=[drain, *([reloader.stop] if reloader is not None else []), *on_shutdown],
        plugins=[_StructSchemas()],
        openapi_config=OpenAPIConfig(
            title="Checkout allocation engine",
            version=__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    SECURITY_SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key with the route's scope (`decide` or `admin`), "
                        "as `Authorization: Bearer <key>` (or `X-API-Key: <key>`)",
                    )
                }
            ),
        ),
        debug=debug,
        logging_config=None,  # the process's logging is `engine.logs.configure_logging`'s
    )
    return instrument(app, metrics)
