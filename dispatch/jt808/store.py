"""Wristbands in the database: registration, binding, alarms to incidents, offline supervision.

A wristband's alarm bits become events of the household it is bound to, routed by the same code
as a gateway's events (:func:`dispatch.ingest.ingest_batch`, "gateway" ``jt808:<terminal>``):
emergency is an SOS, collision/rollover a fall, main-power undervoltage a low battery, power-off
and silence a device offline. Bits act on their edges (the terminal keeps a bit set in every
report until it clears), so a held SOS is one alarm, not one per report. A frame whose check code
or length was wrong may raise an SOS or a fall (marked unverified) but never clears or stores
anything else: noise must not restore an alarm.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from contract import jt808
from contract.wire import Event, EventKind, IngestBatch
from dispatch import incidents, schema
from dispatch.db import Database
from dispatch.errors import Conflict, NotFound
from dispatch.ingest import ingest_batch
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, Tx, transaction

__all__ = [
    "WATCHED",
    "Report",
    "bind",
    "come_back",
    "edges",
    "ensure",
    "fix_row",
    "lost_wristbands",
    "raise_alarms",
    "register",
    "source_id",
    "unbind",
]

log = structlog.get_logger(__name__)
Row = RowMapping | Mapping[str, Any]

_FALL = 1 << jt808.AlarmBit.COLLISION | 1 << jt808.AlarmBit.ROLLOVER
#: Alarm bits and the event kind each raises.
_CONDITIONS: tuple[tuple[int, EventKind], ...] = (
    (1 << jt808.AlarmBit.EMERGENCY, EventKind.SOS),
    (_FALL, EventKind.FALL),
    (1 << jt808.AlarmBit.UNDERVOLTAGE, EventKind.LOW_BATTERY),
    (1 << jt808.AlarmBit.POWER_OFF, EventKind.DEVICE_OFFLINE),
)
WATCHED = 0
for _mask, _ in _CONDITIONS:
    WATCHED |= _mask
#: What an unverified frame may raise: only what a life may depend on.
_LIFE = 1 << jt808.AlarmBit.EMERGENCY | _FALL


def source_id(terminal: str) -> str:
    """The "gateway" id a wristband's events carry."""
    return f"jt808:{terminal}"


def device_id(terminal: str) -> str:
    return f"wristband-{terminal}"


@dataclass(frozen=True, slots=True)
class Report:
    """One location as received."""

    terminal: str
    location: jt808.Location
    verified: bool
    received_at: datetime

    @property
    def at(self) -> datetime:
        """The report's time, or the arrival's if the terminal's clock is not believable."""
        at = self.location.at
        if self.received_at - timedelta(days=1) <= at <= self.received_at + timedelta(minutes=5):
            return at
        return self.received_at


def edges(previous: int, now: int, *, verified: bool) -> tuple[list[EventKind], int]:
    """The events the change of alarm bits raises, and the bits to store."""
    if not verified:
        now = previous | (now & _LIFE)
    kinds: list[EventKind] = []
    for mask, kind in _CONDITIONS:
        was, is_ = bool(previous & mask), bool(now & mask)
        if is_ and not was:
            kinds.append(kind)
        elif was and not is_ and kind.restore is not None:
            kinds.append(kind.restore)
    return kinds, now & WATCHED


async def load(
    conn: AsyncConnection, terminal: str, *, for_update: bool = False
) -> RowMapping | None:
    w = schema.wristbands
    query = select(w).where(w.c.terminal == terminal)
    if for_update:
        query = query.with_for_update()
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def ensure(tx: Tx, terminal: str) -> None:
    """A row for a terminal heard from (unbound until a supervisor binds it)."""
    w = schema.wristbands
    if (await tx.conn.execute(select(w.c.terminal).where(w.c.terminal == terminal))).first():
        return
    from dispatch.gateways import insert_ignore

    await tx.conn.execute(insert_ignore(tx.dialect, w).values(terminal=terminal, created_at=tx.now))
    tx.change(
        "wristband", "wristband.heard", terminal, {"terminal": terminal}, audience="supervisor"
    )


async def register(
    db: Database, feed: ChangeFeed, terminal: str, reg: jt808.Registration, protocol: str
) -> tuple[str, bool]:
    """Record a registration; its auth code (the same on each re-registration), and whether the
    terminal is bound to a household."""
    w = schema.wristbands
    async with transaction(db, feed=feed) as tx:
        await ensure(tx, terminal)
        row = await load(tx.conn, terminal)
        assert row is not None
        code = row["auth_code"] or secrets.token_hex(8)
        await tx.conn.execute(
            update(w)
            .where(w.c.terminal == terminal)
            .values(
                auth_code=code,
                manufacturer=reg.manufacturer[:64],
                model=reg.model[:64],
                device_id=reg.terminal_id[:64],
                protocol=protocol,
                registered_at=tx.now,
            )
        )
        tx.audit("jt808", "wristband.registered", "wristband", terminal, {"model": reg.model})
        if row["household_id"] is None:
            tx.change(
                "wristband",
                "wristband.unbound",
                terminal,
                {"terminal": terminal, "model": reg.model},
                audience="supervisor",
            )
        return code, row["household_id"] is not None


