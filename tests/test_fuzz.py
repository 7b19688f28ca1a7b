"""Fuzzing the HTTP service: schemathesis against its own OpenAPI, and a hand-made malformed corpus.

Everything runs in process on the ASGI app (no server, no network), with API keys on as deployed,
over the demo rules copied to a temporary folder, so a fuzzed reload reads the copy and never
`rules/`. What must hold for every request: no 5xx; every error is `application/problem+json`
whose `type`, `title` and `status` are set, `status` being the HTTP status; every response
conforms to the OpenAPI schema.

Where the schema does not describe what the service answers, the gap is listed below
(`UNDOCUMENTED_ERRORS`, `UNDOCUMENTED_BODIES`, or a strict xfail in `REQUEST_SCHEMA`): the
fuzzing leaves only that part of the conformance check out, and a strict xfail pins the gap, so
it fails loudly once the schema is fixed and the entry must go. For the same reason, a bug found
in the service is pinned by a strict xfail whose reason starts with `BUG` (`bug`) until fixed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.checkout import Checkout
from engine.cli import DEMO_KEYS
from engine.countries import COUNTRY_CODES
from engine.model import MAX_LINES, MAX_QUANTITY
from engine.policy import load_rule_set
from engine.reload import RuleReloader
from engine.service import create_app
from engine.service.app import MAX_BODY_BYTES
from engine.service.auth import ApiKeys
from engine.service.simulate import SIMULATE_MAX_BODY_BYTES
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, DEMO_LOCATIONS, NOW, ROOT, RULES

PROBLEM_JSON: Final = "application/problem+json"
KEYS_FILE: Final = ROOT / "demo" / "api-keys.json"
ADMIN: Final = {"Authorization": f"Bearer {DEMO_KEYS['admin']}"}
"""The demo's admin key: it has every scope, so the fuzzing reaches every handler."""
CART: Final = {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}
DEMO_RULES: Final = load_rule_set(RULES)
SKUS: Final = sorted(DEMO_RULES.catalog)
CHANNELS: Final = sorted(DEMO_RULES.channels)
SHIPPED_TO: Final = ["DE", "FR", "GB", "IE", "NL", "US"]
"""Countries the demo locations ship to, so that generated carts are not all denied."""


def serve(folder: Path) -> Litestar:
    """The service as deployed (API keys on, a reloader) over a copy of the demo rules."""
    shutil.copytree(RULES, folder, ignore=shutil.ignore_patterns("tests"))
    checkout = Checkout(
        load_rule_set(folder),
        [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)],
        clock=lambda: NOW,
    )
    return create_app(
        checkout,
        reloader=RuleReloader(folder, checkout, watch=False),
        api_keys=ApiKeys.from_file(KEYS_FILE),
    )


def rule_files() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(RULES.glob("*.yaml"))}


# --- what the schema must describe --------------------------------------------------------------

ERROR_STATUSES: Final[dict[str, tuple[int, ...]]] = {
    "POST /v1/allocations": (400, 401, 403, 413, 415, 422),
    "GET /v1/availability": (400, 401, 403),
    "GET /v1/rules": (401, 403),
    "GET /v1/sources": (401, 403),
    "GET /v1/rules/history": (401, 403),
    "POST /v1/rules/reload": (401, 403, 422),
    "POST /v1/rules/simulate": (400, 401, 403, 413, 415, 422),
    "GET /ready": (503,),
}
"""The problem+json errors each operation answers (the corpus below shows each kind, and
`test_ready_while_shutting_down_is_a_503_problem` the 503), besides the 404 and 405 of any
path."""

UNDOCUMENTED_ERRORS: Final[frozenset[str]] = frozenset()
"""Operations whose error responses the schema does not describe as problem+json (Litestar
would document, at most, its default 400 as `application/json` `{status_code, detail, extra}`).
Their 4xx are still held to the problem+json check; only the schema checks are left out for
them. None now: each route lists its errors (`engine.service.problems.problem_responses`)."""

ENCODED_BODIES: Final = (
    "GET /v1/rules",
    "GET /v1/sources",
    "GET /v1/rules/history",
    "GET /ready",
    "POST /v1/rules/reload",
    "POST /v1/rules/simulate",
)
"""Operations returning `Response[bytes]`, which Litestar would document as a JSON string:
each names the shape of its bytes (`responses={200: ...}`)."""

UNDOCUMENTED_BODIES: Final[frozenset[str]] = frozenset()
"""Those of `ENCODED_BODIES` whose 200 the schema still calls a JSON string. None now."""


