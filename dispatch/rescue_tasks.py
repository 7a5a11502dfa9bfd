"""Sending rescuers to an incident and what they press on their phone.

The operator holding an incident dispatches a rescuer (or every available member of a team) from
the roster; the first one moves the incident to ``responder_dispatched``, a further one is a second
team. Reassigning and cancelling end an assignment. Each is on the incident's timeline.

A rescuer's press (accept, en route, on scene, need help, handed over, done) carries the page's
idempotency key: the key is stored first, in the same transaction, so a press sent twice (a
connection that dropped after the server applied it, a queue replayed when the phone comes back
online) is applied once and the second answer says ``replayed``. The time dispatch records is the
phone's own press time, kept between the assignment and the moment dispatch received it (a phone
clock cannot put a press before its task existed or in the future); both times are stored.
The rescuer's own "on scene" is the incident's ``on_scene_at``: reports measure the on-scene
service level from it, not from an operator's click.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import incidents, rescue, schema
from dispatch.errors import Conflict, NotFound
from dispatch.incidents import Actor
from dispatch.models import Household, IncidentState
from dispatch.rescue_models import (
    Assignment,
    PressRequest,
    PressResult,
    RescuerTask,
    TaskHousehold,
    TaskIncident,
)
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = [
    "cancel",
    "current_task",
    "dispatch_rescuers",
    "incident_assignments",
    "press",
    "reassign",
    "resolve",
]

_a, _r, _t = schema.rescue_assignments, schema.rescuers, schema.rescue_teams
_WORKING = (
    IncidentState.ACKNOWLEDGED,
    IncidentState.CALLBACK_MADE,
    IncidentState.RESPONDER_DISPATCHED,
    IncidentState.ON_SCENE,
)
#: Which assignment states each press may follow, and the state it leads to (None: unchanged).
_PRESSES: dict[str, tuple[set[str], str | None, str | None]] = {
    # action: (allowed from, assignment state after, rescuer status after)
    "accept": ({"assigned"}, "accepted", "assigned"),
    "en_route": ({"assigned", "accepted"}, "en_route", "en_route"),
    "on_scene": ({"assigned", "accepted", "en_route"}, "on_scene", "on_scene"),
    "need_help": ({"accepted", "en_route", "on_scene", "handed_over"}, None, None),
    "handed_over": ({"on_scene"}, "handed_over", "on_scene"),
    "done": ({"accepted", "en_route", "on_scene", "handed_over"}, "done", "returning"),
}
#: Task states in which the rescuer is with the resident: only their handover ends those.
_WITH_RESIDENT = ("on_scene", "handed_over")


def _assignment_select() -> Any:
    return select(_a, _r.c.name.label("rescuer_name"), _t.c.name.label("team_name")).select_from(
        _a.join(_r, _r.c.id == _a.c.rescuer_id).outerjoin(_t, _t.c.id == _r.c.team_id)
    )


def _model(row: RowMapping) -> Assignment:
    return Assignment(
        **{k: row[k] for k in Assignment.model_fields if k not in ("rescuer", "team")},
        rescuer=row["rescuer_name"],
        team=row["team_name"],
    )


async def _load(conn: AsyncConnection, assignment_id: int) -> RowMapping:
    row = (
        (await conn.execute(_assignment_select().where(_a.c.id == assignment_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no such assignment", detail=f"assignment {assignment_id} does not exist")
    found: RowMapping = row
    return found


async def incident_assignments(conn: AsyncConnection, incident_id: str) -> list[Assignment]:
    rows = await conn.execute(
        _assignment_select().where(_a.c.incident_id == incident_id).order_by(_a.c.id)
    )
    return [_model(r) for r in rows.mappings()]


def _held_by(row: RowMapping, actor: Actor) -> None:
    if row["operator_id"] != actor.id:
        raise Conflict(
            "incident not held by you",
            detail=f"incident {row['id']} is held by {row['operator_name'] or 'nobody'}; "
            "acknowledge it to take it over",
            extra={"operator": row["operator_name"]},
        )


async def _publish(
    tx: Tx, settings: Settings, assignment_id: int, kind: str, **why: str
) -> Assignment:
    """The assignment to its rescuer's phone (with ``why``: the reason a task was called off),
    and the rescuer to the operators' board."""
    model = _model(await _load(tx.conn, assignment_id))
    tx.change(
        "rescue",
        kind,
        str(assignment_id),
        {**model.model_dump(mode="json"), **why},
        audience=rescue.rescuer_audience(model.rescuer_id),
    )
    await rescue.publish_rescuer(tx, settings, model.rescuer_id)
    return model


