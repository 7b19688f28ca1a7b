"""API keys with scopes: who may decide carts, and who may change or read the rules.

Keys live outside the repository, in a JSON file named by `ENGINE_API_KEYS_FILE` (or `serve
--api-keys`). The file holds each key's SHA-256, never the key itself, so it can be shared with
deployment tooling without handing out the keys; `python -m engine keys new` makes a key and
prints the entry to add. A request presents its key as `Authorization: Bearer <key>` or
`X-API-Key: <key>`. The presented key is hashed and compared with every entry in constant time
(`hmac.compare_digest`, no early exit), and it is never logged.

Each route names the scope it needs in its `opt` (`{"scope": "decide"}`); a route without one is
open (`/health`, `/ready`, `/metrics`, `/schema`). Missing or unknown key: 401 with
`WWW-Authenticate`; a known key without the scope: 403. Both are problem+json.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from engine.model import whole

__all__ = (
    "API_KEYS_FILE_VARIABLE",
    "SCOPES",
    "SECURITY_SCHEME",
    "ApiKeys",
    "KeyEntry",
    "KeyFileError",
    "digest",
    "new_key",
    "requires",
)

API_KEYS_FILE_VARIABLE: Final = "ENGINE_API_KEYS_FILE"
SCOPES: Final = ("decide", "admin")
"""`decide`: POST /v1/allocations, GET /v1/availability. `admin`: the rules (read, reload,
simulate, history) and the sources' counters."""

Scope = Literal["decide", "admin"]
SECURITY_SCHEME: Final = "ApiKey"
"""The OpenAPI security scheme a key is presented by (declared in engine/service/app.py)."""
_HEX_SHA256: Final = whole("[0-9a-f]{64}")
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="checkout-engine"'}
_MAX_KEY_BYTES: Final = 256
"""A longer header value is not one of our keys: refused before hashing."""


def requires(scope: Scope, *, json_body: bool = False) -> dict[str, Any]:
    """A route's decorator arguments for one that needs `scope`: the `opt` the app's admission
    hook reads (with `json_body` when it takes a JSON body) and the OpenAPI security
    requirement that says the same, so the two cannot disagree."""
    opt: dict[str, Any] = {"scope": scope}
    if json_body:
        opt["json_body"] = True
    return {"opt": opt, "security": [{SECURITY_SCHEME: []}]}


class KeyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One key as the file states it: a name for people and logs, its scopes, its SHA-256."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    scopes: Annotated[tuple[Scope, ...], msgspec.Meta(min_length=1)]
    sha256: Annotated[str, msgspec.Meta(pattern=_HEX_SHA256)]


class KeyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: tuple[KeyEntry, ...]


class KeyFileError(ValueError):
    """The keys file cannot be used; the message says which file and what to fix."""


def digest(key: str) -> str:
    """The SHA-256 the keys file holds for a key (hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: 32 random bytes, URL-safe, with a prefix that makes a leaked one easy to
    recognise in a scan."""
    return "ck_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class _Known:
    name: str
    scopes: frozenset[str]
    sha256: bytes


class ApiKeys:
    """The configured keys, and the check every route that names a scope goes through."""

    __slots__ = ("_known",)

    def __init__(self, entries: tuple[KeyEntry, ...]) -> None:
        if not entries:
            raise KeyFileError("no keys: give at least one, or run without keys explicitly")
        names = [e.name for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise KeyFileError(f"key names must be unique: {', '.join(twice)} used twice")
        self._known = tuple(
            _Known(e.name, frozenset(e.scopes), bytes.fromhex(e.sha256)) for e in entries
        )

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        try:
            parsed = msgspec.json.decode(raw, type=KeyFile)
        except msgspec.ValidationError as exc:
            raise KeyFileError(
                f'{path}: {exc}; the file is {{"keys": [{{"name": …, "scopes": '
                f'[{", ".join(SCOPES)}], "sha256": …}}]}} (python -m engine keys new)'
            ) from None
        except msgspec.DecodeError as exc:
            raise KeyFileError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls(parsed.keys)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self._known)

    def identify(self, presented: bytes) -> _Known | None:
        """The key whose hash matches, comparing with every entry (no early exit), so the
        time taken does not say how many keys there are or which one came close."""
        found = None
        if len(presented) <= _MAX_KEY_BYTES:
            candidate = hashlib.sha256(presented).digest()
            for known in self._known:
                if hmac.compare_digest(candidate, known.sha256):
                    found = known
        return found

    def check(self, headers: Any, scope: str) -> None:
        """The request's key (raw ASGI headers) must have `scope`: else 401 or 403.
        Called from the app's `before_request` (engine/service/app.py): a Litestar guard
        would cost a copy of the route handler per request, and a thread hop if synchronous."""
        presented = _presented(headers)
        if presented is None:
            raise NotAuthorizedException(
                "an API key is needed: send `Authorization: Bearer <key>`", headers=_CHALLENGE
            )
        known = self.identify(presented)
        if known is None:
            raise NotAuthorizedException("the API key is not valid", headers=_CHALLENGE)
        if scope not in known.scopes:
            raise PermissionDeniedException(
                f"the API key `{known.name}` does not have the `{scope}` scope this route needs"
            )


def _presented(headers: Any) -> bytes | None:
    """The key from `Authorization: Bearer …`, else `X-API-Key`, read from the raw ASGI
    headers (no header object built per request)."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            kind, _, token = value.partition(b" ")
            if kind.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
        elif name == b"x-api-key" and value.strip():
            api_key = bytes(value.strip())
    return api_key
