"""Operator sessions (log in, log out, who am I) and the settings the console needs.

Logging in is the one operator endpoint without a session; every other one needs the cookie or
``Authorization: Bearer`` with the login's token.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from dispatch import operators
from dispatch.api.deps import (
    SESSION_COOKIE,
    CurrentAccount,
    CurrentOperator,
    Services,
    ServicesDep,
    session_token,
)
from dispatch.api.openapi import RETRY_AFTER, problem_responses
from dispatch.errors import TooManyRequests
from dispatch.login_throttle import retry_after_header
from dispatch.models import LoginReply, LoginRequest, Operator
from dispatch.tx import transaction

__all__ = ["router"]

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post(
    "/auth/login",
    response_model=LoginReply,
    responses=problem_responses(401, 429, headers={429: RETRY_AFTER}),
)
async def login(
    body: LoginRequest, request: Request, services: ServicesDep, response: Response
) -> LoginReply:
    """Start a session: sets the session cookie (HttpOnly, SameSite=Strict, Secure over TLS),
    returns its token. Failed logins are throttled per user and per address (429)."""
    address = request.client.host if request.client else "unknown"
    throttle = services.login_throttle
    wait = throttle.retry_after(body.username, address)
    if wait > 0:
        log.info("login throttled", operator=body.username, address=address, wait_s=wait)
        seconds = retry_after_header(wait)
        raise TooManyRequests(
            "too many failed logins",
            detail=f"try again in {seconds} s",
            headers={"Retry-After": seconds},
        )
    attempt = throttle.begin(body.username, address)
    reply = await operators.login(
        services.db,
        username=body.username,
        password=body.password,
        ttl_s=services.settings.session_ttl_s,
    )
    throttle.succeeded(attempt)
    response.set_cookie(
        SESSION_COOKIE,
        reply.token,
        max_age=int(services.settings.session_ttl_s),
        httponly=True,
        samesite="strict",
        secure=_over_tls(request, services),
        path="/",
    )
    return reply


def _over_tls(request: Request, services: Services) -> bool:
    """Served over TLS: by dispatchd itself, or (when trusted) by the reverse proxy."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return services.settings.trust_proxy_headers and forwarded == "https"


@router.post("/auth/logout", status_code=204, responses=problem_responses(401))
async def logout(request: Request, operator: CurrentAccount, services: ServicesDep) -> Response:
    token = session_token(request)
    assert token is not None
    async with transaction(services.db, feed=services.feed) as tx:
        await operators.logout(tx, token, actor=operator.username)
    services.feed.end_sessions()  # this process's live streams look at their sessions now
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_over_tls(request, services),
    )
    return response


@router.get("/auth/me", response_model=Operator)
async def me(operator: CurrentAccount) -> Operator:
    return operator


class MapTiles(BaseModel):
    url_template: str = Field(description="tile URL with {z}, {x} and {y}")
    attribution: str = Field(description="text the tiles' licence asks to show on the map")


class ConsoleConfig(BaseModel):
    timezone: str | None = Field(description="the centre's IANA time zone (None: the browser's)")
    priority2_alert_after_s: float = Field(
        description="seconds before an unacknowledged priority-2 alarm sounds and joins the strip"
    )
    map_tiles: MapTiles | None = Field(
        None, description="the location card's map tiles; None: no map, nothing fetched"
    )


@router.get("/console/config", response_model=ConsoleConfig)
async def console_config(operator: CurrentOperator, services: ServicesDep) -> ConsoleConfig:
    """Settings the console needs from the server."""
    settings = services.settings
    tiles = settings.map_tile_url_template
    return ConsoleConfig(
        timezone=settings.timezone,
        priority2_alert_after_s=settings.priority2_alert_after_s,
        map_tiles=MapTiles(url_template=tiles, attribution=settings.map_tile_attribution)
        if tiles
        else None,
    )
