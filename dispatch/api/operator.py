"""Operator endpoints: session, households, gateways, incidents, operators, audit, reports, stream.

Every endpoint needs an operator session (cookie, or ``Authorization: Bearer`` with the login's
token). Roles: operators work incidents; supervisors also manage households, see escalations, the
audit log and reports; admins also manage operators and revoke gateways.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, insert, or_, select, update

from contract.wire import new_event_id
from dispatch import gateways, incidents, operators, schema, stream
from dispatch.api.deps import (
    SESSION_COOKIE,
    CurrentOperator,
    Services,
    ServicesDep,
    actor_of,
    require_role,
    session_token,
)
from dispatch.errors import BadRequest, Conflict, NotFound
from dispatch.models import (
    AcknowledgeRequest,
    ActionResult,
    AuditEntry,
    CallbackRequest,
    Change,
    DispatchRequest,
    GatewayOut,
    Household,
    HouseholdIn,
    Incident,
    IncidentDetail,
    LoginReply,
    LoginRequest,
    NoteRequest,
    OnSceneRequest,
    Operator,
    OperatorIn,
    OperatorPatch,
    Page,
    ResolveRequest,
    Role,
    StoredEvent,
)
from dispatch.reports import ResponseTimesReport, response_times
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
Supervisor = require_role(Role.SUPERVISOR)
Admin = require_role(Role.ADMIN)
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


# -- session ------------------------------------------------------------------------------------


@router.post("/auth/login", response_model=LoginReply, tags=["auth"])
async def login(body: LoginRequest, services: ServicesDep, response: Response) -> LoginReply:
    """Start a session: sets the session cookie (HttpOnly, SameSite=Strict), returns its token."""
    reply = await operators.login(
        services.db,
        username=body.username,
        password=body.password,
        ttl_s=services.settings.session_ttl_s,
    )
    response.set_cookie(
        SESSION_COOKIE,
        reply.token,
        max_age=int(services.settings.session_ttl_s),
        httponly=True,
        samesite="strict",
        path="/",
    )
    return reply


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(request: Request, operator: CurrentOperator, services: ServicesDep) -> Response:
    token = session_token(request)
    assert token is not None
    async with transaction(services.db) as tx:
        await operators.logout(tx, token, actor=operator.username)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=Operator, tags=["auth"])
async def me(operator: CurrentOperator) -> Operator:
    return operator


class ConsoleConfig(BaseModel):
    timezone: str | None = Field(description="the centre's IANA time zone (None: the browser's)")


@router.get("/console/config", response_model=ConsoleConfig, tags=["auth"])
async def console_config(operator: CurrentOperator, services: ServicesDep) -> ConsoleConfig:
    """Settings the console needs from the server."""
    return ConsoleConfig(timezone=services.settings.timezone)


# -- households ---------------------------------------------------------------------------------


async def _household(conn: Any, household_id: str) -> Household:
    h = schema.households
    row = (await conn.execute(select(h).where(h.c.id == household_id))).mappings().first()
    if row is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    return Household.model_validate(dict(row))


def _household_values(body: HouseholdIn) -> dict[str, Any]:
    data = body.model_dump(mode="json", exclude={"id"})
    return data


@router.get("/households", response_model=Page[Household], tags=["households"])
async def list_households(
    operator: CurrentOperator,
    services: ServicesDep,
    community: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200, description="name or address contains")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Household]:
    h = schema.households
    where: list[Any] = []
    if community is not None:
        where.append(h.c.community == community)
    if q:
        pattern = f"%{q.lower()}%"
        where.append(func.lower(h.c.name).like(pattern) | func.lower(h.c.address).like(pattern))
    async with services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(h).where(*where))).scalar_one()
        rows = (
            await conn.execute(select(h).where(*where).order_by(h.c.id).limit(limit).offset(offset))
        ).mappings()
        return Page[Household](
            items=[Household.model_validate(dict(r)) for r in rows], total=int(total)
        )


@router.post(
    "/households",
    response_model=Household,
    status_code=201,
    tags=["households"],
    dependencies=[Supervisor],
)
async def create_household(
    body: HouseholdIn, operator: CurrentOperator, services: ServicesDep
) -> Household:
    household_id = body.id or f"hh-{new_event_id().lower()}"
    async with transaction(services.db, feed=services.feed) as tx:
        h = schema.households
        if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first():
            raise Conflict("household exists", detail=f"household {household_id!r} exists")
        await tx.conn.execute(
            insert(h).values(
                id=household_id, created_at=tx.now, updated_at=tx.now, **_household_values(body)
            )
        )
        tx.audit(
            operator.username, "household.created", "household", household_id, {"name": body.name}
        )
        tx.change("household", "household.created", household_id, {"name": body.name})
        return await _household(tx.conn, household_id)


@router.get("/households/{household_id}", response_model=Household, tags=["households"])
async def get_household(
    household_id: str, operator: CurrentOperator, services: ServicesDep
) -> Household:
    async with services.db.read() as conn:
        return await _household(conn, household_id)


@router.put(
    "/households/{household_id}",
    response_model=Household,
    tags=["households"],
    dependencies=[Supervisor],
)
async def update_household(
    household_id: str, body: HouseholdIn, operator: CurrentOperator, services: ServicesDep
) -> Household:
    if body.id is not None and body.id != household_id:
        raise BadRequest("id mismatch", detail="the body's id differs from the URL's")
    async with transaction(services.db, feed=services.feed) as tx:
        h = schema.households
        result = await tx.conn.execute(
            update(h)
            .where(h.c.id == household_id)
            .values(updated_at=tx.now, **_household_values(body))
            .returning(h.c.id)
        )
        if result.first() is None:
            raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
        tx.audit(operator.username, "household.updated", "household", household_id)
        tx.change("household", "household.updated", household_id, {"name": body.name})
        return await _household(tx.conn, household_id)


class EnrollCode(BaseModel):
    code: str
    household_id: str
    expires_at: datetime


@router.post(
    "/households/{household_id}/enroll-codes",
    response_model=EnrollCode,
    status_code=201,
    tags=["households"],
    dependencies=[Supervisor],
)
async def create_enroll_code(
    household_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    ttl: Annotated[int, Query(ge=60, le=7 * 86400)] = 3600,
) -> EnrollCode:
    """A one-time code for the installer to enroll this household's gateway."""
    async with transaction(services.db) as tx:
        code = await gateways.make_enroll_code(
            tx, household_id=household_id, ttl_s=ttl, actor=operator.username
        )
        return EnrollCode(
            code=code, household_id=household_id, expires_at=tx.now + timedelta(seconds=ttl)
        )


