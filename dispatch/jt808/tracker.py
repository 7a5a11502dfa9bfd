"""Heartbeats and ordinary positions with group commit.

Ten thousand wristbands reporting every minute are a few hundred messages a second; one
transaction each would spend the database on commits. Heartbeats and positions that change no
alarm bit are queued here and written together every ``flush_s``: one executemany per kind,
one insert of the fixes, the positions of open wristband incidents moved along.

An alarm never waits here: :func:`dispatch.jt808.store.raise_alarms` writes it at once, durably,
and goes before any telemetry write waiting (:mod:`dispatch.write_gate`). What it may wait for is
the telemetry transaction already running, so a flush is cut into transactions of at most
``chunk`` wristbands: after a start or an outage ten thousand of them are pending at once, and
one transaction of them all held the database for seconds.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from dispatch import incidents, schema
from dispatch.db import Database
from dispatch.jt808.store import Report, come_back, fix_row
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, Tx, transaction

__all__ = ["Tracker"]

log = structlog.get_logger(__name__)
#: Positions kept per wristband while the database cannot be written (two hours at one a minute).
_MAX_KEPT = 120


class Tracker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        feed: ChangeFeed,
        *,
        flush_s: float = 0.5,
        chunk: int = 100,
    ) -> None:
        self.db = db
        self.settings = settings
        self.feed = feed
        self.flush_s = flush_s
        self.chunk = chunk
        self._seen: dict[str, datetime] = {}
        self._reports: dict[str, list[Report]] = {}
        self._wake = asyncio.Event()
        w = schema.wristbands
        self._touch = (
            update(w)
            .where(w.c.terminal == bindparam("b_terminal"))
            .values(last_seen_at=bindparam("b_seen"), online=True)
        )
        self._move = (
            update(w)
            .where(w.c.terminal == bindparam("b_terminal"))
            .values(
                last_seen_at=bindparam("b_seen"),
                online=True,
                lat=bindparam("b_lat"),
                lon=bindparam("b_lon"),
                fix=bindparam("b_fix"),
                fix_at=bindparam("b_fix_at"),
                battery=bindparam("b_battery"),
                signal=bindparam("b_signal"),
                satellites=bindparam("b_satellites"),
            )
        )
        self.flushes = 0

    def seen(self, terminal: str, at: datetime) -> None:
        self._seen[terminal] = at

    def report(self, report: Report) -> None:
        self._seen[report.terminal] = report.received_at
        kept = self._reports.setdefault(report.terminal, [])
        kept.append(report)
        if len(kept) > _MAX_KEPT:
            # The database has been away a long time: keep the newest of the track.
            del kept[: len(kept) - _MAX_KEPT]

    @property
    def pending(self) -> int:
        return len(self._seen)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except (SQLAlchemyError, OSError) as exc:
                # Kept for the next pass: the database may be restarting.
                log.warning("wristband positions not stored yet", error=str(exc))

    async def flush(self) -> None:
        if not self._seen:
            return
        seen, reports = self._seen, self._reports
        self._seen, self._reports = {}, {}
        terminals = sorted(seen)  # rows locked in one order
        done = 0
        try:
            while done < len(terminals):
                part = terminals[done : done + self.chunk]
                await self._write(
                    {t: seen[t] for t in part}, {t: reports[t] for t in part if t in reports}
                )
                done += len(part)
        except BaseException:
            # What was not written goes back under anything newer that arrived meanwhile.
            for terminal in terminals[done:]:
                self._seen.setdefault(terminal, seen[terminal])
                if terminal in reports:
                    self._reports[terminal] = reports[terminal] + self._reports.get(terminal, [])
            raise
        self.flushes += 1

    async def _write(self, seen: dict[str, datetime], reports: dict[str, list[Report]]) -> None:
        terminals = sorted(seen)
        async with transaction(self.db, feed=self.feed, durable=False) as tx:
            await come_back(tx, self.settings, terminals)
            touch = [{"b_terminal": t, "b_seen": seen[t]} for t in terminals if t not in reports]
            if touch:
                await tx.conn.execute(self._touch, touch)
            moved: list[dict[str, object]] = []
            fixes: list[dict[str, object]] = []
            for terminal, items in sorted(reports.items()):  # rows locked in one order
                fixes.extend(fix_row(r, tx.now) for r in items)
                last = max(items, key=lambda r: r.at).location
                moved.append(
                    {
                        "b_terminal": terminal,
                        "b_seen": seen[terminal],
                        "b_lat": last.lat,
                        "b_lon": last.lon,
                        "b_fix": last.fix,
                        "b_fix_at": last.at,
                        "b_battery": last.battery,
                        "b_signal": last.signal,
                        "b_satellites": last.satellites,
                    }
                )
            if moved:
                await tx.conn.execute(self._move, moved)
                await tx.conn.execute(schema.wristband_fixes.insert(), fixes)
                await self._follow(tx, reports)

    async def _follow(self, tx: Tx, reports: dict[str, list[Report]]) -> None:
        """Open alarm incidents of these wristbands take their newest position."""
        i = schema.incidents
        open_ones = (
            await tx.conn.execute(
                select(i.c.id, i.c.terminal).where(
                    i.c.terminal.in_(list(reports)), incidents.open_filter()
                )
            )
        ).all()
        for incident_id, terminal in open_ones:
            newest = max(reports[terminal], key=lambda r: r.at)
            loc = newest.location
            await tx.conn.execute(
                update(i)
                .where(i.c.id == incident_id)
                .values(
                    lat=loc.lat, lon=loc.lon, fix=loc.fix, fix_at=newest.at, position_verified=True
                )
            )
            await incidents.publish(tx, incident_id, "incident.updated")