async def _assign(
    tx: Tx, settings: Settings, incident: RowMapping, rescuer_id: int, actor: Actor, note: str
) -> Assignment:
    row = await rescue.load_rescuer(tx.conn, rescuer_id)
    # Lock the rescuer: two operators picking the same rescuer at once, one gets them.
    await tx.conn.execute(select(_r.c.id).where(_r.c.id == rescuer_id).with_for_update())
    row = await rescue.load_rescuer(tx.conn, rescuer_id)
    if row["status"] != "available" or row["a_id"] is not None:
        where = f" on incident {row['a_incident_id']}" if row["a_incident_id"] else ""
        raise Conflict(
            f"{row['name']} is not available",
            detail=f"{row['name']} is {row['status'].replace('_', ' ')}{where}",
            extra={"status": row["status"]},
        )
    result = await tx.conn.execute(
        insert(_a).values(
            incident_id=incident["id"],
            rescuer_id=rescuer_id,
            state="assigned",
            assigned_at=tx.now,
            assigned_by=actor.name,
            note=note,
        )
    )
    assignment_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
    await tx.conn.execute(
        update(_r).where(_r.c.id == rescuer_id).values(status="assigned", status_since=tx.now)
    )
    return await _publish(tx, settings, assignment_id, "task.assigned")


async def dispatch_rescuers(
    tx: Tx,
    settings: Settings,
    incident_id: str,
    actor: Actor,
    *,
    rescuer_ids: list[int] | None = None,
    team_id: int | None = None,
    note: str = "",
) -> list[Assignment]:
    """Send rescuers: one picked, or every available member of a team."""
    await incidents.load_incident(tx.conn, incident_id, for_update=True)
    incident = await incidents.load_incident(tx.conn, incident_id)
    _held_by(incident, actor)
    state = IncidentState(incident["state"])
    if state not in _WORKING:
        raise Conflict(
            f"cannot dispatch to an incident that is {state.value}",
            detail="acknowledge it first" if state is IncidentState.NEW else "it is closed",
            extra={"state": state.value},
        )
    ids = list(rescuer_ids or [])
    if team_id is not None:
        found = await tx.conn.execute(
            select(_r.c.id).where(_r.c.team_id == team_id, _r.c.status == "available")
        )
        ids = [int(r[0]) for r in found]
        if not ids:
            raise Conflict(
                "nobody of that team is available", detail=f"team {team_id} has nobody available"
            )
    made = [await _assign(tx, settings, incident, rid, actor, note) for rid in ids]
    for model in made:
        detail = {"responder": model.rescuer, "rescuer_id": model.rescuer_id, "note": note}
        if team_id is not None:
            detail["team"] = model.team
        if IncidentState(incident["state"]) in (
            IncidentState.ACKNOWLEDGED,
            IncidentState.CALLBACK_MADE,
        ):
            await incidents.perform(tx, incident_id, actor, "dispatch", detail)
            incident = await incidents.load_incident(tx.conn, incident_id)
        else:
            await incidents.add_action(tx, incident_id, actor, "rescuer_added", detail)
            await incidents.publish(tx, incident_id, "incident.updated")
    return made


async def _open_assignment(tx: Tx, assignment_id: int) -> RowMapping:
    await tx.conn.execute(select(_a.c.id).where(_a.c.id == assignment_id).with_for_update())
    row = await _load(tx.conn, assignment_id)
    if row["ended_at"] is not None:
        raise Conflict(
            "assignment ended",
            detail=f"assignment {assignment_id} was {row['state']} "
            f"at {row['ended_at'].isoformat()}",
            extra={"state": row["state"]},
        )
    return row


async def _end(tx: Tx, assignment: RowMapping, state: str) -> None:
    await tx.conn.execute(
        update(_a).where(_a.c.id == assignment["id"]).values(state=state, ended_at=tx.now)
    )
    # Someone who was only told can take the next task; someone on the road is on their way back.
    back = "available" if assignment["state"] in ("assigned", "accepted") else "returning"
    await tx.conn.execute(
        update(_r)
        .where(_r.c.id == assignment["rescuer_id"])
        .values(status=back, status_since=tx.now)
    )


