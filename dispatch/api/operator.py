"""The operator API: one router over its resources, each in a module of its own.

Every endpoint needs an operator session (cookie, or ``Authorization: Bearer`` with the login's
token), except logging in. Roles: operators work incidents; supervisors also manage households,
see escalations, the audit log and reports; admins also manage operators and revoke gateways.
"""

from __future__ import annotations

from fastapi import APIRouter

from dispatch.api import (
    auth,
    events,
    gateways,
    household_admin,
    households,
    incidents,
    operators,
    records,
    stream,
)

__all__ = ["router"]

router = APIRouter()
# The OpenAPI document lists the resources in this order.
for resource in (
    auth,
    households,
    household_admin,
    gateways,
    incidents,
    events,
    operators,
    records,
    stream,
):
    router.include_router(resource.router)
