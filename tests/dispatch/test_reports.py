"""Reports: response times against targets, alarm counts, false-alarm rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event
from tests.fixtures.dispatch_app import DispatchApp


def test_response_times_by_community(server: DispatchApp) -> None:
    community = unique("street")
    client = server.operator_client()
    household = unique("hh")
    assert (
        client.post(
            "/api/v1/households",
            json={"id": household, "name": "Frau Weber", "community": community},
        ).status_code
        == 201
    )
    gw = server.enroll(household)
    ids = []
    for kind in (EventKind.SOS, EventKind.SMOKE, EventKind.WATER_LEAK):
        reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, kind)))
        ids.append(IngestReply.model_validate_json(reply.content).acks[0].incident.id)  # type: ignore[union-attr]
    sos, smoke, _leak = ids
    for incident_id, outcome in ((sos, "real_emergency"), (smoke, "false_alarm")):
        base = f"/api/v1/incidents/{incident_id}"
        assert client.post(f"{base}/acknowledge").status_code == 200
        assert client.post(f"{base}/callback", json={"outcome": "reached"}).status_code == 200
        if outcome == "real_emergency":
            client.post(f"{base}/dispatch", json={"responder": "ambulance"})
            client.post(f"{base}/on-scene")
        assert client.post(f"{base}/resolve", json={"outcome": outcome}).status_code == 200

    now = datetime.now(UTC)
    params = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(minutes=1)).isoformat(),
        "group": "community",
    }
    report = client.get("/api/v1/reports/response-times", params=params)
    assert report.status_code == 200, report.text
    [group] = [g for g in report.json()["groups"] if g["group"] == community]
    assert group["incidents"] == 3
    assert group["alarms_by_kind"] == {"sos": 1, "smoke": 1, "water_leak": 1}
    assert group["to_acknowledge"]["count"] == 2
    assert group["to_acknowledge"]["within_target"] == 1.0  # acknowledged within 60 s
    assert group["to_callback"]["count"] == 2
    assert group["to_arrive"]["count"] == 1
    assert group["resolved"] == 2
    assert group["false_alarms"] == 1
    assert group["false_alarm_rate"] == 0.5
    assert report.json()["total"]["incidents"] >= 3

    by_day = client.get("/api/v1/reports/response-times", params={**params, "group": "day"}).json()
    assert [g["group"] for g in by_day["groups"]] == sorted({g["group"] for g in by_day["groups"]})
    assert now.date().isoformat() in [g["group"] for g in by_day["groups"]]

    backwards = client.get(
        "/api/v1/reports/response-times", params={"from": params["to"], "to": params["from"]}
    )
    assert backwards.status_code == 422
