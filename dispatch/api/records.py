"""What supervisors look back on: the audit log and the response-time reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from dispatch import schema
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor
from dispatch.api.paging import Limit, Offset, QueryTime, equal_to, fetch_page
from dispatch.errors import BadRequest
from dispatch.models import AuditEntry, Page
from dispatch.reports import (
    ReportGroup,
    ResponseTimesReport,
    centre_zone,
    response_times,
    to_csv,
)
from dispatch.settings import Settings

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


def _period(
    settings: Settings, from_: datetime | None, to: datetime | None
) -> tuple[datetime, datetime]:
    """The report's period; a time given without a zone is the centre's local time, so
    ``from=2026-12-01T00:00`` starts at the centre's midnight."""
    zone = centre_zone(settings)
    end = _aware(to, zone) if to else datetime.now(UTC)
    start = _aware(from_, zone) if from_ else end - timedelta(days=30)
    if start >= end:
        raise BadRequest("empty period", detail="'from' must be before 'to'", status=422)
    return start, end


async def _report(
    services: ServicesDep,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    group: ReportGroup = "day",
) -> ResponseTimesReport:
    """The report the query asks for (a dependency of the JSON and the CSV route)."""
    start, end = _period(services.settings, from_, to)
    async with services.db.read() as conn:
        return await response_times(
            conn,
            services.settings,
            start=start,
            end=end,
            group=group,
            now=datetime.now(UTC),
        )


Report = Annotated[ResponseTimesReport, Depends(_report)]


@router.get("/reports/response-times", response_model=ResponseTimesReport, tags=["reports"])
async def report_response_times(operator: CurrentOperator, report: Report) -> ResponseTimesReport:
    """Times to acknowledge, call back and arrive; shares within the centre's marks (alarms that
    never reached a step count as misses); alarm counts by kind; false-alarm rate; gateway
    outages. Grouped by the centre's local day or hour of day, community or acknowledging
    operator. Default period: the last 30 days."""
    return report


@router.get(
    "/reports/response-times.csv",
    response_class=PlainTextResponse,
    tags=["reports"],
    responses={200: {"content": {"text/csv": {}}}},
)
async def report_response_times_csv(operator: CurrentOperator, report: Report) -> PlainTextResponse:
    """The same report as CSV (one line per group, then the total)."""
    period = f"{report.period_from.date()}-{report.period_to.date()}"
    name = f"response-times-{report.group_by}-{period}.csv"
    return PlainTextResponse(
        to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _aware(value: datetime, zone: tzinfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(UTC)
