"""A write transaction that also records audit entries and live-stream changes.

Changes are written at the end of the transaction, under a PostgreSQL advisory lock held until
commit, so change ids become visible in id order (a stream reader that resumes after id N never
misses a smaller id committed later) and the lock is held for as short a time as possible.
``pg_notify`` is sent in the same transaction, so listeners wake exactly when the rows are visible.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.db import Database

__all__ = ["NOTIFY_CHANNEL", "ChangeFeed", "Tx", "transaction"]

NOTIFY_CHANNEL = "dispatch_changes"
_PG_CHANGES_LOCK = 0x63686E67


class ChangeFeed:
    """Wakes this process's stream readers when a change may have been committed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        #: Counts wakes: a snapshot read at generation N is stale once this is above N.
        self.generation = 0

    def wake(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next wake, or ``seconds`` at most."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


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
            await self.conn.execute(insert(schema.changes), self.changes)
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
    wrote_changes = False
    async with db.write(durable=durable, urgent=urgent) as conn:
        tx = Tx(conn=conn, now=now or datetime.now(UTC), dialect=db.dialect)
        yield tx
        wrote_changes = bool(tx.changes)
        await tx.flush()
    if wrote_changes and feed is not None:
        feed.wake()
