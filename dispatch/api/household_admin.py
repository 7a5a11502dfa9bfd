"""Household administration beyond the card itself: archive and restore, away / in hospital
(supervisors), operators' notes (everyone) and the home's alarm history (everyone)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from dispatch import households
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor
from dispatch.api.openapi import problem_responses
from dispatch.models import AwayRequest, Household, HouseholdNote, Incident, NoteRequest
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/households/{household_id}", tags=["households"])


@router.post(
    "/archive",
    response_model=Household,
    dependencies=[Supervisor],
    responses=problem_responses(404, 409),
)
async def archive_household(
    household_id: str, operator: CurrentOperator, services: ServicesDep
) -> Household:
    """Archive: the household leaves the lists and search; its history stays. Refused while it
    has an open incident or an enrolled (not revoked) gateway."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await households.archive(tx, household_id, actor=operator.username)


@router.post(
    "/restore",
    response_model=Household,
    dependencies=[Supervisor],
    responses=problem_responses(404, 409),
)
async def restore_household(
    household_id: str, operator: CurrentOperator, services: ServicesDep
) -> Household:
    """Bring an archived household back into the lists."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await households.restore(tx, household_id, actor=operator.username)


@router.put(
    "/away",
    response_model=Household,
    dependencies=[Supervisor],
    responses=problem_responses(404),
)
async def set_household_away(
    household_id: str, body: AwayRequest, operator: CurrentOperator, services: ServicesDep
) -> Household:
    """Away or in hospital until ``until``: the home's gateway rests its inactivity alarm until
    then (it learns so with its next heartbeat reply). Other alarms are unaffected."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await households.set_away(tx, household_id, body, actor=operator.username)


@router.delete(
    "/away",
    response_model=Household,
    dependencies=[Supervisor],
    responses=problem_responses(404),
)
async def clear_household_away(
    household_id: str, operator: CurrentOperator, services: ServicesDep
) -> Household:
    """Back home: the gateway watches for inactivity again from its next heartbeat."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await households.clear_away(tx, household_id, actor=operator.username)


@router.get("/notes", response_model=list[HouseholdNote], responses=problem_responses(404))
async def list_household_notes(
    household_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[HouseholdNote]:
    """Operators' notes on the household, newest first."""
    async with services.db.read() as conn:
        return await households.notes(conn, household_id, limit)


@router.post(
    "/notes", response_model=HouseholdNote, status_code=201, responses=problem_responses(404)
)
async def add_household_note(
    household_id: str, body: NoteRequest, operator: CurrentOperator, services: ServicesDep
) -> HouseholdNote:
    """Any operator may add a note (what they learnt on a call); notes are never edited."""
    async with transaction(services.db, feed=services.feed) as tx:
        return await households.add_note(tx, household_id, body.text, author=operator.username)


@router.get("/history", response_model=list[Incident], responses=problem_responses(404))
async def household_history(
    household_id: str,
    operator: CurrentOperator,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[Incident]:
    """The home's latest incidents, newest first, open and resolved."""
    async with services.db.read() as conn:
        return await households.history(conn, household_id, limit, datetime.now(UTC))
