"""The live stream: changes read from the ``changes`` table in id order, as server-sent events.

Every process serves the same stream because it reads the shared table. A process learns of new
rows from PostgreSQL ``LISTEN`` (or, on SQLite, by polling); it also polls on PostgreSQL at a slower
pace, so a lost listener connection delays the stream but never loses a change. A client resuming
with ``Last-Event-ID: N`` gets every change after N, each once.

What this process commits itself reaches its streams without a read: the transaction hands its
changes to the :class:`~dispatch.tx.ChangeFeed` as stored, and a stream whose next id is among
them sends them from there (an alarm's change is on the console as soon as it is committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from sqlalchemy import func, select

from dispatch import schema
from dispatch.db import Database
from dispatch.models import Change
from dispatch.tx import NOTIFY_CHANNEL, ChangeFeed, sse_event
from runtime.backoff import NO_JITTER, Backoff
from runtime.shielded import run_to_end
from runtime.timeouts import within

__all__ = ["latest_change_id", "listen_postgres", "read_changes", "sse_stream"]

log = structlog.get_logger(__name__)

#: Changes sent per look at the feed or the table.
_BATCH = 500


async def latest_change_id(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.max(schema.changes.c.id)))).scalar() or 0)


async def read_changes(
    db: Database, *, after: int, audiences: tuple[str, ...], limit: int = 500
) -> tuple[list[Change], int]:
    """Changes after ``after`` visible to ``audiences``; and the last id scanned."""
    c = schema.changes
    async with db.read() as conn:
        rows = (
            (await conn.execute(select(c).where(c.c.id > after).order_by(c.c.id).limit(limit)))
            .mappings()
            .all()
        )
    last = rows[-1]["id"] if rows else after
    return [Change.model_validate(dict(r)) for r in rows if r["audience"] in audiences], int(last)


async def sse_stream(
    db: Database,
    feed: ChangeFeed,
    *,
    after: int,
    audiences: tuple[str, ...],
    poll_s: float,
    keepalive_s: float,
    is_disconnected: Callable[[], object],
    stopping: asyncio.Event,
    session_valid: Callable[[], Awaitable[bool]],
    session_check_s: float = 1.0,
) -> AsyncIterator[str]:
    """The stream's lines. It ends when the client goes, the server stops, or the session it
    was opened with ends (logout, a disabled operator, expiry): ``session_valid`` is asked at
    least every ``session_check_s``, and at once when this process ends sessions
    (:meth:`ChangeFeed.end_sessions`); not at every change, which would put a read between each
    alarm and its operators."""
    yield f"retry: 2000\n: resuming after {after}\n\n"
    loop = asyncio.get_running_loop()
    idle = 0.0
    wait_s = min(poll_s, session_check_s)
    checked_at = -math.inf
    sessions_ended = feed.sessions_ended
    while not stopping.is_set():
        if loop.time() - checked_at >= session_check_s or sessions_ended != feed.sessions_ended:
            sessions_ended = feed.sessions_ended
            checked_at = loop.time()
            if not await run_to_end(session_valid()):
                log.info("live stream closed: its session ended")
                yield ": session ended\n\n"
                return
        generation = feed.generation
        kept = feed.committed_after(after, limit=_BATCH)
        if kept:
            # Committed here: sent as stored. Whatever is committed from now on wakes the feed,
            # and what another process commits is read at the next wake or poll.
            after = kept[-1].id
            for committed in kept:
                if committed.audience in audiences:
                    yield committed.event
            idle = 0.0
            if len(kept) == _BATCH:
                continue
        else:
            # Read to the end even if the client goes meanwhile (see runtime.shielded).
            changes, after = await run_to_end(
                read_changes(db, after=after, audiences=audiences, limit=_BATCH)
            )
            for change in changes:
                yield sse_event(change)
            if changes:
                idle = 0.0
                continue
        if await is_disconnected():  # type: ignore[misc]
            return
        waited = loop.time()
        await feed.wait(wait_s, since=generation)
        idle += loop.time() - waited
        if idle >= keepalive_s:
            idle = 0.0
            # Also carries the position, so a proxy's idle timeout never cuts a quiet stream.
            yield f": keepalive {after}\n\n"


async def listen_postgres(conninfo: str, feed: ChangeFeed, stopping: asyncio.Event) -> None:
    """Wake the feed on every NOTIFY; reconnect with back-off when the connection drops."""
    # Imported here: a centre on SQLite never loads the PostgreSQL driver (~0.1 s, some MiB).
    import psycopg

    backoff = Backoff(0.5, 10.0, jitter=NO_JITTER)
    while not stopping.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                log.info("listening for changes", channel=NOTIFY_CHANNEL)
                backoff.reset()
                feed.wake()  # anything committed while we were away
                async for _ in conn.notifies():
                    feed.wake()
                    if stopping.is_set():
                        return
        except (psycopg.Error, OSError) as exc:
            delay = backoff.next_delay()
            log.warning("change listener lost its connection", error=str(exc), retry_s=delay)
            with contextlib.suppress(TimeoutError):
                await within(stopping.wait(), delay)
