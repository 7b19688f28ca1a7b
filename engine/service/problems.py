"""Every error the service returns is `application/problem+json` (RFC 9457), naming the fields.

msgspec's messages carry the JSON path of the bad value (`... - at `$.lines[0].quantity``); they
are split here into `field` and `message` so a client can point at the field it sent.

`problem_responses` documents these bodies in the OpenAPI schema, so that what the schema says
a route answers is what it answers.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, InternalServerException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from engine.errors import (
    ClientDisconnected,
    FieldError,
    InvalidRequest,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
    split_validation_message,
)
from engine.model import in_words
from engine.reload import RuleProblem

__all__ = (
    "DECODE_ERRORS",
    "MAX_BODY_BYTES",
    "PROBLEM_JSON",
    "decode_error",
    "exception_handlers",
    "invalid_rules_response",
    "problem_response",
    "problem_responses",
    "require_json",
)

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
MAX_BODY_BYTES: Final = 256 * 1024
"""Far above the largest valid cart (MAX_LINES lines); anything bigger is refused with 413."""
MAX_BODY_KIB: Final = MAX_BODY_BYTES // 1024
_UNKNOWN_FIELD: Final = re.compile(r"Object contains unknown field `(?P<name>.+)`")
_MISSING_FIELD: Final = re.compile(r"Object missing required field `(?P<name>.+)`")
_MISSING_PARAMETER: Final = re.compile(
    r"Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'"
)


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: tuple[FieldError, ...] = ()


DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What decoding a body with msgspec may raise for the body's own fault: besides a
`DecodeError`, a `UnicodeDecodeError` for bytes that are not UTF-8 in a string, and a
`RecursionError` for values nested deeper than the decoder goes (skipping a `msgspec.Raw`, say).
Every decoding site catches all three and hands them to `decode_error`."""