async def cancel(
    tx: Tx, settings: Settings, assignment_id: int, actor: Actor, reason: str
) -> Assignment:
    assignment = await _open_assignment(tx, assignment_id)
    incident = await incidents.load_incident(tx.conn, assignment["incident_id"], for_update=True)
    _held_by(incident, actor)
    await _end(tx, assignment, "cancelled")
    detail = {"responder": assignment["rescuer_name"], "rescuer_id": assignment["rescuer_id"]}
    await incidents.add_action(
        tx, assignment["incident_id"], actor, "rescuer_cancelled", {**detail, "reason": reason}
    )
    await incidents.publish(tx, assignment["incident_id"], "incident.updated")
    return await _publish(tx, settings, assignment_id, "task.cancelled", reason=reason)


async def resolve(
    tx: Tx, settings: Settings, incident_id: str, actor: Actor, detail: dict[str, Any]
) -> incidents.ActionOutcome:
    """Resolve the incident and call off every rescue task still open on it.

    Nobody keeps driving to a closed incident: a task assigned or on its way is called off with
    the resolution as its reason, on the timeline and on the rescuer's phone at once. A rescuer
    who is with the resident (on scene, or handed over and not yet done) is not dismissed from a
    desk: the resolution is refused until they press Done, or the operator records their handover
    (``on_scene_handover``, what the rescuer said), which is then kept on the timeline.
    """
    handover = str(detail.get("on_scene_handover") or "").strip()
    detail = {k: v for k, v in detail.items() if k != "on_scene_handover"}
    if handover:
        detail["on_scene_handover"] = handover
    open_now = (
        select(_a.c.id)
        .where(_a.c.incident_id == incident_id, _a.c.ended_at.is_(None))
        .with_for_update()
    )
    # Tasks before the incident, the order a rescuer's press takes its locks in (no deadlock).
    await tx.conn.execute(open_now)
    outcome = await incidents.perform(tx, incident_id, actor, "resolve", detail)
    await tx.conn.execute(open_now)  # and any sent while we waited for the incident
    open_tasks = (
        (
            await tx.conn.execute(
                _assignment_select()
                .where(_a.c.incident_id == incident_id, _a.c.ended_at.is_(None))
                .order_by(_a.c.id)
            )
        )
        .mappings()
        .all()
    )
    with_resident = [r["rescuer_name"] for r in open_tasks if r["state"] in _WITH_RESIDENT]
    if with_resident and not handover:
        who = ", ".join(with_resident)
        raise Conflict(
            "rescuer on scene",
            detail=f"{who} {'is' if len(with_resident) == 1 else 'are'} with the resident and "
            "has not pressed Done; wait for Done, or call them and record their handover "
            "(on_scene_handover) to resolve",
            extra={"rescuers": with_resident},
        )
    resolution = str(detail["outcome"])
    reason = f"incident resolved: {resolution.replace('_', ' ')}"
    for row in open_tasks:
        await _end(tx, row, "cancelled")
        called_off: dict[str, Any] = {
            "responder": row["rescuer_name"],
            "rescuer_id": row["rescuer_id"],
            "reason": reason,
            "resolution": resolution,
        }
        if row["state"] in _WITH_RESIDENT:
            called_off["handover"] = handover
        await incidents.add_action(tx, incident_id, actor, "rescuer_cancelled", called_off)
        await _publish(
            tx, settings, row["id"], "task.cancelled", reason=reason, resolution=resolution
        )
    if open_tasks:
        return incidents.ActionOutcome(await incidents.publish(tx, incident_id, "incident.updated"))
    return outcome


