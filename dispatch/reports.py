"""Reports: response times against service levels, alarm counts, false alarms, gateway outages.

Computed in Python over the incidents opened in the period: one code path for both databases, and
a district's month of incidents is a few thousand rows.

The centre's terms: days and hours are the centre's own (``settings.timezone``), and a share
"within target" counts every alarm whose time for the step has come, so an alarm that never
reached the step (or reached it late) is a miss, not left out. A share with nothing to count is
``None`` ("no data"), never 0 %.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.settings import Settings

__all__ = [
    "ACK_OUTER_S",
    "ReportGroup",
    "ResponseTimesReport",
    "centre_zone",
    "response_times",
    "to_csv",
]

ReportGroup = Literal["community", "day", "operator", "hour"]
Step = Literal["acknowledge", "callback", "on_scene"]

#: The centre's second acknowledgement mark: an alarm not picked up within 3 minutes.
ACK_OUTER_S = 180.0
NO_OPERATOR = "(unacknowledged)"
NO_COMMUNITY = "(none)"

_REACHED: dict[Step, str] = {
    "acknowledge": "acknowledged_at",
    "callback": "callback_at",
    "on_scene": "on_scene_at",
}


class Timing(BaseModel):
    target_s: float
    count: int = Field(description="incidents that reached this step")
    mean_s: float | None
    median_s: float | None
    p90_s: float | None
    max_s: float | None
    within_target: float | None = Field(
        description="share (0..1) within the target of the alarms whose target time has come "
        "(reached late or never: a miss); None: no data"
    )


class ServiceLevel(BaseModel):
    """One of the centre's marks: the share of alarms that reached ``step`` within ``within_s``."""

    step: Step
    within_s: float
    due: int = Field(description="alarms that reached the step or whose time for it has come")
    met: int = Field(description="of those, the ones that reached the step in time")
    share: float | None = Field(description="met / due (0..1); None: no data, nothing was due")


class GroupStats(BaseModel):
    group: str
    incidents: int
    to_acknowledge: Timing
    to_callback: Timing
    to_arrive: Timing
    service_levels: list[ServiceLevel]
    alarms_by_kind: dict[str, int]
    resolved: int
    false_alarms: int
    false_alarm_rate: float | None
    gateway_offline_incidents: int


class ResponseTimesReport(BaseModel):
    period_from: datetime
    period_to: datetime
    timezone: str = Field(description="the zone days and hours are counted in")
    group_by: ReportGroup
    groups: list[GroupStats]
    total: GroupStats
    gateways_offline_now: int


def centre_zone(settings: Settings) -> tzinfo:
    """The centre's time zone (UTC when none is configured)."""
    return ZoneInfo(settings.timezone) if settings.timezone else UTC


@dataclass(frozen=True)
class _Mark:
    step: Step
    within_s: float


def _marks(settings: Settings) -> list[_Mark]:
    return [
        _Mark("acknowledge", settings.sla_ack_s),
        _Mark("acknowledge", ACK_OUTER_S),
        _Mark("callback", settings.sla_callback_s),
        _Mark("on_scene", settings.sla_on_scene_s),
    ]


def _delay(row: dict[str, Any], step: Step) -> float | None:
    reached = row[_REACHED[step]]
    return (reached - row["opened_at"]).total_seconds() if isinstance(reached, datetime) else None


def _due(row: dict[str, Any], step: Step, within_s: float, now: datetime) -> bool:
    """Whether the alarm counts for this mark: it reached the step, it is closed (it never will),
    or its time for the step has run out. An open alarm still inside its time is not yet due."""
    return (
        _delay(row, step) is not None
        or row["state"] == "resolved"
        or now >= row["opened_at"] + timedelta(seconds=within_s)
    )


def _share(met: int, due: int) -> float | None:
    return round(met / due, 4) if due else None


def _level(alarms: list[dict[str, Any]], mark: _Mark, now: datetime) -> ServiceLevel:
    due = [r for r in alarms if _due(r, mark.step, mark.within_s, now)]
    met = 0
    for r in due:
        delay = _delay(r, mark.step)
        met += delay is not None and delay <= mark.within_s
    return ServiceLevel(
        step=mark.step, within_s=mark.within_s, due=len(due), met=met, share=_share(met, len(due))
    )


