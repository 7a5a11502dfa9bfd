"""Incidents: reading them, opening them, and the operator's lifecycle actions.

Lifecycle: new → acknowledged (an operator claims it) → callback_made → responder_dispatched →
on_scene → resolved. One operator holds an incident at a time, and only an operator who is there
(:mod:`dispatch.presence`): a new incident is routed by ``settings.routing``; a claim on one that
another operator claimed is refused (409) unless it is an explicit take-over with a reason; what
an operator holds returns to the queue the moment they go away. Service-level timers run from
``alarm_at``, the alarm's own time. Acknowledging marks the incident's events acknowledged, and
only those are reported to the gateway; a later alarm event re-alerts the incident. Every action
is an ``incident_actions`` row, an audit entry and a change on the live stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.wire import IncidentRef
from contract.wire import new_event_id as new_ulid
from dispatch import presence, schema
from dispatch.errors import Conflict, NotFound
from dispatch.models import (
    Deadlines,
    Household,
    Incident,
    IncidentDetail,
    IncidentState,
    OverdueStep,
    Position,
    TimelineEntry,
)
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = [
    "OPEN_STATES",
    "Actor",
    "incident_select",
    "load_incident",
    "load_incident_detail",
    "open_incident",
    "operator_audience",
    "operator_away",
    "perform",
    "return_held",
    "to_model",
    "to_ref",
]

OPEN_STATES = tuple(s.value for s in IncidentState if s is not IncidentState.RESOLVED)

_op = schema.operators.alias("holder")
_ack = schema.operators.alias("acker")
_res = schema.operators.alias("resolver")
_holder_presence = schema.operator_presence.alias("holder_presence")


@dataclass(frozen=True)
class Actor:
    """Who performs an action: an operator (id, username, role) or the system."""

    id: int | None
    name: str
    role: str = "system"


def incident_select() -> Select[Any]:
    i = schema.incidents
    h = schema.households
    return select(
        i,
        _op.c.username.label("operator_name"),
        _op.c.display_name.label("operator_display_name"),
        _holder_presence.c.status.label("operator_presence"),
        _ack.c.username.label("acknowledged_by_name"),
        _res.c.username.label("resolved_by_name"),
        h.c.name.label("household_name"),
        h.c.community.label("household_community"),
    ).select_from(
        i.join(h, h.c.id == i.c.household_id)
        .outerjoin(_op, _op.c.id == i.c.operator_id)
        .outerjoin(_holder_presence, _holder_presence.c.operator_id == i.c.operator_id)
        .outerjoin(_ack, _ack.c.id == i.c.acknowledged_by)
        .outerjoin(_res, _res.c.id == i.c.resolved_by)
    )


def overdue(row: RowMapping, now: datetime) -> list[OverdueStep]:
    state = row["state"]
    late: list[OverdueStep] = []
    if state == IncidentState.RESOLVED:
        return late
    if (
        row["ack_deadline"] is not None
        and row["acknowledged_at"] is None
        and now > row["ack_deadline"]
    ):
        late.append("acknowledge")
    if (
        row["callback_deadline"] is not None
        and row["callback_at"] is None
        and state in (IncidentState.NEW, IncidentState.ACKNOWLEDGED)
        and now > row["callback_deadline"]
    ):
        late.append("callback")
    if (
        row["on_scene_deadline"] is not None
        and state == IncidentState.RESPONDER_DISPATCHED
        and now > row["on_scene_deadline"]
    ):
        late.append("on_scene")
    return late


def to_model(row: RowMapping, now: datetime) -> Incident:
    return Incident(
        id=row["id"],
        household_id=row["household_id"],
        household_name=row["household_name"],
        community=row["household_community"],
        gateway_id=row["gateway_id"],
        kind=row["kind"],
        category=row["category"],
        priority=row["priority"],
        state=row["state"],
        operator=row["operator_name"],
        operator_presence=row["operator_presence"] if row["operator_id"] is not None else None,
        opened_at=row["opened_at"],
        alarm_at=row["alarm_at"] or row["opened_at"],
        received_at=row["received_at"] or row["opened_at"],
        first_seen_at=row["first_seen_at"],
        late=bool(row["late"]),
        realerted_at=row["realerted_at"],
        last_event_at=row["last_event_at"],
        last_action_at=row["last_action_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by_name"],
        callback_at=row["callback_at"],
        dispatched_at=row["dispatched_at"],
        on_scene_at=row["on_scene_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by_name"],
        outcome=row["outcome"],
        event_count=row["event_count"],
        requeue_count=row["requeue_count"],
        deadlines=Deadlines(
            acknowledge=row["ack_deadline"],
            callback=row["callback_deadline"],
            on_scene=row["on_scene_deadline"],
        ),
        overdue=overdue(row, now),
        summary=row["summary"] or {},
        position=position_of(row),
    )


def position_of(row: RowMapping) -> Position | None:
    """The incident's position, if a wristband gave it one."""
    if row.get("terminal") is None or row.get("lat") is None:
        return None
    return Position(
        terminal=row["terminal"],
        lat=row["lat"],
        lon=row["lon"],
        fix=bool(row["fix"]),
        fix_at=row["fix_at"],
        verified=row["position_verified"] is not False,
    )


