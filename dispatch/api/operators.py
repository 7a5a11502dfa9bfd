"""Operator accounts (admins only): list, create, change role or disable."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from dispatch import operators, schema
from dispatch.api.deps import Admin, CurrentOperator, ServicesDep
from dispatch.api.openapi import problem_responses
from dispatch.models import Operator, OperatorIn, OperatorPatch
from dispatch.tx import transaction

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["operators"], dependencies=[Admin])


@router.get("/operators", response_model=list[Operator])
async def list_operators(operator: CurrentOperator, services: ServicesDep) -> list[Operator]:
    o = schema.operators
    async with services.db.read() as conn:
        rows = (await conn.execute(select(o).order_by(o.c.username))).mappings()
        return [operators.operator_model(r) for r in rows]


@router.post(
    "/operators", response_model=Operator, status_code=201, responses=problem_responses(409)
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


@router.patch("/operators/{username}", response_model=Operator)
async def patch_operator(
    username: str, body: OperatorPatch, operator: CurrentOperator, services: ServicesDep
) -> Operator:
    async with transaction(services.db) as tx:
        updated = await operators.update_operator(tx, username, body, actor=operator.username)
    if body.disabled:
        services.feed.wake()  # this process's live streams look at their sessions now
    return updated
