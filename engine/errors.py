"""The engine's one error tree.

    EngineError
    ├── RuleSetError              rule files that cannot become a rule set (every problem listed)
    ├── AvailabilityFileError     a snapshot file that cannot be read or decoded
    └── RequestError              a request the service refuses (HTTP-facing: status + problem type)
        ├── InvalidRequest        400: the body or a parameter is malformed (names each field)
        ├── UnknownReference      422: well-formed, but names something the rules do not know
        ├── PayloadTooLarge       413: the body is over the size limit
        ├── UnsupportedMediaType  415: the body is not sent as JSON in UTF-8
        └── ClientDisconnected    400: the client went away before the body was complete

Problems in rule files are data (`Problem`: file, line, column, sentence, severity) so that the
CLI prints them as `file:line:column: sentence` and the service can show them unchanged.
HTTP-facing errors carry their status as a class attribute; a new one is a two-line subclass.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import ClassVar, Final

from msgspec import Struct

__all__ = (
    "AvailabilityFileError",
    "ClientDisconnected",
    "EngineError",
    "FieldError",
    "InvalidRequest",
    "PayloadTooLarge",
    "Problem",
    "RequestError",
    "RuleSetError",
    "Severity",
    "UnknownReference",
    "UnsupportedMediaType",
    "split_validation_message",
)

_AT_PATH: Final = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)


def split_validation_message(text: str) -> tuple[str, str | None]:
    """msgspec ends a validation message with the JSON path of the bad value
    (`Expected `int`, got `str` - at `$.lines[0].quantity``): split it into (message, path),
    path None when the message is about the document itself."""
    found = _AT_PATH.match(text)
    assert found is not None  # the pattern matches any text
    return found["msg"], found["path"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Problem(Struct, frozen=True, order=True):
    """One problem found in a rule file, located to the character."""

    file: str
    line: int
    """1-based, as an editor shows it."""
    column: int
    """1-based."""
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.file}:{self.line}:{self.column}: {prefix}{self.message}"


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class RuleSetError(EngineError):
    """The rule files have errors; the rule set was not built. Carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        errors = [p for p in self.problems if p.severity is Severity.ERROR]
        super().__init__(f"{len(errors)} error(s) in rule files:\n" + "\n".join(map(str, errors)))


class AvailabilityFileError(EngineError):
    """An availability snapshot file is missing or malformed."""


class FieldError(Struct, frozen=True):
    """One bad field of a request: a JSON path (`$.lines[0].quantity`) and what is wrong."""

    field: str
    message: str


class RequestError(EngineError):
    """A request the service refuses; rendered as `application/problem+json` (RFC 9457)."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    type_uri: ClassVar[str] = "about:blank"

    def __init__(self, detail: str, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class InvalidRequest(RequestError):
    status = 400
    title = "Invalid request"
    type_uri = "/problems/invalid-request"


class UnknownReference(RequestError):
    status = 422
    title = "Unknown reference"
    type_uri = "/problems/unknown-reference"


class PayloadTooLarge(RequestError):
    status = 413
    title = "Request body too large"
    type_uri = "/problems/payload-too-large"


class UnsupportedMediaType(RequestError):
    status = 415
    title = "Unsupported media type"
    type_uri = "/problems/unsupported-media-type"


class ClientDisconnected(RequestError):
    """No one reads this answer; it keeps a client's hang-up from counting as a server error."""

    status = 400
    title = "Client disconnected"
    type_uri = "/problems/client-disconnected"
