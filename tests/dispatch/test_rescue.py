"""Rescuers in the field, through the API (SQLite and PostgreSQL): the roster, dispatching from
the incident, the rescuer's presses (once per key, with their own time), reassigning, cancelling,
a second team, what a rescuer account may open, and the report from the presses."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contract.wire import EventKind
from tests.dispatch.conftest import new_operator, unique
from tests.dispatch.test_incidents import send
from tests.fixtures.dispatch_app import DispatchApp


def supervisor(server: DispatchApp) -> httpx.Client:
    return new_operator(server, "supervisor")[1]


def add_rescuer(
    server: DispatchApp,
    boss: httpx.Client,
    *,
    team_id: int | None = None,
    status: str = "available",
    login: bool = True,
) -> tuple[dict[str, Any], httpx.Client | None]:
    """A rescuer on the roster and (with ``login``) their phone's session."""
    name = unique("rescuer")
    body: dict[str, Any] = {"name": name, "phone": "+86 138 0000 0000", "status": status}
    if team_id is not None:
        body["team_id"] = team_id
    if login:
        body.update(username=name, password="password-" + name)
    reply = boss.post("/api/v1/rescue/rescuers", json=body)
    assert reply.status_code == 201, reply.text
    phone = server.login(name, "password-" + name) if login else None
    return reply.json(), phone