def decode_error(
    exc: msgspec.DecodeError | UnicodeDecodeError | RecursionError, what: str = "the body"
) -> InvalidRequest:
    """Turn a decoding failure into an `InvalidRequest` naming the field (`$`: the document
    itself, `what` the words for it)."""
    if isinstance(exc, UnicodeDecodeError | RecursionError):
        fault = "is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "nests too deeply"
        message = f"{what} {fault}"
        return InvalidRequest(message, (FieldError("$", message),))
    if not isinstance(exc, msgspec.ValidationError):
        text = str(exc)
        if ("truncated" in text and "byte 0" in text) or text.startswith(
            "Input data was truncated"
        ):
            message = "the body is empty or cut short; send a JSON object"
        else:
            message = f"the body is not valid JSON: {text}"
        return InvalidRequest(message, (FieldError("$", message),))
    message, at = split_validation_message(str(exc))
    path = at or "$"
    if unknown := _UNKNOWN_FIELD.match(message):
        path = f"{path}.{unknown['name']}"
        message = "unknown field; remove it"
    elif missing := _MISSING_FIELD.match(message):
        path = f"{path}.{missing['name']}"
        message = "required field is missing"
    elif message.startswith("Invalid enum value") and path.endswith(".country"):
        message = f"{message}: use an ISO 3166-1 alpha-2 country code in capitals, e.g. IE"
    else:
        message = in_words(message)
    return InvalidRequest(f"{path}: {message}", (FieldError(path, message),))


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    title: str,
    detail: str,
    type_uri: str = "about:blank",
    errors: tuple[FieldError, ...] = (),
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body = Problem(
        type=type_uri,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _request_error(request: Request[Any, Any, Any], exc: RequestError) -> Response[bytes]:
    return problem_response(request, exc.status, exc.title, exc.detail, exc.type_uri, exc.errors)


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors: list[FieldError] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            key = str(item.get("key", "$"))
            message = str(item.get("message", "invalid value"))
            if key == "data":
                key, message = "$", "the request body is missing or empty; send a JSON object"
            elif message.startswith("Invalid enum value") and key == "country":
                message += ": use an ISO 3166-1 alpha-2 country code in capitals, e.g. IE"
            else:
                message = in_words(message)
            errors.append(FieldError(key, message))
    if not errors and (missing := _MISSING_PARAMETER.match(exc.detail)):
        errors.append(
            FieldError(missing["name"], f"required {missing['kind']} parameter is missing")
        )
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or exc.detail
    return problem_response(
        request, 400, "Invalid request", detail, "/problems/invalid-request", tuple(errors)
    )


def _body_limit_words(request: Request[Any, Any, Any]) -> str:
    """What the 413 says was exceeded: a route may take more than a cart (a simulation)."""
    handler = request.scope.get("route_handler")
    limit = (
        handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
    )
    if limit is None or limit == MAX_BODY_BYTES:
        return f"the {MAX_BODY_KIB} KiB a cart may take"
    return f"the {limit // 1024} KiB this route takes"


_DISCONNECTED: Final = "client disconnected prematurely"
"""Litestar 2 (`Request.stream`) raises a plain `InternalServerException` with this detail when
the `http.disconnect` comes before the body's end: no subclass or attribute tells it apart."""


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if type(exc) is InternalServerException and exc.detail == _DISCONNECTED:
        # The client's doing, not ours: a 4xx (no one reads it), not a logged 500.
        gone = ClientDisconnected("the client closed the connection before the body was complete")
        return _request_error(request, gone)
    if exc.status_code == PayloadTooLarge.status:
        return problem_response(
            request,
            PayloadTooLarge.status,
            PayloadTooLarge.title,
            f"the body is larger than {_body_limit_words(request)}",
            PayloadTooLarge.type_uri,
        )
    return problem_response(
        request,
        exc.status_code,
        _title(exc.status_code),
        exc.detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "the request could not be decided",
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


exception_handlers: Final[dict[type[Exception] | int, Any]] = {
    RequestError: _request_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}


INVALID_RULES: Final = "/problems/invalid-rules"


class InvalidRules(msgspec.Struct, frozen=True, omit_defaults=True):
    """The problem+json body for rule files with errors (a reload, or candidate rules to
    simulate): RFC 9457, with every problem located, and the rule set still in force."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    problems: tuple[RuleProblem, ...]
    rule_set: str | None = None
    """The rule set still in force, when the rejected files were meant to replace it."""


def invalid_rules_response() -> ResponseSpec:
    """The OpenAPI response of rule files with errors (`InvalidRules`)."""
    return ResponseSpec(
        data_container=InvalidRules,
        media_type=PROBLEM_JSON,
        generate_examples=False,
        description="The rule files have errors (`/problems/invalid-rules`): every problem "
        "located as `file`, `line`, `column`",
    )


def invalid_rules(
    instance: str, detail: str, problems: tuple[RuleProblem, ...], rule_set: str | None = None
) -> Response[bytes]:
    body = InvalidRules(INVALID_RULES, "Invalid rules", 422, detail, instance, problems, rule_set)
    return Response(msgspec.json.encode(body), status_code=422, media_type=PROBLEM_JSON)


# --- Content-Type -------------------------------------------------------------------------------

_JSON: Final = b"application/json"
_PLAIN_JSON: Final = frozenset(
    {
        _JSON,
        b"application/json; charset=utf-8",
        b"application/json;charset=utf-8",
        b"application/json; charset=UTF-8",
        b"application/json;charset=UTF-8",
    }
)
"""What clients send, taken without parsing."""


async def require_json(request: Request[Any, Any, Any]) -> None:
    """`before_request` of the routes that take a JSON body: 415 unless it is sent as
    `application/json` or a `+json` type (`application/vnd.x+json`), in UTF-8 (a `charset`
    parameter may only say so).
    Litestar runs it after the guards (a request without a key is a 401 first) and before the
    body is read; a Litestar guard would cost a copy of the route handler per request.
    It reads the raw ASGI headers, as the key check does: nothing is built per request."""
    headers = request.scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            if value in _PLAIN_JSON:
                return
            if problem := _media_type_problem(value):
                raise UnsupportedMediaType(problem)
            return
    if (b"content-length", b"0") in headers:
        return  # no content, so no type to say: the 400 of an empty body says what is wrong
    raise UnsupportedMediaType(
        "the request has no Content-Type: send the body as JSON, with "
        "`Content-Type: application/json`"
    )


def _media_type_problem(value: bytes) -> str | None:
    """What is wrong with a Content-Type for a JSON body, or None."""
    media_type, *parameters = value.split(b";")
    kind = media_type.strip().lower()
    if kind != _JSON and not (b"/" in kind and kind.endswith(b"+json")):
        shown = value.decode("latin-1")[:100]
        return (
            f"the body is sent as `{shown}`; send it as JSON, with `Content-Type: application/json`"
        )
    for parameter in parameters:
        name, _, given = parameter.partition(b"=")
        charset = given.strip().strip(b'"').lower()
        if name.strip().lower() == b"charset" and charset != b"utf-8":
            shown = charset.decode("latin-1")[:40]
            return (
                f"the body is said to be in `{shown}`, but JSON must be UTF-8: send it in UTF-8 "
                "(`Content-Type: application/json`)"
            )
    return None


# --- OpenAPI ------------------------------------------------------------------------------------

_PROBLEM_WORDS: Final = {
    400: "The body or a parameter is malformed: `errors` names each field",
    401: "No API key, or one that is not known (see `WWW-Authenticate`)",
    403: "The API key does not have the scope this route needs",
    413: "The body is larger than this route takes",
    415: "The body is not sent as JSON in UTF-8: send `Content-Type: application/json`",
    422: "Well-formed, but names something the rules do not know",
    503: "Shutting down: send requests elsewhere",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI `responses` of the errors a route answers: each a problem+json `Problem`
    (Litestar would otherwise document its own 400 body, which the service never sends)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            generate_examples=False,
            description=_PROBLEM_WORDS.get(status) or _title(status),
        )
        for status in statuses
    }
