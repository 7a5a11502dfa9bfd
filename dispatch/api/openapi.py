"""The OpenAPI document, made to say what the server really answers.

FastAPI documents a route's success and its 422 (as ``application/json``). Every error here is
an RFC 9457 problem document, and some errors come from outside the route: the body limit and
URL checks (400, 413), the session and role dependencies (401, 403), the cross-site check on
state changes (403), the database (503). :func:`document_problems` adds those to each operation
from what the route is (its dependencies, its method, its path parameters) and gives every error
response the ``application/problem+json`` body. What only a route knows (409, 429) it declares
itself with :func:`problem_responses`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import BaseRoute

from dispatch.api.deps import ROLE_CHECKS, current_account
from dispatch.api.problems import MEDIA_TYPE

__all__ = ["RETRY_AFTER", "document_problems", "problem_responses"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

DESCRIPTIONS = {
    400: "malformed request (NUL in the URL, a bad Content-Length, a value the server cannot use)",
    401: "no session, or an expired or invalid one",
    403: "the role does not allow it, or a cross-site request with the session cookie",
    404: "no such resource",
    409: "the resource's state does not allow it, or it exists already",
    413: "request body too large",
    422: "the request does not satisfy the schema",
    429: "too many failed logins: retry after the time in Retry-After",
    503: "the database did not answer: retry after the time in Retry-After",
}

RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}
}
WWW_AUTHENTICATE: dict[str, Any] = {
    "WWW-Authenticate": {"description": "how to authenticate", "schema": {"type": "string"}}
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NO_NUL = "^[^\\x00]*$"


def problem_responses(
    *statuses: int, headers: dict[int, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for errors only it can raise (each a problem document)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        declared[status] = {"description": DESCRIPTIONS[status]}
        if headers and status in headers:
            declared[status]["headers"] = headers[status]
    return declared


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _implied_statuses(route: RouteContext, method: str) -> set[int]:
    """The errors a route can answer without saying so itself."""
    statuses = {400, 413, 503}
    calls = set(_calls(route.dependant))
    if current_account in calls:
        statuses.add(401)
    if calls & ROLE_CHECKS or method not in SAFE_METHODS:
        statuses.add(403)
    if route.dependant.path_params:
        statuses.add(404)
    if route.dependant.query_params or route.dependant.body_params or route.dependant.path_params:
        statuses.add(422)
    return statuses


def _no_nul(schema: dict[str, Any]) -> None:
    """A URL cannot carry NUL (the body limit middleware refuses it): say so in the schema."""
    for variant in schema.get("anyOf", [schema]):
        if variant.get("type") == "string" and "pattern" not in variant and "format" not in variant:
            variant["pattern"] = NO_NUL


def document_problems(doc: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Add each operation's implied errors and give every error a problem+json body."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    # Included routers' routes, each with its effective path and dependencies (the router's own
    # dependencies, such as a role check, included).
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("path", "query"):
                    _no_nul(parameter.get("schema", {}))
            responses = operation.setdefault("responses", {})
            for status in _implied_statuses(route, method):
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if int(status) < 400:
                    continue
                response["content"] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}
                if status in ("429", "503"):
                    response.setdefault("headers", {}).update(RETRY_AFTER)
                elif status == "401" and current_account in set(_calls(route.dependant)):
                    response.setdefault("headers", {}).update(WWW_AUTHENTICATE)
    # FastAPI's own validation error schemas describe a body this server never sends.
    for name in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(name, None)
