"""Reports: response times against service levels, alarm counts, false alarms, gateway outages.

Computed in Python over the incidents opened in the period: one code path for both databases, and
a district's month of incidents is a few thousand rows.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.settings import Settings

__all__ = ["ResponseTimesReport", "response_times"]


class Timing(BaseModel):
    target_s: float
    count: int = Field(description="incidents that reached this step")
    mean_s: float | None
    median_s: float | None
    p90_s: float | None
    max_s: float | None
    within_target: float | None = Field(description="share (0..1) within the target")


class GroupStats(BaseModel):
    group: str
    incidents: int
    to_acknowledge: Timing
    to_callback: Timing
    to_arrive: Timing
    alarms_by_kind: dict[str, int]
    resolved: int
    false_alarms: int
    false_alarm_rate: float | None
    gateway_offline_incidents: int


class ResponseTimesReport(BaseModel):
    period_from: datetime
    period_to: datetime
    group_by: Literal["community", "day"]
    groups: list[GroupStats]
    total: GroupStats
    gateways_offline_now: int


def _timing(values: list[float], target: float) -> Timing:
    if not values:
        return Timing(
            target_s=target,
            count=0,
            mean_s=None,
            median_s=None,
            p90_s=None,
            max_s=None,
            within_target=None,
        )
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Timing(
        target_s=target,
        count=len(values),
        mean_s=round(statistics.fmean(values), 3),
        median_s=round(statistics.median(values), 3),
        p90_s=round(p90, 3),
        max_s=round(ordered[-1], 3),
        within_target=round(sum(v <= target for v in values) / len(values), 4),
    )


def _stats(group: str, rows: list[dict[str, object]], settings: Settings) -> GroupStats:
    ack: list[float] = []
    callback: list[float] = []
    arrive: list[float] = []
    kinds: dict[str, int] = {}
    resolved = false_alarms = offline = 0
    for r in rows:
        opened = r["opened_at"]
        assert isinstance(opened, datetime)
        if r["category"] == "gateway_offline":
            offline += 1
        if r["category"] != "alarm":
            continue
        kinds[str(r["kind"])] = kinds.get(str(r["kind"]), 0) + 1
        for value, bucket in (
            (r["acknowledged_at"], ack),
            (r["callback_at"], callback),
            (r["on_scene_at"], arrive),
        ):
            if isinstance(value, datetime):
                bucket.append((value - opened).total_seconds())
        if r["state"] == "resolved":
            resolved += 1
            false_alarms += r["outcome"] == "false_alarm"
    return GroupStats(
        group=group,
        incidents=len(rows),
        to_acknowledge=_timing(ack, settings.sla_ack_s),
        to_callback=_timing(callback, settings.sla_callback_s),
        to_arrive=_timing(arrive, settings.sla_on_scene_s),
        alarms_by_kind=kinds,
        resolved=resolved,
        false_alarms=false_alarms,
        false_alarm_rate=round(false_alarms / resolved, 4) if resolved else None,
        gateway_offline_incidents=offline,
    )


async def response_times(
    conn: AsyncConnection,
    settings: Settings,
    *,
    start: datetime,
    end: datetime,
    group: Literal["community", "day"],
) -> ResponseTimesReport:
    i, h, g = schema.incidents, schema.households, schema.gateways
    query = (
        select(i, h.c.community)
        .select_from(i.join(h, h.c.id == i.c.household_id))
        .where(i.c.opened_at >= start, i.c.opened_at < end)
        .order_by(i.c.opened_at)
    )
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    groups: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        opened = r["opened_at"]
        assert isinstance(opened, datetime)
        key = opened.date().isoformat() if group == "day" else (str(r["community"]) or "(none)")
        groups.setdefault(key, []).append(r)
    offline_now = (
        await conn.execute(
            select(func.count())
            .select_from(g)
            .where(g.c.online.is_(False), g.c.revoked_at.is_(None))
        )
    ).scalar_one()
    return ResponseTimesReport(
        period_from=start,
        period_to=end,
        group_by=group,
        groups=[_stats(k, v, settings) for k, v in sorted(groups.items())],
        total=_stats("total", rows, settings),
        gateways_offline_now=int(offline_now),
    )
