"""Admin routes for the rules: reload them, and see what was loaded when.

These change or reveal what every cart is decided with, so they need the `admin` scope when the
service has API keys (engine/service/auth.py). A rejected reload is a 422 problem+json listing
every problem as `{file, line, column, message}` (file named within the rules folder) and the
rule set that stays live.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec

from engine.reload import Attempt, Outcome, RuleProblem, RuleReloader
from engine.service.auth import requires
from engine.service.problems import invalid_rules, invalid_rules_response, problem_responses

__all__ = ("rule_admin_handlers",)


class ReloadAnswer(TypedDict):
    """What a reload that put its rules in force (or found them unchanged) answers."""

    outcome: Outcome
    rule_set: str
    """The rule set in force."""
    warnings: list[str]
    """`file:line:column: message`, one a warning."""


def _line(problem: RuleProblem) -> str:
    return f"{problem.file}:{problem.line}:{problem.column}: {problem.message}"


def rule_admin_handlers(reloader: RuleReloader) -> list[HTTPRouteHandler]:
    """`POST /v1/rules/reload` and `GET /v1/rules/history`, closures over one reloader.
    Admin routes: they need the `admin` scope."""

    @post(
        "/v1/rules/reload",
        status_code=200,
        summary="Reload the rules folder (admin)",
        description="Read, check and compile the rule files; put them in force only when they "
        "have no errors. 422 (`/problems/invalid-rules`) lists every problem; the live rule set "
        "is then unchanged. Needs the `admin` scope.",
        tags=["rules"],
        **requires("admin"),
        responses={
            200: ResponseSpec(
                ReloadAnswer, generate_examples=False, description="Loaded, or unchanged"
            ),
            **problem_responses(401, 403),
            422: invalid_rules_response(),
        },
    )
    async def reload_rules(request: Request[Any, Any, Any]) -> Response[bytes]:
        attempt = await reloader.reload("api")
        if attempt.outcome == "rejected":
            errors = [p for p in attempt.problems if p.severity == "error"]
            first = f", the first: {_line(errors[0])}" if errors else ""
            return invalid_rules(
                request.url.path,
                f"{len(errors)} error(s) in the rule files{first}. Nothing was "
                f"changed: rule set {attempt.live} is still live.",
                attempt.problems,
                rule_set=attempt.live,
            )
        answer: ReloadAnswer = {
            "outcome": attempt.outcome,
            "rule_set": attempt.live,
            "warnings": [_line(p) for p in attempt.problems],
        }
        return Response(msgspec.json.encode(answer), media_type=MediaType.JSON)

    @get(
        "/v1/rules/history",
        summary="Rule loads, newest first (admin)",
        description="Each attempt to load the rules: when (UTC), what triggered it (startup, "
        f"file, api, signal), the outcome, the rule set id and SHA-256 digest, the files, and "
        f"the problems of a rejected one. The last {reloader.history.maxlen} are kept. Will "
        "need the `admin` scope.",
        tags=["rules"],
        **requires("admin"),
        responses={
            200: ResponseSpec(
                list[Attempt], generate_examples=False, description="The loads, newest first"
            ),
            **problem_responses(401, 403),
        },
    )
    async def rules_history() -> Response[bytes]:
        return Response(msgspec.json.encode(reloader.newest_first()), media_type=MediaType.JSON)

    return [reload_rules, rules_history]
