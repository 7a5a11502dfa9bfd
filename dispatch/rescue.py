"""The rescue roster: teams, rescuers, their status and where they are.

Supervisors keep the roster; operators read it to pick who goes. A rescuer's status follows their
own presses on the phone page (:mod:`dispatch.rescue_tasks`) once dispatched; off duty, available
and returning are also set by a supervisor or by the rescuer (start and end of a shift). Every
change is audited and put on the live stream (``rescuer.updated``) for the operators' board.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import operators, schema
from dispatch.errors import Conflict, NotFound
from dispatch.models import Role
from dispatch.rescue_models import (
    RESCUER_STATUSES,
    AssignmentBrief,
    Rescuer,
    RescuerIn,
    RescuerPatch,
    Team,
)
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = [
    "create_rescuer",
    "create_team",
    "distance_km",
    "list_rescuers",
    "list_teams",
    "load_rescuer",
    "publish_rescuer",
    "rescuer_audience",
    "rescuer_for_account",
    "set_home_location",
    "set_status",
    "update_rescuer",
]

_r, _t, _a = schema.rescuers, schema.rescue_teams, schema.rescue_assignments
_o = schema.operators
_open = _a.alias("open_assignment")


def rescuer_audience(rescuer_id: int) -> str:
    """The live-stream audience of one rescuer's phone: their tasks, nobody else's."""
    return f"rescuer:{rescuer_id}"


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine): a district's scale needs nothing finer."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))


def _select() -> Select[Any]:
    i, h = schema.incidents, schema.households
    return select(
        _r,
        _t.c.name.label("team_name"),
        _o.c.username.label("username"),
        _open.c.id.label("a_id"),
        _open.c.incident_id.label("a_incident_id"),
        _open.c.state.label("a_state"),
        _open.c.assigned_at.label("a_assigned_at"),
        _open.c.accepted_at.label("a_accepted_at"),
        _open.c.on_scene_at.label("a_on_scene_at"),
        h.c.name.label("a_household_name"),
        i.c.alarm_at.label("a_alarm_at"),
    ).select_from(
        _r.outerjoin(_t, _t.c.id == _r.c.team_id)
        .outerjoin(_o, _o.c.id == _r.c.operator_id)
        .outerjoin(_open, (_open.c.rescuer_id == _r.c.id) & _open.c.ended_at.is_(None))
        .outerjoin(i, i.c.id == _open.c.incident_id)
        .outerjoin(h, h.c.id == i.c.household_id)
    )


def to_model(row: RowMapping, settings: Settings, now: datetime) -> Rescuer:
    brief = None
    not_accepted = over_target = False
    if row["a_id"] is not None:
        brief = AssignmentBrief(
            id=row["a_id"],
            incident_id=row["a_incident_id"],
            state=row["a_state"],
            assigned_at=row["a_assigned_at"],
            accepted_at=row["a_accepted_at"],
            on_scene_at=row["a_on_scene_at"],
            household_name=row["a_household_name"],
            alarm_at=row["a_alarm_at"],
        )
        accept_by = brief.assigned_at + timedelta(seconds=settings.rescue_accept_within_s)
        not_accepted = brief.state == "assigned" and now > accept_by
        started = brief.alarm_at or brief.assigned_at
        over_target = brief.on_scene_at is None and now > started + timedelta(
            seconds=settings.sla_on_scene_s
        )
    return Rescuer(
        id=row["id"],
        name=row["name"],
        phone=row["phone"],
        team_id=row["team_id"],
        team=row["team_name"],
        shift=row["shift"],
        username=row["username"],
        status=row["status"],
        status_since=row["status_since"],
        lat=row["lat"],
        lon=row["lon"],
        located_at=row["located_at"],
        assignment=brief,
        not_accepted=not_accepted,
        over_target=over_target,
    )


async def load_rescuer(conn: AsyncConnection, rescuer_id: int) -> RowMapping:
    row = (await conn.execute(_select().where(_r.c.id == rescuer_id))).mappings().first()
    if row is None:
        raise NotFound("no such rescuer", detail=f"rescuer {rescuer_id} is not on the roster")
    found: RowMapping = row
    return found


async def rescuer_for_account(conn: AsyncConnection, operator_id: int) -> RowMapping | None:
    result = await conn.execute(_select().where(_r.c.operator_id == operator_id))
    row: RowMapping | None = result.mappings().first()
    return row


async def home_of(conn: AsyncConnection, incident_id: str) -> tuple[float, float] | None:
    i, loc = schema.incidents, schema.household_locations
    row = (
        await conn.execute(
            select(loc.c.lat, loc.c.lon)
            .select_from(i.join(loc, loc.c.household_id == i.c.household_id))
            .where(i.c.id == incident_id)
        )
    ).first()
    return (float(row[0]), float(row[1])) if row is not None else None


async def list_rescuers(
    conn: AsyncConnection, settings: Settings, now: datetime, *, incident_id: str | None = None
) -> list[Rescuer]:
    """The roster: by status (available first), then distance from the incident's home where
    both are known (unknown distances after known ones), then name."""
    rank = case(
        {status: n for n, status in enumerate(RESCUER_STATUSES)}, value=_r.c.status, else_=99
    )
    rows = (await conn.execute(_select().order_by(rank, _r.c.name, _r.c.id))).mappings().all()
    home = await home_of(conn, incident_id) if incident_id else None
    found = []
    for row in rows:
        model = to_model(row, settings, now)
        if home is not None and model.lat is not None and model.lon is not None:
            model.distance_km = round(distance_km(home[0], home[1], model.lat, model.lon), 2)
        found.append(model)
    if home is not None:
        order = {status: n for n, status in enumerate(RESCUER_STATUSES)}
        found.sort(
            key=lambda m: (
                order.get(m.status, 99),
                m.distance_km is None,
                m.distance_km or 0.0,
                m.name,
            )
        )
    return found


async def list_teams(conn: AsyncConnection) -> list[Team]:
    members = (
        select(_r.c.team_id, func.count().label("n")).group_by(_r.c.team_id).subquery("members")
    )
    rows = await conn.execute(
        select(_t.c.id, _t.c.name, func.coalesce(members.c.n, 0).label("n"))
        .select_from(_t.outerjoin(members, members.c.team_id == _t.c.id))
        .order_by(_t.c.name)
    )
    return [Team(id=r.id, name=r.name, members=int(r.n)) for r in rows]


async def create_team(tx: Tx, name: str, *, actor: str) -> Team:
    try:
        async with tx.conn.begin_nested():
            result = await tx.conn.execute(insert(_t).values(name=name, created_at=tx.now))
    except IntegrityError as exc:
        raise Conflict("team exists", detail=f"a team named {name!r} exists") from exc
    team_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
    tx.audit(actor, "rescue.team_created", "rescue_team", str(team_id), {"name": name})
    tx.change("rescue", "team.created", str(team_id), {"id": team_id, "name": name})
    return Team(id=team_id, name=name, members=0)


async def _check_team(conn: AsyncConnection, team_id: int | None) -> None:
    if team_id is None:
        return
    if (await conn.execute(select(_t.c.id).where(_t.c.id == team_id))).first() is None:
        raise NotFound("no such team", detail=f"team {team_id} does not exist")


async def publish_rescuer(tx: Tx, settings: Settings, rescuer_id: int) -> Rescuer:
    """Read the rescuer back and put them on the operators' board (the live stream)."""
    model = to_model(await load_rescuer(tx.conn, rescuer_id), settings, tx.now)
    tx.change("rescue", "rescuer.updated", str(rescuer_id), model.model_dump(mode="json"))
    return model