# -- gateways -----------------------------------------------------------------------------------


@router.get("/gateways", response_model=list[GatewayOut], tags=["gateways"])
async def list_gateways(
    operator: CurrentOperator,
    services: ServicesDep,
    household_id: Annotated[str | None, Query(max_length=128)] = None,
    online: bool | None = None,
    limit: Limit = 500,
    offset: Offset = 0,
) -> list[GatewayOut]:
    g = schema.gateways
    where: list[Any] = []
    if household_id is not None:
        where.append(g.c.household_id == household_id)
    if online is not None:
        where.append(g.c.online.is_(online))
    async with services.db.read() as conn:
        rows = (
            await conn.execute(select(g).where(*where).order_by(g.c.id).limit(limit).offset(offset))
        ).mappings()
        return [gateways.gateway_model(r) for r in rows]


@router.get("/gateways/{gateway_id}", response_model=GatewayOut, tags=["gateways"])
async def get_gateway(
    gateway_id: str, operator: CurrentOperator, services: ServicesDep
) -> GatewayOut:
    g = schema.gateways
    async with services.db.read() as conn:
        row = (await conn.execute(select(g).where(g.c.id == gateway_id))).mappings().first()
    if row is None:
        raise NotFound("no such gateway", detail=f"gateway {gateway_id!r} is not enrolled")
    return gateways.gateway_model(row)


@router.post(
    "/gateways/{gateway_id}/revoke",
    response_model=GatewayOut,
    tags=["gateways"],
    dependencies=[Admin],
)
async def revoke_gateway(
    gateway_id: str, operator: CurrentOperator, services: ServicesDep
) -> GatewayOut:
    async with transaction(services.db, feed=services.feed) as tx:
        await gateways.revoke(tx, gateway_id, actor=operator.username)
        g = schema.gateways
        row = (await tx.conn.execute(select(g).where(g.c.id == gateway_id))).mappings().one()
        return gateways.gateway_model(row)


# -- incidents ----------------------------------------------------------------------------------

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


