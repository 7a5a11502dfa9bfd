"""The live stream: incident and gateway changes as server-sent events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from dispatch import incidents, presence, stream
from dispatch.api.deps import CurrentOperator, ServicesDep, session_token
from dispatch.errors import BadRequest
from dispatch.models import Change, IncidentChange, Role
from dispatch.operators import session_operator

__all__ = ["CHANGE_MODELS", "router"]

#: What a stream event's data is, put in the OpenAPI document's schemas (an event stream's body
#: has no JSON schema of its own to refer to them).
CHANGE_MODELS: tuple[type[BaseModel], ...] = (Change, IncidentChange)

router = APIRouter(prefix="/api/v1", tags=["stream"])


@router.get(
    "/stream",
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

    Each event's data is ``{"id", "at", "topic", "kind", "entity_id", "data"}``. An incident
    change's ``data`` is the incident with ``timeline_added`` (the IncidentChange schema): the
    timeline entries the change added. Household changes carry the household's record; operator
    changes (supervisors and admins) the operator's.

    Reconnect with ``Last-Event-ID`` (or ``?after=``) to receive every change missed, once.
    Without either, the stream starts at the present. Supervisors also receive escalations; each
    operator also receives their own changes (an incident taken from them, returned). An open
    stream keeps its operator on duty.
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
    token = session_token(request)
    assert token is not None  # CurrentOperator has checked it

    async def session_valid() -> bool:
        async with services.db.read() as conn:
            return await session_operator(conn, token, datetime.now(UTC)) is not None

    audiences: tuple[str, ...] = (
        ("all", "supervisor") if operator.role.rank >= Role.SUPERVISOR.rank else ("all",)
    )
    poll = services.settings.stream_poll_s if services.db.is_sqlite else 2.0
    audiences += (incidents.operator_audience(operator.id),)
    events = stream.sse_stream(
        services.db,
        services.feed,
        after=position,
        audiences=audiences,
        poll_s=poll,
        keepalive_s=services.settings.stream_keepalive_s,
        is_disconnected=request.is_disconnected,
        stopping=services.stopping,
        session_valid=session_valid,
    )
    return StreamingResponse(
        presence.while_streaming(
            services.db, services.settings, services.feed, operator.id, events
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
