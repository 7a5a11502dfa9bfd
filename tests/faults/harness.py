"""What every fault scenario shares: an enrolled gateway process, dispatch's stored events read
straight from its database, and the exactly-once check by event id.

The check compares two records that do not depend on each other:

- what the gateway **committed**: every ``event`` log line (written by the pipeline only after
  the buffer's commit returned, so a logged event is durable and must reach dispatch);
- what dispatch **stored**: the ``events`` table of its database, read with SQLAlchemy.

An alarm is *lost* if the gateway committed it and dispatch does not hold its id once the buffer
is drained, and *duplicated* if dispatch holds two alarm events for one alarm the simulators
caused (dispatch's primary key already makes a repeated id impossible, so a duplicate can only be
the gateway deciding the same alarm twice under two ids, e.g. after a restart).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from forwarder.client import Credential
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.waiting import WaitTimedOut, await_until

__all__ = [
    "ALARM_KINDS",
    "ExactlyOnceViolation",
    "StoredEvent",
    "check_exactly_once",
    "committed_events",
    "enroll_into",
    "injected_fault",
    "scale",
    "scaled",
    "settle",
    "stored_events",
    "tamper_buffer",
    "wait_drained",
]

#: Event kinds that are alarms (LIFE_SAFETY and HIGH), as the contract names them.
ALARM_KINDS = frozenset({"sos", "smoke", "gas", "carbon_monoxide", "fall", "water_leak"})


def scale() -> float:
    """``FAULTS_SCALE`` (default 1): multiplies event counts, kills and outage lengths."""
    try:
        value = float(os.environ.get("FAULTS_SCALE", "1"))
    except ValueError:
        pytest.fail(f"FAULTS_SCALE must be a number, got {os.environ['FAULTS_SCALE']!r}")
    return max(0.05, value)


def scaled(n: float, *, minimum: int = 1) -> int:
    return max(minimum, round(n * scale()))


async def settle(predicate: Callable[[], Any], within: float) -> None:
    """Wait until ``predicate()`` or ``within`` seconds, without failing: a check follows."""
    with contextlib.suppress(WaitTimedOut):
        await await_until(predicate, within)


def enroll_into(
    dispatch: DispatchServer,
    gw: GatewayProcess,
    *,
    gateway_id: str,
    household_id: str = "hh-faults",
    url: str | None = None,
) -> Credential:
    """Enroll ``gateway_id`` with dispatch and write its credential where ``gw`` will read it."""
    enrolled = dispatch.enroll(household_id, gateway_id)
    credential = Credential(
        gateway_id=enrolled.gateway_id,
        household_id=enrolled.household_id,
        secret=enrolled.secret,
        dispatch_url=url or dispatch.url,
    )
    credential.save(gw.state_dir / "credential.json")
    return credential


@dataclass(frozen=True)
class StoredEvent:
    id: str
    seq: int
    kind: str
    device_id: str | None
    payload: dict[str, Any]
    received_at: datetime

    @property
    def condition(self) -> str | None:
        value = self.payload.get("condition")
        return value if isinstance(value, str) else None


def _sync_url(db_url: str) -> str:
    if db_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
    return db_url


def stored_events(db_url: str, gateway_id: str) -> list[StoredEvent]:
    """Every event dispatch stored for this gateway, in the order it received them."""
    engine = sa.create_engine(_sync_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, seq, kind, device_id, payload, received_at FROM events "
                    "WHERE gateway_id = :gw ORDER BY received_at, seq"
                ),
                {"gw": gateway_id},
            ).all()
    finally:
        engine.dispose()
    out = []
    for r in rows:
        payload = r[4]
        if isinstance(payload, str):
            import json

            payload = json.loads(payload)
        received = r[5]
        if isinstance(received, str):
            received = datetime.fromisoformat(received)
        out.append(StoredEvent(r[0], int(r[1]), r[2], r[3], payload, received))
    return out


def committed_events(gateways: Iterable[GatewayProcess]) -> dict[str, str]:
    """Event id -> kind of every event the gateways logged as committed (heartbeats excepted)."""
    out: dict[str, str] = {}
    for gw in gateways:
        for line in gw.logged("event"):
            event_id = line.get("event_id")
            if isinstance(event_id, str):
                out[event_id] = str(line.get("kind"))
    return out


class ExactlyOnceViolation(AssertionError):
    """An alarm was lost or delivered twice."""


@dataclass
class Verdict:
    committed: int
    stored: int
    alarms_stored: int
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)


def check_exactly_once(
    committed: dict[str, str],
    stored: list[StoredEvent],
    *,
    expected_conditions: set[str] | None = None,
) -> Verdict:
    """Raise :class:`ExactlyOnceViolation` naming every lost or duplicated alarm.

    ``committed``: event id -> kind the gateway made durable. Each of them must be stored.
    ``expected_conditions``: the alarm conditions the simulators caused (``smoke:<address>``);
    when given, dispatch must hold exactly one alarm event for each, and no other alarm.
    """
    stored_ids = collections.Counter(e.id for e in stored)
    alarms = [e for e in stored if e.kind in ALARM_KINDS]
    verdict = Verdict(committed=len(committed), stored=len(stored), alarms_stored=len(alarms))
    verdict.missing = sorted(i for i in committed if i not in stored_ids)
    per_condition = collections.Counter(e.condition or e.id for e in alarms)
    twice = {c: n for c, n in per_condition.items() if n > 1}
    twice.update({i: n for i, n in stored_ids.items() if n > 1})
    verdict.duplicated = twice
    if expected_conditions is not None:
        verdict.missing += sorted(
            f"condition {c} (no alarm stored)" for c in expected_conditions - set(per_condition)
        )
        verdict.unexpected = sorted(set(per_condition) - expected_conditions)
    problems = []
    if verdict.missing:
        missing_alarms = [i for i in verdict.missing if committed.get(i) in ALARM_KINDS]
        problems.append(
            f"{len(verdict.missing)} committed events/alarms never reached dispatch "
            f"({len(missing_alarms)} of them alarms by id): "
            f"{[(i, committed.get(i)) for i in verdict.missing[:10]]}"
        )
    if verdict.duplicated:
        problems.append(f"delivered more than once: {dict(list(twice.items())[:10])}")
    if verdict.unexpected:
        problems.append(f"alarms nobody caused: {verdict.unexpected[:10]}")
    if problems:
        raise ExactlyOnceViolation("; ".join(problems))
    return verdict


async def wait_drained(gw: GatewayProcess, *, within: float = 60.0) -> None:
    """Until the gateway's buffer holds nothing (every event acknowledged by dispatch)."""
    await await_until(lambda: not gw.buffered(), within, "the gateway's buffer drained")


