"""The rescuer's own endpoints, behind the phone page at ``/rescuer/``.

A rescuer logs in with their own account (role ``rescuer``, ``POST /api/v1/auth/login``); that
account opens these endpoints and nothing else of the operator API. Each works on the rescuer
the account belongs to: their task, their presses, their live stream (only their own tasks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.engine import RowMapping

from dispatch import rescue, rescue_tasks, stream
from dispatch.api.deps import ROLE_CHECKS, CurrentAccount, ServicesDep, session_token
from dispatch.console import STATIC_DIR
from dispatch.errors import BadRequest, Forbidden
from dispatch.models import Operator, Role
from dispatch.operators import session_operator
from dispatch.rescue_models import (
    PressRequest,
    PressResult,
    Rescuer,
    RescuerStatusRequest,
    RescuerTask,
)
from dispatch.tx import transaction

__all__ = ["page_router", "router"]

router = APIRouter(prefix="/api/v1/rescuer", tags=["rescuer"])
page_router = APIRouter()


async def current_rescuer(account: CurrentAccount, services: ServicesDep) -> RowMapping:
    """The roster entry of the session's rescuer account."""
    if account.role is not Role.RESCUER:
        raise Forbidden(
            "rescuer role required",
            detail=f"{account.username!r} has role {account.role.value}; these endpoints are the "
            "rescuer's phone page's",
        )
    async with services.db.read() as conn:
        row = await rescue.rescuer_for_account(conn, account.id)
    if row is None:
        raise Forbidden("not on the roster", detail=f"{account.username!r} is on no roster entry")
    return row


CurrentRescuer = Annotated[RowMapping, Depends(current_rescuer)]
ROLE_CHECKS.add(current_rescuer)  # the OpenAPI document lists its 403


@router.get("/me", response_model=Rescuer)
async def me(rescuer: CurrentRescuer, services: ServicesDep) -> Rescuer:
    return rescue.to_model(rescuer, services.settings, datetime.now(UTC))


@router.get("/task", response_model=RescuerTask | None)
async def task(rescuer: CurrentRescuer, services: ServicesDep) -> RescuerTask | None:
    """The open task (null when there is none), with the home's details and a map link."""
    async with services.db.read() as conn:
        return await rescue_tasks.current_task(conn, services.settings, int(rescuer["id"]))


@router.post(
    "/presses",
    response_model=PressResult,
    responses={
        404: {"description": "no such assignment of yours"},
        409: {"description": "the task ended or is in a state the press cannot follow"},
    },
)
async def press(body: PressRequest, rescuer: CurrentRescuer, services: ServicesDep) -> PressResult:
    """One press: applied once per ``key`` (a repeat answers ``replayed: true``)."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await rescue_tasks.press(tx, services.settings, int(rescuer["id"]), body)


@router.post("/status", response_model=Rescuer, responses={409: {"description": "you have a task"}})
async def set_status(
    body: RescuerStatusRequest, rescuer: CurrentRescuer, services: ServicesDep
) -> Rescuer:
    """Start a shift or come back (available), or end it (off duty)."""
    async with transaction(services.db, feed=services.feed) as tx:
        row = await rescue.load_rescuer(tx.conn, int(rescuer["id"]))
        await rescue.set_status(tx, int(rescuer["id"]), body.status, row=row)
        name = str(rescuer["name"])
        tx.audit(name, "rescue.status", "rescuer", str(rescuer["id"]), {"status": body.status})
        return await rescue.publish_rescuer(tx, services.settings, int(rescuer["id"]))


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def live_stream(
    request: Request,
    rescuer: CurrentRescuer,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="resume after this change id")
    ] = None,
) -> StreamingResponse:
    """This rescuer's task changes as server-sent events (``task.assigned``, ``task.updated``,
    ``task.cancelled``); resume with ``Last-Event-ID`` as on the console's stream."""
    position: int | None = after
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise BadRequest("bad Last-Event-ID", detail="must be a change id")
        position = int(last_event_id)
    if position is None:
        position = await stream.latest_change_id(services.db)
    token = session_token(request)
    assert token is not None

    async def session_valid() -> bool:
        async with services.db.read() as conn:
            account: Operator | None = await session_operator(conn, token, datetime.now(UTC))
            return account is not None

    events = stream.sse_stream(
        services.db,
        services.feed,
        after=position,
        audiences=(rescue.rescuer_audience(int(rescuer["id"])),),
        poll_s=services.settings.stream_poll_s if services.db.is_sqlite else 2.0,
        keepalive_s=services.settings.stream_keepalive_s,
        is_disconnected=request.is_disconnected,
        stopping=services.stopping,
        session_valid=session_valid,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@page_router.get("/rescuer/", include_in_schema=False)
async def rescuer_page() -> FileResponse:
    """The rescuer's phone page (its assets are the console's, under /console/)."""
    return FileResponse(STATIC_DIR / "rescuer.html", headers={"Cache-Control": "no-cache"})


@page_router.get("/rescuer", include_in_schema=False)
async def rescuer_page_bare() -> FileResponse:
    return await rescuer_page()
