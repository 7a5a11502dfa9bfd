"""Shared request dependencies: the services, the session's operator, role checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from dispatch.db import Database
from dispatch.dc09.server import Dc09Receiver
from dispatch.errors import Forbidden, Unauthorized
from dispatch.heartbeats import HeartbeatBatcher
from dispatch.incidents import Actor
from dispatch.jt808.server import Jt808Server
from dispatch.login_throttle import LoginThrottle
from dispatch.models import Operator, Role
from dispatch.operators import session_operator
from dispatch.sealing import SecretBox
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed

__all__ = [
    "ROLE_CHECKS",
    "SESSION_COOKIE",
    "Admin",
    "CurrentAccount",
    "CurrentOperator",
    "Services",
    "ServicesDep",
    "Supervisor",
    "actor_of",
    "current_operator",
    "get_services",
    "require_role",
    "session_token",
]

SESSION_COOKIE = "dispatch_session"


@dataclass
class Services:
    db: Database
    settings: Settings
    feed: ChangeFeed = field(default_factory=ChangeFeed)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeats: HeartbeatBatcher | None = None
    jt808: Jt808Server | None = None
    dc09: Dc09Receiver | None = None
    #: Seals and opens gateway secrets; loaded when the application starts.
    box: SecretBox | None = None
    login_throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.login_throttle = LoginThrottle(
            per_user=self.settings.login_failures_per_user,
            per_address=self.settings.login_failures_per_address,
            max_delay_s=self.settings.login_lockout_max_s,
        )

    @property
    def secret_box(self) -> SecretBox:
        assert self.box is not None, "the application's lifespan did not run"
        return self.box


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def session_token(request: Request) -> str | None:
    """The session token from the cookie, or from ``Authorization: Bearer`` (API clients)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return request.cookies.get(SESSION_COOKIE) or None


async def current_account(request: Request, services: ServicesDep) -> Operator:
    """The session's account, whatever its role (log out, who am I)."""
    token = session_token(request)
    if not token:
        raise Unauthorized(
            "login required",
            detail="this endpoint needs an operator session (POST /api/v1/auth/login)",
            headers={"WWW-Authenticate": 'Cookie realm="dispatch"'},
        )
    async with services.db.read() as conn:
        operator = await session_operator(conn, token, datetime.now(UTC))
    if operator is None:
        raise Unauthorized(
            "session expired or invalid",
            detail="log in again",
            headers={"WWW-Authenticate": 'Cookie realm="dispatch"'},
        )
    return operator


CurrentAccount = Annotated[Operator, Depends(current_account)]


async def current_operator(account: CurrentAccount) -> Operator:
    """The session's operator: a rescuer's account opens only the rescuer's own endpoints."""
    if account.role is Role.RESCUER:
        raise Forbidden(
            "operator role required",
            detail=f"{account.username!r} is a rescuer account: use the rescuer's page (/rescuer/)",
        )
    return account


CurrentOperator = Annotated[Operator, Depends(current_operator)]


#: The role checks :func:`require_role` made (the OpenAPI document lists their 403), and the
#: one every operator endpoint makes (a rescuer's account is refused).
ROLE_CHECKS: set[Callable[..., Any]] = {current_operator}


def require_role(role: Role) -> Any:
    async def check(operator: CurrentOperator) -> Operator:
        if operator.role.rank < role.rank:
            raise Forbidden(
                f"{role.value} role required",
                detail=f"operator {operator.username!r} has role {operator.role.value}",
            )
        return operator

    ROLE_CHECKS.add(check)
    return Depends(check)


#: Route dependencies: what supervisors may do (households, escalations, audit, reports) and
#: what only admins may (operators, revoking gateways).
Supervisor = require_role(Role.SUPERVISOR)
Admin = require_role(Role.ADMIN)


def actor_of(operator: Operator) -> Actor:
    return Actor(operator.id, operator.username, operator.role.value)
