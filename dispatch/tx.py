"""A write transaction that also records audit entries and live-stream changes.

Changes are written at the end of the transaction, under a PostgreSQL advisory lock held until
commit, so change ids become visible in id order (a stream reader that resumes after id N never
misses a smaller id committed later) and the lock is held for as short a time as possible.
``pg_notify`` is sent in the same transaction, so listeners wake exactly when the rows are visible.

Once committed, a transaction's changes are also handed to this process's :class:`ChangeFeed` as
stored (returned by their insert), so a live stream sends them without reading them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.db import Database
from dispatch.models import Change

__all__ = ["NOTIFY_CHANNEL", "ChangeFeed", "Committed", "Tx", "sse_event", "transaction"]

NOTIFY_CHANNEL = "dispatch_changes"
_PG_CHANGES_LOCK = 0x63686E67


def sse_event(change: Change) -> str:
    """A change as one server-sent event (its id is the change's)."""
    data = json.dumps(change.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {change.id}\nevent: {change.kind}\ndata: {data}\n\n"


@dataclass(slots=True)
class Committed:
    """A change this process committed, its row as stored: what a stream sends of it."""

    id: int
    audience: str
    row: dict[str, Any]
    _event: str | None = None

    @property
    def event(self) -> str:
        """Its server-sent event, made once for every stream that sends it."""
        if self._event is None:
            self._event = sse_event(Change.model_validate(self.row))
        return self._event


class ChangeFeed:
    """Wakes this process's stream readers when a change may have been committed, and keeps the
    changes it committed last (by id) for them."""

    def __init__(self, *, keep: int = 256) -> None:
        self._event = asyncio.Event()
        #: Counts wakes: a snapshot read at generation N is stale once this is above N.
        self.generation = 0
        #: Counts the times this process ended sessions (a logout, a disabled account).
        self.sessions_ended = 0
        self._keep = keep
        self._kept: dict[int, Committed] = {}
        self._order: deque[int] = deque()

    def wake(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    def publish(self, committed: Sequence[Committed]) -> None:
        """Changes just committed: kept for the streams, which are woken."""
        for change in committed:
            self._kept[change.id] = change
            self._order.append(change.id)
        while len(self._order) > self._keep:
            self._kept.pop(self._order.popleft(), None)
        self.wake()

    def end_sessions(self) -> None:
        """Sessions ended here: every stream looks at its own at once."""
        self.sessions_ended += 1
        self.wake()

    def committed_after(self, after: int, *, limit: int = 500) -> list[Committed]:
        """The changes kept from ``after + 1`` on, up to the first id not kept. Ids are given in
        commit order (see the module doc), so nothing committed is skipped; a change committed
        elsewhere (another process, a transaction without the feed) ends the run, and the
        stream reads the table from there."""
        run: list[Committed] = []
        kept = self._kept
        while len(run) < limit and (change := kept.get(after + 1)) is not None:
            run.append(change)
            after += 1
        return run

    async def wait(self, seconds: float, *, since: int | None = None) -> None:
        """Until the next wake, or ``seconds`` at most; at once if the feed woke since
        generation ``since`` (a wake while the caller was busy is not lost)."""
        if since is not None and since != self.generation:
            return
        event = self._event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()


@dataclass
class Tx:
    conn: AsyncConnection
    now: datetime
    dialect: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    # Timeline entries written in this transaction and not yet published, per incident: the
    # incident's next change carries them, so a console draws them without reading them back.
    timeline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Changes written (as stored), handed to the feed once committed.
    written: list[Committed] = field(default_factory=list)

    @property
    def is_pg(self) -> bool:
        return self.dialect == "postgresql"

    def change(
        self,
        topic: str,
        kind: str,
        entity_id: str,
        data: dict[str, Any],
        *,
        audience: str = "all",
    ) -> None:
        self.changes.append(
            {
                "at": self.now,
                "topic": topic,
                "kind": kind,
                "entity_id": entity_id,
                "audience": audience,
                "data": data,
            }
        )

    def timeline_entry(self, incident_id: str, entry: dict[str, Any]) -> None:
        self.timeline.setdefault(incident_id, []).append(entry)

    def take_timeline(self, incident_id: str) -> list[dict[str, Any]]:
        return self.timeline.pop(incident_id, [])

    def audit(
        self,
        actor: str,
        action: str,
        entity_type: str,
        entity_id: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.audits.append(
            {
                "at": self.now,
                "actor": actor,
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "detail": detail or {},
            }
        )

    async def flush(self) -> None:
        if self.audits:
            await self.conn.execute(insert(schema.audit_log), self.audits)
            self.audits = []
        if self.changes:
            if self.is_pg:
                await self.conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_CHANGES_LOCK})"))
            # The rows as stored (ids, and the data as a read gives it back), in one statement:
            # in no particular order, which the feed does not need (it keeps them by id).
            rows = await self.conn.execute(
                insert(schema.changes).returning(*schema.changes.c), self.changes
            )
            self.written.extend(
                Committed(int(row["id"]), row["audience"], dict(row)) for row in rows.mappings()
            )
            if self.is_pg:
                await self.conn.execute(text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))
            self.changes = []


@asynccontextmanager
async def transaction(
    db: Database,
    *,
    feed: ChangeFeed | None = None,
    durable: bool = True,
    urgent: bool = False,
    now: datetime | None = None,
) -> AsyncIterator[Tx]:
    """A write transaction; its audit entries and changes are written just before commit.

    ``urgent``: an alarm's, served before any other write waiting (see :meth:`Database.write`).
    """
    async with db.write(durable=durable, urgent=urgent) as conn:
        tx = Tx(conn=conn, now=now or datetime.now(UTC), dialect=db.dialect)
        yield tx
        await tx.flush()
    if tx.written and feed is not None:
        feed.publish(tx.written)
