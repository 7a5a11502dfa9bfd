"""Incidents: routing of alarms, restores and troubles; the lifecycle; ownership; the queue."""

from __future__ import annotations

from typing import Any

import httpx

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import new_operator, unique
from tests.dispatch.wire import batch, event
from tests.fixtures.dispatch import EnrolledGateway
from tests.fixtures.dispatch_app import DispatchApp


def send(gw: EnrolledGateway, *kinds: EventKind, device: str = "dev-1") -> list[str | None]:
    reply = gw.send_events(
        batch(gw.gateway_id, *(event(gw.gateway_id, k, device=device) for k in kinds))
    )
    assert reply.status_code == 200, reply.text
    acks = IngestReply.model_validate_json(reply.content).acks
    return [a.incident.id if a.incident else None for a in acks]


def incidents_of(client: httpx.Client, household: str, state: str = "open") -> list[dict[str, Any]]:
    reply = client.get("/api/v1/incidents", params={"household_id": household, "state": state})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


operator = new_operator


def test_alarms_of_one_kind_join_one_incident_and_restores_attach(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    first = send(gw, EventKind.SOS)
    second = send(gw, EventKind.SOS, EventKind.SOS_RESTORE)
    smoke = send(gw, EventKind.SMOKE, device="smoke-kitchen")
    assert first[0] is not None
    assert second == [first[0], first[0]]
    assert smoke[0] not in (None, first[0])
    client = server.operator_client()
    listed = incidents_of(client, household)
    assert [i["kind"] for i in listed] == ["sos", "smoke"]  # same priority: oldest first
    sos = next(i for i in listed if i["kind"] == "sos")
    assert sos["event_count"] == 3
    assert sos["summary"]["restored"] is True
    assert sos["priority"] == 1
    assert sos["deadlines"]["acknowledge"] is not None
    detail = client.get(f"/api/v1/incidents/{sos['id']}").json()
    names = [t["name"] for t in detail["timeline"]]
    assert names.count("sos") == 2
    assert "sos_restore" in names
    assert "opened" in names
    assert detail["household"]["id"] == household


def test_queue_orders_by_priority_then_age(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    send(gw, EventKind.WATER_LEAK)  # HIGH
    send(gw, EventKind.LOW_BATTERY)  # TROUBLE
    send(gw, EventKind.FALL)  # LIFE_SAFETY, newest
    listed = incidents_of(server.operator_client(), household)
    assert [(i["kind"], i["priority"]) for i in listed] == [
        ("fall", 1),
        ("water_leak", 2),
        ("device_trouble", 3),
    ]


def test_troubles_are_summarised_in_one_incident_that_closes_when_restored(
    server: DispatchApp,
) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    a = send(gw, EventKind.LOW_BATTERY, device="pir-1")
    b = send(gw, EventKind.TAMPER, device="door-1")
    c = send(gw, EventKind.LOW_BATTERY, device="pir-2")
    assert a[0] is not None
    assert a == b == c
    client = server.operator_client()
    [trouble] = incidents_of(client, household)
    assert trouble["category"] == "trouble"
    assert trouble["summary"]["troubles"] == {
        "low_battery:pir-1": True,
        "tamper:door-1": True,
        "low_battery:pir-2": True,
    }
    assert trouble["deadlines"]["acknowledge"] is None  # no alarm service level for troubles
    send(gw, EventKind.LOW_BATTERY_RESTORE, device="pir-1")
    send(gw, EventKind.TAMPER_RESTORE, device="door-1")
    assert len(incidents_of(client, household)) == 1
    send(gw, EventKind.LOW_BATTERY_RESTORE, device="pir-2")
    assert incidents_of(client, household) == []
    [closed] = incidents_of(client, household, "resolved")
    assert closed["outcome"] == "restored"
    # A new trouble opens a new summary incident.
    assert send(gw, EventKind.TAMPER, device="door-1")[0] not in (None, a[0])


def test_full_lifecycle_records_who_and_when(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    [incident_id] = send(gw, EventKind.SOS)
    name, client = operator(server)
    base = f"/api/v1/incidents/{incident_id}"

    # Acting before claiming is refused, naming why.
    refused = client.post(f"{base}/callback", json={"outcome": "reached"})
    assert refused.status_code == 409
    assert refused.json()["title"] == "incident not held by you"

    ack = client.post(f"{base}/acknowledge")
    assert ack.status_code == 200, ack.text
    assert ack.json()["incident"]["state"] == "acknowledged"
    assert ack.json()["incident"]["operator"] == name
    assert ack.json()["took_over_from"] is None

    early = client.post(f"{base}/on-scene")
    assert early.status_code == 409
    assert "acknowledged" in early.json()["title"]

    steps = [
        ("callback", {"outcome": "no_answer", "number": "+49 30 1234"}, "callback_made"),
        ("callback", {"outcome": "reached", "note": "she fell, cannot get up"}, "callback_made"),
        ("dispatch", {"responder": "ambulance 7"}, "responder_dispatched"),
        ("on-scene", None, "on_scene"),
        ("resolve", {"outcome": "real_emergency", "note": "taken to hospital"}, "resolved"),
    ]
    for path, body, state in steps:
        reply = client.post(f"{base}/{path}", json=body) if body else client.post(f"{base}/{path}")
        assert reply.status_code == 200, reply.text
        assert reply.json()["incident"]["state"] == state
    final = client.get(base).json()
    assert final["acknowledged_by"] == name
    assert final["resolved_by"] == name
    assert final["outcome"] == "real_emergency"
    for field in ("acknowledged_at", "callback_at", "dispatched_at", "on_scene_at", "resolved_at"):
        assert final[field] is not None, field
    actions = [(t["name"], t["actor"]) for t in final["timeline"] if t["type"] == "action"]
    assert actions == [
        ("opened", "system"),
        ("acknowledged", name),
        ("callback_made", name),
        ("callback_made", name),
        ("responder_dispatched", name),
        ("on_scene", name),
        ("resolved", name),
    ]
    assert client.post(f"{base}/resolve", json={"outcome": "test"}).status_code == 409
    assert client.post(f"{base}/notes", json={"text": "family informed"}).status_code == 200

    audit = (
        server.operator_client()
        .get("/api/v1/audit", params={"entity_id": incident_id, "limit": 50})
        .json()
    )
    assert {"incident.acknowledged", "incident.resolved", "incident.note"} <= {
        e["action"] for e in audit["items"]
    }


def test_takeover_warns_and_new_alarms_go_to_the_holder(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    [incident_id] = send(gw, EventKind.FALL)
    alice, alice_client = operator(server)
    bob, bob_client = operator(server)
    base = f"/api/v1/incidents/{incident_id}"
    assert alice_client.post(f"{base}/acknowledge").json()["took_over_from"] is None

    # A new alarm of another kind from the same household goes to the holder.
    [smoke_id] = send(gw, EventKind.SMOKE)
    smoke = server.operator_client().get(f"/api/v1/incidents/{smoke_id}").json()
    assert smoke["operator"] == alice
    assert smoke["state"] == "new"

    # A plain acknowledge cannot take it: the claim is Alice's, and nothing changes.
    refused = bob_client.post(f"{base}/acknowledge")
    assert refused.status_code == 409
    assert refused.json()["title"] == f"already taken by {alice}"
    assert server.operator_client().get(base).json()["operator"] == alice
    # A take-over must say so, and why.
    unexplained = bob_client.post(f"{base}/acknowledge", json={"takeover": True})
    assert unexplained.status_code == 422
    taken = bob_client.post(
        f"{base}/acknowledge", json={"takeover": True, "reason": "Alice is on another call"}
    )
    assert taken.status_code == 200
    assert taken.json()["took_over_from"] == alice
    assert alice in taken.json()["warning"]
    assert taken.json()["incident"]["operator"] == bob
    assert taken.json()["incident"]["acknowledged_by"] == alice  # the first acknowledgement stays
    # Alice no longer holds it.
    assert alice_client.post(f"{base}/callback", json={"outcome": "reached"}).status_code == 409
    detail = bob_client.get(base).json()
    takeover = [t for t in detail["timeline"] if t["name"] == "takeover"]
    assert takeover[0]["detail"]["took_over_from"] == alice
    assert takeover[0]["detail"]["reason"] == "Alice is on another call"
    assert "assigned" in [t["name"] for t in smoke_detail(server, smoke_id)["timeline"]]
    # Release returns it to the queue.
    released = bob_client.post(f"{base}/release").json()["incident"]
    assert released["state"] == "new"
    assert released["operator"] is None


def smoke_detail(server: DispatchApp, incident_id: str) -> dict[str, Any]:
    return dict(server.operator_client().get(f"/api/v1/incidents/{incident_id}").json())


def test_action_bodies_are_validated(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    [incident_id] = send(gw, EventKind.SOS)
    client = server.operator_client()
    base = f"/api/v1/incidents/{incident_id}"
    client.post(f"{base}/acknowledge")
    bad = client.post(f"{base}/resolve", json={"outcome": "bored"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["loc"] == "body.outcome"
    assert client.post(f"{base}/dispatch", json={}).status_code == 422
    assert client.get("/api/v1/incidents/nope").status_code == 404
    assert client.get("/api/v1/incidents", params={"state": "bogus"}).status_code == 422


def test_a_local_escalation_joins_the_alarm_it_escalates(server: DispatchApp) -> None:
    household = unique("hh")
    gw = server.enroll(household)
    [smoke] = send(gw, EventKind.SMOKE, device="smoke-k")
    reply = gw.send_events(
        batch(
            gw.gateway_id,
            event(
                gw.gateway_id,
                EventKind.ESCALATION,
                device="smoke-k",
                payload={"escalates": "smoke:smoke-k", "attempt": 1},
            ),
        )
    )
    acks = IngestReply.model_validate_json(reply.content).acks
    assert acks[0].incident is not None
    assert acks[0].incident.id == smoke
    client = server.operator_client()
    # No trouble incident that could never close: the escalation is one-shot.
    assert [i["kind"] for i in incidents_of(client, household)] == ["smoke"]
    send(gw, EventKind.SMOKE_RESTORE, device="smoke-k")
    detail = client.get(f"/api/v1/incidents/{smoke}").json()
    assert [t["name"] for t in detail["timeline"] if t["type"] == "event"] == [
        "smoke",
        "escalation",
        "smoke_restore",
    ]
