"""Operator accounts (admins only: list, create, change role or disable) and presence (everyone:
who is there, and one's own break)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlalchemy import select

from dispatch import incidents, operators, presence, schema
from dispatch.api.deps import Admin, CurrentOperator, ServicesDep
from dispatch.api.openapi import problem_responses
from dispatch.models import BreakRequest, Operator, OperatorIn, OperatorPatch, OperatorPresence
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["operators"])
_admin = APIRouter(dependencies=[Admin])


@router.get("/operators/presence", response_model=list[OperatorPresence])
async def operator_presence(
    operator: CurrentOperator, services: ServicesDep
) -> list[OperatorPresence]:
    """Every enabled operator: on duty, on break or gone, and how many incidents they hold."""
    async with services.db.read() as conn:
        rows = await presence.listing(conn, services.settings, datetime.now(UTC))
    return [
        OperatorPresence(
            operator_id=r["id"],
            username=r["username"],
            display_name=r["display_name"],
            status=r["status"],
            seen_at=r["seen_at"],
            changed_at=r["changed_at"],
            reason=r["reason"],
            held=r["held"],
        )
        for r in rows
    ]


@router.post("/operators/me/break", response_model=list[OperatorPresence])
async def take_break(
    body: BreakRequest, operator: CurrentOperator, services: ServicesDep
) -> list[OperatorPresence]:
    """Go on break (what you hold returns to the queue at once) or come back on duty."""
    async with transaction(services.db, feed=services.feed) as tx:
        if body.on_break:
            await incidents.operator_away(
                tx, operator.id, presence.PresenceStatus.ON_BREAK, "on break"
            )
        else:
            await presence.touch(tx, operator.id, "back from break", resume=True)
    return await operator_presence(operator, services)


@_admin.get("/operators", response_model=list[Operator])
async def list_operators(operator: CurrentOperator, services: ServicesDep) -> list[Operator]:
    o = schema.operators
    async with services.db.read() as conn:
        rows = (await conn.execute(select(o).order_by(o.c.username))).mappings()
        return [operators.operator_model(r) for r in rows]


@_admin.post(
    "/operators", response_model=Operator, status_code=201, responses=problem_responses(409)
)
async def create_operator(
    body: OperatorIn, operator: CurrentOperator, services: ServicesDep
) -> Operator:
    hashed = await operators.hash_password(body.password)
    async with transaction(services.db, feed=services.feed) as tx:
        return await operators.create_operator(
            tx,
            username=body.username,
            password_hash=hashed,
            role=body.role,
            display_name=body.display_name,
            actor=operator.username,
        )


@_admin.patch("/operators/{username}", response_model=Operator)
async def patch_operator(
    username: str, body: OperatorPatch, operator: CurrentOperator, services: ServicesDep
) -> Operator:
    async with transaction(services.db, feed=services.feed) as tx:
        updated = await operators.update_operator(tx, username, body, actor=operator.username)
    if body.disabled:
        services.feed.end_sessions()  # this process's live streams look at their sessions now
    return updated


router.include_router(_admin)