def _cart_schema(raw: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = raw["components"]["schemas"]["Cart"]
    return schema


def _lines_are_cart_lines(raw: dict[str, Any]) -> bool:
    items = _cart_schema(raw)["properties"]["lines"]["items"]
    return items == {"$ref": "#/components/schemas/CartLine"}


def _unknown_fields_refused(raw: dict[str, Any]) -> bool:
    schemas = raw["components"]["schemas"]
    return all(schemas[name].get("additionalProperties") is False for name in ("Cart", "CartLine"))


def _sku_parameter_constrained(raw: dict[str, Any]) -> bool:
    parameters = raw["paths"]["/v1/availability"]["get"]["parameters"]
    items = next(p for p in parameters if p["name"] == "sku")["schema"]["items"]
    wanted = {"minLength": 1, "maxLength": 100, "pattern": r"^(?:\S+)$"}
    return all(items.get(key) == value for key, value in wanted.items())


def _patterns(node: Any) -> list[str]:
    """Every `pattern` in a JSON document."""
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def _patterns_are_plain_json_schema(raw: dict[str, Any]) -> bool:
    patterns = _patterns(raw)
    # Cart's channel, pickup_location, lines' sku; the availability sku items and channel.
    return len(patterns) >= 5 and not any(re.search(r"\(\?[^:]", p) for p in patterns)


def _simulate_body_documented(raw: dict[str, Any]) -> bool:
    return "requestBody" in raw["paths"]["/v1/rules/simulate"]["post"]


REQUEST_SCHEMA: Final = [
    pytest.param(
        _lines_are_cart_lines,
        id="Cart.lines items are CartLine",
        # Litestar alone says `oneOf [CartLine, {}]` (on `Annotated[tuple[CartLine, ...],
        # Meta]`): a valid line matches both, so no valid cart would conform.
    ),
    pytest.param(
        _unknown_fields_refused,
        id="Cart and CartLine refuse unknown fields",
        # The structs forbid unknown fields (400): the schema must not allow them.
    ),
    pytest.param(
        _sku_parameter_constrained,
        id="availability sku items are Skus",
        # Else `sku=` or a SKU with a space is valid by the schema and refused (400).
    ),
    pytest.param(
        _patterns_are_plain_json_schema,
        id="patterns have no lookahead",
        # The service checks `^...$(?!\n)` (Python's `$` matches before a final newline);
        # JSON Schema's `$` does not, and some of its validators refuse a lookahead.
    ),
    pytest.param(
        _simulate_body_documented,
        id="simulate documents its body",
        # The handler reads the raw body: without a documented requestBody, schemathesis sends
        # none and only ever gets the 400 of an empty body.
    ),
]
"""What the schema must say for the fuzzing to reach the handlers with valid requests."""


# --- schemathesis -------------------------------------------------------------------------------

FUZZ_CONFIG: Final = {
    "auth": {"openapi": {"ApiKey": {"bearer": DEMO_KEYS["admin"]}}},
    "generation": {"with-security-parameters": False},
}
"""Every generated request carries the admin key, and the key itself is not fuzzed: otherwise
most negative cases would be a missing key and stop at the 401. The keys are tried in the corpus.
An explicit config also keeps a `schemathesis.toml` lying around from changing the run."""

OPERATIONS: Final[dict[str, int]] = {
    "POST /v1/allocations": 60,
    "GET /v1/availability": 150,
    "GET /v1/rules": 5,
    "GET /v1/sources": 5,
    "GET /health": 5,
    "HEAD /health": 5,
    "GET /ready": 5,
    "HEAD /ready": 5,
    "POST /v1/rules/simulate": 5,
    "POST /v1/rules/reload": 5,
    "GET /v1/rules/history": 5,
}
"""Examples per operation. POST /v1/allocations gets few: carts generated from the schema name
SKUs no catalog has, so they are all denied alike; the decisions are fuzzed with carts built here
(`test_schemathesis_valid_carts`). Operations without input
generate one or two distinct requests whatever the budget. An operation not listed is fuzzed by
`test_schemathesis_unlisted_operations`."""
UNLISTED_EXAMPLES: Final = 20

FUZZ_SETTINGS: Final = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
"""Deterministic (the same examples on every run and machine) and without an example database,
so CI neither writes `.hypothesis/` nor replays what another run found."""


def problem_json(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every error is RFC 9457 problem+json whose `status` is the HTTP status."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", ["(none)"])[0]
    assert content_type == PROBLEM_JSON, f"{response.status_code} answered as {content_type}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"the problem is not an object: {body!r}"
    assert isinstance(body.get("type"), str), f"no `type`: {body!r}"
    assert isinstance(body.get("title"), str), f"no `title`: {body!r}"
    assert body.get("status") == response.status_code, f"`status` is not the HTTP status: {body!r}"


SAFETY: Final = (not_a_server_error, problem_json, response_headers_conformance)
SCHEMA: Final = (status_code_conformance, content_type_conformance, response_schema_conformance)
"""Not schemathesis's `positive_data_acceptance`: a request valid by the schema may still be
refused, on purpose. The decoder is strict where JSON Schema is not: `"quantity": 1.0` is an
integer for JSON Schema, and a 400 here (a float is not a count)."""


def checks_for(label: str, status: int) -> list[Any]:
    """All the checks, but the schema checks a listed gap would fail."""
    if status >= 400 and label in UNDOCUMENTED_ERRORS:
        return list(SAFETY)
    if status < 300 and label in UNDOCUMENTED_BODIES:
        return [*SAFETY, status_code_conformance, content_type_conformance]
    return [*SAFETY, *SCHEMA]


def fuzz(operation: Any, examples: int) -> None:
    """Positive and negative cases for one operation, each response held to `checks_for`."""
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call()
        case.validate_response(response, checks=checks_for(operation.label, response.status_code))

    run()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    """The schema as the app serves it, loaded through the app in process. One app per test:
    schemathesis ends every ASGI app's lifespan when a test ends, and a restarted app would
    still say it is shutting down (`/ready` is 503 once its shutdown has run)."""
    app = serve(tmp_path / "rules")
    config = schemathesis.Config.from_dict(FUZZ_CONFIG)
    yield schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=config)
    asgi.shutdown_lifespans()  # also without schemathesis's pytest plugin


