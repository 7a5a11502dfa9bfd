"""The rescue roster and dispatching rescuers, for the console.

Operators read the roster (ordered for an incident: available first, then nearest) and send,
reassign and cancel rescuers on the incidents they hold; supervisors keep the roster (teams,
rescuers and their logins, homes' locations) and see the rescue report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from dispatch import rescue, rescue_reports, rescue_tasks
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor, actor_of
from dispatch.api.paging import QueryTime
from dispatch.errors import BadRequest
from dispatch.reports import centre_zone
from dispatch.rescue_models import (
    Assignment,
    CancelRequest,
    HomeLocation,
    ReassignRequest,
    RescueDispatchRequest,
    RescueDispatchResult,
    Rescuer,
    RescuerIn,
    RescuerPatch,
    RowId,
    Team,
    TeamIn,
)
from dispatch.rescue_reports import RescueReport
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rescue"])

_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "no such rescuer, team, assignment or incident"},
    409: {"description": "not available, not held by you, or not allowed in this state"},
}


@router.get("/rescue/teams", response_model=list[Team])
async def list_teams(operator: CurrentOperator, services: ServicesDep) -> list[Team]:
    async with services.db.read() as conn:
        return await rescue.list_teams(conn)


@router.post(
    "/rescue/teams",
    response_model=Team,
    status_code=201,
    dependencies=[Supervisor],
    responses={409: {"description": "a team of that name exists"}},
)
async def create_team(body: TeamIn, operator: CurrentOperator, services: ServicesDep) -> Team:
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue.create_team(tx, body.name, actor=operator.username)


@router.get("/rescue/rescuers", response_model=list[Rescuer])
async def list_rescuers(
    operator: CurrentOperator,
    services: ServicesDep,
    incident_id: Annotated[
        str | None, Query(max_length=32, description="order by distance from its home")
    ] = None,
) -> list[Rescuer]:
    """The roster and the status board: available first, then (for an incident) nearest; each
    with their open task and whether it is late to be accepted or past the on-scene target."""
    async with services.db.read() as conn:
        return await rescue.list_rescuers(
            conn, services.settings, datetime.now(UTC), incident_id=incident_id
        )


@router.post(
    "/rescue/rescuers",
    response_model=Rescuer,
    status_code=201,
    dependencies=[Supervisor],
    responses={404: {"description": "no such team"}, 409: {"description": "username taken"}},
)
async def create_rescuer(
    body: RescuerIn, operator: CurrentOperator, services: ServicesDep
) -> Rescuer:
    """Add a rescuer; with ``username`` and ``password`` also their login (role rescuer)."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue.create_rescuer(tx, services.settings, body, actor=operator.username)


@router.patch(
    "/rescue/rescuers/{rescuer_id}",
    response_model=Rescuer,
    dependencies=[Supervisor],
    responses=_ERRORS,
)
async def update_rescuer(
    rescuer_id: RowId, body: RescuerPatch, operator: CurrentOperator, services: ServicesDep
) -> Rescuer:
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue.update_rescuer(
            tx, services.settings, rescuer_id, body, actor=operator.username
        )


@router.put(
    "/rescue/homes/{household_id}/location",
    status_code=204,
    dependencies=[Supervisor],
    responses={404: {"description": "no such household"}},
)
async def set_home_location(
    household_id: str, body: HomeLocation, operator: CurrentOperator, services: ServicesDep
) -> None:
    """Where the home is: the roster is ordered by distance from it."""
    async with transaction(services.db, feed=services.feed) as tx:
        await rescue.set_home_location(
            tx, household_id, body.lat, body.lon, actor=operator.username
        )


@router.get("/incidents/{incident_id}/rescue", response_model=list[Assignment])
async def incident_rescue(
    incident_id: str, operator: CurrentOperator, services: ServicesDep
) -> list[Assignment]:
    """Every rescuer sent to the incident, the ended assignments too, oldest first."""
    async with services.db.read() as conn:
        return await rescue_tasks.incident_assignments(conn, incident_id)


@router.post(
    "/incidents/{incident_id}/rescue",
    response_model=RescueDispatchResult,
    status_code=201,
    responses=_ERRORS,
)
async def dispatch_rescue(
    incident_id: str, body: RescueDispatchRequest, operator: CurrentOperator, services: ServicesDep
) -> RescueDispatchResult:
    """Send a rescuer (or every available member of a team) to the incident you hold. The first
    moves it to ``responder_dispatched``; later ones are added to it. Each phone is told at once."""
    async with transaction(services.db, feed=services.feed) as tx:
        made = await rescue_tasks.dispatch_rescuers(
            tx,
            services.settings,
            incident_id,
            actor_of(operator),
            rescuer_ids=[body.rescuer_id] if body.rescuer_id is not None else None,
            team_id=body.team_id,
            note=body.note,
        )
    return RescueDispatchResult(assignments=made)


@router.post(
    "/rescue/assignments/{assignment_id}/reassign",
    response_model=Assignment,
    status_code=201,
    responses=_ERRORS,
)
async def reassign(
    assignment_id: RowId, body: ReassignRequest, operator: CurrentOperator, services: ServicesDep
) -> Assignment:
    """End this rescuer's task and give it to another (the new assignment is returned)."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue_tasks.reassign(
            tx, services.settings, assignment_id, body.rescuer_id, actor_of(operator), body.reason
        )


@router.post(
    "/rescue/assignments/{assignment_id}/cancel", response_model=Assignment, responses=_ERRORS
)
async def cancel(
    assignment_id: RowId, body: CancelRequest, operator: CurrentOperator, services: ServicesDep
) -> Assignment:
    """Call the rescuer off; their phone is told."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue_tasks.cancel(
            tx, services.settings, assignment_id, actor_of(operator), body.reason
        )


@router.get(
    "/reports/rescue", response_model=RescueReport, dependencies=[Supervisor], tags=["reports"]
)
async def rescue_report(
    operator: CurrentOperator,
    services: ServicesDep,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    group: Literal["rescuer", "community"] = "rescuer",
) -> RescueReport:
    """Time to accept, travel time and on-scene time per rescuer or community, from the
    rescuers' own presses (assignments made in the period; default the last 30 days)."""
    zone = centre_zone(services.settings)
    end = _aware(to, zone) if to else datetime.now(UTC)
    start = _aware(from_, zone) if from_ else end - timedelta(days=30)
    if start >= end:
        raise BadRequest("empty period", detail="'from' must be before 'to'", status=422)
    async with services.db.read() as conn:
        return await rescue_reports.rescue_report(
            conn, services.settings, start=start, end=end, group=group, now=datetime.now(UTC)
        )


def _aware(value: datetime, zone: tzinfo) -> datetime:
    """A time given without a zone is the centre's local time."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(UTC)
