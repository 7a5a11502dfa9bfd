"""Event ingest: store a gateway's batch once, route alarms and troubles to incidents.

Idempotent by (gateway, event id): a resent event answers ``duplicate`` with the incident it belongs
to; another gateway's event of the same id is a new event. The household is locked for the batch
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so two processes receiving
the same retry cannot both store it or open two incidents.

Routing, per event (the batch is ordered by lane, then sequence):

- test events (``test`` kind or ``test`` flag) and telemetry: stored, no incident;
- an alarm joins the household's open incident of the same kind opened within the incident
  window, else opens a new one (no queue flooding from one home);
- an alarm restore is attached to the household's latest open incident of its kind;
- troubles (and their restores) are collected by one open trouble incident per household, which
  closes itself once every trouble it collected is restored and nobody is working it.

A new incident's ``alarm_at`` is the event's own time less the gateway's measured clock offset, so
an alarm buffered through an outage arrives with its timers already running (and flagged late).
An alarm that joins an incident already acknowledged re-alerts it. An event is reported back as
acknowledged only once an operator acknowledged that event, never because its incident was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pydantic_core
from sqlalchemy import Dialect, select, update
from sqlalchemy.engine import RowMapping

from contract.wire import (
    CONTRACT_VERSION,
    AckStatus,
    Event,
    EventAck,
    EventKind,
    IncidentRef,
    IngestBatch,
    IngestReply,
    Lane,
    Priority,
)
from dispatch import incidents, schema
from dispatch.errors import BadRequest
from dispatch.incidents import Actor
from dispatch.models import IncidentState
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = ["Ingested", "ingest_batch", "ingest_events"]

_MAX_SEQ = 2**63 - 1

# The columns an ingested event is inserted with, in the order of the rows built below.
_INSERT_COLUMNS = (
    "gateway_id",
    "id",
    "household_id",
    "seq",
    "kind",
    "priority",
    "device_id",
    "at",
    "received_at",
    "test",
    "payload",
    "incident_id",
)

_Bind = Callable[[Any], Any]

# Per kind, what a stored row and the router need of it: its value, its priority, and whether
# it may belong to an incident (telemetry and test events never do). Looked up once per event
# instead of through the enum's properties, a few of them per event.
_KIND_FACTS: dict[EventKind, tuple[str, int, bool]] = {
    kind: (
        kind.value,
        int(kind.priority),
        kind.lane is not Lane.TELEMETRY and kind is not EventKind.TEST,
    )
    for kind in EventKind
}


class _EventSql:
    """A batch's two statements on events at the driver: which of its ids are stored already,
    and the insert of the rest as one ``executemany`` of plain tuples.

    SQLAlchemy processes every parameter of every row through its bind machinery (and renders
    an expanding IN anew per batch); for a batch of 500 events that was most of both
    statements' CPU. Values are converted here by the columns' own bind processors (stored
    exactly as SQLAlchemy stores them), and only where a column has one."""

    def __init__(self, dialect: Dialect) -> None:
        e = schema.events
        self.placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        self.insert = (
            f"INSERT INTO {e.name} ({', '.join(_INSERT_COLUMNS)}) "
            f"VALUES ({', '.join([self.placeholder] * len(_INSERT_COLUMNS))})"
        )
        self._stored: dict[int, str] = {}  # by batch size: at most MAX_BATCH_EVENTS of them
        self.time = self._bind(dialect, "at")
        self.flag = self._bind(dialect, "test")
        self.json = self._bind(dialect, "payload")

    def stored(self, count: int) -> str:
        """id, incident_id and acknowledged_at of a gateway's events among ``count`` ids."""
        found = self._stored.get(count)
        if found is None:
            ids = ", ".join([self.placeholder] * count)
            found = self._stored[count] = (
                f"SELECT id, incident_id, acknowledged_at FROM {schema.events.name} "
                f"WHERE gateway_id = {self.placeholder} AND id IN ({ids})"
            )
        return found

    @staticmethod
    def _bind(dialect: Dialect, column: str) -> _Bind:
        process = schema.events.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        return process if process is not None else (lambda value: value)