async def bind(tx: Tx, *, terminal: str, household_id: str, resident: str, actor: str) -> None:
    """Bind a terminal to a resident of a household (it may not have registered yet)."""
    h, w = schema.households, schema.wristbands
    if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first() is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    row = await load(tx.conn, terminal)
    if row is not None and row["household_id"] not in (None, household_id):
        raise Conflict(
            "wristband bound elsewhere",
            detail=f"terminal {terminal} is bound to household {row['household_id']!r}; "
            "remove it there first",
        )
    values = {"household_id": household_id, "resident": resident, "bound_at": tx.now}
    if row is None:
        await tx.conn.execute(insert(w).values(terminal=terminal, created_at=tx.now, **values))
    else:
        await tx.conn.execute(update(w).where(w.c.terminal == terminal).values(values))
    detail = {"household_id": household_id, "resident": resident}
    tx.audit(actor, "wristband.bound", "wristband", terminal, detail)
    tx.change("wristband", "wristband.bound", terminal, detail, audience="supervisor")


async def unbind(tx: Tx, *, terminal: str, actor: str) -> None:
    w = schema.wristbands
    result = await tx.conn.execute(
        delete(w).where(w.c.terminal == terminal).returning(w.c.terminal)
    )
    if result.first() is None:
        raise NotFound("no such wristband", detail=f"terminal {terminal} is not known")
    tx.audit(actor, "wristband.removed", "wristband", terminal, {})
    tx.change("wristband", "wristband.removed", terminal, {}, audience="supervisor")


def _payload(row: Row, report: Report | None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"terminal": row["terminal"], "resident": row["resident"], **extra}
    if report is not None:
        loc = report.location
        payload.update(
            lat=loc.lat,
            lon=loc.lon,
            fix=loc.fix,
            fix_at=loc.at.isoformat(),
            verified=report.verified,
            battery=loc.battery,
        )
    return payload


async def _events(
    tx: Tx,
    settings: Settings,
    row: Row,
    kinds: list[tuple[EventKind, dict[str, Any]]],
    at: datetime,
) -> dict[str, str | None]:
    """Route the wristband's events to incidents as a gateway's are; kind -> incident id."""
    terminal = row["terminal"]
    seq = int(row["seq"])
    events = [
        Event.create(
            gateway_id=source_id(terminal),
            seq=seq + n + 1,
            kind=kind,
            at=at,
            device_id=device_id(terminal),
            payload=payload,
        )
        for n, (kind, payload) in enumerate(kinds)
    ]
    w = schema.wristbands
    await tx.conn.execute(update(w).where(w.c.terminal == terminal).values(seq=seq + len(events)))
    source = {"id": source_id(terminal), "household_id": row["household_id"], "clock_offset_s": 0}
    reply = await ingest_batch(
        tx, settings, source, IngestBatch(gateway_id=source_id(terminal), events=events)
    )
    return {
        ev.kind.value: (ack.incident.id if ack.incident else None)
        for ev, ack in zip(events, reply.acks, strict=True)
    }


