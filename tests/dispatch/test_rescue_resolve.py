"""Resolving an incident calls off its rescuers (SQLite and PostgreSQL): those still on their way
are told at once, with the resolution as the reason; one who is with the resident is not
dismissed from a desk without their handover."""

from __future__ import annotations

from typing import Any

import httpx

from tests.dispatch.conftest import new_operator
from tests.dispatch.test_rescue import add_rescuer, held_alarm, press, supervisor, timeline
from tests.fixtures.dispatch_app import DispatchApp

FALSE_ALARM = {"outcome": "false_alarm", "no_call_reason": "resident rang back: pressed by mistake"}


def send(op: httpx.Client, incident_id: str, rescuer_id: int) -> int:
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer_id})
    assert sent.status_code == 201, sent.text
    return int(sent.json()["assignments"][0]["id"])


def sent_rescuer(
    server: DispatchApp,
) -> tuple[dict[str, Any], httpx.Client, str, httpx.Client, int]:
    """A rescuer with a login sent to a fresh SOS: (rescuer, their phone, incident, the holding
    operator's session, the task's id)."""
    rescuer, phone = add_rescuer(server, supervisor(server))
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    return rescuer, phone, incident_id, op, send(op, incident_id, rescuer["id"])


def assignments(op: httpx.Client, incident_id: str) -> dict[int, dict[str, Any]]:
    return {a["id"]: a for a in op.get(f"/api/v1/incidents/{incident_id}/rescue").json()}


def test_resolving_calls_off_every_rescuer_still_on_the_way(server: DispatchApp) -> None:
    boss = supervisor(server)
    (told, told_phone), (going, going_phone) = add_rescuer(server, boss), add_rescuer(server, boss)
    assert told_phone is not None
    assert going_phone is not None
    _hh, incident_id, op = held_alarm(server)
    told_task, going_task = send(op, incident_id, told["id"]), send(op, incident_id, going["id"])
    assert press(going_phone, going_task, "en_route").status_code == 200

    resolved = op.post(f"/api/v1/incidents/{incident_id}/resolve", json=FALSE_ALARM)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["incident"]["state"] == "resolved"

    tasks = assignments(op, incident_id)
    assert [tasks[told_task]["state"], tasks[going_task]["state"]] == ["cancelled", "cancelled"]
    assert told_phone.get("/api/v1/rescuer/task").json() is None
    assert going_phone.get("/api/v1/rescuer/task").json() is None
    # Only told: free for the next task; already on the road: on their way back.
    assert told_phone.get("/api/v1/rescuer/me").json()["status"] == "available"
    assert going_phone.get("/api/v1/rescuer/me").json()["status"] == "returning"
    called_off = [a for a in timeline(op, incident_id) if a["name"] == "rescuer_cancelled"]
    assert sorted(a["detail"]["rescuer_id"] for a in called_off) == sorted(
        [told["id"], going["id"]]
    )
    for entry in called_off:
        assert entry["detail"]["reason"] == "incident resolved: false alarm"
        assert entry["detail"]["resolution"] == "false_alarm"
    # The calls-off come after the resolution on the timeline, which is why they happened.
    names = [a["name"] for a in timeline(op, incident_id)]
    assert names.index("resolved") < names.index("rescuer_cancelled")
    # The one who was free again can be sent elsewhere at once.
    _hh2, other_incident, other_op = held_alarm(server)
    send(other_op, other_incident, told["id"])


def test_a_rescuer_on_scene_hands_over_before_the_incident_is_resolved(
    server: DispatchApp,
) -> None:
    rescuer, phone, incident_id, op, task = sent_rescuer(server)
    assert press(phone, task, "on_scene").status_code == 200

    refused = op.post(f"/api/v1/incidents/{incident_id}/resolve", json=FALSE_ALARM)
    assert refused.status_code == 409, refused.text
    assert refused.json()["title"] == "rescuer on scene"
    assert rescuer["name"] in refused.json()["detail"]
    assert "on_scene_handover" in refused.json()["detail"]
    # Nothing of the refused resolution was kept.
    assert op.get(f"/api/v1/incidents/{incident_id}").json()["state"] == "on_scene"
    assert assignments(op, incident_id)[task]["state"] == "on_scene"

    blank = op.post(
        f"/api/v1/incidents/{incident_id}/resolve", json={**FALSE_ALARM, "on_scene_handover": "  "}
    )
    assert blank.status_code == 409  # a blank handover is no handover

    handover = "Wang on the phone: resident fine, daughter with her"
    resolved = op.post(
        f"/api/v1/incidents/{incident_id}/resolve",
        json={**FALSE_ALARM, "on_scene_handover": handover},
    )
    assert resolved.status_code == 200, resolved.text
    assert assignments(op, incident_id)[task]["state"] == "cancelled"
    assert phone.get("/api/v1/rescuer/me").json()["status"] == "returning"
    [called_off] = [a for a in timeline(op, incident_id) if a["name"] == "rescuer_cancelled"]
    assert called_off["detail"]["handover"] == handover
    [done] = [a for a in timeline(op, incident_id) if a["name"] == "resolved"]
    assert done["detail"]["on_scene_handover"] == handover


def test_a_rescuer_who_pressed_done_needs_no_handover(server: DispatchApp) -> None:
    _rescuer, phone, incident_id, op, task = sent_rescuer(server)
    assert press(phone, task, "on_scene").status_code == 200
    assert press(phone, task, "done", outcome="treated_on_site").status_code == 200
    resolved = op.post(f"/api/v1/incidents/{incident_id}/resolve", json=FALSE_ALARM)
    assert resolved.status_code == 200, resolved.text
    assert assignments(op, incident_id)[task]["state"] == "done"
    assert not [a for a in timeline(op, incident_id) if a["name"] == "rescuer_cancelled"]


def test_only_the_holder_resolves_and_nothing_is_called_off_otherwise(server: DispatchApp) -> None:
    _rescuer, _phone, incident_id, op, task = sent_rescuer(server)
    _name, other = new_operator(server)
    refused = other.post(f"/api/v1/incidents/{incident_id}/resolve", json=FALSE_ALARM)
    assert refused.status_code == 409
    assert refused.json()["title"] == "incident not held by you"
    assert assignments(op, incident_id)[task]["state"] == "assigned"
