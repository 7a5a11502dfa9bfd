"""The supervisor: a background task in every dispatchd process.

Each pass finds operators who went away (their incidents return to the queue), lost gateways,
acknowledged incidents nobody works, and overdue service levels. A gateway is declared lost only
once this process has been up for that gateway's whole offline window: after a restart, a
gateway that kept heartbeating has not had the chance to say so yet.
Every consequence is guarded in the database (a conditional UPDATE, a unique escalation row), so
with several processes sharing PostgreSQL each thing happens exactly once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.exc import SQLAlchemyError

from dispatch import gateways, incidents, presence, schema
from dispatch.db import Database
from dispatch.incidents import Actor
from dispatch.jt808 import store as wristbands
from dispatch.models import IncidentState
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, transaction

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)
_SYSTEM = Actor(None, "system")


class Supervisor:
    def __init__(self, db: Database, settings: Settings, feed: ChangeFeed) -> None:
        self.db = db
        self.settings = settings
        self.feed = feed
        self._last_purge = 0.0
        self.started_at = datetime.now(UTC)

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                # The database may be restarting; the next pass tries again.
                log.warning("supervision pass failed", error=str(exc))
            except Exception:
                log.exception("supervision pass crashed")
            await asyncio.sleep(self.settings.supervise_every_s)

    async def run_once(self) -> None:
        await self.absent_operators()
        await self.lost_gateways()
        await wristbands.lost_wristbands(self.db, self.settings, self.feed, self.started_at)
        await self.stale_claims()
        await self.overdue()
        if time.monotonic() - self._last_purge > 60:
            await self.purge()
            self._last_purge = time.monotonic()

    async def absent_operators(self) -> None:
        """Operators whose console went silent: gone, and what they held back to the queue."""
        now = await self._now()
        async with self.db.read() as conn:
            silent = await presence.stale_operator_ids(conn, self.settings, now)
        for operator_id in silent:
            async with transaction(self.db, feed=self.feed) as tx:
                # Checked again under the write: the stream may have just been seen.
                if operator_id not in await presence.stale_operator_ids(
                    tx.conn, self.settings, tx.now
                ):
                    continue
                returned = await incidents.operator_away(
                    tx, operator_id, presence.PresenceStatus.GONE, "console stream lost"
                )
            log.warning("operator gone", operator=operator_id, returned=returned)

    async def lost_gateways(self) -> None:
        g = schema.gateways
        async with self.db.read() as conn:
            now = await self._now()
            candidates = (
                await conn.execute(
                    select(g.c.id, g.c.interval_s).where(
                        g.c.online.is_(True), g.c.revoked_at.is_(None), g.c.offline_after < now
                    )
                )
            ).all()
        up_s = (now - self.started_at).total_seconds()
        lost = [
            gateway_id
            for gateway_id, interval_s in candidates
            if up_s >= interval_s * self.settings.heartbeat_misses
        ]
        for gateway_id in lost:
            async with transaction(self.db, feed=self.feed) as tx:
                await gateways.mark_offline(tx, self.settings, gateway_id)

    async def stale_claims(self) -> None:
        i = schema.incidents
        now = await self._now()
        cutoff = now - timedelta(seconds=self.settings.ack_timeout_s)
        async with self.db.read() as conn:
            stale = (
                await conn.execute(
                    select(i.c.id, i.c.last_action_at, i.c.operator_id).where(
                        i.c.state == IncidentState.ACKNOWLEDGED.value, i.c.last_action_at < cutoff
                    )
                )
            ).all()
        for incident_id, last_action_at, operator_id in stale:
            async with transaction(self.db, feed=self.feed) as tx:
                result = await tx.conn.execute(
                    update(i)
                    .where(
                        i.c.id == incident_id,
                        i.c.state == IncidentState.ACKNOWLEDGED.value,
                        i.c.last_action_at == last_action_at,
                    )
                    .values(
                        state=IncidentState.NEW.value,
                        operator_id=None,
                        claimed_at=None,
                        last_action_at=tx.now,
                        requeue_count=i.c.requeue_count + 1,
                    )
                    .returning(i.c.id)
                )
                if result.first() is None:
                    continue
                detail = {
                    "reason": "no action after acknowledgement",
                    "timeout_s": self.settings.ack_timeout_s,
                    "operator_id": operator_id,
                }
                await incidents.add_action(tx, incident_id, _SYSTEM, "requeued", detail)
                model = await incidents.publish(tx, incident_id, "incident.updated")
                tx.change(
                    "escalation",
                    "incident.escalated",
                    incident_id,
                    {"reason": "ack_timeout", "incident": model.model_dump(mode="json")},
                    audience="supervisor",
                )
                log.warning("incident returned to queue", incident=incident_id)

    async def overdue(self) -> None:
        i, esc = schema.incidents, schema.escalations
        now = await self._now()
        rules: list[tuple[str, Any]] = [
            (
                "acknowledge",
                and_(
                    i.c.state == IncidentState.NEW.value,
                    i.c.acknowledged_at.is_(None),
                    i.c.ack_deadline < now,
                ),
            ),
            (
                "callback",
                and_(
                    i.c.state.in_([IncidentState.NEW.value, IncidentState.ACKNOWLEDGED.value]),
                    i.c.callback_at.is_(None),
                    i.c.callback_deadline < now,
                ),
            ),
            (
                "on_scene",
                and_(
                    i.c.state == IncidentState.RESPONDER_DISPATCHED.value,
                    i.c.on_scene_deadline < now,
                ),
            ),
        ]
        for reason, late in rules:
            already = exists().where(esc.c.incident_id == i.c.id, esc.c.reason == reason)
            async with self.db.read() as conn:
                due = (await conn.execute(select(i.c.id).where(late, ~already))).scalars().all()
            for incident_id in due:
                async with transaction(self.db, feed=self.feed) as tx:
                    inserted = await tx.conn.execute(
                        gateways.insert_ignore(tx.dialect, esc)
                        .values(incident_id=incident_id, reason=reason, at=tx.now)
                        .returning(esc.c.id)
                    )
                    if inserted.first() is None:
                        continue
                    await incidents.add_action(
                        tx, incident_id, _SYSTEM, "escalated", {"overdue": reason}
                    )
                    model = await incidents.publish(tx, incident_id, "incident.updated")
                    tx.change(
                        "escalation",
                        "incident.escalated",
                        incident_id,
                        {"reason": f"overdue_{reason}", "incident": model.model_dump(mode="json")},
                        audience="supervisor",
                    )
                    log.warning("incident overdue", incident=incident_id, overdue=reason)

    async def purge(self, now: datetime | None = None) -> None:
        """Drop what has outlived its use; ``now`` is the clock's time unless given."""
        now = now or await self._now()
        async with transaction(self.db, durable=False) as tx:
            await tx.conn.execute(
                delete(schema.gateway_nonces).where(schema.gateway_nonces.c.expires_at < now)
            )
            await tx.conn.execute(delete(schema.sessions).where(schema.sessions.c.expires_at < now))
            retention = timedelta(seconds=self.settings.change_retention_s)
            await tx.conn.execute(
                delete(schema.changes).where(schema.changes.c.at < now - retention)
            )
            await tx.conn.execute(
                delete(schema.enroll_codes).where(
                    schema.enroll_codes.c.expires_at < now - timedelta(days=30)
                )
            )
            # Never inside the throttle's window: purging what it counts would lift it.
            kept = timedelta(
                seconds=max(
                    self.settings.enroll_failure_retention_s,
                    self.settings.enroll_failure_window_s,
                )
            )
            await tx.conn.execute(
                delete(schema.enroll_failures).where(schema.enroll_failures.c.at < now - kept)
            )

    async def _now(self) -> datetime:
        return datetime.now(UTC)
