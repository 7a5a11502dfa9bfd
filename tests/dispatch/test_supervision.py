"""Supervision: lost gateways, stale claims, overdue service levels (with short timers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import BACKENDS, module_server, unique
from tests.dispatch.wire import batch, event, heartbeat, sse_events
from tests.fixtures.dispatch import DispatchServer

FAST = (
    "--heartbeat-misses",
    "2",
    "--supervise-every",
    "0.1",
    "--ack-timeout",
    "1.5",
    "--sla-ack",
    "1",
    "--sla-callback",
    "60",
    "--sla-on-scene",
    "1",
)


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last: {value!r})")
        time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def fast_server(request: pytest.FixtureRequest) -> Iterator[DispatchServer]:
    yield from module_server(request.param, FAST)


def offline_incidents(client: httpx.Client, household: str, state: str) -> list[dict[str, Any]]:
    items = client.get(
        "/api/v1/incidents",
        params={"household_id": household, "state": state, "category": "gateway_offline"},
    ).json()["items"]
    return list(items)


def test_lost_gateway_opens_one_incident_per_outage(fast_server: DispatchServer) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    client = fast_server.operator_client()
    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3)).status_code == 200
    started = time.monotonic()
    [incident] = wait_for(lambda: offline_incidents(client, household, "open"))
    assert time.monotonic() - started < 3  # 2 x 0.3 s plus a supervision pass or two
    assert incident["kind"] == "gateway_offline"
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is False
    time.sleep(0.5)
    assert len(offline_incidents(client, household, "all")) == 1  # one per outage, not per pass

    assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=30)).status_code == 200
    [closed] = offline_incidents(client, household, "resolved")
    assert closed["outcome"] == "gateway_returned"
    assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["online"] is True

    # A second outage is a second incident.
    gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3))
    wait_for(lambda: offline_incidents(client, household, "open"))
    assert len(offline_incidents(client, household, "all")) == 2


def test_revoked_gateway_is_not_reported_lost(fast_server: DispatchServer) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.3))
    assert fast_server.cli("gateway", "revoke", gw.gateway_id).returncode == 0
    time.sleep(1.2)
    client = fast_server.operator_client()
    assert offline_incidents(client, household, "all") == []


def test_stale_claim_returns_to_queue_and_alerts_supervisors(fast_server: DispatchServer) -> None:
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


def test_overdue_service_levels_are_flagged_and_escalated_once(fast_server: DispatchServer) -> None:
    household = unique("hh")
    gw = fast_server.enroll(household)
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.FALL)))
    incident_id = IngestReply.model_validate_json(reply.content).acks[0].incident.id  # type: ignore[union-attr]
    client = fast_server.operator_client()
    base = f"/api/v1/incidents/{incident_id}"
    assert client.get(base).json()["overdue"] == []
    wait_for(lambda: "acknowledge" in client.get(base).json()["overdue"])

    def escalated(reason: str) -> list[Any]:
        return [
            e
            for e in client.get("/api/v1/escalations").json()
            if e["entity_id"] == incident_id and e["data"]["reason"] == reason
        ]

    wait_for(lambda: escalated("overdue_acknowledge"))
    client.post(f"{base}/acknowledge")
    assert client.get(base).json()["overdue"] == []  # acknowledged late, but acknowledged
    client.post(f"{base}/dispatch", json={"responder": "neighbour with key"})
    wait_for(lambda: "on_scene" in client.get(base).json()["overdue"])
    wait_for(lambda: escalated("overdue_on_scene"))
    time.sleep(0.4)
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