def to_ref(row: RowMapping) -> IncidentRef:
    return IncidentRef(
        id=row["id"],
        state=row["state"],
        operator=row["operator_name"],
        acknowledged=row["acknowledged_at"] is not None,
    )


async def load_incident(
    conn: AsyncConnection, incident_id: str, *, for_update: bool = False
) -> RowMapping:
    query = incident_select().where(schema.incidents.c.id == incident_id)
    if for_update:
        query = query.with_for_update(of=schema.incidents)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound("no such incident", detail=f"incident {incident_id!r} does not exist")
    result: RowMapping = row
    return result


def household_model(row: RowMapping) -> Household:
    return Household.model_validate(dict(row))


async def load_incident_detail(
    conn: AsyncConnection, incident_id: str, now: datetime
) -> IncidentDetail:
    row = await load_incident(conn, incident_id)
    base = to_model(row, now)
    hh_row = (
        (
            await conn.execute(
                select(schema.households).where(schema.households.c.id == row["household_id"])
            )
        )
        .mappings()
        .first()
    )
    household = household_model(hh_row) if hh_row is not None else None
    rooms = {d.id: d.room for d in household.devices} if household else {}
    e = schema.events
    timeline: list[TimelineEntry] = [
        TimelineEntry(
            at=ev["received_at"],
            type="event",
            name=ev["kind"],
            event_id=ev["id"],
            device_id=ev["device_id"],
            room=rooms.get(ev["device_id"]) if ev["device_id"] else None,
            detail={"gateway_time": ev["at"].isoformat(), "payload": ev["payload"]},
        )
        for ev in (
            await conn.execute(
                select(e)
                .where(e.c.incident_id == incident_id)
                .order_by(e.c.received_at, e.c.seq)
                .limit(2000)
            )
        ).mappings()
    ]
    a = schema.incident_actions
    timeline.extend(
        TimelineEntry(
            at=act["at"],
            type="action",
            name=act["action"],
            actor=act["actor"],
            detail=act["detail"],
        )
        for act in (
            await conn.execute(select(a).where(a.c.incident_id == incident_id).order_by(a.c.id))
        ).mappings()
    )
    timeline.sort(key=lambda t: t.at)
    return IncidentDetail(**base.model_dump(), household=household, timeline=timeline)