_STATEMENTS: dict[tuple[str, str], _EventSql] = {}


def _event_sql(dialect: Dialect) -> _EventSql:
    key = (dialect.name, dialect.driver)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = _EventSql(dialect)
    return found


class _Router:
    """Routes one batch's events to incidents, touching each incident once at the end."""

    def __init__(
        self,
        tx: Tx,
        settings: Settings,
        household_id: str,
        gateway_id: str,
        clock_offset_s: float | None,
    ) -> None:
        self.tx = tx
        self.settings = settings
        self.household_id = household_id
        self.gateway_id = gateway_id
        # Gateway clock minus server clock, from its heartbeats (unknown before the first).
        self.clock_offset = timedelta(seconds=clock_offset_s or 0.0)
        self.open_rows: list[dict[str, Any]] = []
        self.opened: set[str] = set()
        self.touched: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        i = schema.incidents
        rows = await self.tx.conn.execute(
            select(i)
            .where(i.c.household_id == self.household_id, incidents.open_filter())
            .order_by(i.c.opened_at.desc())
        )
        self.open_rows = [dict(r) for r in rows.mappings()]

    def _find(self, category: str, kind: str | None, *, since: Any = None) -> dict[str, Any] | None:
        for row in self.open_rows:
            if row["category"] != category or (kind is not None and row["kind"] != kind):
                continue
            if since is not None and row["opened_at"] < since:
                continue
            return row
        return None

    async def _open(
        self, event: Event, *, kind: str, category: str, priority: int, open_key: str | None
    ) -> dict[str, Any]:
        incident_id = await incidents.open_incident(
            self.tx,
            self.settings,
            household_id=self.household_id,
            gateway_id=self.gateway_id,
            kind=kind,
            category=category,
            priority=priority,
            open_key=open_key,
            summary={},
            alarm_at=event.at - self.clock_offset,
        )
        row = {
            "id": incident_id,
            "category": category,
            "kind": kind,
            "priority": priority,
            "opened_at": self.tx.now,
            "summary": {},
            "state": IncidentState.NEW.value,
            "operator_id": None,
            "event_count": 0,
            "acknowledged_at": None,
        }
        self.open_rows.insert(0, row)
        self.opened.add(incident_id)
        return row

    def _touch(self, row: dict[str, Any], event: Event) -> str:
        entry = self.touched.setdefault(
            row["id"], {"row": row, "count": 0, "priority": row["priority"]}
        )
        entry["count"] += 1
        if not event.kind.is_restore:
            entry["priority"] = min(entry["priority"], int(event.kind.priority))
            if row["category"] == "alarm" and row.get("acknowledged_at") is not None:
                entry["realert"] = True
        summary = row["summary"]
        if event.device_id:
            devices = summary.setdefault("devices", [])
            if event.device_id not in devices and len(devices) < 50:
                devices.append(event.device_id)
        if row["category"] == "trouble" and event.kind is EventKind.ESCALATION:
            pass  # one-shot: nothing to restore later
        elif row["category"] == "trouble":
            troubles = summary.setdefault("troubles", {})
            key = f"{event.kind.condition.value}:{event.device_id or '-'}"
            troubles[key] = not event.kind.is_restore
        elif event.kind.is_restore:
            summary["restored"] = True
        else:
            summary["restored"] = False
        return str(row["id"])

    async def route(self, event: Event) -> str | None:
        kind = event.kind
        if event.test or kind is EventKind.TEST or kind.lane is Lane.TELEMETRY:
            return None
        if kind.lane is Lane.ALARM:
            if kind.is_restore:
                row = self._find("alarm", kind.condition.value)
                return self._touch(row, event) if row is not None else None
            since = self.tx.now - timedelta(seconds=self.settings.incident_window_s)
            row = self._find("alarm", kind.value, since=since)
            if row is None:
                row = await self._open(
                    event,
                    kind=kind.value,
                    category="alarm",
                    priority=int(kind.priority),
                    open_key=None,
                )
            return self._touch(row, event)
        if kind is EventKind.ESCALATION:
            # The gateway escalated locally because nobody here acknowledged an alarm yet:
            # that belongs on the alarm's own incident, not in the household's trouble summary
            # (it has no restore, so it would hold a trouble incident open for good).
            escalated = str(event.payload.get("escalates", "")).partition(":")[0]
            row = self._find("alarm", escalated or None) or self._find("alarm", None)
            if row is not None:
                entry = self._touch(row, event)
                return entry
        # Trouble lane: one summary incident per household.
        row = self._find("trouble", None)
        if row is None:
            if kind.is_restore:
                return None
            row = await self._open(
                event,
                kind="device_trouble",
                category="trouble",
                priority=int(Priority.TROUBLE),
                open_key=f"trouble:{self.household_id}",
            )
        return self._touch(row, event)

    async def finish(self) -> dict[str, RowMapping]:
        """Write every touched incident, then read them all back in one query for the live
        stream (and the reply); returns those rows by id."""
        i = schema.incidents
        published: dict[str, str] = {}
        for incident_id, entry in self.touched.items():
            row = entry["row"]
            values: dict[str, Any] = {
                "last_event_at": self.tx.now,
                "event_count": i.c.event_count + entry["count"],
                "priority": entry["priority"],
                "summary": row["summary"],
            }
            if entry.get("realert"):
                values["realerted_at"] = self.tx.now
            auto_close = (
                row["category"] == "trouble"
                and row["summary"].get("troubles")
                and not any(row["summary"]["troubles"].values())
                and row["state"] == IncidentState.NEW.value
                and row["operator_id"] is None
            )
            if auto_close:
                values.update(
                    state=IncidentState.RESOLVED.value,
                    resolved_at=self.tx.now,
                    outcome="restored",
                    open_key=None,
                    last_action_at=self.tx.now,
                )
            await self.tx.conn.execute(update(i).where(i.c.id == incident_id).values(values))
            if auto_close:
                await incidents.add_action(
                    self.tx,
                    incident_id,
                    Actor(None, "system"),
                    "resolved",
                    {"reason": "every trouble restored"},
                )
            kind = "incident.opened" if incident_id in self.opened else "incident.updated"
            if entry.get("realert"):
                # A press nobody has seen yet on an incident someone acknowledged: alert again.
                kind = "incident.realerted"
                await incidents.add_action(
                    self.tx, incident_id, Actor(None, "system"), "realerted", {"new_events": True}
                )
            published[incident_id] = kind
        rows = await _incident_rows(self.tx, set(published))
        for incident_id, kind in published.items():
            incidents.publish_row(self.tx, rows[incident_id], kind)
        return rows


