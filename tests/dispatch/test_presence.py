"""Every alarm reaches a person who is there: presence, atomic claims, true timers, per-event
acknowledgement to the gateway, and no false offline alarms after a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from contract.wire import EventKind, HeartbeatReply, IngestReply
from dispatch import schema
from dispatch.settings import Settings
from dispatch.supervision import Supervisor
from dispatch.tx import ChangeFeed, transaction
from tests.dispatch.conftest import BACKENDS, app_server, module_server, new_operator, unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch import DispatchServer, EnrolledGateway
from tests.fixtures.dispatch_app import DispatchApp


def raise_alarm(gw: EnrolledGateway, kind: EventKind = EventKind.SOS, **kw: Any) -> tuple[str, str]:
    """Send one alarm event; its event id and incident id."""
    ev = event(gw.gateway_id, kind, **kw)
    reply = gw.send_events(batch(gw.gateway_id, ev))
    assert reply.status_code == 200, reply.text
    ack = IngestReply.model_validate_json(reply.content).acks[0]
    assert ack.incident is not None
    return ev.id, ack.incident.id


def timeline(client: httpx.Client, incident_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/v1/incidents/{incident_id}").json()["timeline"])


def test_logout_returns_what_was_held_and_new_alarms_go_to_the_queue(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    _, fall = raise_alarm(gw, EventKind.FALL)
    alice, alice_client = new_operator(server)
    viewer = server.operator_client()
    assert alice_client.post(f"/api/v1/incidents/{fall}/acknowledge").status_code == 200
    assert alice_client.post("/api/v1/auth/logout").status_code == 204

    held = viewer.get(f"/api/v1/incidents/{fall}").json()
    assert held["operator"] is None
    assert held["state"] == "new"
    [returned] = [t for t in held["timeline"] if t["name"] == "returned"]
    assert returned["detail"]["reason"] == "logged out"

    # A new SOS of the household is not routed to the operator who left.
    _, sos = raise_alarm(gw, EventKind.SOS)
    assert viewer.get(f"/api/v1/incidents/{sos}").json()["operator"] is None
    presence = {p["username"]: p for p in viewer.get("/api/v1/operators/presence").json()}
    assert presence[alice]["status"] == "gone"
    assert presence[alice]["held"] == 0


def test_new_alarm_goes_to_the_present_holder_with_a_timeline_entry(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    _, fall = raise_alarm(gw, EventKind.FALL)
    alice, alice_client = new_operator(server)
    assert alice_client.post(f"/api/v1/incidents/{fall}/acknowledge").status_code == 200
    _, smoke = raise_alarm(gw, EventKind.SMOKE)
    detail = alice_client.get(f"/api/v1/incidents/{smoke}").json()
    assert detail["operator"] == alice
    assert detail["operator_presence"] == "on_duty"
    [assigned] = [t for t in detail["timeline"] if t["name"] == "assigned"]
    assert assigned["actor"] == "system"


def test_a_break_returns_what_is_held_and_nothing_is_assigned(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    _, fall = raise_alarm(gw, EventKind.FALL)
    alice, alice_client = new_operator(server)
    alice_client.post(f"/api/v1/incidents/{fall}/acknowledge")
    listed = alice_client.post("/api/v1/operators/me/break", json={"on_break": True}).json()
    assert {p["username"]: p["status"] for p in listed}[alice] == "on_break"
    assert alice_client.get(f"/api/v1/incidents/{fall}").json()["operator"] is None
    assert [
        t["detail"]["reason"] for t in timeline(alice_client, fall) if t["name"] == "returned"
    ] == ["on break"]
    bad = alice_client.post("/api/v1/operators/me/break", json={"on_break": "maybe"})
    assert bad.status_code == 422


def test_a_console_on_break_reporting_seen_stays_on_break(server: DispatchApp) -> None:
    """Showing an incident is not working it: a console left open on a break keeps reporting what
    it shows, and that must not put its operator back on duty (alarms would be routed to them)."""
    gw = server.enroll(unique("hh"))
    alice, alice_client = new_operator(server)
    assert alice_client.post("/api/v1/operators/me/break", json={"on_break": True}).is_success
    _, fall = raise_alarm(gw, EventKind.FALL)
    seen = alice_client.post(f"/api/v1/incidents/{fall}/seen")
    assert seen.status_code == 200
    assert seen.json()["incident"]["first_seen_at"] is not None
    presence = {
        p["username"]: p["status"] for p in alice_client.get("/api/v1/operators/presence").json()
    }
    # Still on break, or gone (this console has no stream, so the supervisor may find it silent
    # meanwhile): never on duty.
    assert presence[alice] in ("on_break", "gone")
    _, sos = raise_alarm(gw, EventKind.SOS)
    assert alice_client.get(f"/api/v1/incidents/{sos}").json()["operator"] != alice


def test_two_acknowledgements_at_once_one_wins_the_other_is_told(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    _, sos = raise_alarm(gw)
    sessions = [new_operator(server) for _ in range(3)]
    barrier = threading.Barrier(len(sessions))
    replies: dict[str, httpx.Response] = {}

    def claim(name: str, client: httpx.Client) -> None:
        barrier.wait()
        replies[name] = client.post(f"/api/v1/incidents/{sos}/acknowledge")

    threads = [threading.Thread(target=claim, args=s) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in replies.items() if r.status_code == 200]
    assert len(winners) == 1, {n: r.text for n, r in replies.items()}
    for name, reply in replies.items():
        if name != winners[0]:
            assert reply.status_code == 409
            assert reply.json()["title"] == f"already taken by {winners[0]}"
    detail = server.operator_client().get(f"/api/v1/incidents/{sos}").json()
    assert detail["operator"] == winners[0]
    assert [t["name"] for t in detail["timeline"] if t["type"] == "action"] == [
        "opened",
        "acknowledged",
    ]


def test_the_operator_who_lost_an_incident_is_told_on_their_stream(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    _, sos = raise_alarm(gw)
    alice, alice_client = new_operator(server)
    bob, bob_client = new_operator(server)
    alice_id = {p["username"]: p for p in bob_client.get("/api/v1/operators/presence").json()}[
        alice
    ]["operator_id"]
    alice_client.post(f"/api/v1/incidents/{sos}/acknowledge")
    body = {"takeover": True, "reason": "Alice's line is busy"}
    assert bob_client.post(f"/api/v1/incidents/{sos}/acknowledge", json=body).status_code == 200
    changes = server.run(_changes_for(server, f"operator:{alice_id}"))
    [told] = [c for c in changes if c["entity_id"] == sos]
    assert told["kind"] == "incident.taken_over"
    assert told["data"]["by"] == bob
    assert told["data"]["reason"] == "Alice's line is busy"


async def _changes_for(server: DispatchApp, audience: str) -> list[dict[str, Any]]:
    c = schema.changes
    assert server._db is not None
    async with server._db.read() as conn:
        rows = await conn.execute(select(c).where(c.c.audience == audience))
        return [dict(r) for r in rows.mappings()]


def test_a_buffered_alarm_keeps_its_own_time(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    # The gateway's clock runs two minutes ahead; dispatch measures it from the heartbeat.
    ahead = timedelta(seconds=120)
    hb = heartbeat(gw.gateway_id).model_copy(update={"sent_at": datetime.now(UTC) + ahead})
    assert gw.heartbeat(hb).status_code == 200
    # A fall buffered for ten minutes during an outage, stamped by the gateway's clock.
    fell = datetime.now(UTC) - timedelta(minutes=10)
    _, fall = raise_alarm(gw, EventKind.FALL, at=fell + ahead)
    detail = server.operator_client().get(f"/api/v1/incidents/{fall}").json()
    alarm_at = datetime.fromisoformat(detail["alarm_at"])
    received_at = datetime.fromisoformat(detail["received_at"])
    assert abs((alarm_at - fell).total_seconds()) < 5
    assert received_at - alarm_at > timedelta(minutes=9)
    assert detail["late"] is True
    assert "acknowledge" in detail["overdue"]  # a minute's service level ran out long ago
    assert detail["first_seen_at"] is None
    seen = server.operator_client().post(f"/api/v1/incidents/{fall}/seen")
    assert seen.status_code == 200
    first_seen = seen.json()["incident"]["first_seen_at"]
    assert first_seen is not None
    again = server.operator_client().post(f"/api/v1/incidents/{fall}/seen").json()
    assert again["incident"]["first_seen_at"] == first_seen  # the first report stays


def test_a_press_that_joins_an_acknowledged_incident_is_not_reported_acknowledged(
    server: DispatchApp,
) -> None:
    gw = server.enroll(unique("hh"))
    first, sos = raise_alarm(gw)
    _, client = new_operator(server)
    assert client.post(f"/api/v1/incidents/{sos}/acknowledge").status_code == 200
    second_ev = event(gw.gateway_id, EventKind.SOS)
    reply = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, second_ev)).content)
    second = reply.acks[0]
    assert second.incident is not None
    assert second.incident.id == sos
    assert second.incident.acknowledged is False  # nobody has seen this press yet

    def reported() -> list[str]:
        hb = gw.heartbeat(heartbeat(gw.gateway_id))
        return HeartbeatReply.model_validate_json(hb.content).acknowledged_events

    assert first in reported()
    assert second_ev.id not in reported()
    detail = client.get(f"/api/v1/incidents/{sos}").json()
    assert detail["realerted_at"] is not None
    assert "realerted" in [t["name"] for t in detail["timeline"]]
    # Acknowledged again by the holder: now the press is reported, and the re-alert clears.
    acked = client.post(f"/api/v1/incidents/{sos}/acknowledge").json()["incident"]
    assert acked["realerted_at"] is None
    assert second_ev.id in reported()
    resent = IngestReply.model_validate_json(
        gw.send_events(batch(gw.gateway_id, second_ev)).content
    )
    assert resent.acks[0].incident is not None
    assert resent.acks[0].incident.acknowledged


@pytest.fixture(params=BACKENDS)
def quiet_server(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    """A fresh centre whose own supervisor looks once, at start, and then not for an hour."""
    yield from app_server(request.param, Settings(supervise_every_s=3600))


def test_after_a_restart_no_gateway_is_declared_offline_within_one_window(
    quiet_server: DispatchApp,
) -> None:
    server = quiet_server
    gw = server.enroll(unique("hh"))
    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=30)).status_code == 200

    async def restarted_supervisor_pass() -> bool:
        db = server._db
        assert db is not None
        g = schema.gateways
        async with transaction(db) as tx:
            # dispatchd was down for a while: the last heartbeat's window has passed.
            await tx.conn.execute(
                update(g)
                .where(g.c.id == gw.gateway_id)
                .values(offline_after=tx.now - timedelta(seconds=5))
            )
        await Supervisor(db, server.settings, ChangeFeed()).lost_gateways()
        async with db.read() as conn:
            return bool(
                (await conn.execute(select(g.c.online).where(g.c.id == gw.gateway_id))).scalar()
            )

    assert server.run(restarted_supervisor_pass()) is True
    opened = server.operator_client().get(
        "/api/v1/incidents", params={"household_id": gw.household_id, "category": "gateway_offline"}
    )
    assert opened.json()["items"] == []


@pytest.fixture(scope="module", params=BACKENDS)
def quick_presence(request: pytest.FixtureRequest) -> Iterator[DispatchServer]:
    """A dispatchd process that counts an operator gone after 2 s of silence (its streams send
    a keep-alive every 0.5 s, so a reader told to close sees a line to stop at)."""
    yield from module_server(
        request.param,
        ("--presence-timeout", "2", "--supervise-every", "0.2", "--stream-keepalive", "0.5"),
    )


def test_the_console_stream_is_presence_and_losing_it_returns_the_work(
    quick_presence: DispatchServer,
) -> None:
    server = quick_presence
    gw = server.enroll(unique("hh"))
    _, fall = raise_alarm(gw, EventKind.FALL)
    alice, alice_client = new_operator(server)
    viewer = server.operator_client()

    def status() -> str:
        listed = viewer.get("/api/v1/operators/presence").json()
        return str({p["username"]: p["status"] for p in listed}[alice])

    streaming = threading.Event()
    closing = threading.Event()

    def console() -> None:
        with alice_client.stream("GET", "/api/v1/stream", timeout=30) as response:
            assert response.status_code == 200
            streaming.set()
            for _ in response.iter_lines():
                if closing.is_set():
                    return

    reader = threading.Thread(target=console)
    reader.start()
    assert streaming.wait(10)
    assert alice_client.post(f"/api/v1/incidents/{fall}/acknowledge").status_code == 200
    # Past the timeout with no action: the open stream alone keeps Alice on duty.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert status() == "on_duty"
        time.sleep(0.5)
    assert viewer.get(f"/api/v1/incidents/{fall}").json()["operator"] == alice

    closing.set()
    reader.join(10)
    assert not reader.is_alive()
    deadline = time.monotonic() + 15
    while viewer.get(f"/api/v1/incidents/{fall}").json()["operator"] is not None:
        assert time.monotonic() < deadline, "the incident stayed with an operator who left"
        time.sleep(0.2)
    assert status() == "gone"
    returned = [t for t in timeline(viewer, fall) if t["name"] == "returned"]
    assert [t["detail"]["reason"] for t in returned] == ["console stream lost"]


def test_a_supervisor_assigns_only_to_an_operator_on_duty_and_says_why(
    server: DispatchApp,
) -> None:
    gw = server.enroll(unique("hh"))
    _, sos = raise_alarm(gw)
    alice, alice_client = new_operator(server)
    assert alice_client.post(f"/api/v1/incidents/{sos}/acknowledge").status_code == 200
    bob, bob_client = new_operator(server)
    _, supervisor = new_operator(server, role="supervisor")
    url = f"/api/v1/incidents/{sos}/assign"

    # Bob has logged in but never shown up: nothing is parked on someone who is not there.
    away = supervisor.post(url, json={"operator": bob, "reason": "Alice is on a long call"})
    assert away.status_code == 409, away.text
    assert "not on duty" in away.json()["title"]

    back = bob_client.post("/api/v1/operators/me/break", json={"on_break": False})
    assert back.status_code == 200
    assert alice_client.post(url, json={"operator": bob, "reason": "x"}).status_code == 403
    assert supervisor.post(url, json={"operator": bob, "reason": " "}).status_code == 422
    assert supervisor.post(url, json={"operator": "nobody-here", "reason": "x"}).status_code == 404

    done = supervisor.post(url, json={"operator": bob, "reason": "Alice is on a long call"})
    assert done.status_code == 200, done.text
    detail = bob_client.get(f"/api/v1/incidents/{sos}").json()
    assert detail["operator"] == bob
    [assigned] = [t for t in detail["timeline"] if t["name"] == "assigned"]
    assert assigned["detail"]["why"] == "Alice is on a long call"
    assert assigned["detail"]["was_assigned_to"] == alice
    assert assigned["actor"] != "system"
    # Bob now acknowledges it himself; Alice no longer holds it and cannot move it on.
    assert alice_client.post(f"/api/v1/incidents/{sos}/callback", json={}).status_code in (409, 422)
    again = supervisor.post(url, json={"operator": bob, "reason": "twice"})
    assert again.status_code == 409
    assert bob_client.post(f"/api/v1/incidents/{sos}/acknowledge").status_code == 200
