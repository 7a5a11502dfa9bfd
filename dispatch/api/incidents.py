"""Incidents: the queue, one incident with its timeline, the operator's actions on it, and
(supervisors) the escalations the supervisor raised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from dispatch import incidents, rescue_tasks, schema
from dispatch.api.deps import CurrentOperator, Services, ServicesDep, Supervisor, actor_of
from dispatch.api.paging import Limit, Offset, equal_to, fetch_page, fetch_rows
from dispatch.models import (
    AcknowledgeRequest,
    ActionResult,
    AssignRequest,
    CallbackRequest,
    Change,
    DispatchRequest,
    Incident,
    IncidentDetail,
    NoteRequest,
    OnSceneRequest,
    Operator,
    Page,
    ResolveRequest,
)
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["incidents"])

StateFilter = Literal[
    "open",
    "all",
    "new",
    "acknowledged",
    "callback_made",
    "responder_dispatched",
    "on_scene",
    "resolved",
]


@router.get("/incidents", response_model=Page[Incident])
async def list_incidents(
    operator: CurrentOperator,
    services: ServicesDep,
    state: StateFilter = "open",
    household_id: Annotated[str | None, Query(max_length=128)] = None,
    category: Literal["alarm", "trouble", "gateway_offline"] | None = None,
    mine: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Incident]:
    """The queue: open incidents by priority, then age (oldest first)."""
    i = schema.incidents
    where = equal_to(i, household_id=household_id, category=category)
    if state == "open":
        where.append(incidents.open_filter())
    elif state != "all":
        where.append(i.c.state == state)
    if mine:
        where.append(i.c.operator_id == operator.id)
    now = datetime.now(UTC)
    order = incidents.queue_order()
    if state == "resolved":
        order = [i.c.resolved_at.desc(), i.c.id]
    async with services.db.read() as conn:
        return await fetch_page(
            conn,
            Page[Incident],
            incidents.incident_select(),
            counted=i,
            where=where,
            order_by=order,
            limit=limit,
            offset=offset,
            item=lambda row: incidents.to_model(row, now),
        )


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
async def get_incident(
    incident_id: str, operator: CurrentOperator, services: ServicesDep
) -> IncidentDetail:
    """The incident with its household and timeline (events and actions, oldest first)."""
    async with services.db.read() as conn:
        return await incidents.load_incident_detail(conn, incident_id, datetime.now(UTC))


async def _act(
    services: Services, operator: Operator, incident_id: str, action: str, detail: dict[str, Any]
) -> ActionResult:
    async with transaction(services.db, feed=services.feed) as tx:
        outcome = await incidents.perform(tx, incident_id, actor_of(operator), action, detail)
    warning = None
    if outcome.took_over_from:
        warning = f"taken over from {outcome.took_over_from}, who was working this incident"
    return ActionResult(
        incident=outcome.incident, took_over_from=outcome.took_over_from, warning=warning
    )


_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such incident"},
    409: {"description": "not allowed in the incident's state, or held by another operator"},
}


@router.post(
    "/incidents/{incident_id}/acknowledge", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def acknowledge(
    incident_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    body: AcknowledgeRequest | None = None,
) -> ActionResult:
    """Claim the incident and acknowledge its alarm events.

    One another operator claimed is refused (409, "already taken by ...") unless the body says
    ``takeover: true`` with a reason; that operator is told on their stream.
    """
    detail: dict[str, Any] = {"note": body.note} if body and body.note else {}
    if body and body.takeover:
        detail.update(takeover=True, reason=body.reason)
    return await _act(services, operator, incident_id, "acknowledge", detail)


@router.post(
    "/incidents/{incident_id}/seen",
    response_model=ActionResult,
    responses={404: {"description": "no such incident"}},
)
async def seen(incident_id: str, operator: CurrentOperator, services: ServicesDep) -> ActionResult:
    """The console showed this incident: the first report is its ``first_seen_at``."""
    return await _act(services, operator, incident_id, "seen", {})


@router.post(
    "/incidents/{incident_id}/callback", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def callback(
    incident_id: str, body: CallbackRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """Record a call to the household and its outcome."""
    return await _act(services, operator, incident_id, "callback", body.model_dump(mode="json"))


@router.post(
    "/incidents/{incident_id}/dispatch", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def dispatch_responder(
    incident_id: str, body: DispatchRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    return await _act(services, operator, incident_id, "dispatch", body.model_dump(mode="json"))


@router.post(
    "/incidents/{incident_id}/on-scene", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def on_scene(
    incident_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    body: OnSceneRequest | None = None,
) -> ActionResult:
    detail = {"note": body.note} if body and body.note else {}
    return await _act(services, operator, incident_id, "on_scene", detail)


@router.post(
    "/incidents/{incident_id}/resolve", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def resolve(
    incident_id: str, body: ResolveRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """Close the incident; every rescue task still open on it is called off with the resolution
    as the reason. Refused (409 "rescuer on scene") while a rescuer is with the resident and has
    not pressed Done, unless ``on_scene_handover`` records what they handed over."""
    async with transaction(services.db, feed=services.feed) as tx:
        outcome = await rescue_tasks.resolve(
            tx, services.settings, incident_id, actor_of(operator), body.model_dump(mode="json")
        )
    return ActionResult(incident=outcome.incident)


@router.post(
    "/incidents/{incident_id}/release", response_model=ActionResult, responses=_ACTION_ERRORS
)
async def release(
    incident_id: str, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """Give the incident back to the queue."""
    return await _act(services, operator, incident_id, "release", {})


@router.post(
    "/incidents/{incident_id}/notes",
    response_model=ActionResult,
    responses={404: {"description": "no such incident"}},
)
async def add_note(
    incident_id: str, body: NoteRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    return await _act(services, operator, incident_id, "note", {"text": body.text})


@router.post(
    "/incidents/{incident_id}/assign",
    response_model=ActionResult,
    dependencies=[Supervisor],
    responses={
        404: {"description": "no such incident or operator"},
        409: {"description": "resolved, already theirs, or the operator is not on duty"},
    },
)
async def assign(
    incident_id: str, body: AssignRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """(Supervisors) Hand the incident to an operator on duty, with a reason, to acknowledge."""
    async with transaction(services.db, feed=services.feed) as tx:
        incident = await incidents.assign(
            tx, services.settings, incident_id, actor_of(operator), body.operator, body.reason
        )
    return ActionResult(incident=incident)


@router.get("/escalations", response_model=list[Change], dependencies=[Supervisor])
async def escalations(
    operator: CurrentOperator, services: ServicesDep, limit: Limit = 100
) -> list[Change]:
    """Recent escalations (overdue service levels, stale claims, takeovers), newest first."""
    c = schema.changes
    async with services.db.read() as conn:
        return await fetch_rows(
            conn,
            select(c),
            where=[c.c.topic == "escalation"],
            order_by=[c.c.id.desc()],
            limit=limit,
            offset=0,
            item=lambda row: Change.model_validate(dict(row)),
        )
