"""A warning in the log for every answer that took too long to begin.

The time is from the request's arrival to the start of its answer (a live stream counts until
its first bytes, not for as long as it stays open), so a slow database, a long wait for the
write gate or a busy password thread shows in the log with what was asked, not only as a
complaint from an operator. A pure ASGI middleware: nothing is buffered.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SlowRequestLog"]

log = structlog.get_logger(__name__)


class SlowRequestLog:
    """Log ``slow request`` (method, path, status, seconds) when an answer starts after
    ``threshold_s``; an answer that never starts (the client went) is logged as well."""

    def __init__(self, app: ASGIApp, *, threshold_s: float) -> None:
        self.app = app
        self.threshold_s = threshold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.monotonic()
        status: int | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self._check(scope, status, time.monotonic() - began)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if status is None:
                self._check(scope, None, time.monotonic() - began)

    def _check(self, scope: Scope, status: int | None, took_s: float) -> None:
        if took_s >= self.threshold_s:
            log.warning(
                "slow request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                took_s=round(took_s, 3),
            )