async def reassign(
    tx: Tx, settings: Settings, assignment_id: int, rescuer_id: int, actor: Actor, reason: str
) -> Assignment:
    """End one rescuer's task and give it to another, in one step on the timeline."""
    assignment = await _open_assignment(tx, assignment_id)
    if assignment["rescuer_id"] == rescuer_id:
        raise Conflict("same rescuer", detail="pick another rescuer to reassign to")
    incident = await incidents.load_incident(tx.conn, assignment["incident_id"], for_update=True)
    _held_by(incident, actor)
    await _end(tx, assignment, "reassigned")
    await _publish(tx, settings, assignment_id, "task.cancelled", reason=reason)
    made = await _assign(tx, settings, incident, rescuer_id, actor, assignment["note"])
    await incidents.add_action(
        tx,
        assignment["incident_id"],
        actor,
        "rescuer_reassigned",
        {
            "from": assignment["rescuer_name"],
            "responder": made.rescuer,
            "rescuer_id": rescuer_id,
            "reason": reason,
        },
    )
    await incidents.publish(tx, assignment["incident_id"], "incident.updated")
    return made


def _clamp(pressed_at: datetime | None, earliest: datetime, received: datetime) -> datetime:
    if pressed_at is None:
        return received
    return max(earliest, min(pressed_at, received))


async def _replayed(tx: Tx, key: str, rescuer_id: int) -> PressResult | None:
    p = schema.rescue_presses
    done = (await tx.conn.execute(select(p).where(p.c.key == key))).mappings().first()
    if done is None:
        return None
    if done["rescuer_id"] != rescuer_id:
        raise Conflict("key in use", detail="this idempotency key belongs to another press")
    return PressResult(
        assignment=_model(await _load(tx.conn, done["assignment_id"])),
        at=done["at"],
        received_at=done["received_at"],
        replayed=True,
    )


async def press(tx: Tx, settings: Settings, rescuer_id: int, body: PressRequest) -> PressResult:
    """Apply one press of the rescuer's phone, once per idempotency key."""
    earlier = await _replayed(tx, body.key, rescuer_id)
    if earlier is not None:
        return earlier
    row = await _load(tx.conn, body.assignment_id)
    if row["rescuer_id"] != rescuer_id:
        raise NotFound("no such assignment", detail=f"assignment {body.assignment_id} is not yours")
    # Once the task is locked, look again: the same press from another connection (a phone
    # resending while the first request is still open) may have been applied while we waited.
    await tx.conn.execute(select(_a.c.id).where(_a.c.id == row["id"]).with_for_update())
    earlier = await _replayed(tx, body.key, rescuer_id)
    if earlier is not None:
        return earlier
    row = await _open_assignment(tx, body.assignment_id)
    allowed, after, status = _PRESSES[body.action]
    if row["state"] not in allowed:
        raise Conflict(
            f"cannot {body.action.replace('_', ' ')} now",
            detail=f"the task is {row['state'].replace('_', ' ')}",
            extra={"state": row["state"]},
        )
    at = _clamp(body.pressed_at, row["assigned_at"], tx.now)
    located = body.lat is not None and body.action in ("en_route", "on_scene")
    p = schema.rescue_presses
    try:
        async with tx.conn.begin_nested():
            await tx.conn.execute(
                insert(p).values(
                    key=body.key,
                    assignment_id=row["id"],
                    rescuer_id=rescuer_id,
                    action=body.action,
                    pressed_at=body.pressed_at,
                    received_at=tx.now,
                    at=at,
                    lat=body.lat if located else None,
                    lon=body.lon if located else None,
                    accuracy_m=body.accuracy_m if located else None,
                    detail=body.model_dump(
                        mode="json", include={"handed_over_to", "outcome", "note"}
                    ),
                )
            )
    except IntegrityError:
        # The same key, committed by a concurrent request after we looked: that one applied it.
        replay = await _replayed(tx, body.key, rescuer_id)
        assert replay is not None
        return replay
    values: dict[str, Any] = {}
    if after is not None:
        values["state"] = after
    stamp = {
        "accept": "accepted_at",
        "en_route": "en_route_at",
        "on_scene": "on_scene_at",
        "need_help": "need_help_at",
        "handed_over": "handed_over_at",
        "done": "ended_at",
    }[body.action]
    values[stamp] = at
    if body.action in ("en_route", "on_scene") and row["accepted_at"] is None:
        values["accepted_at"] = at  # going is accepting
    if body.action == "handed_over":
        values["handed_over_to"] = body.handed_over_to
    if body.action == "done":
        values.update(outcome=body.outcome, note=body.note or row["note"])
    await tx.conn.execute(update(_a).where(_a.c.id == row["id"]).values(values))
    rescuer_values: dict[str, Any] = {}
    if status is not None:
        rescuer_values.update(status=status, status_since=at)
    if located:
        rescuer_values.update(lat=body.lat, lon=body.lon, located_at=at)
    if rescuer_values:
        await tx.conn.execute(update(_r).where(_r.c.id == rescuer_id).values(rescuer_values))
    await _on_incident(tx, row, body, at)
    model = await _publish(tx, settings, row["id"], "task.updated")
    return PressResult(assignment=model, at=at, received_at=tx.now, replayed=False)


