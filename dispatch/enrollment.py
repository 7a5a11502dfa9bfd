"""Guards on enrollment: failed attempts throttled and audited, re-enrollment only by permission.

An enrollment code is about 60 bits, but the endpoint is unauthenticated: failures are counted per
client address and per code over ``enroll_failure_window_s`` in the database (so every process
counts them), and past ``enroll_failures_per_address`` / ``enroll_failures_per_code`` the endpoint
answers 429 with Retry-After until the oldest failure leaves the window. Each failure is written
to the audit log with its address and reason.

A household's code enrolls a new gateway id. An id that is enrolled already (revoked or not) is
enrolled again only after a supervisor allowed it (``dispatchd gateway allow-reenroll`` or
``POST /api/v1/gateways/{id}/allow-reenroll``): a permission that is used once and expires, so a
leaked code cannot take over a working gateway's identity or lift its revocation.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, delete, func, insert, select, update

from dispatch import schema
from dispatch.errors import Conflict, NotFound, TooManyRequests
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = ["allow_reenroll", "check_throttle", "record_failure", "take_reenroll_allowance"]

log = structlog.get_logger(__name__)


async def _window(
    tx: Tx, settings: Settings, column: ColumnElement[str], value: str
) -> tuple[int, datetime]:
    f = schema.enroll_failures
    since = tx.now - timedelta(seconds=settings.enroll_failure_window_s)
    count, oldest = (
        await tx.conn.execute(
            select(func.count(), func.min(f.c.at)).where(column == value, f.c.at >= since)
        )
    ).one()
    return int(count), oldest or tx.now


async def check_throttle(tx: Tx, settings: Settings, *, address: str, code_hash: str) -> None:
    """Refuse (429) an enrollment from an address, or with a code, that failed too often."""
    f = schema.enroll_failures
    for what, column, value, limit in (
        ("this address", f.c.address, address, settings.enroll_failures_per_address),
        ("this code", f.c.code_hash, code_hash, settings.enroll_failures_per_code),
    ):
        count, oldest = await _window(tx, settings, column, value)
        if count < limit:
            continue
        wait = (oldest - tx.now).total_seconds() + settings.enroll_failure_window_s
        retry_after = max(1, math.ceil(wait))
        log.warning("enrollment throttled", address=address, by=what, failures=count)
        raise TooManyRequests(
            "too many failed enrollments",
            slug="enroll-throttled",
            detail=f"{count} failed enrollments with {what} in the last "
            f"{settings.enroll_failure_window_s:.0f} s; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after_s": retry_after},
        )


async def record_failure(
    tx: Tx, *, address: str, code_hash: str, gateway_id: str, reason: str
) -> None:
    """Count a failed enrollment and write it to the audit log."""
    await tx.conn.execute(
        insert(schema.enroll_failures).values(
            at=tx.now,
            address=address[:64],
            code_hash=code_hash,
            gateway_id=gateway_id[:128],
            reason=reason[:64],
        )
    )
    tx.audit(
        f"address:{address[:64]}",
        "gateway.enroll_failed",
        "gateway",
        gateway_id[:200],
        {"reason": reason, "address": address[:64]},
    )
    log.warning("enrollment failed", address=address, gateway=gateway_id, reason=reason)


async def allow_reenroll(tx: Tx, settings: Settings, gateway_id: str, *, actor: str) -> datetime:
    """Let the next enrollment of ``gateway_id`` (an existing gateway) replace it; returns when
    the permission expires. A permission not yet used is replaced."""
    g = schema.gateways
    if (await tx.conn.execute(select(g.c.id).where(g.c.id == gateway_id))).first() is None:
        raise NotFound(
            "no such gateway",
            detail=f"gateway {gateway_id!r} is not enrolled; a new id needs no permission",
        )
    a = schema.reenroll_allowances
    expires = tx.now + timedelta(seconds=settings.reenroll_allow_ttl_s)
    await tx.conn.execute(delete(a).where(a.c.gateway_id == gateway_id))
    await tx.conn.execute(
        insert(a).values(
            gateway_id=gateway_id, allowed_by=actor, allowed_at=tx.now, expires_at=expires
        )
    )
    tx.audit(actor, "gateway.reenroll_allowed", "gateway", gateway_id, {"expires_at": str(expires)})
    return expires


async def take_reenroll_allowance(tx: Tx, gateway_id: str) -> None:
    """Use up the supervisor's permission to enroll ``gateway_id`` again, or refuse (409)."""
    a = schema.reenroll_allowances
    taken = await tx.conn.execute(
        update(a)
        .where(a.c.gateway_id == gateway_id, a.c.used_at.is_(None), a.c.expires_at > tx.now)
        .values(used_at=tx.now)
        .returning(a.c.allowed_by)
    )
    row = taken.first()
    if row is None:
        raise Conflict(
            "gateway already enrolled",
            slug="reenroll-not-allowed",
            detail=f"gateway {gateway_id!r} is enrolled already (or revoked); a supervisor must "
            f"allow enrolling it again first: `dispatchd gateway allow-reenroll {gateway_id}` or "
            f"POST /api/v1/gateways/{gateway_id}/allow-reenroll",
        )
    tx.audit(
        f"gateway:{gateway_id}",
        "gateway.reenroll_allowance_used",
        "gateway",
        gateway_id,
        {"allowed_by": row[0]},
    )
