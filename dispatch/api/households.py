"""Households: the people the centre serves. Supervisors create and edit them and make the
one-time codes that enroll a household's gateway; every operator may read them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import insert, select, update

from contract.wire import new_event_id
from dispatch import gateways, households, schema
from dispatch.api.deps import CurrentOperator, ServicesDep, Supervisor
from dispatch.api.openapi import problem_responses
from dispatch.api.paging import Limit, Offset, equal_to, fetch_page
from dispatch.errors import BadRequest, Conflict, NotFound
from dispatch.households import household_values
from dispatch.models import Household, HouseholdIn, Page
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["households"])


@router.get("/households", response_model=Page[Household])
async def list_households(
    operator: CurrentOperator,
    services: ServicesDep,
    community: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="every word found in a name (household, resident, contact), phone "
            "number (any spelling of its digits), address, community or device id",
        ),
    ] = None,
    archived: Annotated[
        bool, Query(description="list archived households instead of active ones")
    ] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Household]:
    h = schema.households
    where = equal_to(h, community=community)
    where.append(h.c.archived_at.is_not(None) if archived else h.c.archived_at.is_(None))
    if q and q.strip():
        where.append(households.search_filter(q))
    async with services.db.read() as conn:
        return await fetch_page(
            conn,
            Page[Household],
            select(h),
            counted=h,
            where=where,
            order_by=[h.c.name, h.c.id],
            limit=limit,
            offset=offset,
            item=lambda row: Household.model_validate(dict(row)),
        )


@router.post(
    "/households",
    response_model=Household,
    status_code=201,
    dependencies=[Supervisor],
    responses=problem_responses(409),
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
                id=household_id, created_at=tx.now, updated_at=tx.now, **household_values(body)
            )
        )
        tx.audit(
            operator.username, "household.created", "household", household_id, {"name": body.name}
        )
        created = await households.household(tx.conn, household_id)
        tx.change("household", "household.created", household_id, created.model_dump(mode="json"))
        return created


@router.get("/households/{household_id}", response_model=Household)
async def get_household(
    household_id: str, operator: CurrentOperator, services: ServicesDep
) -> Household:
    async with services.db.read() as conn:
        return await households.household(conn, household_id)


@router.put(
    "/households/{household_id}",
    response_model=Household,
    dependencies=[Supervisor],
    responses=problem_responses(409),
)
async def update_household(
    household_id: str, body: HouseholdIn, operator: CurrentOperator, services: ServicesDep
) -> Household:
    if body.id is not None and body.id != household_id:
        raise BadRequest("id mismatch", detail="the body's id differs from the URL's")
    async with transaction(services.db, feed=services.feed) as tx:
        h = schema.households
        current = (
            await tx.conn.execute(
                select(h.c.updated_at).where(h.c.id == household_id).with_for_update()
            )
        ).scalar()
        if current is None:
            raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
        expected = body.expected_updated_at
        if expected is not None and expected != current:
            raise Conflict(
                "household changed",
                slug="household-changed",
                detail=f"household {household_id!r} was changed at {current.isoformat()}, after "
                "it was opened for this edit; reload it and make the change again",
            )
        await tx.conn.execute(
            update(h)
            .where(h.c.id == household_id)
            .values(updated_at=tx.now, **household_values(body))
        )
        tx.audit(operator.username, "household.updated", "household", household_id)
        # The whole record: a console showing it redraws from the change, reading nothing.
        updated = await households.household(tx.conn, household_id)
        tx.change("household", "household.updated", household_id, updated.model_dump(mode="json"))
        return updated


class EnrollCode(BaseModel):
    code: str
    household_id: str
    expires_at: datetime


@router.post(
    "/households/{household_id}/enroll-codes",
    response_model=EnrollCode,
    status_code=201,
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
