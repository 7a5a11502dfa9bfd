"""Operator sessions (log in, log out, who am I) and the settings the console needs.

Logging in is the one operator endpoint without a session; every other one needs the cookie or
``Authorization: Bearer`` with the login's token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from dispatch import operators
from dispatch.api.deps import SESSION_COOKIE, CurrentOperator, ServicesDep, session_token
from dispatch.models import LoginReply, LoginRequest, Operator
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post("/auth/login", response_model=LoginReply)
async def login(body: LoginRequest, services: ServicesDep, response: Response) -> LoginReply:
    """Start a session: sets the session cookie (HttpOnly, SameSite=Strict), returns its token."""
    reply = await operators.login(
        services.db,
        username=body.username,
        password=body.password,
        ttl_s=services.settings.session_ttl_s,
    )
    response.set_cookie(
        SESSION_COOKIE,
        reply.token,
        max_age=int(services.settings.session_ttl_s),
        httponly=True,
        samesite="strict",
        path="/",
    )
    return reply


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, operator: CurrentOperator, services: ServicesDep) -> Response:
    token = session_token(request)
    assert token is not None
    async with transaction(services.db) as tx:
        await operators.logout(tx, token, actor=operator.username)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=Operator)
async def me(operator: CurrentOperator) -> Operator:
    return operator


class ConsoleConfig(BaseModel):
    timezone: str | None = Field(description="the centre's IANA time zone (None: the browser's)")
    priority2_alert_after_s: float = Field(
        description="seconds before an unacknowledged priority-2 alarm sounds and joins the strip"
    )


@router.get("/console/config", response_model=ConsoleConfig)
async def console_config(operator: CurrentOperator, services: ServicesDep) -> ConsoleConfig:
    """Settings the console needs from the server."""
    settings = services.settings
    return ConsoleConfig(
        timezone=settings.timezone, priority2_alert_after_s=settings.priority2_alert_after_s
    )
