"""Wristbands (JT/T 808 terminals): supervisors bind them to residents and see those that
registered unbound; every operator sees an incident's location and track."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select, update

from contract.jt808 import normalise_phone
from dispatch import schema
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor
from dispatch.api.openapi import problem_responses
from dispatch.errors import BadRequest, NotFound
from dispatch.gateways import insert_ignore
from dispatch.jt808 import store
from dispatch.jt808.server import counters
from dispatch.jt808.views import (
    TERMINAL_PATTERN,
    HomePlace,
    IncidentLocation,
    Wristband,
    WristbandIn,
    incident_location,
    list_wristbands,
)
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["wristbands"])


def _terminal(value: str) -> str:
    try:
        return normalise_phone(value)
    except ValueError as exc:
        raise BadRequest("invalid terminal", detail=str(exc), status=422) from exc


@router.get("/wristbands", response_model=list[Wristband], dependencies=[Supervisor])
async def wristbands(
    operator: CurrentOperator,
    services: ServicesDep,
    bound: Annotated[
        bool | None, Query(description="true: bound only; false: registered, waiting to be bound")
    ] = None,
) -> list[Wristband]:
    async with services.db.read() as conn:
        return await list_wristbands(conn, bound)


@router.post(
    "/wristbands",
    response_model=Wristband,
    status_code=201,
    dependencies=[Supervisor],
    responses=problem_responses(404, 409, 422),
)
async def bind_wristband(
    body: WristbandIn, operator: CurrentOperator, services: ServicesDep
) -> Wristband:
    """Bind a terminal to a resident of a household (before or after it registered)."""
    terminal = _terminal(body.terminal)
    async with transaction(services.db, feed=services.feed) as tx:
        await store.bind(
            tx,
            terminal=terminal,
            household_id=body.household_id,
            resident=body.resident,
            actor=operator.username,
        )
        row = await store.load(tx.conn, terminal)
        return Wristband.model_validate(dict(row or {}))


@router.delete(
    "/wristbands/{terminal}",
    status_code=204,
    dependencies=[Supervisor],
    responses=problem_responses(404, 422),
)
async def remove_wristband(
    terminal: Annotated[str, Path(pattern=TERMINAL_PATTERN)],
    operator: CurrentOperator,
    services: ServicesDep,
) -> Response:
    async with transaction(services.db, feed=services.feed) as tx:
        await store.unbind(tx, terminal=_terminal(terminal), actor=operator.username)
    return Response(status_code=204)


@router.get("/wristbands-port", dependencies=[Supervisor])
async def wristband_port(operator: CurrentOperator, services: ServicesDep) -> dict[str, Any]:
    """The JT/T 808 port's counters: connections, frames, bad check codes, unknown messages."""
    return counters(services.jt808)


@router.put(
    "/households/{household_id}/place",
    response_model=HomePlace,
    dependencies=[Supervisor],
    responses=problem_responses(404),
)
async def set_home_place(
    household_id: str, body: HomePlace, operator: CurrentOperator, services: ServicesDep
) -> HomePlace:
    """Where the home is, for a wristband's distance from it."""
    h, p = schema.households, schema.household_places
    async with transaction(services.db, feed=services.feed) as tx:
        if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first() is None:
            raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
        values = {"lat": body.lat, "lon": body.lon, "updated_at": tx.now}
        await tx.conn.execute(
            insert_ignore(tx.dialect, p).values(household_id=household_id, **values)
        )
        await tx.conn.execute(update(p).where(p.c.household_id == household_id).values(values))
        tx.audit(operator.username, "household.place", "household", household_id, body.model_dump())
    return body


@router.get(
    "/incidents/{incident_id}/location",
    response_model=IncidentLocation,
    responses=problem_responses(404),
)
async def get_incident_location(
    incident_id: str, operator: CurrentOperator, services: ServicesDep
) -> IncidentLocation:
    """A wristband incident's position, the wristband's latest fix, the last hour's track, the
    distance from home and the centre's map link."""
    async with services.db.read() as conn:
        return await incident_location(
            conn, incident_id, datetime.now(UTC), services.settings.jt808_map_url
        )