def held_alarm(server: DispatchApp) -> tuple[str, str, httpx.Client]:
    """An SOS acknowledged by a fresh operator: (household, incident, operator's session)."""
    household = unique("hh")
    gw = server.enroll(household)
    [incident_id] = send(gw, EventKind.SOS)
    assert incident_id is not None
    _name, op = new_operator(server)
    assert op.post(f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200
    return household, incident_id, op


def press(phone: httpx.Client, assignment_id: int, action: str, **extra: Any) -> httpx.Response:
    body = {"key": uuid.uuid4().hex, "assignment_id": assignment_id, "action": action, **extra}
    return phone.post("/api/v1/rescuer/presses", json=body)


def timeline(op: httpx.Client, incident_id: str) -> list[dict[str, Any]]:
    entries = op.get(f"/api/v1/incidents/{incident_id}").json()["timeline"]
    return [e for e in entries if e["type"] == "action"]


def test_dispatch_accept_en_route_on_scene_done(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    assert phone.get("/api/v1/rescuer/task").json() is None

    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    assert sent.status_code == 201, sent.text
    [assignment] = sent.json()["assignments"]
    assert assignment["state"] == "assigned"
    incident = op.get(f"/api/v1/incidents/{incident_id}").json()
    assert incident["state"] == "responder_dispatched"

    task = phone.get("/api/v1/rescuer/task").json()
    assert task["assignment"]["id"] == assignment["id"]
    assert task["incident"]["id"] == incident_id
    assert task["navigation_url"].startswith("https://www.openstreetmap.org/search?query=")

    aid = assignment["id"]
    assert press(phone, aid, "accept").json()["assignment"]["state"] == "accepted"
    moving = press(phone, aid, "en_route", lat=31.2, lon=121.4, accuracy_m=12)
    assert moving.status_code == 200, moving.text
    assigned = datetime.fromisoformat(assignment["assigned_at"])
    pressed = assigned + (datetime.now(UTC) - assigned) / 2  # after the task, before now
    arrived = press(phone, aid, "on_scene", pressed_at=pressed.isoformat(), lat=31.21, lon=121.41)
    assert arrived.status_code == 200, arrived.text
    on_scene_at = datetime.fromisoformat(arrived.json()["at"])
    assert abs((on_scene_at - pressed).total_seconds()) < 0.01  # the phone's own press time

    incident = op.get(f"/api/v1/incidents/{incident_id}").json()
    assert incident["state"] == "on_scene"
    assert datetime.fromisoformat(incident["on_scene_at"]) == on_scene_at
    board = {r["id"]: r for r in op.get("/api/v1/rescue/rescuers").json()}
    assert board[rescuer["id"]]["status"] == "on_scene"
    assert board[rescuer["id"]]["assignment"]["incident_id"] == incident_id
    assert (board[rescuer["id"]]["lat"], board[rescuer["id"]]["lon"]) == (31.21, 121.41)

    assert press(phone, aid, "done").status_code == 422  # an outcome is required
    done = press(phone, aid, "done", outcome="treated_on_site", note="bruised, fine")
    assert done.status_code == 200, done.text
    assert done.json()["assignment"]["state"] == "done"
    assert phone.get("/api/v1/rescuer/task").json() is None
    assert phone.get("/api/v1/rescuer/me").json()["status"] == "returning"
    assert phone.post("/api/v1/rescuer/status", json={"status": "available"}).status_code == 200
    names = [a["name"] for a in timeline(op, incident_id)]
    for step in ("responder_dispatched", "rescuer_accept", "rescuer_en_route", "rescuer_on_scene"):
        assert step in names
    assert names[-1] == "rescuer_done"
    located = next(a for a in timeline(op, incident_id) if a["name"] == "rescuer_en_route")
    assert (located["detail"]["lat"], located["detail"]["lon"]) == (31.2, 121.4)


def test_a_press_sent_twice_is_applied_once(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    aid = sent.json()["assignments"][0]["id"]
    offline_at = datetime.now(UTC) - timedelta(seconds=30)
    body = {
        "key": "offline-" + uuid.uuid4().hex,
        "assignment_id": aid,
        "action": "accept",
        "pressed_at": offline_at.isoformat(),
    }
    first = phone.post("/api/v1/rescuer/presses", json=body)
    again = phone.post("/api/v1/rescuer/presses", json=body)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    assert first.json()["at"] == again.json()["at"]
    accepts = [a for a in timeline(op, incident_id) if a["name"] == "rescuer_accept"]
    assert len(accepts) == 1
    # Pressed before the task existed by the phone's clock: kept, but not before the task.
    assigned_at = datetime.fromisoformat(sent.json()["assignments"][0]["assigned_at"])
    assert datetime.fromisoformat(first.json()["at"]) == assigned_at
    assert accepts[0]["detail"]["pressed_at"] == offline_at.isoformat()


def test_reassign_second_team_and_cancel_are_on_the_timeline(server: DispatchApp) -> None:
    boss = supervisor(server)
    team = boss.post("/api/v1/rescue/teams", json={"name": unique("team")}).json()
    first, phone1 = add_rescuer(server, boss)
    second, phone2 = add_rescuer(server, boss)
    member_a, _ = add_rescuer(server, boss, team_id=team["id"], login=False)
    member_b, _ = add_rescuer(server, boss, team_id=team["id"], login=False)
    assert phone1 is not None
    assert phone2 is not None
    _hh, incident_id, op = held_alarm(server)
    aid = op.post(
        f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": first["id"]}
    ).json()["assignments"][0]["id"]

    moved = op.post(
        f"/api/v1/rescue/assignments/{aid}/reassign",
        json={"rescuer_id": second["id"], "reason": "closer"},
    )
    assert moved.status_code == 201, moved.text
    assert phone1.get("/api/v1/rescuer/task").json() is None
    assert phone2.get("/api/v1/rescuer/task").json()["assignment"]["id"] == moved.json()["id"]
    assert press(phone1, aid, "accept").status_code == 409  # the old task ended

    team_sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"team_id": team["id"]})
    assert team_sent.status_code == 201, team_sent.text
    got = {a["rescuer_id"] for a in team_sent.json()["assignments"]}
    assert got == {member_a["id"], member_b["id"]}

    cancelled = op.post(
        f"/api/v1/rescue/assignments/{moved.json()['id']}/cancel", json={"reason": "not needed"}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert phone2.get("/api/v1/rescuer/me").json()["status"] == "available"
    names = [a["name"] for a in timeline(op, incident_id)]
    assert names.count("rescuer_added") == 2
    assert "rescuer_reassigned" in names
    assert "rescuer_cancelled" in names
    states = [a["state"] for a in op.get(f"/api/v1/incidents/{incident_id}/rescue").json()]
    assert states == ["reassigned", "cancelled", "assigned", "assigned"]


def test_only_available_rescuers_and_only_the_holder_dispatch(server: DispatchApp) -> None:
    boss = supervisor(server)
    off, _ = add_rescuer(server, boss, status="off_duty", login=False)
    free, _ = add_rescuer(server, boss, login=False)
    _hh, incident_id, op = held_alarm(server)
    refused = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": off["id"]})
    assert refused.status_code == 409
    assert refused.json()["title"] == f"{off['name']} is not available"
    _other_name, other = new_operator(server)
    stranger = other.post(
        f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": free["id"]}
    )
    assert stranger.status_code == 409
    assert stranger.json()["title"] == "incident not held by you"
    both = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": 1, "team_id": 1})
    assert both.status_code == 422
    assert op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": free["id"]})
    again = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": free["id"]})
    assert again.status_code == 409  # already assigned


def test_roster_is_ordered_by_status_then_distance_from_the_home(server: DispatchApp) -> None:
    boss = supervisor(server)
    far, _ = add_rescuer(server, boss, login=False)
    near, _ = add_rescuer(server, boss, login=False)
    unknown, _ = add_rescuer(server, boss, login=False)
    busy, _ = add_rescuer(server, boss, status="off_duty", login=False)
    boss.patch(f"/api/v1/rescue/rescuers/{far['id']}", json={"lat": 31.30, "lon": 121.50})
    boss.patch(f"/api/v1/rescue/rescuers/{near['id']}", json={"lat": 31.201, "lon": 121.401})
    boss.patch(f"/api/v1/rescue/rescuers/{busy['id']}", json={"lat": 31.2, "lon": 121.4})
    household, incident_id, op = held_alarm(server)
    put = boss.put(f"/api/v1/rescue/homes/{household}/location", json={"lat": 31.2, "lon": 121.4})
    assert put.status_code == 204, put.text
    listed = op.get("/api/v1/rescue/rescuers", params={"incident_id": incident_id}).json()
    ours = {far["id"], near["id"], unknown["id"], busy["id"]}
    mine = [r["id"] for r in listed if r["id"] in ours]
    assert mine == [near["id"], far["id"], unknown["id"], busy["id"]]
    by_id = {r["id"]: r for r in listed}
    assert 0 < by_id[near["id"]]["distance_km"] < 0.5 < by_id[far["id"]]["distance_km"]
    assert by_id[unknown["id"]]["distance_km"] is None
    statuses = [r["status"] for r in listed]
    assert statuses.index("off_duty") > max(i for i, s in enumerate(statuses) if s == "available")


def test_a_rescuer_account_opens_only_the_rescuer_endpoints(server: DispatchApp) -> None:
    boss = supervisor(server)
    _rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    assert phone.get("/api/v1/auth/me").json()["role"] == "rescuer"
    for method, path in [
        ("GET", "/api/v1/incidents"),
        ("GET", "/api/v1/households"),
        ("GET", "/api/v1/rescue/rescuers"),
        ("POST", "/api/v1/rescue/rescuers"),
        ("GET", "/api/v1/stream"),
        ("GET", "/api/v1/operators/presence"),
    ]:
        reply = phone.request(method, path, json={})
        assert reply.status_code == 403, (method, path, reply.text)
    assert phone.get("/api/v1/incidents").json()["title"] == "operator role required"
    _name, op = new_operator(server)
    refused = op.get("/api/v1/rescuer/task")
    assert refused.status_code == 403
    assert refused.json()["title"] == "rescuer role required"
    assert op.post("/api/v1/rescue/rescuers", json={}).status_code == 403  # supervisors keep it
    presence = boss.get("/api/v1/operators/presence").json()
    assert all(p["username"] != _rescuer["username"] for p in presence)
    assert phone.post("/api/v1/auth/logout").status_code == 204
    assert phone.get("/api/v1/rescuer/task").status_code == 401


def test_need_help_escalates_to_supervisors(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    aid = op.post(
        f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]}
    ).json()["assignments"][0]["id"]
    assert press(phone, aid, "need_help").status_code == 409  # not accepted yet
    press(phone, aid, "on_scene")
    assert press(phone, aid, "need_help").status_code == 200
    escalations = boss.get("/api/v1/escalations").json()
    assert any(
        e["entity_id"] == incident_id and e["data"].get("reason") == "rescuer_needs_help"
        for e in escalations
    )
    handed = press(phone, aid, "handed_over")
    assert handed.status_code == 422  # to whom
    handed = press(phone, aid, "handed_over", handed_over_to="ambulance")
    assert handed.json()["assignment"]["handed_over_to"] == "ambulance"


@pytest.mark.parametrize("group", ["rescuer", "community"])
def test_report_measures_accept_travel_and_on_scene_from_presses(
    server: DispatchApp, group: str
) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    household = unique("hh")
    server.ensure_household(household, community="report-" + household)
    gw = server.enroll(household)
    [incident_id] = send(gw, EventKind.SOS)
    _name, op = new_operator(server)
    op.post(f"/api/v1/incidents/{incident_id}/acknowledge")
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    aid = sent.json()["assignments"][0]["id"]
    assigned = datetime.fromisoformat(sent.json()["assignments"][0]["assigned_at"])
    # Presses made offline, delivered later with their own (past) times.
    press(phone, aid, "accept", pressed_at=(assigned + timedelta(seconds=0)).isoformat())
    now = datetime.now(UTC)
    press(phone, aid, "on_scene", pressed_at=now.isoformat())
    press(phone, aid, "done", outcome="treated_on_site", pressed_at=now.isoformat())
    report = boss.get("/api/v1/reports/rescue", params={"group": group}).json()
    key = rescuer["name"] if group == "rescuer" else "report-" + household
    [row] = [g for g in report["groups"] if g["key"] == key]
    assert row["assignments"] == 1
    assert row["time_to_accept"]["count"] == 1
    assert row["time_to_accept"]["max_s"] == 0
    assert row["travel"]["count"] == 1
    travel = (now - assigned).total_seconds()
    assert row["travel"]["max_s"] == pytest.approx(travel, abs=0.06)  # rounded to 0.1 s
    assert row["on_scene"]["count"] == 1
    assert row["accepted_within_target"] == 1.0
    assert op.get("/api/v1/reports/rescue").status_code == 403


def test_the_rescuers_own_on_scene_replaces_an_operators_click(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    aid = sent.json()["assignments"][0]["id"]
    arrived = datetime.now(UTC)  # pressed on the phone while it had no connection
    clicked = op.post(f"/api/v1/incidents/{incident_id}/on-scene")
    assert clicked.status_code == 200, clicked.text
    assert datetime.fromisoformat(clicked.json()["incident"]["on_scene_at"]) > arrived
    late = press(phone, aid, "on_scene", pressed_at=arrived.isoformat())
    assert late.status_code == 200, late.text
    incident = op.get(f"/api/v1/incidents/{incident_id}").json()
    assert datetime.fromisoformat(incident["on_scene_at"]) == arrived
    assert incident["state"] == "on_scene"


def test_the_same_press_sent_at_once_twice_is_applied_once(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    aid = sent.json()["assignments"][0]["id"]
    body = {"key": uuid.uuid4().hex, "assignment_id": aid, "action": "en_route"}
    token = phone.cookies["dispatch_session"]
    phones = [server.http() for _ in range(4)]  # one connection each, as retries from a phone
    auth = {"Authorization": f"Bearer {token}"}

    def send(client: httpx.Client) -> httpx.Response:
        return client.post("/api/v1/rescuer/presses", json=body, headers=auth)

    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(send, phones))
    assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
    assert sorted(r.json()["replayed"] for r in replies) == [False, True, True, True]
    assert len([a for a in timeline(op, incident_id) if a["name"] == "rescuer_en_route"]) == 1


def test_bad_presses_and_roster_edits_are_refused_naming_the_field(server: DispatchApp) -> None:
    boss = supervisor(server)
    rescuer, phone = add_rescuer(server, boss)
    assert phone is not None
    _hh, incident_id, op = held_alarm(server)
    sent = op.post(f"/api/v1/incidents/{incident_id}/rescue", json={"rescuer_id": rescuer["id"]})
    aid = sent.json()["assignments"][0]["id"]
    naive = press(phone, aid, "accept", pressed_at="2026-12-06T07:00:00")  # no zone
    assert naive.status_code == 422
    assert [e["loc"] for e in naive.json()["errors"]] == ["body.pressed_at"]
    assert press(phone, aid, "en_route", lat=31.2).status_code == 422  # half a location
    assert press(phone, 2**40, "accept").status_code == 422
    half = boss.patch(f"/api/v1/rescue/rescuers/{rescuer['id']}", json={"lat": 31.2})
    assert half.status_code == 422
    assert boss.patch(f"/api/v1/rescue/rescuers/{2**40}", json={}).status_code == 422
    assert boss.patch("/api/v1/rescue/rescuers/999999", json={}).status_code == 404
    assert phone.get("/api/v1/rescuer/task").json()["assignment"]["state"] == "assigned"