async def _incident_rows(tx: Tx, incident_ids: set[str]) -> dict[str, RowMapping]:
    if not incident_ids:
        return {}
    rows = await tx.conn.execute(
        incidents.incident_select().where(schema.incidents.c.id.in_(incident_ids))
    )
    return {r["id"]: r for r in rows.mappings()}


def _event_ref(ref: IncidentRef | None, acknowledged: bool) -> IncidentRef | None:
    """The incident as this one event sees it: acknowledged only if the event itself was."""
    if ref is None:
        return None
    return ref.model_copy(update={"acknowledged": acknowledged})


@dataclass(frozen=True, slots=True)
class Ingested:
    """A batch's answer, per event in the batch's order: its id, stored or duplicate, and the
    incident as that event sees it."""

    acks: list[tuple[str, AckStatus, IncidentRef | None]]

    def reply(self) -> IngestReply:
        # Built from values ingest produced (ids, statuses, refs already models): not validated
        # again.
        return IngestReply.model_construct(
            acks=[
                EventAck.model_construct(id=eid, status=status, incident=ref)
                for eid, status, ref in self.acks
            ]
        )

    def reply_json(self) -> bytes:
        """:meth:`reply` as JSON, the same bytes, without a model per event (for a batch of
        telemetry those models were most of the reply's cost)."""
        return pydantic_core.to_json(
            {
                "v": CONTRACT_VERSION,
                "acks": [
                    {"id": eid, "status": status, "incident": ref} for eid, status, ref in self.acks
                ],
            }
        )