async def _route(tx: Tx, settings: Settings, household_id: str) -> tuple[int | None, str]:
    """Who a new incident goes to, and why: never anyone who is not there.

    An operator on duty who holds another open incident of the household gets it (they are
    already talking to that home); otherwise ``least_load`` picks the operator on duty holding
    the fewest open incidents, and ``claim`` leaves it unassigned.
    """
    i, o, p = schema.incidents, schema.operators, schema.operator_presence
    here = presence.is_present(settings, tx.now)
    on_duty = o.join(p, p.c.operator_id == o.c.id)
    holder = (
        await tx.conn.execute(
            select(i.c.operator_id)
            .select_from(i.join(on_duty, o.c.id == i.c.operator_id))
            .where(i.c.household_id == household_id, i.c.state.in_(OPEN_STATES), here)
            .order_by(i.c.last_action_at.desc())
            .limit(1)
        )
    ).scalar()
    if holder is not None:
        return int(holder), "holds another incident of this household"
    if settings.routing != "least_load":
        return None, ""
    held = (
        select(func.count())
        .where(i.c.operator_id == o.c.id, i.c.state.in_(OPEN_STATES))
        .scalar_subquery()
    )
    pick = select(o.c.id).select_from(on_duty).where(here).order_by(held, o.c.id).limit(1)
    least = (await tx.conn.execute(pick)).scalar()
    return (int(least), "least load") if least is not None else (None, "")


async def open_incident(
    tx: Tx,
    settings: Settings,
    *,
    household_id: str,
    gateway_id: str | None,
    kind: str,
    category: str,
    priority: int,
    open_key: str | None = None,
    summary: dict[str, Any] | None = None,
    event_count: int = 0,
    alarm_at: datetime | None = None,
) -> str:
    """Insert a new incident (state new), routed to an operator who is there (or nobody).

    ``alarm_at`` is when it happened in server time (default: now); alarms get service-level
    deadlines from it, and one that reaches dispatch ``late_arrival_s`` after is flagged late.
    """
    now = tx.now
    at = min(alarm_at or now, now)  # a gateway clock running ahead cannot buy time
    i = schema.incidents
    holder, why = await _route(tx, settings, household_id)
    alarm = category == "alarm"
    incident_id = new_ulid(now)
    await tx.conn.execute(
        insert(i).values(
            id=incident_id,
            household_id=household_id,
            gateway_id=gateway_id,
            kind=kind,
            category=category,
            priority=priority,
            state=IncidentState.NEW.value,
            open_key=open_key,
            operator_id=holder,
            opened_at=now,
            alarm_at=at,
            received_at=now,
            late=(now - at).total_seconds() > settings.late_arrival_s,
            last_event_at=now,
            last_action_at=now,
            ack_deadline=at + timedelta(seconds=settings.sla_ack_s) if alarm else None,
            callback_deadline=at + timedelta(seconds=settings.sla_callback_s) if alarm else None,
            on_scene_deadline=at + timedelta(seconds=settings.sla_on_scene_s) if alarm else None,
            event_count=event_count,
            summary=summary or {},
        )
    )
    detail: dict[str, Any] = {"kind": kind, "category": category, "priority": priority}
    await add_action(tx, incident_id, Actor(None, "system"), "opened", detail)
    if holder is not None:
        await add_action(
            tx, incident_id, Actor(None, "system"), "assigned", {"operator_id": holder, "why": why}
        )
    return incident_id


async def add_action(
    tx: Tx, incident_id: str, actor: Actor, action: str, detail: dict[str, Any]
) -> None:
    await tx.conn.execute(
        insert(schema.incident_actions).values(
            incident_id=incident_id, at=tx.now, actor=actor.name, action=action, detail=detail
        )
    )
    tx.audit(actor.name, f"incident.{action}", "incident", incident_id, detail)
    tx.timeline_entry(
        incident_id,
        {"at": tx.now, "type": "action", "name": action, "actor": actor.name, "detail": detail},
    )


async def publish(tx: Tx, incident_id: str, kind: str) -> Incident:
    """Read the incident back and put it on the live stream, with the timeline entries this
    transaction added to it (a console applies the change as it is, without reading it again)."""
    return publish_row(tx, await load_incident(tx.conn, incident_id), kind)


def publish_row(tx: Tx, row: RowMapping, kind: str) -> Incident:
    """:func:`publish` for an incident row already read (ingest reads a batch's in one query)."""
    incident_id = str(row["id"])
    model = to_model(row, tx.now)
    data = model.model_dump(mode="json")  # an IncidentChange
    data["timeline_added"] = [
        TimelineEntry(**entry).model_dump(mode="json")
        # In the order the incident's timeline has them: at one instant, events before actions.
        for entry in sorted(tx.take_timeline(incident_id), key=lambda e: e["type"] != "event")
    ]
    tx.change("incident", kind, incident_id, data)
    return model