@router.get("/incidents", response_model=Page[Incident], tags=["incidents"])
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
    where: list[Any] = []
    if state == "open":
        where.append(incidents.open_filter())
    elif state != "all":
        where.append(i.c.state == state)
    if household_id is not None:
        where.append(i.c.household_id == household_id)
    if category is not None:
        where.append(i.c.category == category)
    if mine:
        where.append(i.c.operator_id == operator.id)
    now = datetime.now(UTC)
    async with services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(i).where(*where))).scalar_one()
        order = incidents.queue_order()
        if state == "resolved":
            order = [i.c.resolved_at.desc(), i.c.id]
        rows = (
            await conn.execute(
                incidents.incident_select()
                .where(*where)
                .order_by(*order)
                .limit(limit)
                .offset(offset)
            )
        ).mappings()
        return Page[Incident](items=[incidents.to_model(r, now) for r in rows], total=int(total))


@router.get("/incidents/{incident_id}", response_model=IncidentDetail, tags=["incidents"])
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
    "/incidents/{incident_id}/acknowledge",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
)
async def acknowledge(
    incident_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    body: AcknowledgeRequest | None = None,
) -> ActionResult:
    """Claim the incident. Claiming one another operator holds takes it over (flagged)."""
    detail = {"note": body.note} if body and body.note else {}
    return await _act(services, operator, incident_id, "acknowledge", detail)


