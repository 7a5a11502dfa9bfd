"""Enrolled gateways as operators see them: list, one, revoke (admins), allow re-enrolling
(supervisors).

(The gateways' own signed endpoints, enroll, events and heartbeat, are in ``gateway.py``.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from dispatch import enrollment, gateways, schema
from dispatch.api.deps import Admin, CurrentOperator, ServicesDep, Supervisor
from dispatch.api.paging import Limit, Offset, equal_to, fetch_rows
from dispatch.dc09.server import Dc09ReceiverStatus
from dispatch.errors import NotFound
from dispatch.models import GatewayOut
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["gateways"])


@router.get("/gateways", response_model=list[GatewayOut])
async def list_gateways(
    operator: CurrentOperator,
    services: ServicesDep,
    household_id: Annotated[str | None, Query(max_length=128)] = None,
    online: bool | None = None,
    limit: Limit = 500,
    offset: Offset = 0,
) -> list[GatewayOut]:
    g = schema.gateways
    where = equal_to(g, household_id=household_id)
    if online is not None:
        where.append(g.c.online.is_(online))
    async with services.db.read() as conn:
        return await fetch_rows(
            conn,
            gateways.gateway_select(),
            where=where,
            order_by=[g.c.id],
            limit=limit,
            offset=offset,
            item=gateways.gateway_model,
        )


@router.get("/dc09/receiver", response_model=Dc09ReceiverStatus)
async def dc09_receiver(operator: CurrentOperator, services: ServicesDep) -> Dc09ReceiverStatus:
    """The DC-09 receiver of the dispatchd process answering: what it acknowledged and what it
    rejected, by reason, since it started (every process counts its own; the log has each one
    as ``dc09_rejected``)."""
    if services.dc09 is None:
        return Dc09ReceiverStatus(listening=False)
    return services.dc09.status()


@router.get("/gateways/{gateway_id}", response_model=GatewayOut)
async def get_gateway(
    gateway_id: str, operator: CurrentOperator, services: ServicesDep
) -> GatewayOut:
    g = schema.gateways
    async with services.db.read() as conn:
        row = (
            (await conn.execute(gateways.gateway_select().where(g.c.id == gateway_id)))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound("no such gateway", detail=f"gateway {gateway_id!r} is not enrolled")
    return gateways.gateway_model(row)


@router.post("/gateways/{gateway_id}/revoke", response_model=GatewayOut, dependencies=[Admin])
async def revoke_gateway(
    gateway_id: str, operator: CurrentOperator, services: ServicesDep
) -> GatewayOut:
    async with transaction(services.db, feed=services.feed) as tx:
        await gateways.revoke(tx, gateway_id, actor=operator.username)
        g = schema.gateways
        row = (
            (await tx.conn.execute(gateways.gateway_select().where(g.c.id == gateway_id)))
            .mappings()
            .one()
        )
        return gateways.gateway_model(row)


class ReenrollAllowance(BaseModel):
    gateway_id: str
    expires_at: datetime


@router.post(
    "/gateways/{gateway_id}/allow-reenroll",
    response_model=ReenrollAllowance,
    dependencies=[Supervisor],
)
async def allow_reenroll(
    gateway_id: str, operator: CurrentOperator, services: ServicesDep
) -> ReenrollAllowance:
    """Allow the next enrollment of this existing (or revoked) gateway id, once, until it
    expires (``reenroll_allow_ttl_s``); audited."""
    async with transaction(services.db, feed=services.feed) as tx:
        expires = await enrollment.allow_reenroll(
            tx, services.settings, gateway_id, actor=operator.username
        )
    return ReenrollAllowance(gateway_id=gateway_id, expires_at=expires)
