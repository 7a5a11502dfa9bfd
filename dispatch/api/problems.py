"""RFC 9457 problem documents for every error, and request body limits.

Validation errors (FastAPI's 422), HTTP errors, our own :class:`~dispatch.errors.Problem`s and
unexpected exceptions all answer ``application/problem+json`` with type, title, status and detail.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.errors import Problem, StorageError

__all__ = [
    "MEDIA_TYPE",
    "PROBLEM_TYPE_BASE",
    "BodyLimitMiddleware",
    "install_problem_handlers",
    "problem_response",
    "send_problem",
]

log = structlog.get_logger(__name__)
PROBLEM_TYPE_BASE = "https://dispatch.invalid/problems/"
MEDIA_TYPE = "application/problem+json"


def problem_response(
    status: int,
    title: str,
    *,
    detail: str | None = None,
    slug: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": slug if slug == "about:blank" else PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            detail=exc.detail,
            slug=exc.type_slug,
            extra=exc.extra,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": _location(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ][:50]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
        return problem_response(
            422, "invalid request", detail=detail, slug="validation", extra={"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else {}
        allowed = _allowed_methods(request) if exc.status_code == 405 else set()
        if allowed:
            # Starlette names the methods of the first route on the path only; a path served
            # by several routes (GET and POST /operators) allows all of theirs.
            headers["Allow"] = ", ".join(sorted(allowed))
        return problem_response(
            exc.status_code, str(exc.detail) if exc.detail else "error", headers=headers or None
        )

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error", error=str(exc))
        return problem_response(
            503,
            "storage unavailable",
            detail="the database did not answer; retry",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        # Only a pathologically nested request body gets here (JSON arrays in arrays, ...).
        return problem_response(
            400, "request body nested too deeply", detail="JSON nesting is limited", slug="body"
        )

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # A value the models let through but the database cannot store (the last line of
        # defence; the models refuse what we know of).
        log.warning("database refused a value", error=str(exc.orig)[:200])
        return problem_response(
            422, "value cannot be stored", detail=str(exc.orig)[:200], slug="validation"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # No locals in this log line: they would carry cookies and request bodies.
        log.error(
            "unhandled error",
            path=request.url.path,
            error=repr(exc)[:500],
            traceback="".join(traceback.format_exception(exc))[-4000:],
        )
        return problem_response(500, "internal error", detail="the error was logged")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> set[str]:
    """The methods some route serves on this request's path (asked of the router itself, so
    routes of included routers count)."""
    return {
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    }


class BodyLimitMiddleware:
    """Refuse request bodies over a limit (per path prefix) with 413, before reading them whole."""

    def __init__(self, app: ASGIApp, *, default: int, limits: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = limits

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # PostgreSQL text cannot hold NUL: refuse it in the URL before any handler sees it.
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            await self._refuse(
                send, 400, "NUL character in URL", "paths and queries cannot hold NUL"
            )
            return
        limit = self._limit(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await self._refuse(
                        send, 400, "bad Content-Length", "not a non-negative integer"
                    )
                    return
                if declared > limit:
                    await self._refuse(
                        send,
                        413,
                        "request body too large",
                        f"{declared} bytes; the limit here is {limit} bytes",
                    )
                    return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(
                    send, 413, "request body too large", f"the limit here is {limit} bytes"
                )

    @staticmethod
    async def _refuse(send: Send, status: int, title: str, detail: str) -> None:
        await send_problem(
            send, status, title, detail, slug="body-size", headers=[(b"connection", b"close")]
        )


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a problem document straight from an ASGI middleware (before any route runs)."""
    body = json.dumps(
        {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
