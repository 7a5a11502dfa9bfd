"""Household administration over the API, on SQLite and PostgreSQL: full cards, search, archive,
away / in hospital in the heartbeat reply, operators' notes, history, gateway health, roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.wire import DeviceHealth, EventKind, HeartbeatReply, parse_message
from dispatch.households import search_text
from tests.dispatch.conftest import app_server, new_operator, unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch_app import DispatchApp


def card(household_id: str, *, phone_tail: str) -> dict[str, Any]:
    return {
        "id": household_id,
        "name": "Zhang Household",
        "address": "Riverside Road 12, flat 3",
        "community": "Riverside",
        "phone": "+86 21 5555 0100",
        "key_safe": "by the door, code 4711",
        "access_notes": "ring twice",
        "residents": [
            {
                "name": "张伟",
                "birth_date": "1941-03-02",
                "language": "zh (Shanghainese)",
                "medical_notes": "atrial fibrillation",
                "medications": "warfarin 5 mg",
                "allergies": "penicillin",
                "doctor": "Dr. Chen, Ruijin Hospital +86 21 6437 0045",
                "advance_care": "DNR signed 2025-04",
            },
            {"name": "Li Na", "birth_year": 1944, "phones": [f"+86 139 0000 {phone_tail}"]},
        ],
        "emergency_contacts": [
            {"name": "Daughter Mei", "relation": "daughter", "phones": ["+86 138 1111 2222"]},
            {"name": "Neighbour Wu", "relation": "neighbour", "has_key": True, "priority": 2},
        ],
        "devices": [
            {"id": f"pendant-{household_id}", "kind": "sos", "room": "bedroom", "label": "pendant"},
            {"id": "smoke-kitchen", "kind": "smoke", "room": "kitchen"},
        ],
    }


@pytest.fixture(scope="module")
def roles(server: DispatchApp) -> dict[str, httpx.Client]:
    return {role: new_operator(server, role)[1] for role in ("operator", "supervisor", "admin")}


@pytest.fixture
def household(roles: dict[str, httpx.Client]) -> dict[str, Any]:
    hid = unique("hh")
    tail = hid[-4:].translate(str.maketrans("abcdef", "123456"))
    reply = roles["supervisor"].post("/api/v1/households", json=card(hid, phone_tail=tail))
    assert reply.status_code == 201, reply.text
    return reply.json() | {"_tail": tail}


def test_a_full_card_round_trips(roles: dict[str, httpx.Client], household: dict[str, Any]) -> None:
    got = roles["operator"].get(f"/api/v1/households/{household['id']}").json()
    zhang = got["residents"][0]
    assert zhang["birth_year"] == 1941  # from the date of birth
    assert zhang["medications"] == "warfarin 5 mg"
    assert zhang["allergies"] == "penicillin"
    assert zhang["advance_care"] == "DNR signed 2025-04"
    assert zhang["doctor"].startswith("Dr. Chen")
    assert got["emergency_contacts"][1]["has_key"] is True
    assert got["archived_at"] is None
    assert got["away_until"] is None


def test_a_birth_year_that_contradicts_the_date_is_refused(
    roles: dict[str, httpx.Client],
) -> None:
    body = card(unique("hh"), phone_tail="0000")
    body["residents"][0]["birth_year"] = 1950
    reply = roles["supervisor"].post("/api/v1/households", json=body)
    assert reply.status_code == 422
    assert "birth_year" in reply.text


@pytest.mark.parametrize(
    "query",
    [
        "张伟",  # a resident, in Chinese
        "daughter mei",  # a contact, any case, words in any order
        "mei daughter",
        "riverside road",  # the address
        "smoke-kitchen",  # a device id
    ],
)
def test_search_finds_people_phones_addresses_devices(
    roles: dict[str, httpx.Client], household: dict[str, Any], query: str
) -> None:
    found = roles["operator"].get("/api/v1/households", params={"q": query, "limit": 500})
    assert household["id"] in [h["id"] for h in found.json()["items"]]


def test_search_finds_a_phone_however_it_is_typed(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    tail = household["_tail"]
    for typed in (f"139 0000 {tail}", f"1390000{tail}", f"+86-139-0000-{tail}"):
        found = roles["operator"].get("/api/v1/households", params={"q": typed}).json()
        assert [h["id"] for h in found["items"]] == [household["id"]], typed


def test_search_misses_what_is_not_there(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    found = roles["operator"].get("/api/v1/households", params={"q": "riverside nobody-here"})
    assert household["id"] not in [h["id"] for h in found.json()["items"]]
    # A LIKE wildcard is a character like any other.
    found = roles["operator"].get("/api/v1/households", params={"q": "%"})
    assert found.json()["items"] == []


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.text(min_size=1, max_size=30), max_size=4),
    phones=st.lists(st.from_regex(r"\+?[0-9 ()\-]{3,20}", fullmatch=True), max_size=4),
)
def test_search_text_holds_every_name_and_phone_digits(names: list[str], phones: list[str]) -> None:
    values = {
        "name": "x",
        "residents": [{"name": n} for n in names],
        "emergency_contacts": [{"name": "c", "phones": phones}],
        "devices": [],
    }
    text = search_text(values)
    for n in names:
        assert n.lower() in text
    for p in phones:
        digits = "".join(c for c in p if c.isdigit())
        assert digits in text


def test_archive_hides_and_restore_brings_back(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    sup = roles["supervisor"]
    assert roles["operator"].post(f"/api/v1/households/{hid}/archive").status_code == 403
    reply = sup.post(f"/api/v1/households/{hid}/archive")
    assert reply.status_code == 200, reply.text
    assert reply.json()["archived_at"] is not None
    active = sup.get("/api/v1/households", params={"q": hid}).json()["items"]
    assert active == []
    archived = sup.get("/api/v1/households", params={"q": hid, "archived": True}).json()
    assert [h["id"] for h in archived["items"]] == [hid]
    assert sup.post(f"/api/v1/households/{hid}/archive").status_code == 409
    assert sup.post(f"/api/v1/households/{hid}/restore").status_code == 200
    assert [h["id"] for h in sup.get("/api/v1/households", params={"q": hid}).json()["items"]]


def test_archive_is_refused_with_an_enrolled_gateway_or_an_open_incident(
    server: DispatchApp, roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    gw = server.enroll(hid)
    reply = roles["supervisor"].post(f"/api/v1/households/{hid}/archive")
    assert reply.status_code == 409
    assert gw.gateway_id in reply.json()["detail"]
    assert gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS))).is_success
    admin = roles["admin"]
    assert admin.post(f"/api/v1/gateways/{gw.gateway_id}/revoke").status_code == 200
    reply = roles["supervisor"].post(f"/api/v1/households/{hid}/archive")
    assert reply.status_code == 409
    assert "open incident" in reply.json()["detail"]


def _reply(response: httpx.Response) -> HeartbeatReply:
    assert response.status_code == 200, response.text
    return parse_message(HeartbeatReply, response.content)


def test_away_travels_with_the_heartbeat_reply_until_cleared(
    server: DispatchApp, roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    gw = server.enroll(hid)
    first = gw.heartbeat(heartbeat(gw.gateway_id))
    assert "away_until" not in first.json()  # left out: older gateways refuse unknown fields
    until = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    body = {"until": until.isoformat(), "reason": "hospital", "note": "Ruijin, ward 7"}
    assert roles["operator"].put(f"/api/v1/households/{hid}/away", json=body).status_code == 403
    reply = roles["supervisor"].put(f"/api/v1/households/{hid}/away", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["away_reason"] == "hospital"
    assert _reply(gw.heartbeat(heartbeat(gw.gateway_id))).away_until == until
    assert roles["supervisor"].delete(f"/api/v1/households/{hid}/away").status_code == 200
    assert _reply(gw.heartbeat(heartbeat(gw.gateway_id))).away_until is None
    audit = roles["supervisor"].get("/api/v1/audit", params={"entity_id": hid, "limit": 50})
    actions = {a["action"] for a in audit.json()["items"]}
    assert {"household.away", "household.back"} <= actions


@pytest.mark.parametrize(
    "until",
    [timedelta(hours=-1), timedelta(days=400)],
    ids=["past", "more-than-a-year"],
)
def test_an_away_end_out_of_range_is_refused(
    roles: dict[str, httpx.Client], household: dict[str, Any], until: timedelta
) -> None:
    body = {"until": (datetime.now(UTC) + until).isoformat(), "reason": "away"}
    reply = roles["supervisor"].put(f"/api/v1/households/{household['id']}/away", json=body)
    assert reply.status_code == 422
    assert "until" in reply.json()["detail"]


def test_an_away_end_without_a_zone_is_refused(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    body = {"until": "2030-01-01T10:00:00", "reason": "away"}
    reply = roles["supervisor"].put(f"/api/v1/households/{household['id']}/away", json=body)
    assert reply.status_code == 422


def test_operators_add_notes_and_everyone_reads_them(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    reply = roles["operator"].post(
        f"/api/v1/households/{hid}/notes", json={"text": "Son visits on Sundays"}
    )
    assert reply.status_code == 201, reply.text
    roles["supervisor"].post(f"/api/v1/households/{hid}/notes", json={"text": "second"})
    notes = roles["operator"].get(f"/api/v1/households/{hid}/notes").json()
    assert [n["text"] for n in notes] == ["second", "Son visits on Sundays"]
    assert (
        roles["operator"].post(f"/api/v1/households/{hid}/notes", json={"text": ""}).status_code
        == 422
    )
    assert roles["operator"].get("/api/v1/households/nope-404/notes").status_code == 404


def test_operators_cannot_edit_the_card(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    body = card(hid, phone_tail="0000")
    assert roles["operator"].put(f"/api/v1/households/{hid}", json=body).status_code == 403
    assert roles["supervisor"].put(f"/api/v1/households/{hid}", json=body).status_code == 200


def test_history_lists_the_homes_incidents_newest_first(
    server: DispatchApp, roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    gw = server.enroll(hid)
    gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SMOKE)))
    gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    history = roles["operator"].get(f"/api/v1/households/{hid}/history").json()
    assert [i["kind"] for i in history] == ["sos", "smoke"]
    assert {i["household_id"] for i in history} == {hid}


def test_gateways_show_household_names_and_device_health(
    server: DispatchApp, roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    gw = server.enroll(household["id"])
    devices = [
        DeviceHealth(id="pendant-1", battery=12.0, last_seen=datetime.now(UTC), online=True),
        DeviceHealth(id="smoke-kitchen", battery=None, online=False),
    ]
    assert gw.heartbeat(heartbeat(gw.gateway_id, devices=devices)).status_code == 200
    got = roles["operator"].get(f"/api/v1/gateways/{gw.gateway_id}").json()
    assert got["household_name"] == "Zhang Household"
    by_id = {d["id"]: d for d in got["devices"]}
    assert by_id["pendant-1"]["battery"] == 12.0
    assert by_id["smoke-kitchen"]["online"] is False
    listed = roles["operator"].get("/api/v1/gateways", params={"household_id": household["id"]})
    assert [g["household_name"] for g in listed.json()] == ["Zhang Household"]


def test_operator_administration_is_audited(
    roles: dict[str, httpx.Client], server: DispatchApp
) -> None:
    admin = roles["admin"]
    name = unique("op")
    made = admin.post(
        "/api/v1/operators",
        json={"username": name, "password": "first-password", "display_name": "Zhao Lei"},
    )
    assert made.status_code == 201, made.text
    assert roles["supervisor"].get("/api/v1/operators").status_code == 403
    patch = admin.patch(
        f"/api/v1/operators/{name}",
        json={"role": "supervisor", "display_name": "赵磊", "password": "second-password"},
    )
    assert patch.status_code == 200
    assert patch.json()["role"] == "supervisor"
    server.login(name, "second-password")  # the reset password works
    assert admin.patch(f"/api/v1/operators/{name}", json={"disabled": True}).status_code == 200
    refused = server.http().post(
        "/api/v1/auth/login", json={"username": name, "password": "second-password"}
    )
    assert refused.status_code == 401
    audit = admin.get("/api/v1/audit", params={"entity_id": name, "limit": 50}).json()["items"]
    details = [(a["action"], a["detail"].get("changed")) for a in audit]
    assert ("operator.created", None) in details
    assert ("operator.updated", ["display_name", "password", "role"]) in details
    assert ("operator.updated", ["disabled"]) in details


def test_the_last_admin_cannot_lock_everyone_out() -> None:
    for app in app_server("sqlite"):
        app.add_operator("root", "root-password-1", role="admin")
        root = app.login("root", "root-password-1")
        for change in ({"disabled": True}, {"role": "operator"}):
            reply = root.patch("/api/v1/operators/root", json=change)
            assert reply.status_code == 409, reply.text
            assert "only enabled admin" in reply.json()["detail"]
        made = root.post(
            "/api/v1/operators",
            json={"username": "second", "password": "second-password", "role": "admin"},
        )
        assert made.status_code == 201
        assert root.patch("/api/v1/operators/root", json={"role": "supervisor"}).status_code == 200


def test_an_edit_made_from_a_stale_card_is_refused_not_overwritten(
    roles: dict[str, httpx.Client], household: dict[str, Any]
) -> None:
    hid = household["id"]
    opened = roles["supervisor"].get(f"/api/v1/households/{hid}").json()
    body = card(hid, phone_tail="0000")
    first = roles["admin"].put(
        f"/api/v1/households/{hid}",
        json=body | {"address": "first", "expected_updated_at": opened["updated_at"]},
    )
    assert first.status_code == 200, first.text
    stale = roles["supervisor"].put(
        f"/api/v1/households/{hid}",
        json=body | {"address": "second", "expected_updated_at": opened["updated_at"]},
    )
    assert stale.status_code == 409
    assert "reload" in stale.json()["detail"]
    assert roles["operator"].get(f"/api/v1/households/{hid}").json()["address"] == "first"
    again = roles["supervisor"].put(
        f"/api/v1/households/{hid}",
        json=body | {"address": "second", "expected_updated_at": first.json()["updated_at"]},
    )
    assert again.status_code == 200
