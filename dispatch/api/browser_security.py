"""What a browser is told and refused: cross-site state changes, framing, sniffing, foreign code.

- A state-changing request (not GET, HEAD or OPTIONS) that carries the session cookie must come
  from this site: an ``Origin`` (or, without one, a ``Referer``) naming another site is refused
  with 403. SameSite=Strict already keeps the cookie off cross-site requests in today's
  browsers; this is the check that does not depend on the browser. Requests without the cookie
  (logging in, API clients with ``Authorization: Bearer``) carry no ambient authority to abuse.
- Every answer carries a Content-Security-Policy that allows only this site's own scripts,
  styles and connections and no framing, plus ``nosniff`` and a same-origin Referrer-Policy.
  Images may also come from the host of the map tiles the centre configured, if it did.

A pure ASGI middleware, so the live stream passes through it unbuffered.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.api.deps import SESSION_COOKIE
from dispatch.api.problems import send_problem

__all__ = ["CONTENT_SECURITY_POLICY", "BrowserSecurityMiddleware", "content_security_policy"]


def content_security_policy(image_sources: tuple[str, ...] = ()) -> str:
    """The policy; ``image_sources``: origins images may come from besides this site (the
    configured map tiles' host, and nothing else)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            " ".join(["img-src 'self' data:", *image_sources]),
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()


def security_headers(policy: str = CONTENT_SECURITY_POLICY) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BrowserSecurityMiddleware:
    """Refuse cross-site state changes made with the session cookie; add the security headers.

    ``trust_forwarded_host``: the reverse proxy's ``X-Forwarded-Host`` names this site (when the
    proxy does not pass the browser's ``Host`` on). ``image_sources``: see
    :func:`content_security_policy`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trust_forwarded_host: bool = False,
        image_sources: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.trust_forwarded_host = trust_forwarded_host
        self.headers = security_headers(content_security_policy(image_sources))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            refusal = self._cross_site(Headers(scope=scope))
            if refusal is not None:
                await _refuse(send, refusal, self.headers)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _cross_site(self, headers: Headers) -> str | None:
        """Why this request is refused as cross-site, or None."""
        if headers.get("authorization", "")[:7].lower() == "bearer ":
            return None  # the bearer token, not the cookie, is the session
        if SESSION_COOKIE not in cookie_parser(headers.get("cookie", "")):
            return None
        origin = headers.get("origin")
        source, name = (origin, "Origin") if origin is not None else (headers.get("referer"), "")
        if source is None:
            return None  # not a browser: browsers send Origin on every state-changing request
        name = name or "Referer"
        site = self._site(headers)
        try:
            claimed = urlsplit(source).netloc.lower()
        except ValueError:
            claimed = ""
        if not claimed or claimed != site:
            return f"{name} {source[:100]!r} is not this site ({site or 'no Host'})"
        return None

    def _site(self, headers: Headers) -> str:
        if self.trust_forwarded_host and headers.get("x-forwarded-host"):
            return headers["x-forwarded-host"].split(",")[0].strip().lower()
        return headers.get("host", "").lower()


async def _refuse(send: Send, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    await send_problem(
        send,
        403,
        "cross-site request refused",
        detail + "; a session cookie works only from the console's own pages",
        slug="cross-site",
        headers=headers,
    )