@pytest.fixture(scope="module")
def raw_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The OpenAPI document itself, for what the schema says rather than what the app answers."""
    app = serve(tmp_path_factory.mktemp("schema") / "rules")
    loaded = schemathesis.openapi.from_asgi(
        "/schema/openapi.json", app, config=schemathesis.Config()
    )
    asgi.shutdown_lifespans()
    raw: dict[str, Any] = loaded.raw_schema
    return raw


def operation_of(api: Any, label: str) -> Any:
    method, path = label.split(" ", 1)
    return api[path][method]


def all_labels(api: Any) -> list[str]:
    return [result.ok().label for result in api.get_all_operations()]


@pytest.mark.parametrize(("label", "examples"), list(OPERATIONS.items()), ids=list(OPERATIONS))
def test_schemathesis(api: Any, label: str, examples: int) -> None:
    if label not in all_labels(api):
        pytest.skip(f"{label} is not in the schema any more: remove it from OPERATIONS")
    fuzz(operation_of(api, label), examples)


def test_schemathesis_unlisted_operations(api: Any) -> None:
    """A new route is fuzzed from the day it appears; listing it only sets its budget."""
    for label in all_labels(api):
        if label not in OPERATIONS:
            fuzz(operation_of(api, label), UNLISTED_EXAMPLES)


def carts() -> st.SearchStrategy[dict[str, Any]]:
    """Valid carts over the demo catalog (and one unknown SKU), every country (mostly those the
    demo ships to), channel and pickup location (and one unknown location: a 422); small
    quantities mostly, so that carts are allocated and reserved as well as denied."""
    line = st.fixed_dictionaries(
        {
            "sku": st.sampled_from([*SKUS, "NOT-IN-CATALOG"]),
            "quantity": st.integers(1, 3) | st.integers(1, MAX_QUANTITY),
        }
    )
    return st.fixed_dictionaries(
        {
            "country": st.sampled_from(SHIPPED_TO) | st.sampled_from(sorted(COUNTRY_CODES)),
            "lines": st.lists(line, min_size=1, max_size=8),
        },
        optional={
            "cart_id": st.text(min_size=1, max_size=200),
            "channel": st.sampled_from(CHANNELS),
            "pickup_location": st.sampled_from([*DEMO_LOCATIONS, "nowhere"]),
        },
    )


def test_schemathesis_valid_carts(api: Any) -> None:
    """What schemathesis cannot generate from the schema yet: valid carts, decided, every
    answer held to the same checks (the Decision schema, `explain=text` as text/plain)."""
    operation = operation_of(api, "POST /v1/allocations")

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(body=carts(), explain=st.sampled_from(["false", "true", "text"]))
    def run(body: dict[str, Any], explain: str) -> None:
        case = operation.Case(
            body=body, query={"explain": explain}, headers=ADMIN, media_type="application/json"
        )
        response = case.call()
        case.validate_response(response, checks=checks_for(operation.label, response.status_code))

    run()


@pytest.mark.parametrize("described", REQUEST_SCHEMA)
def test_the_schema_describes_what_the_service_accepts(
    raw_schema: dict[str, Any], described: Callable[[dict[str, Any]], bool]
) -> None:
    assert described(raw_schema)


def _problem_documented(operation: dict[str, Any], status: int) -> bool:
    response = operation.get("responses", {}).get(str(status), {})
    schema = response.get("content", {}).get(PROBLEM_JSON, {}).get("schema")
    return schema is not None


@pytest.mark.parametrize(
    "label",
    [
        pytest.param(
            label,
            id=label,
            marks=pytest.mark.xfail(
                strict=True,
                reason=f"the schema does not document {statuses} as problem+json",
            )
            if label in UNDOCUMENTED_ERRORS
            else (),
        )
        for label, statuses in ERROR_STATUSES.items()
    ],
)
def test_error_responses_are_documented(raw_schema: dict[str, Any], label: str) -> None:
    method, path = label.split(" ", 1)
    operation = raw_schema["paths"][path][method.lower()]
    missing = [s for s in ERROR_STATUSES[label] if not _problem_documented(operation, s)]
    assert not missing, f"{label}: {missing} not documented as {PROBLEM_JSON}"


def _simulate_body() -> dict[str, Any]:
    return {"files": rule_files(), "carts": [CART]}


@pytest.mark.parametrize(
    ("label", "body"),
    [
        pytest.param(
            label,
            _simulate_body() if label.endswith("simulate") else None,
            id=label,
            marks=pytest.mark.xfail(
                strict=True,
                raises=FailureGroup,
                reason="`Response[bytes]`: the schema says the 200 is a JSON string",
            )
            if label in UNDOCUMENTED_BODIES
            else (),
        )
        for label in sorted(ENCODED_BODIES)
    ],
)
def test_ok_bodies_conform(api: Any, label: str, body: dict[str, Any] | None) -> None:
    """What the fuzzing meets on every call of these routes, pinned one request each."""
    if label not in all_labels(api):
        pytest.skip(f"{label} is not in the schema any more: remove it from ENCODED_BODIES")
    operation = operation_of(api, label)
    if body is None:
        case = operation.Case(headers=ADMIN)
    else:
        case = operation.Case(body=body, headers=ADMIN, media_type="application/json")
    response = case.call()
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=[response_schema_conformance])


# --- the malformed corpus -----------------------------------------------------------------------

Headers = tuple[tuple[bytes, bytes], ...]
KEY: Final[Headers] = ((b"authorization", f"Bearer {DEMO_KEYS['admin']}".encode()),)
JSON: Final[Headers] = (*KEY, (b"content-type", b"application/json"))


@dataclass(frozen=True)
class Raw:
    """A request as the ASGI app receives it: exact headers, the body in the chunks given."""

    method: str
    path: str
    query: bytes = b""
    headers: Headers = JSON
    body: bytes | tuple[bytes, ...] = b""
    disconnect: bool = False
    """The client goes away after the body's chunks, before the body is complete."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        problem = json.loads(self.body)
        assert isinstance(problem, dict), problem
        return problem