def tamper_buffer(gw: GatewayProcess, how: str) -> str:
    """Make the gateway lose or duplicate one pending alarm behind its back; returns its id.

    ``lose``: delete the newest pending alarm from the buffer file; ``duplicate``: add a copy
    of it under a new id. Used to show that the exactly-once check catches both.
    """
    import sqlite3

    from contract.wire import new_event_id

    conn = sqlite3.connect(gw.state_dir / "buffer.db", timeout=10, isolation_level=None)
    try:
        row = conn.execute(
            "SELECT seq, id FROM events WHERE lane = 0 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        assert row is not None, "no pending alarm to tamper with"
        seq, event_id = row
        if how == "lose":
            conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
        else:
            top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
            conn.execute(
                "INSERT INTO events (seq, id, lane, kind, priority, device_id, at, test, payload, "
                "size, appended_at) SELECT ?, ?, lane, kind, priority, device_id, at, test, "
                "payload, size, appended_at FROM events WHERE seq = ?",
                (top + 1000, new_event_id(), seq),
            )
    finally:
        conn.close()
    return str(event_id)


def injected_fault() -> str | None:
    """``FAULTS_INJECT=lose`` or ``duplicate``: the scenarios that honour it tamper once, so
    their exactly-once check must fail (to show the suite would catch a real loss)."""
    value = os.environ.get("FAULTS_INJECT") or None
    if value not in (None, "lose", "duplicate"):
        pytest.fail(f"FAULTS_INJECT must be 'lose' or 'duplicate', got {value!r}")
    return value