async def _on_incident(tx: Tx, row: RowMapping, body: PressRequest, at: datetime) -> None:
    """The press on the incident's timeline; "on scene" moves the incident itself."""
    incident_id = row["incident_id"]
    actor = Actor(None, f"rescuer:{row['rescuer_name']}", "rescuer")
    detail: dict[str, Any] = {
        "responder": row["rescuer_name"],
        "rescuer_id": row["rescuer_id"],
        "pressed_at": body.pressed_at.isoformat() if body.pressed_at else None,
        "at": at.isoformat(),
    }
    if body.lat is not None and body.action in ("en_route", "on_scene"):
        detail.update(lat=body.lat, lon=body.lon)
    if body.handed_over_to:
        detail["handed_over_to"] = body.handed_over_to
    if body.outcome:
        detail["outcome"] = body.outcome
    if body.note:
        detail["note"] = body.note
    await incidents.add_action(tx, incident_id, actor, f"rescuer_{body.action}", detail)
    i = schema.incidents
    incident = await incidents.load_incident(tx.conn, incident_id, for_update=True)
    values: dict[str, Any] = {"last_action_at": tx.now}
    if body.action == "on_scene":
        # The first rescuer's own arrival is the incident's; it replaces an operator's click.
        first = (
            await tx.conn.execute(
                select(_a.c.id).where(
                    _a.c.incident_id == incident_id,
                    _a.c.on_scene_at.is_not(None),
                    _a.c.id != row["id"],
                )
            )
        ).first()
        if first is None:
            values["on_scene_at"] = at
        if incident["state"] == IncidentState.RESPONDER_DISPATCHED.value:
            values["state"] = IncidentState.ON_SCENE.value
    await tx.conn.execute(update(i).where(i.c.id == incident_id).values(values))
    model = await incidents.publish(tx, incident_id, "incident.updated")
    if body.action == "need_help":
        data = {"incident": model.model_dump(mode="json"), "reason": "rescuer_needs_help"}
        data["rescuer"] = row["rescuer_name"]
        tx.change("escalation", "incident.escalated", incident_id, data, audience="supervisor")
        if incident["operator_id"] is not None:
            tx.change(
                "operator",
                "incident.escalated",
                incident_id,
                data,
                audience=incidents.operator_audience(int(incident["operator_id"])),
            )


def navigation_url(template: str, household: Household, home: tuple[float, float] | None) -> str:
    address = ", ".join(x for x in (household.address, household.community) if x)
    return template.format(
        address=quote(address, safe=""),
        lat="" if home is None else f"{home[0]:.6f}",
        lon="" if home is None else f"{home[1]:.6f}",
    )


async def current_task(
    conn: AsyncConnection, settings: Settings, rescuer_id: int
) -> RescuerTask | None:
    """The rescuer's open task with what they need at the door."""
    row = (
        (
            await conn.execute(
                _assignment_select()
                .where(_a.c.rescuer_id == rescuer_id, _a.c.ended_at.is_(None))
                .order_by(_a.c.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    i, h = schema.incidents, schema.households
    inc = (await conn.execute(select(i).where(i.c.id == row["incident_id"]))).mappings().one()
    hh_row = (await conn.execute(select(h).where(h.c.id == inc["household_id"]))).mappings().first()
    household = Household.model_validate(dict(hh_row)) if hh_row is not None else None
    home = await rescue.home_of(conn, row["incident_id"])
    return RescuerTask(
        assignment=_model(row),
        incident=TaskIncident(
            id=inc["id"],
            kind=inc["kind"],
            priority=inc["priority"],
            state=inc["state"],
            alarm_at=inc["alarm_at"],
        ),
        household=TaskHousehold.model_validate(household.model_dump()) if household else None,
        navigation_url=(
            navigation_url(settings.rescue_map_url_template, household, home) if household else None
        ),
    )
