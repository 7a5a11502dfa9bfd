"""Operator presence: who is there to take an alarm.

An operator is *on duty* while their console's live stream (or an action of theirs) was seen
within ``presence_timeout_s``; *on break* by their own word; *gone* after logout, when their
account is disabled, or once the stream has been silent for the timeout. Only operators on duty
are ever given an incident. This module knows the facts only; what an operator held is returned
to the queue by :func:`dispatch.incidents.operator_away`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.db import Database
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, Tx, transaction
from runtime.shielded import run_to_end

__all__ = [
    "PresenceStatus",
    "is_present",
    "listing",
    "mark",
    "stale_operator_ids",
    "touch",
    "while_streaming",
]

log = structlog.get_logger(__name__)

_p = schema.operator_presence


class PresenceStatus(enum.StrEnum):
    ON_DUTY = "on_duty"
    ON_BREAK = "on_break"
    GONE = "gone"


def is_present(settings: Settings, now: datetime) -> Any:
    """The SQL condition (over ``operator_presence`` joined to ``operators``) of being there."""
    return and_(
        _p.c.status == PresenceStatus.ON_DUTY.value,
        _p.c.seen_at >= now - timedelta(seconds=settings.presence_timeout_s),
        schema.operators.c.disabled.is_(False),
    )


async def _current(tx: Tx, operator_id: int) -> str | None:
    status = (
        await tx.conn.execute(select(_p.c.status).where(_p.c.operator_id == operator_id))
    ).scalar()
    return None if status is None else str(status)


async def mark(tx: Tx, operator_id: int, status: PresenceStatus, reason: str) -> bool:
    """Set an operator's status; True (and a change on the stream) if it changed."""
    before = await _current(tx, operator_id)
    if before is None:
        try:
            async with tx.conn.begin_nested():
                await tx.conn.execute(
                    insert(_p).values(
                        operator_id=operator_id,
                        status=status.value,
                        changed_at=tx.now,
                        reason=reason,
                    )
                )
        except IntegrityError:
            # Another process recorded this operator first: update theirs instead.
            before = "unknown"
    if before is not None and before != status.value:
        await tx.conn.execute(
            update(_p)
            .where(_p.c.operator_id == operator_id)
            .values(status=status.value, changed_at=tx.now, reason=reason)
        )
    if before == status.value:
        return False
    tx.change(
        "operator",
        "operator.presence",
        str(operator_id),
        {"operator_id": operator_id, "status": status.value, "reason": reason},
    )
    tx.audit("system", f"operator.{status.value}", "operator", str(operator_id), {"reason": reason})
    return True


async def touch(tx: Tx, operator_id: int, reason: str, *, resume: bool = False) -> None:
    """The operator was just seen: on duty, unless on break and this is not ``resume`` (an
    action on an incident ends a break; a console left open does not)."""
    before = await _current(tx, operator_id)
    if resume or before != PresenceStatus.ON_BREAK.value:
        await mark(tx, operator_id, PresenceStatus.ON_DUTY, reason)
    await tx.conn.execute(update(_p).where(_p.c.operator_id == operator_id).values(seen_at=tx.now))


async def stale_operator_ids(conn: AsyncConnection, settings: Settings, now: datetime) -> list[int]:
    """Operators not yet marked gone whose console has been silent for the presence timeout."""
    cutoff = now - timedelta(seconds=settings.presence_timeout_s)
    rows = await conn.execute(
        select(_p.c.operator_id).where(
            _p.c.status != PresenceStatus.GONE.value,
            (_p.c.seen_at.is_(None)) | (_p.c.seen_at < cutoff),
        )
    )
    return [int(r[0]) for r in rows]


async def listing(conn: AsyncConnection, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Every enabled operator with their presence and how many open incidents they hold."""
    o, i = schema.operators, schema.incidents
    load = (
        select(i.c.operator_id, func.count().label("held"))
        .where(i.c.state != "resolved", i.c.operator_id.is_not(None))
        .group_by(i.c.operator_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            o.c.id,
            o.c.username,
            o.c.display_name,
            _p.c.status,
            _p.c.seen_at,
            _p.c.changed_at,
            _p.c.reason,
            func.coalesce(load.c.held, 0).label("held"),
        )
        .select_from(
            o.outerjoin(_p, _p.c.operator_id == o.c.id).outerjoin(
                load, load.c.operator_id == o.c.id
            )
        )
        .where(o.c.disabled.is_(False), o.c.role != "rescuer")  # rescuers: the roster
        .order_by(o.c.username)
    )
    cutoff = now - timedelta(seconds=settings.presence_timeout_s)
    found = []
    for row in rows.mappings():
        status = row["status"] or PresenceStatus.GONE.value
        if status == PresenceStatus.ON_DUTY.value and (
            row["seen_at"] is None or row["seen_at"] < cutoff
        ):
            status = PresenceStatus.GONE.value  # silent: the supervisor will return their work
        found.append({**row, "status": status})
    return found


async def while_streaming(
    db: Database, settings: Settings, feed: ChangeFeed, operator_id: int, stream: AsyncIterator[str]
) -> AsyncIterator[str]:
    """Pass a console's live stream through, keeping its operator on duty while it is open.

    The stream is the presence signal: seen every quarter of the presence timeout, so a console
    that is closed or cut off counts as gone within the timeout (the supervisor acts on it).
    """

    async def seen() -> None:
        async with transaction(db, feed=feed, durable=False) as tx:
            await touch(tx, operator_id, "console stream")

    async def beat() -> None:
        while True:
            try:
                # The beat is cancelled when the stream ends, often as it writes (a stream
                # opened and closed at once): the write itself is never cut off.
                await run_to_end(seen())
            except (SQLAlchemyError, OSError) as exc:
                log.warning("presence not recorded", operator=operator_id, error=str(exc))
            await asyncio.sleep(settings.presence_timeout_s / 4)

    beating = asyncio.create_task(beat())
    try:
        async for chunk in stream:
            yield chunk
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
