"""Supervision: lost gateways, stale claims, overdue service levels (with short timers).

Nothing here waits a fixed time and hopes: "the supervisor has looked" is proven by a witness, a
gateway that falls silent after the thing under test and is reported lost (a pass that finds it
also saw everything due before it). How fast a lost gateway is found is a figure of
bench/supervision.py, not an assertion.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contract.wire import EventKind, IngestReply
from dispatch import schema
from dispatch.settings import Settings, flag_name
from tests.dispatch.conftest import BACKENDS, app_server, module_server, unique
from tests.dispatch.wire import batch, event, heartbeat, sse_events
from tests.fixtures.dispatch import DispatchHarness, DispatchServer
from tests.fixtures.dispatch_app import DispatchApp
from tests.fixtures.waiting import wait_until

FAST = Settings(
    heartbeat_misses=2,
    supervise_every_s=0.1,
    ack_timeout_s=1.5,
    sla_ack_s=1,
    sla_callback_s=60,
    sla_on_scene_s=1,
)
#: The same settings as flags, for the process that serves the live stream.
FAST_FLAGS = tuple(
    part for name in FAST.model_fields_set for part in (flag_name(name), str(getattr(FAST, name)))
)


@pytest.fixture(scope="module", params=BACKENDS)
def fast_server(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    yield from app_server(request.param, FAST)


@pytest.fixture(scope="module", params=BACKENDS)
def fast_live_server(request: pytest.FixtureRequest) -> Iterator[DispatchServer]:
    yield from module_server(request.param, FAST_FLAGS)


def offline_incidents(client: httpx.Client, household: str, state: str) -> list[dict[str, Any]]:
    items = client.get(
        "/api/v1/incidents",
        params={"household_id": household, "state": state, "category": "gateway_offline"},
    ).json()["items"]
    return list(items)


def supervisor_has_looked(server: DispatchHarness) -> None:
    """Return once a supervision pass has run that began after this call: a witness gateway
    beats once now and is reported lost (so that pass saw everything due before it)."""
    witness = server.enroll(unique("hh-witness"))
    assert witness.heartbeat(heartbeat(witness.gateway_id, interval_s=0.3)).status_code == 200
    client = server.operator_client()
    wait_until(lambda: offline_incidents(client, witness.household_id, "open"))


def test_lost_gateway_opens_one_incident_per_outage(fast_server: DispatchApp) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    client = fast_server.operator_client()
    started = time.monotonic()
    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3)).status_code == 200
    [incident] = wait_until(lambda: offline_incidents(client, household, "open"))
    # Never before it has missed its 2 heartbeats (lateness is bench/supervision.py's figure).
    assert time.monotonic() - started >= 2 * 0.3
    assert incident["kind"] == "gateway_offline"
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is False
    supervisor_has_looked(fast_server)
    assert len(offline_incidents(client, household, "all")) == 1  # one per outage, not per pass

    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=30)).status_code == 200
    [closed] = offline_incidents(client, household, "resolved")
    assert closed["outcome"] == "gateway_returned"
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is True

    # A second outage is a second incident.
    gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3))
    wait_until(lambda: offline_incidents(client, household, "open"))
    assert len(offline_incidents(client, household, "all")) == 2


def test_a_gateway_back_while_its_outage_is_worked_leaves_the_incident_to_the_operator(
    fast_server: DispatchApp,
) -> None:
    """The silent home's incident has been taken (a call, perhaps a rescuer on the way): the
    gateway's return is news on its timeline, not an end the system decides for the operator.
    Unclaimed, it resolves itself as before (the test above)."""
    household = unique("hh")
    gw = fast_server.enroll(household)
    client = fast_server.operator_client()
    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3)).status_code == 200
    [incident] = wait_until(lambda: offline_incidents(client, household, "open"))
    base = f"/api/v1/incidents/{incident['id']}"
    assert client.post(f"{base}/acknowledge").status_code == 200

    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=30)).status_code == 200
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is True
    detail = client.get(base).json()
    assert detail["state"] == "acknowledged"
    assert [e["name"] for e in detail["timeline"] if e["type"] == "action"][-1] == (
        "gateway_returned"
    )
    reply = client.post(f"{base}/resolve", json={"outcome": "false_alarm", "no_call_reason": "x"})
    assert reply.status_code == 200, reply.text
    assert client.get(base).json()["outcome"] == "false_alarm"

    # Its next outage is an incident of its own, not news on one already resolved.
    gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3))
    [again] = wait_until(lambda: offline_incidents(client, household, "open"))
    assert again["id"] != incident["id"]


def test_revoked_gateway_is_not_reported_lost(fast_server: DispatchApp) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    # A long interval: the revocation (a CLI process, over a second to start) lands long before
    # the deadline; the deadline is then moved into the past instead of waiting for it.
    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=60)).status_code == 200
    assert fast_server.cli("gateway", "revoke", gw.gateway_id).returncode == 0
    # The revocation is in: another process's revocation reaches this process's cached identity
    # at its next group write of heartbeats (what it answered meanwhile is not written).
    wait_until(lambda: gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 403)
    _set_deadline_passed(fast_server.db_url, gw.gateway_id)
    supervisor_has_looked(fast_server)
    client = fast_server.operator_client()
    assert offline_incidents(client, household, "all") == []
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is True


def _set_deadline_passed(db_url: str, gateway_id: str) -> None:
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.gateways)
            .where(schema.gateways.c.id == gateway_id)
            .values(offline_after=datetime.now(UTC) - timedelta(seconds=1))
        )
    engine.dispose()


def test_stale_claim_returns_to_queue_and_alerts_supervisors(
    fast_live_server: DispatchServer,
) -> None:
    fast_server = fast_live_server  # reads the live stream: a real server
    household = unique("hh")
    gw = fast_server.enroll(household)
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    incident_id = IngestReply.model_validate_json(reply.content).acks[0].incident.id  # type: ignore[union-attr]
    name = unique("op")
    fast_server.add_operator(name, "password-123", role="operator")
    operator = fast_server.login(name, "password-123")
    supervisor = fast_server.operator_client()  # admin: sees supervisor changes
    position = _latest_id(supervisor)
    assert operator.post(f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200

    def requeued(events: list[dict[str, Any]]) -> bool:
        return any(
            e["_event"] == "incident.escalated"
            and e["data"].get("reason") == "ack_timeout"
            and e["entity_id"] == incident_id
            for e in events
        )

    events = sse_events(supervisor, last_event_id=position, until=requeued)
    assert requeued(events)
    detail = operator.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "new"
    assert detail["operator"] is None
    assert detail["requeue_count"] == 1
    assert detail["acknowledged_by"] == name  # the acknowledgement itself is history
    # A plain operator's stream carries the incident update but not the escalation.
    plain = sse_events(
        operator,
        last_event_id=position,
        until=lambda ev: any(
            e["_event"] == "incident.updated" and e["data"]["state"] == "new" for e in ev
        ),
    )
    assert not any(e["_event"] == "incident.escalated" for e in plain)
    assert operator.get("/api/v1/escalations").status_code == 403
    escalations = supervisor.get("/api/v1/escalations").json()
    assert any(e["entity_id"] == incident_id for e in escalations)


def test_overdue_service_levels_are_flagged_and_escalated_once(fast_server: DispatchApp) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.FALL)))
    incident_id = IngestReply.model_validate_json(reply.content).acks[0].incident.id  # type: ignore[union-attr]
    client = fast_server.operator_client()
    base = f"/api/v1/incidents/{incident_id}"
    first = client.get(base).json()
    answered = datetime.now(UTC)
    due = datetime.fromisoformat(first["deadlines"]["acknowledge"])
    # Service levels run from the alarm's own time, which is no later than its arrival.
    alarm_at = datetime.fromisoformat(first["alarm_at"])
    assert alarm_at <= datetime.fromisoformat(first["opened_at"])
    assert due == alarm_at + timedelta(seconds=FAST.sla_ack_s)
    if answered < due:  # answered before the deadline (not so on a machine slower than 1 s)
        assert first["overdue"] == []
    wait_until(lambda: "acknowledge" in client.get(base).json()["overdue"])
    assert datetime.now(UTC) >= due  # flagged only once due

    def escalated(reason: str) -> list[Any]:
        return [
            e
            for e in client.get("/api/v1/escalations").json()
            if e["entity_id"] == incident_id and e["data"]["reason"] == reason
        ]

    wait_until(lambda: escalated("overdue_acknowledge"))
    client.post(f"{base}/acknowledge")
    assert client.get(base).json()["overdue"] == []  # acknowledged late, but acknowledged
    client.post(f"{base}/dispatch", json={"responder": "neighbour with key"})
    wait_until(lambda: "on_scene" in client.get(base).json()["overdue"])
    wait_until(lambda: escalated("overdue_on_scene"))
    supervisor_has_looked(fast_server)
    assert len(escalated("overdue_acknowledge")) == 1
    assert len(escalated("overdue_on_scene")) == 1


def _latest_id(client: httpx.Client) -> int:
    audit = client.get("/api/v1/escalations").json()
    # The stream's position: start from the newest change id we can see (0 if none).
    del audit
    with client.stream("GET", "/api/v1/stream", timeout=5) as response:
        for line in response.iter_lines():
            if line.startswith(": resuming after "):
                return int(line.removeprefix(": resuming after "))
    raise AssertionError("no stream preamble")
