"""What supervisors look back on: the audit log and the response-time reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from dispatch import schema
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor
from dispatch.api.paging import Limit, Offset, equal_to, fetch_page
from dispatch.errors import BadRequest
from dispatch.models import AuditEntry, Page
from dispatch.reports import ResponseTimesReport, response_times

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", dependencies=[Supervisor])


@router.get("/audit", response_model=Page[AuditEntry], tags=["audit"])
async def audit(
    operator: CurrentOperator,
    services: ServicesDep,
    entity_type: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditEntry]:
    """The append-only audit log, newest first."""
    a = schema.audit_log
    where = equal_to(a, entity_type=entity_type, entity_id=entity_id, actor=actor)
    async with services.db.read() as conn:
        return await fetch_page(
            conn,
            Page[AuditEntry],
            select(a),
            counted=a,
            where=where,
            order_by=[a.c.id.desc()],
            limit=limit,
            offset=offset,
            item=lambda row: AuditEntry.model_validate(dict(row)),
        )


@router.get("/reports/response-times", response_model=ResponseTimesReport, tags=["reports"])
async def report_response_times(
    operator: CurrentOperator,
    services: ServicesDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    group: Literal["community", "day"] = "day",
) -> ResponseTimesReport:
    """Times to acknowledge, call back and arrive; share within each target; alarm counts by
    kind; false-alarm rate; gateway outages. Default period: the last 30 days."""
    end = _aware(to) if to else datetime.now(UTC)
    start = _aware(from_) if from_ else end - timedelta(days=30)
    if start >= end:
        raise BadRequest("empty period", detail="'from' must be before 'to'", status=422)
    async with services.db.read() as conn:
        return await response_times(conn, services.settings, start=start, end=end, group=group)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
