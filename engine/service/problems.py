"""Every error the service returns is `application/problem+json` (RFC 9457), naming the fields.

msgspec's messages carry the JSON path of the bad value (`... - at `$.lines[0].quantity``); they
are split here into `field` and `message` so a client can point at the field it sent.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from engine.errors import (
    FieldError,
    InvalidRequest,
    PayloadTooLarge,
    RequestError,
    split_validation_message,
)
from engine.reload import RuleProblem

__all__ = (
    "MAX_BODY_BYTES",
    "PROBLEM_JSON",
    "decode_error",
    "exception_handlers",
    "problem_response",
)

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
MAX_BODY_BYTES: Final = 256 * 1024
"""Far above the largest valid cart (MAX_LINES lines); anything bigger is refused with 413."""
MAX_BODY_KIB: Final = MAX_BODY_BYTES // 1024
_UNKNOWN_FIELD: Final = re.compile(r"Object contains unknown field `(?P<name>.+)`")
_MISSING_FIELD: Final = re.compile(r"Object missing required field `(?P<name>.+)`")
_PATTERN_WORDS: Final = {
    "channel": "Expected lower-case letters, digits, `-` and `_`, starting with a letter or digit",
}
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


def decode_error(exc: msgspec.DecodeError) -> InvalidRequest:
    """Turn a msgspec decoding failure into an `InvalidRequest` naming the field."""
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
    elif message.startswith("Expected `str` matching regex"):
        message = _PATTERN_WORDS.get(path.rsplit(".", 1)[-1], "Expected text without spaces")
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


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
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


def invalid_rules(
    instance: str, detail: str, problems: tuple[RuleProblem, ...], rule_set: str | None = None
) -> Response[bytes]:
    body = InvalidRules(INVALID_RULES, "Invalid rules", 422, detail, instance, problems, rule_set)
    return Response(msgspec.json.encode(body), status_code=422, media_type=PROBLEM_JSON)