# -- operator actions ---------------------------------------------------------------------------

_FORWARD = {
    "callback": (
        {
            IncidentState.ACKNOWLEDGED,
            IncidentState.CALLBACK_MADE,
            IncidentState.RESPONDER_DISPATCHED,
            IncidentState.ON_SCENE,
        },
        IncidentState.CALLBACK_MADE,
    ),
    "dispatch": (
        {IncidentState.ACKNOWLEDGED, IncidentState.CALLBACK_MADE},
        IncidentState.RESPONDER_DISPATCHED,
    ),
    "on_scene": ({IncidentState.RESPONDER_DISPATCHED}, IncidentState.ON_SCENE),
    "resolve": (
        {
            IncidentState.ACKNOWLEDGED,
            IncidentState.CALLBACK_MADE,
            IncidentState.RESPONDER_DISPATCHED,
            IncidentState.ON_SCENE,
        },
        IncidentState.RESOLVED,
    ),
}


@dataclass(frozen=True)
class ActionOutcome:
    incident: Incident
    took_over_from: str | None = None


async def perform(
    tx: Tx, incident_id: str, actor: Actor, action: str, detail: dict[str, Any]
) -> ActionOutcome:
    """Apply one operator action to an incident, or raise :class:`Conflict` naming why not."""
    assert actor.id is not None
    await load_incident(tx.conn, incident_id, for_update=True)
    # Read again once locked: on PostgreSQL a row locked after waiting is re-checked, but its
    # joined columns (the holder's name) would still be those of the snapshot before the wait.
    row = await load_incident(tx.conn, incident_id)
    state = IncidentState(row["state"])
    i = schema.incidents
    now = tx.now
    values: dict[str, Any] = {"last_action_at": now}
    took_over_from: str | None = None
    if action == "seen":
        # A screen showed it; nobody acted. A console left open on a break reports this too, so
        # it says nothing of presence (the console's stream does that, and keeps a break).
        if row["first_seen_at"] is not None:
            return ActionOutcome(to_model(row, now))
        await tx.conn.execute(update(i).where(i.c.id == incident_id).values(first_seen_at=now))
        await add_action(tx, incident_id, actor, "first_seen", detail)
        return ActionOutcome(await publish(tx, incident_id, "incident.updated"))

    # Acting is being there: an operator working incidents is on duty, whatever their stream.
    await presence.touch(tx, actor.id, f"incident.{action}", resume=True)

    if action == "note":
        await add_action(tx, incident_id, actor, "note", detail)
        await tx.conn.execute(update(i).where(i.c.id == incident_id).values(values))
        return ActionOutcome(await publish(tx, incident_id, "incident.updated"))

    if state is IncidentState.RESOLVED:
        raise Conflict(
            "incident is resolved",
            detail=f"incident {incident_id} was resolved at {row['resolved_at']}; "
            "add a note instead",
            extra={"state": state.value},
        )
    holder_id, holder_name = row["operator_id"], row["operator_name"]

    lost_to: int | None = None
    if action == "acknowledge":
        takeover = bool(detail.pop("takeover", False))
        if holder_id is not None and holder_id != actor.id:
            if row["claimed_at"] is not None and not takeover:
                holder = row["operator_display_name"] or holder_name
                raise Conflict(
                    f"already taken by {holder}",
                    detail=f"incident {incident_id} was claimed by {holder} at "
                    f"{row['claimed_at'].isoformat()}; to take it over, say so "
                    "(takeover: true) and give a reason",
                    extra={"operator": holder_name},
                )
            lost_to = holder_id
            if row["claimed_at"] is not None:
                took_over_from = holder_name
                detail = {**detail, "took_over_from": took_over_from}
            else:
                detail = {**detail, "was_assigned_to": holder_name}
        values.update(operator_id=actor.id, claimed_at=now, realerted_at=None)
        if state is IncidentState.NEW:
            values["state"] = IncidentState.ACKNOWLEDGED.value
        if row["acknowledged_at"] is None:
            values.update(acknowledged_at=now, acknowledged_by=actor.id)
        if row["category"] == "alarm":
            # What this operator acknowledged is every event the incident has now, no more:
            # a press that joins later is reported to the gateway only once acknowledged too.
            e = schema.events
            await tx.conn.execute(
                update(e)
                .where(e.c.incident_id == incident_id, e.c.acknowledged_at.is_(None))
                .values(acknowledged_at=now)
            )
        name = "takeover" if took_over_from else "acknowledged"
    elif action == "release":
        if holder_id != actor.id:
            raise Conflict(
                "incident not held by you",
                detail=f"incident {incident_id} is held by {holder_name or 'nobody'}",
            )
        values.update(operator_id=None, claimed_at=None)
        if state is IncidentState.ACKNOWLEDGED:
            values["state"] = IncidentState.NEW.value
        name = "released"
    else:
        allowed, target = _FORWARD[action]
        if holder_id != actor.id:
            raise Conflict(
                "incident not held by you",
                detail=f"incident {incident_id} is held by {holder_name or 'nobody'}; "
                "acknowledge it to take it over",
                extra={"operator": holder_name},
            )
        if state not in allowed:
            raise Conflict(
                f"cannot {action.replace('_', ' ')} an incident that is {state.value}",
                detail=f"allowed from: {', '.join(sorted(s.value for s in allowed))}",
                extra={"state": state.value},
            )
        if action == "resolve":
            _check_call_or_reason(row, detail)
        if not (action == "callback" and state is not IncidentState.ACKNOWLEDGED):
            values["state"] = target.value
        if action == "callback" and row["callback_at"] is None:
            values["callback_at"] = now
        elif action == "dispatch":
            values["dispatched_at"] = now
        elif action == "on_scene":
            values["on_scene_at"] = now
        elif action == "resolve":
            values.update(
                resolved_at=now, resolved_by=actor.id, outcome=detail["outcome"], open_key=None
            )
        name = {
            "callback": "callback_made",
            "dispatch": "responder_dispatched",
            "on_scene": "on_scene",
            "resolve": "resolved",
        }[action]
    await tx.conn.execute(update(i).where(i.c.id == incident_id).values(values))
    await add_action(tx, incident_id, actor, name, detail)
    incident = await publish(tx, incident_id, "incident.updated")
    if lost_to is not None:
        tx.change(
            "operator",
            "incident.taken_over" if took_over_from else "incident.reassigned",
            incident_id,
            {
                "incident": incident.model_dump(mode="json"),
                "by": actor.name,
                "reason": detail.get("reason", ""),
            },
            audience=operator_audience(lost_to),
        )
    if took_over_from is not None:
        tx.change(
            "escalation",
            "incident.takeover",
            incident_id,
            {
                "incident": incident.model_dump(mode="json"),
                "from": took_over_from,
                "by": actor.name,
            },
            audience="supervisor",
        )
    return ActionOutcome(incident, took_over_from)