def _timing(alarms: list[dict[str, Any]], step: Step, target: float, now: datetime) -> Timing:
    values = [d for d in (_delay(r, step) for r in alarms) if d is not None]
    within = _level(alarms, _Mark(step, target), now).share
    if not values:
        return Timing(
            target_s=target,
            count=0,
            mean_s=None,
            median_s=None,
            p90_s=None,
            max_s=None,
            within_target=within,
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
        within_target=within,
    )


def _stats(group: str, rows: list[dict[str, Any]], settings: Settings, now: datetime) -> GroupStats:
    alarms = [r for r in rows if r["category"] == "alarm"]
    kinds: dict[str, int] = {}
    for r in alarms:
        kinds[str(r["kind"])] = kinds.get(str(r["kind"]), 0) + 1
    resolved = [r for r in alarms if r["state"] == "resolved"]
    false_alarms = sum(r["outcome"] == "false_alarm" for r in resolved)
    return GroupStats(
        group=group,
        incidents=len(rows),
        to_acknowledge=_timing(alarms, "acknowledge", settings.sla_ack_s, now),
        to_callback=_timing(alarms, "callback", settings.sla_callback_s, now),
        to_arrive=_timing(alarms, "on_scene", settings.sla_on_scene_s, now),
        service_levels=[_level(alarms, mark, now) for mark in _marks(settings)],
        alarms_by_kind=kinds,
        resolved=len(resolved),
        false_alarms=false_alarms,
        false_alarm_rate=_share(false_alarms, len(resolved)),
        gateway_offline_incidents=sum(r["category"] == "gateway_offline" for r in rows),
    )


def _group_key(row: dict[str, Any], group: ReportGroup, zone: tzinfo) -> str:
    local = row["opened_at"].astimezone(zone)
    if group == "day":
        return str(local.date().isoformat())
    if group == "hour":
        return f"{local.hour:02d}:00"
    if group == "operator":
        return str(row["acknowledged_by_name"] or NO_OPERATOR)
    return str(row["community"] or NO_COMMUNITY)


async def response_times(
    conn: AsyncConnection,
    settings: Settings,
    *,
    start: datetime,
    end: datetime,
    group: ReportGroup,
    now: datetime,
) -> ResponseTimesReport:
    i, h, g = schema.incidents, schema.households, schema.gateways
    acker = schema.operators.alias("acker")
    query = (
        select(i, h.c.community, acker.c.username.label("acknowledged_by_name"))
        .select_from(
            i.join(h, h.c.id == i.c.household_id).outerjoin(
                acker, acker.c.id == i.c.acknowledged_by
            )
        )
        .where(i.c.opened_at >= start, i.c.opened_at < end)
        .order_by(i.c.opened_at)
    )
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    zone = centre_zone(settings)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group_key(r, group, zone), []).append(r)
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
        timezone=str(zone),
        group_by=group,
        groups=[_stats(k, v, settings, now) for k, v in sorted(groups.items())],
        total=_stats("total", rows, settings, now),
        gateways_offline_now=int(offline_now),
    )


def _percent(share: float | None) -> str:
    return "no data" if share is None else f"{share * 100:.1f}"


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def to_csv(report: ResponseTimesReport) -> str:
    """The report as CSV, one line per group and a last line for the total. Shares are percent;
    "no data" where nothing was due."""
    marks = report.total.service_levels
    header = [report.group_by, "incidents", "alarms"]
    for m in marks:
        name = f"{m.step}_within_{m.within_s:g}s"
        header += [f"{name}_pct", f"{name}_met", f"{name}_due"]
    header += [
        "median_to_acknowledge_min",
        "median_to_callback_min",
        "median_to_arrive_min",
        "resolved",
        "false_alarms",
        "false_alarm_pct",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for stats in [*report.groups, report.total]:
        line: list[object] = [stats.group, stats.incidents, sum(stats.alarms_by_kind.values())]
        for level in stats.service_levels:
            line += [_percent(level.share), level.met, level.due]
        line += [
            _minutes(stats.to_acknowledge.median_s),
            _minutes(stats.to_callback.median_s),
            _minutes(stats.to_arrive.median_s),
            stats.resolved,
            stats.false_alarms,
            _percent(stats.false_alarm_rate),
        ]
        writer.writerow(line)
    return out.getvalue()
