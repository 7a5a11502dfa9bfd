"""The live stream: changes arrive as server-sent events, and a reconnect resumes exactly.

Reading a stream needs a real server (ASGITransport returns a response only once it is complete);
the requests refused before the stream starts run in-process."""

from __future__ import annotations

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event, sse_events
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.dispatch_app import DispatchApp


def test_stream_needs_a_session(server: DispatchApp) -> None:
    reply = server.http().get("/api/v1/stream")
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"


def test_new_incident_appears_and_reconnect_resumes_without_gaps_or_repeats(
    live_server: DispatchServer,
) -> None:
    server = live_server
    household = unique("hh")
    gw = server.enroll(household)
    client = server.operator_client()

    def opened(kind: str):  # type: ignore[no-untyped-def]
        return lambda events: any(
            e["_event"] == "incident.opened"
            and e["data"]["household_id"] == household
            and e["data"]["kind"] == kind
            for e in events
        )

    import threading

    # Connect first, then raise the alarm: it must arrive live.
    timer = threading.Timer(
        0.5, lambda: gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    )
    timer.start()
    live = sse_events(client, until=opened("sos"))
    timer.join()
    seen_to = live[-1]["_id"]

    # While disconnected: two more incidents and an operator action.
    reply = gw.send_events(
        batch(
            gw.gateway_id,
            event(gw.gateway_id, EventKind.SMOKE),
            event(gw.gateway_id, EventKind.GAS),
        )
    )
    sos_id = next(e["entity_id"] for e in live if e["_event"] == "incident.opened")
    assert client.post(f"/api/v1/incidents/{sos_id}/acknowledge").status_code == 200
    assert all(a.incident for a in IngestReply.model_validate_json(reply.content).acks)

    resumed = sse_events(
        client,
        last_event_id=seen_to,
        until=lambda events: (
            opened("gas")(events)
            and any(e["_event"] == "incident.updated" and e["entity_id"] == sos_id for e in events)
        ),
    )
    ids = [e["_id"] for e in resumed]
    assert ids == sorted(set(ids)), "ids must increase and never repeat"
    assert min(ids) > seen_to
    kinds = [
        e["data"]["kind"]
        for e in resumed
        if e["_event"] == "incident.opened" and e["data"]["household_id"] == household
    ]
    assert kinds == ["smoke", "gas"]


def test_bad_last_event_id_is_a_problem(server: DispatchApp) -> None:
    client = server.operator_client()
    reply = client.get("/api/v1/stream", headers={"Last-Event-ID": "yesterday"})
    assert reply.status_code == 400
    assert reply.json()["title"] == "bad Last-Event-ID"