async def assign(
    tx: Tx, settings: Settings, incident_id: str, supervisor: Actor, username: str, reason: str
) -> Incident:
    """A supervisor hands an incident to an operator who is on duty, saying why.

    The operator holds it unclaimed: it is theirs to acknowledge, so its acknowledge timer keeps
    running and a gateway hears "acknowledged" only when they do. Whoever held it is told.
    """
    await load_incident(tx.conn, incident_id, for_update=True)
    row = await load_incident(tx.conn, incident_id)
    if row["state"] == IncidentState.RESOLVED.value:
        raise Conflict(
            "incident is resolved", detail=f"incident {incident_id} was resolved; nothing to assign"
        )
    o, p = schema.operators, schema.operator_presence
    target = (
        await tx.conn.execute(
            select(o.c.id, o.c.username, o.c.display_name, p.c.status)
            .select_from(o.outerjoin(p, p.c.operator_id == o.c.id))
            .where(o.c.username == username)
        )
    ).first()
    if target is None:
        raise NotFound("no such operator", detail=f"no operator is called {username!r}")
    on_duty = (
        await tx.conn.execute(
            select(o.c.id)
            .select_from(o.join(p, p.c.operator_id == o.c.id))
            .where(o.c.id == target.id, presence.is_present(settings, tx.now))
        )
    ).first()
    name = target.display_name or target.username
    if on_duty is None:
        raise Conflict(
            f"{name} is not on duty",
            detail=f"operator {username!r} is not on duty now; assign it to someone who is there",
            extra={"operator": username},
        )
    holder_id, holder_name = row["operator_id"], row["operator_name"]
    if holder_id == target.id:
        raise Conflict(
            f"already held by {name}",
            detail=f"incident {incident_id} is already held by {username!r}",
            extra={"operator": username},
        )
    if supervisor.id is not None:
        await presence.touch(tx, supervisor.id, "incident.assign", resume=True)
    i = schema.incidents
    await tx.conn.execute(
        update(i)
        .where(i.c.id == incident_id)
        .values(operator_id=target.id, claimed_at=None, last_action_at=tx.now)
    )
    detail: dict[str, Any] = {"operator_id": target.id, "operator": username, "why": reason}
    if holder_name:
        detail["was_assigned_to"] = holder_name
    await add_action(tx, incident_id, supervisor, "assigned", detail)
    incident = await publish(tx, incident_id, "incident.updated")
    if holder_id is not None:
        tx.change(
            "operator",
            "incident.reassigned",
            incident_id,
            {
                "incident": incident.model_dump(mode="json"),
                "by": supervisor.name,
                "reason": reason,
            },
            audience=operator_audience(holder_id),
        )
    return incident