class Client:
    """Sends `Raw` requests straight to the ASGI app, on one event loop that also runs the app's
    lifespan, so what the app sees is exactly what the corpus says (no client adds headers)."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.runner = asyncio.Runner()
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lifespan: asyncio.Task[None] | None = None

    def __enter__(self) -> Client:
        self.runner.run(self._lifespan("startup"))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.runner.run(self._lifespan("shutdown"))
        finally:
            self.runner.close()

    async def _lifespan(self, event: str) -> None:
        if self.lifespan is None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self.lifespan = asyncio.create_task(self.app(scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": f"lifespan.{event}"})
        message = await asyncio.wait_for(self.from_app.get(), 10)
        assert message["type"] == f"lifespan.{event}.complete", message

    def send(self, raw: Raw) -> Answer:
        return self.runner.run(asyncio.wait_for(self._send(raw), 10))

    async def _send(self, raw: Raw) -> Answer:
        chunks = raw.body if isinstance(raw.body, tuple) else (raw.body,)
        messages: list[dict[str, Any]] = [
            {
                "type": "http.request",
                "body": chunk,
                "more_body": i < len(chunks) - 1 or raw.disconnect,
            }
            for i, chunk in enumerate(chunks)
        ]
        if raw.disconnect:
            messages.append({"type": "http.disconnect"})
        sent: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": raw.method,
            "scheme": "http",
            "path": raw.path,
            "raw_path": raw.path.encode(),
            "root_path": "",
            "query_string": raw.query,
            "headers": list(raw.headers),
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        await self.app(scope, receive, send)
        start, *body = sent
        assert start["type"] == "http.response.start", sent
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
        return Answer(start["status"], headers, b"".join(m.get("body", b"") for m in body))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Client(serve(tmp_path_factory.mktemp("corpus") / "rules")) as running:
        yield running


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"BUG: {reason}")


@dataclass(frozen=True)
class Bad:
    """One malformed request and the problem it must get."""

    name: str
    raw: Raw
    status: int = 400
    field: str | tuple[str, ...] | None = None
    """The field the problem must name in `errors`, when it is a field's fault (one of several,
    when only one is named)."""
    header: str | None = None
    """A header the answer must carry (`allow` on a 405, `www-authenticate` on a 401)."""
    marks: tuple[pytest.MarkDecorator, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


ALLOCATIONS: Final = "/v1/allocations"
SIMULATE: Final = "/v1/rules/simulate"
AVAILABILITY: Final = "/v1/availability"


def cart(**fields: Any) -> bytes:
    return json.dumps({**CART, **fields}).encode()


def line(**fields: Any) -> bytes:
    return cart(lines=[{**CART["lines"][0], **fields}])


def simulation(**fields: Any) -> bytes:
    """A simulation of one cart on the demo rules (200), but for `fields`."""
    return json.dumps({"files": rule_files(), "carts": [CART], **fields}).encode()


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


VALID_BODIES: Final = {ALLOCATIONS: cart(), SIMULATE: simulation()}


def any_body(path: str) -> list[Bad]:
    """What no JSON route may take: the same body malformations, on each."""
    valid = VALID_BODIES[path]
    route = path.rsplit("/", 1)[-1]
    bodies: list[tuple[str, bytes, Headers]] = [
        ("invalid JSON", b"{,}", JSON),
        ("trailing comma", valid[:-1] + b",}", JSON),
        ("not JSON", b"cart please", JSON),
        ("truncated JSON", valid[: len(valid) // 2], JSON),
        ("JSON array", b"[]", JSON),
        ("JSON string", b'"IE"', JSON),
        ("JSON number", b"42", JSON),
        ("JSON null", b"null", JSON),
        ("JSON true", b"true", JSON),
        ("empty body", b"", JSON),
        ("whitespace body", b" \r\n\t ", JSON),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + valid, JSON),
        ("UTF-16 body", valid.decode().encode("utf-16"), JSON),
        ("NUL byte", valid[:-1] + b"\x00}", JSON),
        ("lone surrogate", b'{"\\ud800": 1}', JSON),
        ("10,000 nested arrays", deep(10_000), JSON),
        ("10,000 nested objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON),
        ("gzip, not decoded", gzip.compress(valid), (*JSON, (b"content-encoding", b"gzip"))),
    ]
    named = {"10,000 nested objects": "$.a"}  # refused at its first key, unknown
    return [
        Bad(
            f"{route}: {name}",
            Raw("POST", path, headers=headers, body=body),
            field=named.get(name, "$"),
        )
        for name, body, headers in bodies
    ]


def wrong_content_types(path: str) -> list[Bad]:
    """A valid body, not said to be JSON in UTF-8: a 415 whatever the body."""
    route = path.rsplit("/", 1)[-1]
    valid = VALID_BODIES[path]
    types: list[tuple[str, Headers, bytes]] = [
        ("text/plain", (*KEY, (b"content-type", b"text/plain")), valid),
        ("form-encoded", (*KEY, (b"content-type", b"application/x-www-form-urlencoded")), valid),
        ("multipart", (*KEY, (b"content-type", b"multipart/form-data; boundary=x")), valid),
        ("no content type", KEY, valid),
        ("garbage content type", (*KEY, (b"content-type", b";;\xff")), valid),
        (
            "json as a parameter",
            (*KEY, (b"content-type", b"text/plain; x=application/json")),
            valid,
        ),
        ("charset latin-1, ASCII body", (*KEY, (b"content-type", LATIN_1)), valid),
        (
            "UTF-16 body, charset said",
            (*KEY, (b"content-type", b"application/json; charset=utf-16")),
            valid.decode().encode("utf-16"),
        ),
    ]
    return [
        Bad(f"{route}: {name}", Raw("POST", path, headers=headers, body=body), status=415)
        for name, headers, body in types
    ]


LATIN_1: Final = b"application/json; charset=latin-1"


def field_error(name: str, body: bytes, field: str) -> Bad:
    return Bad(f"allocations: {name}", Raw("POST", ALLOCATIONS, body=body), field=field)


Q: Final = "$.lines[0].quantity"
LATIN_1_CART: Final = cart(cart_id="café").replace(b"\\u00e9", b"\xe9")  # é in latin-1
ALLOCATION_FIELDS: Final = [
    field_error("unknown field", cart(colour="red"), "$.colour"),
    field_error("unknown line field", line(colour="red"), "$.lines[0].colour"),
    field_error("country missing", json.dumps({"lines": CART["lines"]}).encode(), "$.country"),
    field_error("lines missing", json.dumps({"country": "IE"}).encode(), "$.lines"),
    field_error("no lines", cart(lines=[]), "$.lines"),
    field_error("501 lines", cart(lines=CART["lines"] * (MAX_LINES + 1)), "$.lines"),
    field_error("lines an object", cart(lines=CART["lines"][0]), "$.lines"),
    field_error("lines a string", cart(lines="TEE-BLK-M"), "$.lines"),
    field_error("line a number", cart(lines=[1]), "$.lines[0]"),
    field_error("country lowercase", cart(country="ie"), "$.country"),
    field_error("country 3 letters", cart(country="IRL"), "$.country"),
    field_error("country emoji", cart(country="🇮🇪"), "$.country"),
    field_error("country a number", cart(country=372), "$.country"),
    field_error("country null", cart(country=None), "$.country"),
    field_error("quantity 0", line(quantity=0), Q),
    field_error("quantity -1", line(quantity=-1), Q),
    field_error("quantity 1.5", line(quantity=1.5), Q),
    field_error("quantity 1.0", line(quantity=1.0), Q),
    field_error("quantity a string", line(quantity="1"), Q),
    field_error("quantity true", line(quantity=True), Q),
    field_error("quantity null", line(quantity=None), Q),
    field_error("quantity over the maximum", line(quantity=MAX_QUANTITY + 1), Q),
    field_error("quantity 2**64", line(quantity=2**64), Q),
    field_error("quantity 1e400", line().replace(b'"quantity": 1', b'"quantity": 1e400'), Q),
    field_error("quantity -1e400", line().replace(b'"quantity": 1', b'"quantity": -1e400'), Q),
    field_error("quantity NaN", line().replace(b'"quantity": 1', b'"quantity": NaN'), "$"),
    field_error("sku 10 KB", line(sku="S" * 10_240), "$.lines[0].sku"),
    field_error("sku empty", line(sku=""), "$.lines[0].sku"),
    field_error("sku with a space", line(sku="TEE BLK"), "$.lines[0].sku"),
    field_error("sku a number", line(sku=42), "$.lines[0].sku"),
    field_error("sku missing", cart(lines=[{"quantity": 1}]), "$.lines[0].sku"),
    field_error("channel in capitals", cart(channel="Web"), "$.channel"),
    field_error("channel 41 characters", cart(channel="w" * 41), "$.channel"),
    field_error("cart_id 201 characters", cart(cart_id="c" * 201), "$.cart_id"),
    field_error("cart_id empty", cart(cart_id=""), "$.cart_id"),
    field_error(
        "pickup location with a space", cart(pickup_location="dub dc"), "$.pickup_location"
    ),
    field_error("unknown field 10,000 deep", cart()[:-1] + b', "x": ' + deep(10_000) + b"}", "$.x"),
    field_error(
        "duplicate key, the last invalid",
        b'{"country": "IE", "country": "ie", "lines": [{"sku": "A", "quantity": 1}]}',
        "$.country",
    ),
    Bad(
        "allocations: unknown pickup location",
        Raw("POST", ALLOCATIONS, body=cart(pickup_location="nowhere")),
        status=422,
        field="$.pickup_location",
    ),
    Bad(
        "allocations: invalid UTF-8 in a string",
        Raw("POST", ALLOCATIONS, body=line(sku="SKU").replace(b"SKU", b"\xff\xfe")),
        field="$",
    ),
    Bad(
        "allocations: latin-1 body",
        Raw("POST", ALLOCATIONS, body=LATIN_1_CART),
        field="$",
    ),
    Bad(
        "allocations: latin-1 body, charset said",
        Raw("POST", ALLOCATIONS, headers=(*KEY, (b"content-type", LATIN_1)), body=LATIN_1_CART),
        status=415,
    ),
]


def explain(value: bytes) -> Bad:
    return Bad(
        f"explain={value.decode('latin-1')[:20]}",
        Raw("POST", ALLOCATIONS, b"explain=" + value, body=cart()),
        field="explain",
    )


EXPLAIN: Final = [
    explain(b"maybe"),
    explain(b""),
    explain(b"yes"),
    explain(b"2"),
    explain(b"%00"),
    explain(b"%ff"),
    explain(b"%zz"),
    explain(b"x" * 10_240),
    Bad(
        "explain repeated, the last invalid",
        Raw("POST", ALLOCATIONS, b"explain=true&explain=maybe", body=cart()),
        field="explain",
    ),
]


def availability(name: str, query: bytes, field: str | tuple[str, ...]) -> Bad:
    return Bad(f"availability: {name}", Raw("GET", AVAILABILITY, query, headers=KEY), field=field)


AVAILABILITY_QUERIES: Final = [
    availability("no query", b"", ("sku", "country")),  # which is named varies from run to run
    availability("no sku", b"country=IE", "sku"),
    availability("no country", b"sku=TEE-BLK-M", "country"),
    availability("sku empty", b"sku=&country=IE", "sku"),
    availability("sku with a space", b"sku=TEE%20BLK&country=IE", "sku"),
    availability("sku 10 KB", b"sku=" + b"S" * 10_240 + b"&country=IE", "sku"),
    availability("501 skus", b"sku=A&" * (MAX_LINES + 1) + b"country=IE", "sku"),
    availability("country lowercase", b"sku=A&country=ie", "country"),
    availability("country 3 letters", b"sku=A&country=IRL", "country"),
    availability("country emoji", b"sku=A&country=%F0%9F%87%AE%F0%9F%87%AA", "country"),
    availability("country repeated, the last invalid", b"sku=A&country=IE&country=ie", "country"),
    availability("channel in capitals", b"sku=A&country=IE&channel=Web", "channel"),
    availability("channel 41 characters", b"sku=A&country=IE&channel=" + b"w" * 41, "channel"),
]


def simulate(name: str, body: bytes, field: str | None, status: int = 400, **kw: Any) -> Bad:
    return Bad(f"simulate: {name}", Raw("POST", SIMULATE, body=body), status, field, **kw)


def rules_text(text: str) -> bytes:
    return json.dumps({"files": {"rules.yaml": text}, "carts": [CART]}).encode()


SIMULATE_BODIES: Final = [
    simulate("empty object", b"{}", "$.files"),
    simulate("no files", simulation(files={}), "$.files"),
    simulate("files a list", simulation(files=["rules.yaml"]), "$.files"),
    simulate("101 files", simulation(files={f"r{i}.yaml": "" for i in range(101)}), "$.files"),
    simulate("file name climbs out", simulation(files={"../x.yaml": ""}), "$.files.../x.yaml"),
    simulate("file name not yaml", simulation(files={"rules.txt": ""}), "$.files.rules.txt"),
    simulate("file text a number", simulation(files={"rules.yaml": 1}), "$.files[...]"),
    simulate("unknown field", simulation(colour="red"), "$.colour"),
    simulate("show -1", simulation(show=-1), "$.show"),
    simulate("show some", simulation(show="some"), "$.show"),
    simulate("last 0", simulation(carts=None, last=0), "$.last"),
    simulate("carts an object", simulation(carts={}), "$.carts"),
    simulate("cart a list", simulation(carts=[[1]]), "$.carts[0]"),
    simulate("cart without lines", simulation(carts=[{"country": "IE"}]), "$.carts[0].lines"),
    simulate("no carts, no recording", simulation(carts=None), "$.carts"),
    simulate("rules not YAML", rules_text("rules: [\n"), None, 422),
    simulate("rules a python tag", rules_text("!!python/object/apply:os.system [true]"), None, 422),
    simulate("rules with aliases", rules_text("a: &a [1, 2]\nb: [*a, *a]\n"), None, 422),
    simulate("rules with a NUL", rules_text("rules: [\x00]"), None, 422),
    simulate(
        "invalid UTF-8 in a file",
        simulation(files={"rules.yaml": "RULES"}).replace(b"RULES", b"\xff"),
        "$",
    ),
    simulate(
        "invalid UTF-8 in a cart",
        simulation(carts=[{**CART, "country": "IE\xff"}]).replace(b"\\u00ff", b"\xff"),
        "$.carts[0]",
    ),
    simulate(
        "a cart 10,000 deep",
        simulation(carts=["DEEP"]).replace(b'"DEEP"', deep(10_000)),
        "$",
    ),
    simulate("rules 1,000 deep", rules_text("a: " + "[" * 1_000 + "]" * 1_000), None, 422),
    simulate(
        "rules 100,000 deep",  # PyYAML's C composer would overflow the stack: a crash
        rules_text("- " * 100_000 + "x"),
        None,
        422,
    ),
]


def method(verb: str, path: str) -> Bad:
    return Bad(
        f"{verb} {path}", Raw(verb, path, body=VALID_BODIES.get(path, b"")), 405, header="allow"
    )


METHODS: Final = [
    method("GET", ALLOCATIONS),
    method("PUT", ALLOCATIONS),
    method("PATCH", ALLOCATIONS),
    method("DELETE", ALLOCATIONS),
    method("BREW", ALLOCATIONS),
    method("POST", AVAILABILITY),
    method("POST", "/v1/rules"),
    method("POST", "/v1/sources"),
    method("POST", "/v1/rules/history"),
    method("GET", "/v1/rules/reload"),
    method("GET", SIMULATE),
    method("POST", "/health"),
    method("POST", "/ready"),
    Bad("unknown path", Raw("GET", "/v1/allocation"), 404),
    Bad("path below a route", Raw("POST", "/v1/allocations/1", body=cart()), 404),
    Bad("path with a NUL", Raw("GET", "/v1/rules\x00"), 404),
    Bad("path 64 KB", Raw("GET", "/" + "p" * 65_536), 404),
]


def key(
    name: str, headers: Headers, status: int = 401, path: str = "/v1/rules", query: bytes = b""
) -> Bad:
    return Bad(
        f"key: {name}",
        Raw("GET", path, query, headers=headers),
        status,
        header="www-authenticate" if status == 401 else None,
    )


KEYS: Final = [
    key("none", ()),
    key("none, on a decision", (), path=AVAILABILITY, query=b"sku=A&country=IE"),
    key("unknown", ((b"authorization", b"Bearer not-a-key"),)),
    key("bearer without a key", ((b"authorization", b"Bearer "),)),
    key("basic", ((b"authorization", b"Basic ZGVtbzpkZW1v"),)),
    key("10 KB", ((b"authorization", b"Bearer " + b"k" * 10_240),)),
    key("not latin-1", ((b"authorization", b"Bearer \xff\xfe"),)),
    key("with a NUL", ((b"authorization", f"Bearer {DEMO_KEYS['admin']}\x00".encode()),)),
    key("X-API-Key unknown", ((b"x-api-key", b"not-a-key"),)),
    key(
        "the first of two unknown",
        ((b"authorization", b"Bearer not-a-key"), *KEY),
    ),
    key(
        "decide scope on an admin route",
        ((b"authorization", f"Bearer {DEMO_KEYS['decide']}".encode()),),
        403,
    ),
    # The key is checked before the Content-Type: who may not ask learns nothing more.
    Bad(
        "key: none, the body as text/plain",
        Raw("POST", ALLOCATIONS, headers=((b"content-type", b"text/plain"),), body=cart()),
        401,
        header="www-authenticate",
    ),
    Bad(
        "key: decide scope, simulate with no content type",
        Raw(
            "POST",
            SIMULATE,
            headers=((b"authorization", f"Bearer {DEMO_KEYS['decide']}".encode()),),
            body=simulation(),
        ),
        403,
    ),
]

OVER_LIMIT: Final = b" " * (MAX_BODY_BYTES + 1)
HTTP: Final = [
    Bad(
        "body over the limit by one byte",
        Raw("POST", ALLOCATIONS, body=cart() + OVER_LIMIT[: MAX_BODY_BYTES + 1 - len(cart())]),
        413,
    ),
    Bad(
        "body over the limit, streamed without a length",
        Raw("POST", ALLOCATIONS, body=(b" " * 65_536,) * 5),
        413,
    ),
    Bad(
        "body over the limit, length said small",
        Raw("POST", ALLOCATIONS, headers=(*JSON, (b"content-length", b"10")), body=OVER_LIMIT),
        413,
    ),
    Bad(
        "length said over the limit",
        Raw("POST", ALLOCATIONS, headers=(*JSON, (b"content-length", b"999999999")), body=cart()),
        413,
    ),
    Bad(
        "simulate: length said over its limit",
        Raw(
            "POST",
            SIMULATE,
            headers=(*JSON, (b"content-length", str(SIMULATE_MAX_BODY_BYTES + 1).encode())),
            body=simulation(),
        ),
        413,
    ),
    Bad(
        "empty body, no content type: the body is what is wrong",
        Raw("POST", ALLOCATIONS, headers=(*KEY, (b"content-length", b"0"))),
        400,
        field="$",
    ),
    Bad(
        "a body, its length said, no content type",
        Raw(
            "POST",
            ALLOCATIONS,
            headers=(*KEY, (b"content-length", b"%d" % len(cart()))),
            body=cart(),
        ),
        415,
    ),
    Bad(
        "length not a number",
        Raw("POST", ALLOCATIONS, headers=(*JSON, (b"content-length", b"abc")), body=cart()),
        400,
    ),
    Bad(
        "client gone before the body ends",
        Raw("POST", ALLOCATIONS, body=cart()[:10], disconnect=True),
        400,
    ),
    Bad(
        "simulate: client gone before the body ends",
        Raw("POST", SIMULATE, body=simulation()[:10], disconnect=True),
        400,
    ),
]

CORPUS: Final = [
    *any_body(ALLOCATIONS),
    *any_body(SIMULATE),
    *wrong_content_types(ALLOCATIONS),
    *wrong_content_types(SIMULATE),
    *ALLOCATION_FIELDS,
    *EXPLAIN,
    *AVAILABILITY_QUERIES,
    *SIMULATE_BODIES,
    *METHODS,
    *KEYS,
    *HTTP,
]


def test_corpus_names_are_unique() -> None:
    names = [bad.name for bad in CORPUS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("bad", [bad.param() for bad in CORPUS])
def test_malformed(client: Client, bad: Bad) -> None:
    answer = client.send(bad.raw)
    assert answer.status < 500, f"{answer.status}: {answer.body[:500]!r}"
    assert answer.status == bad.status, answer.body[:500]
    assert answer.headers.get("content-type") == PROBLEM_JSON, answer.headers
    problem = answer.problem()
    assert isinstance(problem.get("type"), str), problem
    assert isinstance(problem.get("title"), str), problem
    assert problem.get("status") == answer.status, problem
    if bad.field is not None:
        named = {e["field"] for e in problem.get("errors", [])}
        assert named & ({bad.field} if isinstance(bad.field, str) else set(bad.field)), problem
    if bad.header is not None:
        assert answer.headers.get(bad.header), answer.headers


@dataclass(frozen=True)
class Odd:
    """An odd request the service answers on purpose, and what it must answer."""

    name: str
    raw: Raw
    content_type: str = "application/json"
    status: int = 200
    holds: Callable[[bytes], bool] = lambda _: True


def decided(check: Callable[[dict[str, Any]], bool]) -> Callable[[bytes], bool]:
    return lambda body: check(json.loads(body))


ODDITIES: Final = [
    Odd(
        "duplicate keys: the last wins",
        Raw("POST", ALLOCATIONS, body=b'{"cart_id": "a", "cart_id": "b",' + cart()[1:]),
        holds=decided(lambda d: d["cart_id"] == "b"),
    ),
    Odd(
        "explain repeated: the last wins",
        Raw("POST", ALLOCATIONS, b"explain=maybe&explain=text", body=cart()),
        "text/plain; charset=utf-8",
    ),
    Odd(
        "explain in capitals",
        Raw("POST", ALLOCATIONS, b"explain=TRUE", body=cart()),
        holds=decided(lambda d: "explanation" in d),
    ),
    Odd(
        "country repeated: the last wins",
        Raw("GET", AVAILABILITY, b"sku=A&country=IE&country=FR", headers=KEY),
        holds=decided(lambda d: d["country"] == "FR"),
    ),
    Odd(
        "a NUL in a SKU is an unknown SKU",
        Raw("POST", ALLOCATIONS, body=line(sku="A\x00B")),
        holds=decided(lambda d: d["lines"][0]["reasons"] == ["UNKNOWN_SKU"]),
    ),
    Odd(
        "charset utf-8 said, in any case and quoted",
        Raw(
            "POST",
            ALLOCATIONS,
            headers=(*KEY, (b"content-type", b'Application/JSON ; Charset="UTF-8"')),
            body=cart(),
        ),
    ),
    Odd(
        "a +json media type",
        Raw(
            "POST",
            ALLOCATIONS,
            headers=(*KEY, (b"content-type", b"application/vnd.cart+json")),
            body=cart(),
        ),
    ),
    Odd(
        "simulate, charset utf-8 said",
        Raw(
            "POST",
            SIMULATE,
            headers=(*KEY, (b"content-type", b"application/json; charset=utf-8")),
            body=simulation(),
        ),
    ),
    Odd(
        "a body one byte at a time",
        Raw("POST", ALLOCATIONS, body=tuple(bytes([b]) for b in cart())),
    ),
    Odd(
        "a body exactly at the limit",
        Raw("POST", ALLOCATIONS, body=cart() + b" " * (MAX_BODY_BYTES - len(cart()))),
    ),
    Odd("a trailing slash", Raw("POST", f"{ALLOCATIONS}/", body=cart())),
    Odd(
        "the key as X-API-Key",
        Raw("GET", "/v1/rules", headers=((b"x-api-key", DEMO_KEYS["admin"].encode()),)),
    ),
    Odd(
        "bearer in lower case",
        Raw(
            "GET",
            "/v1/rules",
            headers=((b"authorization", f"bearer {DEMO_KEYS['admin']}".encode()),),
        ),
    ),
    Odd("OPTIONS", Raw("OPTIONS", ALLOCATIONS, headers=()), content_type="", status=204),
    Odd("HEAD /health (load balancers' probe)", Raw("HEAD", "/health", headers=())),
    Odd("HEAD /ready", Raw("HEAD", "/ready", headers=())),
]


@pytest.mark.parametrize("odd", [pytest.param(odd, id=odd.name) for odd in ODDITIES])
def test_accepted_oddities(client: Client, odd: Odd) -> None:
    answer = client.send(odd.raw)
    assert answer.status == odd.status, answer.body[:500]
    assert answer.headers.get("content-type", "") == odd.content_type, answer.headers
    assert odd.holds(answer.body), answer.body[:500]


def test_a_rejected_reload_is_problem_json(tmp_path: Path) -> None:
    """The one error a fuzzed request cannot cause: rule files broken on disk."""
    app = serve(tmp_path / "rules")
    (tmp_path / "rules" / "rules.yaml").write_text("rules: [\n", encoding="utf-8")
    with Client(app) as running:
        answer = running.send(Raw("POST", "/v1/rules/reload", headers=KEY))
    assert answer.status == 422, answer.body
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.problem()
    assert (problem["type"], problem["status"]) == ("/problems/invalid-rules", 422)
    assert problem["problems"][0]["file"] == "rules.yaml"


def test_ready_while_shutting_down_is_a_503_problem(tmp_path: Path) -> None:
    """Once its shutdown has begun, `/ready` turns load balancers away, as problem+json."""
    app = serve(tmp_path / "rules")
    with Client(app):
        pass  # started, then shut down
    after = Client(app)
    try:
        answer = after.send(Raw("GET", "/ready", headers=()))
        head = after.send(Raw("HEAD", "/ready", headers=()))
    finally:
        after.runner.close()
    assert answer.status == 503, answer.body
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.problem()
    assert (problem["type"], problem["title"], problem["status"]) == (
        "about:blank",
        "Service Unavailable",
        503,
    )
    assert head.status == 503