async def create_rescuer(tx: Tx, settings: Settings, body: RescuerIn, *, actor: str) -> Rescuer:
    await _check_team(tx.conn, body.team_id)
    operator_id = None
    if body.username is not None and body.password is not None:
        account = await operators.create_operator(
            tx,
            username=body.username,
            password_hash=await operators.hash_password(body.password),
            role=Role.RESCUER,
            display_name=body.name,
            actor=actor,
        )
        operator_id = account.id
    result = await tx.conn.execute(
        insert(_r).values(
            name=body.name,
            phone=body.phone,
            team_id=body.team_id,
            shift=body.shift,
            operator_id=operator_id,
            status=body.status,
            status_since=tx.now,
            created_at=tx.now,
        )
    )
    rescuer_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
    tx.audit(actor, "rescue.rescuer_created", "rescuer", str(rescuer_id), {"name": body.name})
    return await publish_rescuer(tx, settings, rescuer_id)


async def update_rescuer(
    tx: Tx, settings: Settings, rescuer_id: int, patch: RescuerPatch, *, actor: str
) -> Rescuer:
    row = await load_rescuer(tx.conn, rescuer_id)
    values = patch.model_dump(exclude_unset=True)
    if "team_id" in values:
        await _check_team(tx.conn, values["team_id"])
    status = values.pop("status", None)
    if "lat" in values:
        values["located_at"] = tx.now
    if values:
        await tx.conn.execute(update(_r).where(_r.c.id == rescuer_id).values(values))
    if status is not None and status != row["status"]:
        await set_status(tx, rescuer_id, status, row=row)
    detail = patch.model_dump(mode="json", exclude_unset=True)
    tx.audit(actor, "rescue.rescuer_updated", "rescuer", str(rescuer_id), detail)
    return await publish_rescuer(tx, settings, rescuer_id)


async def set_status(tx: Tx, rescuer_id: int, status: str, *, row: RowMapping) -> None:
    """Change a rescuer's status by hand: never while they have a task (their presses say)."""
    if row["a_id"] is not None and status in ("available", "off_duty"):
        raise Conflict(
            "rescuer has a task",
            detail=f"{row['name']} is on incident {row['a_incident_id']} ({row['a_state']}); "
            "cancel or reassign it first",
        )
    await tx.conn.execute(
        update(_r).where(_r.c.id == rescuer_id).values(status=status, status_since=tx.now)
    )


async def set_home_location(
    tx: Tx, household_id: str, lat: float, lon: float, *, actor: str
) -> None:
    h, loc = schema.households, schema.household_locations
    if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first() is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    found = await tx.conn.execute(
        update(loc).where(loc.c.household_id == household_id).values(lat=lat, lon=lon)
    )
    if found.rowcount == 0:
        await tx.conn.execute(insert(loc).values(household_id=household_id, lat=lat, lon=lon))
    tx.audit(actor, "rescue.home_located", "household", household_id, {"lat": lat, "lon": lon})