async def ingest_batch(
    tx: Tx, settings: Settings, gateway: RowMapping | Mapping[str, Any], batch: IngestBatch
) -> IngestReply:
    """Store a batch (see the module's description) and answer it."""
    return (await ingest_events(tx, settings, gateway, batch)).reply()


async def ingest_events(
    tx: Tx, settings: Settings, gateway: RowMapping | Mapping[str, Any], batch: IngestBatch
) -> Ingested:
    """:func:`ingest_batch`, its answer not yet made into models."""
    household_id = gateway["household_id"]
    too_big = [ev.id for ev in batch.events if ev.seq > _MAX_SEQ]
    if too_big:
        raise BadRequest(
            "invalid IngestBatch",
            detail=f"seq of event {too_big[0]} exceeds {_MAX_SEQ} (a 64-bit signed integer)",
            status=422,
        )
    if tx.is_pg:
        # Serialise ingest per household across processes (dedupe and incident routing).
        h = schema.households
        await tx.conn.execute(select(h.c.id).where(h.c.id == household_id).with_for_update())
    statements = _event_sql(tx.conn.dialect)
    ids = [ev.id for ev in batch.events]
    existing: dict[str, str | None] = {}
    acknowledged: set[str] = set()
    # This gateway's own events only: another gateway's event of the same id is another event.
    stored: Sequence[tuple[str, str | None, Any]] = (
        await tx.conn.exec_driver_sql(statements.stored(len(ids)), (gateway["id"], *ids))
    ).all()  # type: ignore[assignment]  # rows of a textual statement are untyped
    for event_id, incident_id, acked_at in stored:
        existing[event_id] = incident_id
        if acked_at is not None:
            acknowledged.add(event_id)
    router = _Router(tx, settings, household_id, gateway["id"], gateway["clock_offset_s"])
    facts = _KIND_FACTS
    needs_routing = any(
        facts[ev.kind][2] and not ev.test and ev.id not in existing for ev in batch.events
    )
    if needs_routing:
        await router.load()
    received_at = statements.time(tx.now)
    to_time, to_flag, to_json = statements.time, statements.flag, statements.json
    rows: list[Sequence[Any]] = []
    statuses: list[tuple[str, AckStatus, str | None]] = []
    for ev in batch.events:
        if ev.id in existing:
            statuses.append((ev.id, AckStatus.DUPLICATE, existing[ev.id]))
            continue
        kind, priority, routed = facts[ev.kind]
        incident_id = await router.route(ev) if routed and needs_routing else None
        existing[ev.id] = incident_id
        rows.append(
            (
                ev.gateway_id,
                ev.id,
                household_id,
                ev.seq,
                kind,
                priority,
                ev.device_id,
                to_time(ev.at),
                received_at,
                to_flag(ev.test),
                to_json(ev.payload),
                incident_id,
            )
        )
        statuses.append((ev.id, AckStatus.STORED, incident_id))
        if incident_id is not None:
            tx.timeline_entry(
                incident_id,
                {
                    "at": tx.now,
                    "type": "event",
                    "name": kind,
                    "event_id": ev.id,
                    "device_id": ev.device_id,
                    "detail": {"gateway_time": ev.at.isoformat(), "payload": ev.payload},
                },
            )
    if rows:
        await tx.conn.exec_driver_sql(statements.insert, rows)
    loaded = await router.finish() if router.touched else {}
    # Incidents only resent events belong to (duplicates) are read here; the rest were above.
    wanted = {i for _, _, i in statuses if i is not None}
    loaded |= await _incident_rows(tx, wanted - loaded.keys())
    refs = {incident_id: incidents.to_ref(row) for incident_id, row in loaded.items()}
    seen: dict[tuple[str | None, bool], IncidentRef | None] = {}
    acks: list[tuple[str, AckStatus, IncidentRef | None]] = []
    for eid, status, iid in statuses:
        key = (iid, eid in acknowledged)
        if key not in seen:
            seen[key] = _event_ref(refs.get(iid) if iid else None, key[1])
        acks.append((eid, status, seen[key]))
    return Ingested(acks)
