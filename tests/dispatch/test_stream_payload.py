"""What a change on the live stream carries: enough for a console to draw it without a request.

An incident's changes carry the incident and the timeline entries each change added, so the
entries of all its changes rebuild the timeline ``GET /incidents/{id}`` answers. Household and
operator changes carry the whole new record."""

from __future__ import annotations

from typing import Any

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import new_operator, unique
from tests.dispatch.wire import batch, event, sse_events
from tests.fixtures.dispatch import DispatchServer


def _latest_id(client: Any) -> int:
    """The stream's position now: the id of a change made for the purpose."""
    household = unique("hh-mark")
    reply = client.post("/api/v1/households", json={"id": household, "name": "mark"})
    assert reply.status_code == 201, reply.text
    marks = sse_events(
        client,
        last_event_id=0,
        until=lambda es: any(e["entity_id"] == household for e in es),
    )
    return int(marks[-1]["_id"])


def test_incident_changes_carry_the_timeline_entries_they_added(
    live_server: DispatchServer,
) -> None:
    household = unique("hh")
    gw = live_server.enroll(household)
    client = live_server.operator_client()
    start = _latest_id(client)
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    ack = IngestReply.model_validate_json(reply.content).acks[0]
    assert ack.incident is not None
    incident_id = ack.incident.id
    acknowledged = client.post(f"/api/v1/incidents/{incident_id}/acknowledge")
    assert acknowledged.status_code == 200, acknowledged.text
    noted = client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "ringing"})
    assert noted.status_code == 200, noted.text

    def has_note(events: list[dict[str, Any]]) -> bool:
        return any(
            e["entity_id"] == incident_id
            and any(x["name"] == "note" for x in e["data"].get("timeline_added", []))
            for e in events
        )

    changes = [
        e
        for e in sse_events(client, last_event_id=start, until=has_note)
        if e["entity_id"] == incident_id and e["topic"] == "incident"
    ]
    assert changes[0]["_event"] == "incident.opened"
    opened = changes[0]["data"]["timeline_added"]
    assert [(x["type"], x["name"]) for x in opened] == [("event", "sos"), ("action", "opened")]
    assert opened[0]["device_id"] == "pendant-1"
    # The incident itself is the one the API answers, as it was after each change.
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert changes[-1]["data"]["state"] == detail["state"] == "acknowledged"
    assert changes[-1]["data"]["operator"] == detail["operator"]
    # Every change's entries, in order, are the timeline the API answers (rooms are the
    # household's, which the console has).
    pushed = [x for c in changes for x in c["data"]["timeline_added"]]
    expected = [{**x, "room": None} for x in detail["timeline"]]
    assert pushed == expected


def test_household_and_operator_changes_carry_the_record(live_server: DispatchServer) -> None:
    admin = live_server.operator_client()
    household = unique("hh")
    created = admin.post("/api/v1/households", json={"id": household, "name": "Wang Fang"})
    assert created.status_code == 201, created.text
    start = _latest_id(admin)
    updated = admin.put(
        f"/api/v1/households/{household}", json={"name": "Wang Fang", "address": "Lake Road 3"}
    )
    assert updated.status_code == 200, updated.text
    name, _ = new_operator(live_server)
    renamed = admin.patch(f"/api/v1/operators/{name}", json={"display_name": "Zhou Jie"})
    assert renamed.status_code == 200, renamed.text

    events = sse_events(
        admin,
        last_event_id=start,
        until=lambda es: any(e["_event"] == "operator.updated" for e in es),
    )
    change = next(e for e in events if e["_event"] == "household.updated")
    assert change["data"] == updated.json()
    assert change["data"]["address"] == "Lake Road 3"
    change = next(e for e in events if e["_event"] == "operator.updated")
    assert change["data"] == renamed.json()
    assert change["data"]["display_name"] == "Zhou Jie"

    # Operators are the admins' and supervisors' business: a plain operator's stream has none.
    _, plain = new_operator(live_server)
    marker = unique("hh-after")
    assert admin.post("/api/v1/households", json={"id": marker, "name": "x"}).status_code == 201
    seen = sse_events(
        plain,
        last_event_id=start,
        until=lambda es: any(e["entity_id"] == marker for e in es),
    )
    assert not [e for e in seen if e["topic"] == "operator"]
