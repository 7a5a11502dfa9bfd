"""The rescue report: time to accept, travel time and on-scene time, from the rescuers' presses.

Per assignment: time to accept runs from the assignment to the rescuer's accept (or their first
move, which accepts too), travel time from accepting to their own "on scene", on-scene time from
"on scene" to "done". Grouped per rescuer or per community (of the home), over the assignments
made in the period. A figure nobody reached is ``None`` ("no data"), never 0.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.reports import NO_COMMUNITY, centre_zone
from dispatch.settings import Settings

__all__ = ["RescueGroup", "RescueReport", "RescueTiming", "rescue_report"]

RescueGroupBy = Literal["rescuer", "community"]


class RescueTiming(BaseModel):
    count: int = Field(description="assignments that reached this step")
    mean_s: float | None
    median_s: float | None
    max_s: float | None


class RescueGroup(BaseModel):
    key: str
    assignments: int
    time_to_accept: RescueTiming
    travel: RescueTiming
    on_scene: RescueTiming
    accepted_within_target: float | None = Field(
        description="share accepted within the accept target (of those whose time has come)"
    )


class RescueReport(BaseModel):
    period_from: datetime
    period_to: datetime
    timezone: str
    group_by: RescueGroupBy
    accept_target_s: float
    groups: list[RescueGroup]
    total: RescueGroup


def _timing(values: list[float]) -> RescueTiming:
    if not values:
        return RescueTiming(count=0, mean_s=None, median_s=None, max_s=None)
    return RescueTiming(
        count=len(values),
        mean_s=round(statistics.fmean(values), 1),
        median_s=round(statistics.median(values), 1),
        max_s=round(max(values), 1),
    )


def _span(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds())
    return None


def _group(key: str, rows: list[dict[str, Any]], target_s: float, now: datetime) -> RescueGroup:
    accept = [v for r in rows if (v := _span(r["assigned_at"], r["accepted_at"])) is not None]
    travel = [v for r in rows if (v := _span(r["accepted_at"], r["on_scene_at"])) is not None]
    scene = [
        v
        for r in rows
        if r["state"] == "done" and (v := _span(r["on_scene_at"], r["ended_at"])) is not None
    ]
    due = met = 0
    for r in rows:
        waited = _span(r["assigned_at"], r["accepted_at"] or r["ended_at"] or now)
        accepted = r["accepted_at"] is not None
        if accepted or (waited is not None and waited >= target_s):
            due += 1
            met += int(accepted and waited is not None and waited <= target_s)
    return RescueGroup(
        key=key,
        assignments=len(rows),
        time_to_accept=_timing(accept),
        travel=_timing(travel),
        on_scene=_timing(scene),
        accepted_within_target=round(met / due, 4) if due else None,
    )


async def rescue_report(
    conn: AsyncConnection,
    settings: Settings,
    *,
    start: datetime,
    end: datetime,
    group: RescueGroupBy,
    now: datetime,
) -> RescueReport:
    a, r, i, h = schema.rescue_assignments, schema.rescuers, schema.incidents, schema.households
    query = (
        select(a, r.c.name.label("rescuer_name"), h.c.community)
        .select_from(
            a.join(r, r.c.id == a.c.rescuer_id)
            .join(i, i.c.id == a.c.incident_id)
            .join(h, h.c.id == i.c.household_id)
        )
        .where(a.c.assigned_at >= start, a.c.assigned_at < end)
        # A task handed to someone else or called off measures nobody's response.
        .where(a.c.state.not_in(("cancelled", "reassigned")) | a.c.on_scene_at.is_not(None))
        .order_by(a.c.assigned_at)
    )
    rows = [dict(x) for x in (await conn.execute(query)).mappings()]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row["rescuer_name"] if group == "rescuer" else (row["community"] or NO_COMMUNITY)
        groups.setdefault(str(key), []).append(row)
    target = settings.rescue_accept_within_s
    return RescueReport(
        period_from=start,
        period_to=end,
        timezone=str(centre_zone(settings)),
        group_by=group,
        accept_target_s=target,
        groups=[_group(k, v, target, now) for k, v in sorted(groups.items())],
        total=_group("total", rows, target, now),
    )
