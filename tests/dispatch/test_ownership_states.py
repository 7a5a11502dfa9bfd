"""The incident state machine under any sequence of operators' doings (hypothesis, stateful).

Three operators claim, take over, acknowledge, go on break, log out, log in and lose their
console's stream, while the home keeps pressing. Whatever the order, no open life-safety incident
is held by an operator who is not there, and the gateway is never told an alarm event is
acknowledged unless an operator acknowledged it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update

from contract.wire import EventKind, HeartbeatReply, IngestReply
from dispatch import schema
from dispatch.supervision import Supervisor
from dispatch.tx import ChangeFeed, transaction
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch_app import DispatchApp

OPERATORS = range(3)
LIFE_SAFETY = [EventKind.SOS, EventKind.FALL]


def test_no_sequence_leaves_an_alarm_with_someone_absent_or_acknowledged_unseen(
    server: DispatchApp,
) -> None:
    passwords: dict[str, str] = {}
    admin = server.operator_client()
    names = []
    for _ in OPERATORS:
        name = unique("op")
        passwords[name] = "password-" + name
        created = admin.post(
            "/api/v1/operators", json={"username": name, "password": passwords[name]}
        )
        assert created.status_code == 201, created.text
        names.append(name)

    class Centre(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.gw = server.enroll(unique("hh"))
            self.clients: dict[int, httpx.Client | None] = {
                i: server.login(names[i], passwords[names[i]]) for i in OPERATORS
            }
            self.incident_of: dict[str, str] = {}  # event id -> incident id
            self.acknowledged: set[str] = set()  # event ids an operator acknowledged
            self.incidents: list[str] = []

        @rule(kind=st.sampled_from(LIFE_SAFETY))
        def press(self, kind: EventKind) -> None:
            ev = event(self.gw.gateway_id, kind)
            reply = self.gw.send_events(batch(self.gw.gateway_id, ev))
            assert reply.status_code == 200, reply.text
            ack = IngestReply.model_validate_json(reply.content).acks[0]
            assert ack.incident is not None
            assert not ack.incident.acknowledged, "a press nobody saw reported acknowledged"
            self.incident_of[ev.id] = ack.incident.id
            if ack.incident.id not in self.incidents:
                self.incidents.append(ack.incident.id)

        def _claim(self, who: int, pick: int, body: dict[str, Any] | None) -> None:
            client = self.clients[who]
            assert client is not None
            incident_id = self.incidents[pick % len(self.incidents)]
            reply = client.post(f"/api/v1/incidents/{incident_id}/acknowledge", json=body)
            assert reply.status_code in (200, 409), reply.text
            if reply.status_code == 200:
                self.acknowledged |= {e for e, i in self.incident_of.items() if i == incident_id}
            else:
                assert reply.json()["title"].startswith("already taken by ")

        @precondition(lambda self: self.incidents)
        @rule(who=st.sampled_from(OPERATORS), pick=st.integers(0, 5))
        def acknowledge(self, who: int, pick: int) -> None:
            if self.clients[who] is not None:
                self._claim(who, pick, None)

        @precondition(lambda self: self.incidents)
        @rule(who=st.sampled_from(OPERATORS), pick=st.integers(0, 5))
        def take_over(self, who: int, pick: int) -> None:
            if self.clients[who] is not None:
                self._claim(who, pick, {"takeover": True, "reason": "the holder is busy"})

        @rule(who=st.sampled_from(OPERATORS))
        def log_out(self, who: int) -> None:
            client = self.clients[who]
            if client is not None:
                assert client.post("/api/v1/auth/logout").status_code == 204
                self.clients[who] = None

        @rule(who=st.sampled_from(OPERATORS))
        def log_in(self, who: int) -> None:
            if self.clients[who] is None:
                self.clients[who] = server.login(names[who], passwords[names[who]])

        @rule(who=st.sampled_from(OPERATORS), on_break=st.booleans())
        def take_break(self, who: int, on_break: bool) -> None:
            client = self.clients[who]
            if client is not None:
                reply = client.post("/api/v1/operators/me/break", json={"on_break": on_break})
                assert reply.status_code == 200, reply.text

        @rule(who=st.sampled_from(OPERATORS))
        def lose_stream(self, who: int) -> None:
            """The console went silent past the timeout, and the supervisor looked."""
            server.run(_silence(server, names[who]))

        @invariant()
        def nobody_absent_holds_an_alarm(self) -> None:
            held = server.run(_absent_holders(server, self.gw.household_id))
            assert held == [], held

        @invariant()
        def the_gateway_hears_only_of_acknowledged_events(self) -> None:
            reply = self.gw.heartbeat(heartbeat(self.gw.gateway_id))
            assert reply.status_code == 200, reply.text
            told = set(HeartbeatReply.model_validate_json(reply.content).acknowledged_events)
            assert told <= self.acknowledged, told - self.acknowledged

    run_state_machine_as_test(
        Centre,
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def _silence(server: DispatchApp, username: str) -> None:
    db = server._db
    assert db is not None
    o, p = schema.operators, schema.operator_presence
    async with transaction(db) as tx:
        operator_id = (
            await tx.conn.execute(select(o.c.id).where(o.c.username == username))
        ).scalar()
        silent_since = tx.now - timedelta(seconds=server.settings.presence_timeout_s + 1)
        await tx.conn.execute(
            update(p).where(p.c.operator_id == operator_id).values(seen_at=silent_since)
        )
    await Supervisor(db, server.settings, ChangeFeed()).absent_operators()


async def _absent_holders(server: DispatchApp, household_id: str) -> list[tuple[str, str]]:
    """Open incidents of the household held by an operator who is not on duty right now."""
    db = server._db
    assert db is not None
    i, p = schema.incidents, schema.operator_presence
    async with db.read() as conn:
        rows = await conn.execute(
            select(i.c.id, p.c.status, p.c.seen_at)
            .select_from(i.outerjoin(p, p.c.operator_id == i.c.operator_id))
            .where(
                i.c.household_id == household_id,
                i.c.state != "resolved",
                i.c.operator_id.is_not(None),
            )
        )
        found = []
        now = datetime.now(UTC)
        for incident_id, status, seen_at in rows:
            timeout = timedelta(seconds=server.settings.presence_timeout_s)
            if status != "on_duty" or seen_at is None or now - seen_at > timeout:
                found.append((incident_id, str(status)))
        return found