def _check_call_or_reason(row: RowMapping, detail: dict[str, Any]) -> None:
    """An incident is closed only after someone tried to call the household, or with the reason
    why not: an unchanged form must not record a resolution nobody worked for."""
    if row["callback_at"] is None and not str(detail.get("no_call_reason") or "").strip():
        raise Conflict(
            "no call recorded",
            detail=f"incident {row['id']} has no call attempt to the household; record one, "
            "or give no_call_reason (e.g. 'false alarm confirmed on site', 'duplicate of …')",
            extra={"state": row["state"]},
        )


def operator_audience(operator_id: int) -> str:
    """The stream audience of one operator's own changes (what they lost, for one)."""
    return f"operator:{operator_id}"


async def return_held(tx: Tx, operator_id: int, reason: str) -> list[str]:
    """Return every open incident the operator holds to the queue, on the timeline with why."""
    i = schema.incidents
    held = (
        await tx.conn.execute(
            select(i.c.id, i.c.state)
            .where(i.c.operator_id == operator_id, i.c.state.in_(OPEN_STATES))
            .with_for_update()
        )
    ).all()
    for incident_id, state in held:
        values: dict[str, Any] = {"operator_id": None, "claimed_at": None, "last_action_at": tx.now}
        if state == IncidentState.ACKNOWLEDGED.value:
            values["state"] = IncidentState.NEW.value
        await tx.conn.execute(update(i).where(i.c.id == incident_id).values(values))
        await add_action(
            tx,
            incident_id,
            Actor(None, "system"),
            "returned",
            {"reason": reason, "operator_id": operator_id},
        )
        model = await publish(tx, incident_id, "incident.returned")
        tx.change(
            "operator",
            "incident.returned",
            incident_id,
            {"incident": model.model_dump(mode="json"), "reason": reason},
            audience=operator_audience(operator_id),
        )
    return [incident_id for incident_id, _ in held]


async def operator_away(
    tx: Tx, operator_id: int, status: presence.PresenceStatus, reason: str
) -> list[str]:
    """The operator is no longer there (on break or gone): mark it, return what they held."""
    await presence.mark(tx, operator_id, status, reason)
    return await return_held(tx, operator_id, reason)


def queue_order() -> list[Any]:
    i = schema.incidents
    return [i.c.priority, i.c.opened_at, i.c.id]


def open_filter() -> Any:
    return schema.incidents.c.state.in_(OPEN_STATES)