async def raise_alarms(
    db: Database, settings: Settings, feed: ChangeFeed, report: Report
) -> list[str]:
    """A report whose alarm bits changed: events to incidents, durably, before it is answered.

    Returns the ids of the alarm incidents it opened or joined.
    """
    w, i = schema.wristbands, schema.incidents
    loc = report.location
    # Urgent: served before any telemetry write waiting, so an SOS never queues behind positions.
    async with transaction(db, feed=feed, urgent=True) as tx:
        # One read in the usual case (the row exists), locked on PostgreSQL.
        row = await load(tx.conn, report.terminal, for_update=tx.is_pg)
        if row is None:
            await ensure(tx, report.terminal)
            row = await load(tx.conn, report.terminal, for_update=tx.is_pg)
        assert row is not None
        kinds, flags = edges(int(row["alarm_flags"]), loc.alarm, verified=report.verified)
        values: dict[str, Any] = {"alarm_flags": flags, "last_seen_at": tx.now, "online": True}
        if report.verified:
            values.update(
                lat=loc.lat,
                lon=loc.lon,
                fix=loc.fix,
                fix_at=loc.at,
                battery=loc.battery,
                signal=loc.signal,
                satellites=loc.satellites,
            )
        raised = [k for k in kinds if k.is_alarm]
        if raised:
            values["last_alarm_at"] = tx.now
        await tx.conn.execute(update(w).where(w.c.terminal == report.terminal).values(values))
        await tx.conn.execute(insert(schema.wristband_fixes).values(fix_row(report, tx.now)))
        opened: list[str] = []
        if row["household_id"] is None:
            if raised:
                # Nobody to route it to: every supervisor's console hears of it, and the log.
                detail = _payload(row, report, alarms=[k.value for k in raised])
                tx.change(
                    "wristband",
                    "wristband.unbound_alarm",
                    report.terminal,
                    detail,
                    audience="supervisor",
                )
                log.error("alarm from an unbound wristband", **detail)
            return opened
        events: list[tuple[EventKind, dict[str, Any]]] = []
        for kind in kinds:
            extra = {"reason": "power_off"} if kind.condition is EventKind.DEVICE_OFFLINE else {}
            events.append((kind, _payload(row, report, **extra)))
        if not row["online"] and row["last_seen_at"] is not None and report.verified:
            events.append((EventKind.DEVICE_OFFLINE_RESTORE, _payload(row, None)))
        if not events:
            return opened
        routed = await _events(tx, settings, row, events, report.at)
        opened = list(dict.fromkeys(str(routed[k.value]) for k in raised if routed.get(k.value)))
        if opened:
            await tx.conn.execute(
                update(i)
                .where(i.c.id.in_(opened))
                .values(
                    terminal=report.terminal,
                    lat=loc.lat,
                    lon=loc.lon,
                    fix=loc.fix,
                    fix_at=loc.at,
                    position_verified=report.verified,
                )
            )
            for incident_id in opened:
                await incidents.publish(tx, incident_id, "incident.updated")
        return opened


def fix_row(report: Report, now: datetime) -> dict[str, Any]:
    loc = report.location
    return {
        "terminal": report.terminal,
        "at": report.at,
        "received_at": now,
        "lat": loc.lat,
        "lon": loc.lon,
        "fix": loc.fix,
        "speed_kmh": loc.speed_kmh,
        "alarm_flags": loc.alarm & 0xFFFFFFFF,
        "verified": report.verified,
    }


async def come_back(tx: Tx, settings: Settings, terminals: list[str]) -> None:
    """Terminals heard from again after they were marked offline: restore the trouble."""
    w = schema.wristbands
    rows = (
        (
            await tx.conn.execute(
                select(w).where(
                    w.c.terminal.in_(terminals),
                    w.c.online.is_(False),
                    w.c.last_seen_at.is_not(None),
                )
            )
        )
        .mappings()
        .all()
    )
    for row in rows:
        await tx.conn.execute(update(w).where(w.c.terminal == row["terminal"]).values(online=True))
        if row["household_id"] is not None:
            restore = [(EventKind.DEVICE_OFFLINE_RESTORE, _payload(row, None))]
            await _events(tx, settings, row, restore, tx.now)


async def lost_wristbands(
    db: Database, settings: Settings, feed: ChangeFeed, started_at: datetime
) -> list[str]:
    """Wristbands silent past their heartbeat window: a 'wristband offline' trouble each.

    Only once this process has been up for that window (a restart does not make them silent).
    """
    window = timedelta(seconds=settings.jt808_heartbeat_s * settings.heartbeat_misses)
    now = datetime.now(UTC)
    if now - started_at < window:
        return []
    w = schema.wristbands
    cutoff = now - window
    async with db.read() as conn:
        silent = (
            (
                await conn.execute(
                    select(w.c.terminal).where(w.c.online.is_(True), w.c.last_seen_at < cutoff)
                )
            )
            .scalars()
            .all()
        )
    lost: list[str] = []
    for terminal in silent:
        async with transaction(db, feed=feed) as tx:
            result = await tx.conn.execute(
                update(w)
                .where(w.c.terminal == terminal, w.c.online.is_(True), w.c.last_seen_at < cutoff)
                .values(online=False)
                .returning(w.c.terminal)
            )
            if result.first() is None:
                continue  # heard from meanwhile, or another process took it
            row = await load(tx.conn, terminal)
            assert row is not None
            lost.append(terminal)
            if row["household_id"] is None:
                continue
            payload = _payload(
                row,
                None,
                reason="silent",
                last_seen_at=row["last_seen_at"].isoformat(),
                heartbeat_s=settings.jt808_heartbeat_s,
            )
            await _events(tx, settings, row, [(EventKind.DEVICE_OFFLINE, payload)], tx.now)
        log.warning("wristband offline", terminal=terminal)
    return lost
