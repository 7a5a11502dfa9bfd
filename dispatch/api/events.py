"""Stored events, newest first: alarms, and the telemetry and installers' test events that
open no incident. Listed under the incidents tag, as they have always been."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import and_, or_, select

from dispatch import schema
from dispatch.api.deps import CurrentOperator, ServicesDep
from dispatch.api.paging import Limit, Offset, equal_to, fetch_page
from dispatch.models import Page, StoredEvent

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["incidents"])


@router.get("/events", response_model=Page[StoredEvent])
async def list_events(
    operator: CurrentOperator,
    services: ServicesDep,
    household_id: Annotated[str | None, Query(max_length=128)] = None,
    gateway_id: Annotated[str | None, Query(max_length=128)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    test: Annotated[
        bool | None, Query(description="only test events (flag or test kind), or only others")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[StoredEvent]:
    """Stored events, newest first: telemetry and installers' test events too."""
    e = schema.events
    where = equal_to(e, household_id=household_id, gateway_id=gateway_id, kind=kind)
    if test is True:
        where.append(or_(e.c.test.is_(True), e.c.kind == "test"))
    elif test is False:
        where.append(and_(e.c.test.is_(False), e.c.kind != "test"))
    async with services.db.read() as conn:
        return await fetch_page(
            conn,
            Page[StoredEvent],
            select(e),
            counted=e,
            where=where,
            order_by=[e.c.received_at.desc(), e.c.id.desc()],
            limit=limit,
            offset=offset,
            item=lambda row: StoredEvent.model_validate(dict(row)),
        )