@router.post(
    "/incidents/{incident_id}/callback",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
)
async def callback(
    incident_id: str, body: CallbackRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """Record a call to the household and its outcome."""
    return await _act(services, operator, incident_id, "callback", body.model_dump(mode="json"))


@router.post(
    "/incidents/{incident_id}/dispatch",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
)
async def dispatch_responder(
    incident_id: str, body: DispatchRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    return await _act(services, operator, incident_id, "dispatch", body.model_dump(mode="json"))


@router.post(
    "/incidents/{incident_id}/on-scene",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
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
    "/incidents/{incident_id}/resolve",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
)
async def resolve(
    incident_id: str, body: ResolveRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    return await _act(services, operator, incident_id, "resolve", body.model_dump(mode="json"))


@router.post(
    "/incidents/{incident_id}/release",
    response_model=ActionResult,
    tags=["incidents"],
    responses=_ACTION_ERRORS,
)
async def release(
    incident_id: str, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    """Give the incident back to the queue."""
    return await _act(services, operator, incident_id, "release", {})


@router.post(
    "/incidents/{incident_id}/notes",
    response_model=ActionResult,
    tags=["incidents"],
    responses={404: {"description": "no such incident"}},
)
async def add_note(
    incident_id: str, body: NoteRequest, operator: CurrentOperator, services: ServicesDep
) -> ActionResult:
    return await _act(services, operator, incident_id, "note", {"text": body.text})


@router.get("/events", response_model=Page[StoredEvent], tags=["incidents"])
async def list_events(
    operator: CurrentOperator,
    services: ServicesDep,
    household_id: Annotated[str | None, Query(max_length=128)] = None,
    gateway_id: Annotated[str | None, Query(max_length=128)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    test: Annotated[
        bool | None, Query(description="only test events (flag or test kind), or only others")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[StoredEvent]:
    """Stored events, newest first: telemetry and installers' test events too."""
    e = schema.events
    where: list[Any] = []
    if household_id is not None:
        where.append(e.c.household_id == household_id)
    if gateway_id is not None:
        where.append(e.c.gateway_id == gateway_id)
    if kind is not None:
        where.append(e.c.kind == kind)
    if test is True:
        where.append(or_(e.c.test.is_(True), e.c.kind == "test"))
    elif test is False:
        where.append(and_(e.c.test.is_(False), e.c.kind != "test"))
    async with services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(e).where(*where))).scalar_one()
        rows = (
            await conn.execute(
                select(e)
                .where(*where)
                .order_by(e.c.received_at.desc(), e.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).mappings()
        return Page[StoredEvent](
            items=[StoredEvent.model_validate(dict(r)) for r in rows], total=int(total)
        )


@router.get(
    "/escalations", response_model=list[Change], tags=["incidents"], dependencies=[Supervisor]
)
async def escalations(
    operator: CurrentOperator, services: ServicesDep, limit: Limit = 100
) -> list[Change]:
    """Recent escalations (overdue service levels, stale claims, takeovers), newest first."""
    c = schema.changes
    async with services.db.read() as conn:
        rows = (
            await conn.execute(
                select(c).where(c.c.topic == "escalation").order_by(c.c.id.desc()).limit(limit)
            )
        ).mappings()
        return [Change.model_validate(dict(r)) for r in rows]


# -- operators ----------------------------------------------------------------------------------


@router.get("/operators", response_model=list[Operator], tags=["operators"], dependencies=[Admin])
async def list_operators(operator: CurrentOperator, services: ServicesDep) -> list[Operator]:
    o = schema.operators
    async with services.db.read() as conn:
        rows = (await conn.execute(select(o).order_by(o.c.username))).mappings()
        return [operators.operator_model(r) for r in rows]


@router.post(
    "/operators", response_model=Operator, status_code=201, tags=["operators"], dependencies=[Admin]
)
async def create_operator(
    body: OperatorIn, operator: CurrentOperator, services: ServicesDep
) -> Operator:
    hashed = await operators.hash_password(body.password)
    async with transaction(services.db) as tx:
        return await operators.create_operator(
            tx,
            username=body.username,
            password_hash=hashed,
            role=body.role,
            display_name=body.display_name,
            actor=operator.username,
        )


@router.patch(
    "/operators/{username}", response_model=Operator, tags=["operators"], dependencies=[Admin]
)
async def patch_operator(
    username: str, body: OperatorPatch, operator: CurrentOperator, services: ServicesDep
) -> Operator:
    async with transaction(services.db) as tx:
        return await operators.update_operator(tx, username, body, actor=operator.username)


# -- audit and reports --------------------------------------------------------------------------


@router.get("/audit", response_model=Page[AuditEntry], tags=["audit"], dependencies=[Supervisor])
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
    where: list[Any] = []
    if entity_type is not None:
        where.append(a.c.entity_type == entity_type)
    if entity_id is not None:
        where.append(a.c.entity_id == entity_id)
    if actor is not None:
        where.append(a.c.actor == actor)
    async with services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(a).where(*where))).scalar_one()
        rows = (
            await conn.execute(
                select(a).where(*where).order_by(a.c.id.desc()).limit(limit).offset(offset)
            )
        ).mappings()
        return Page[AuditEntry](
            items=[AuditEntry.model_validate(dict(r)) for r in rows], total=int(total)
        )


@router.get(
    "/reports/response-times",
    response_model=ResponseTimesReport,
    tags=["reports"],
    dependencies=[Supervisor],
)
async def report_response_times(
    operator: CurrentOperator,
    services: ServicesDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    group: Literal["community", "day"] = "day",
) -> ResponseTimesReport:
    """Times to acknowledge, call back and arrive; share within each target; alarm counts by
    kind; false-alarm rate; gateway outages. Default period: the last 30 days."""
    end = _aware(to) if to else datetime.now(UTC)
    start = _aware(from_) if from_ else end - timedelta(days=30)
    if start >= end:
        raise BadRequest("empty period", detail="'from' must be before 'to'", status=422)
    async with services.db.read() as conn:
        return await response_times(conn, services.settings, start=start, end=end, group=group)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- live stream --------------------------------------------------------------------------------


@router.get(
    "/stream",
    tags=["stream"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def live_stream(
    request: Request,
    operator: CurrentOperator,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="resume after this change id")
    ] = None,
) -> StreamingResponse:
    """Incident and gateway changes as server-sent events (id = change id).

    Reconnect with ``Last-Event-ID`` (or ``?after=``) to receive every change missed, once.
    Without either, the stream starts at the present. Supervisors also receive escalations.
    """
    position: int | None = after
    if last_event_id is not None and last_event_id.strip():
        try:
            position = int(last_event_id)
        except ValueError as exc:
            raise BadRequest("bad Last-Event-ID", detail="must be a change id") from exc
        if not 0 <= position <= 2**62:
            raise BadRequest("bad Last-Event-ID", detail="must be a change id")
    if position is None:
        position = await stream.latest_change_id(services.db)
    audiences = ("all", "supervisor") if operator.role.rank >= Role.SUPERVISOR.rank else ("all",)
    poll = services.settings.stream_poll_s if services.db.is_sqlite else 2.0
    return StreamingResponse(
        stream.sse_stream(
            services.db,
            services.feed,
            after=position,
            audiences=audiences,
            poll_s=poll,
            keepalive_s=services.settings.stream_keepalive_s,
            is_disconnected=request.is_disconnected,
            stopping=services.stopping,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
