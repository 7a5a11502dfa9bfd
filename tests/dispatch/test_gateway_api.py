"""The gateway side of the API, on SQLite and on PostgreSQL: in-process, and a real dispatchd
where a crash or a restart is the point."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from contract.wire import (
    MAX_BATCH_EVENTS,
    AckStatus,
    EventKind,
    HeartbeatReply,
    IncidentRef,
    IngestReply,
)
from dispatch.ingest import Ingested
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.dispatch_app import DispatchApp


def test_enroll_then_events_are_stored_once_with_their_incident(
    server: DispatchApp,
) -> None:
    household = unique("hh-1")
    gw = server.enroll(household)
    assert gw.household_id == household
    sos = event(gw.gateway_id, EventKind.SOS)
    motion = event(gw.gateway_id, EventKind.MOTION, device="pir-1")
    first = gw.send_events(batch(gw.gateway_id, sos, motion))
    assert first.status_code == 200, first.text
    reply = IngestReply.model_validate_json(first.content)
    acks = {a.id: a for a in reply.acks}
    assert [a.status for a in reply.acks] == ["stored", "stored"]
    assert acks[sos.id].incident is not None
    assert acks[sos.id].incident.state == "new"
    assert acks[sos.id].incident.acknowledged is False
    assert acks[motion.id].incident is None  # telemetry opens nothing

    again = IngestReply.model_validate_json(
        gw.send_events(batch(gw.gateway_id, sos, motion)).content
    )
    again_acks = {a.id: a for a in again.acks}
    assert again_acks[sos.id].status == "duplicate"
    assert again_acks[sos.id].incident is not None
    assert again_acks[sos.id].incident.id == acks[sos.id].incident.id
    assert again_acks[motion.id].status == "duplicate"

    client = server.operator_client()
    queue = client.get("/api/v1/incidents", params={"household_id": household}).json()
    assert queue["total"] == 1
    assert queue["items"][0]["event_count"] == 1  # the resend did not count twice


def test_a_mixed_batch_with_resends_stores_each_event_once_as_sent(server: DispatchApp) -> None:
    """Alarms, troubles, telemetry and test events in one batch, then a batch resending some of
    them among new ones: each event is stored once, exactly as sent, on its own incident."""
    household = unique("hh-mix")
    gw = server.enroll(household)
    gid = gw.gateway_id
    sos = event(gid, EventKind.SOS, payload={"room": "Küche", "button": 1, "note": None})
    trouble = event(gid, EventKind.LOW_BATTERY, device="pir-1", payload={"level": 7.5})
    walk = event(gid, EventKind.SOS, device="pendant-2", test=True)
    readings = [
        event(gid, EventKind.CONTACT, device="door-1", payload={"contact_open": n % 2 == 0})
        for n in range(6)
    ]
    first = IngestReply.model_validate_json(
        gw.send_events(batch(gid, sos, trouble, walk, *readings)).content
    )
    assert {a.id: a.status for a in first.acks} == dict.fromkeys(
        (e.id for e in (sos, trouble, walk, *readings)), "stored"
    )
    incident_of = {a.id: a.incident.id if a.incident else None for a in first.acks}
    assert incident_of[sos.id] is not None
    assert incident_of[trouble.id] not in (None, incident_of[sos.id])
    assert incident_of[walk.id] is None
    assert {incident_of[r.id] for r in readings} == {None}

    again_sos = event(gid, EventKind.SOS)
    restores = [
        event(gid, EventKind.SOS_RESTORE),
        event(gid, EventKind.LOW_BATTERY_RESTORE, device="pir-1"),
    ]
    more = [event(gid, EventKind.MOTION, device="pir-1") for _ in range(3)]
    resent = [sos, trouble, walk, readings[0], readings[5]]
    second = IngestReply.model_validate_json(
        gw.send_events(batch(gid, *resent, again_sos, *restores, *more)).content
    )
    acks = {a.id: a for a in second.acks}
    assert len(second.acks) == 11
    for old in resent:
        assert acks[old.id].status == "duplicate"
        assert (acks[old.id].incident.id if acks[old.id].incident else None) == incident_of[old.id]
    for new in (again_sos, *restores, *more):
        assert acks[new.id].status == "stored"
    assert acks[again_sos.id].incident is not None
    assert acks[again_sos.id].incident.id == incident_of[sos.id]
    assert acks[restores[0].id].incident is not None
    assert acks[restores[0].id].incident.id == incident_of[sos.id]
    assert acks[restores[1].id].incident is not None
    assert acks[restores[1].id].incident.id == incident_of[trouble.id]
    assert {acks[m.id].incident for m in more} == {None}

    client = server.operator_client()
    sent = [sos, trouble, walk, *readings, again_sos, *restores, *more]
    stored = client.get("/api/v1/events", params={"household_id": household}).json()
    assert stored["total"] == len(sent)
    by_id = {e["id"]: e for e in stored["items"]}
    assert sorted(by_id) == sorted(e.id for e in sent)
    for ev in sent:
        row = by_id[ev.id]
        assert row["gateway_id"] == gid
        assert row["seq"] == ev.seq
        assert row["kind"] == ev.kind.value
        assert row["priority"] == int(ev.kind.priority)
        assert row["device_id"] == ev.device_id
        assert datetime.fromisoformat(row["at"]) == ev.at
        assert row["test"] is ev.test
        assert row["payload"] == ev.payload
        incident = acks[ev.id].incident if ev.id in acks else None
        assert row["incident_id"] == (incident.id if incident else incident_of.get(ev.id))
    incidents = client.get(
        "/api/v1/incidents", params={"household_id": household, "state": "all"}
    ).json()["items"]
    by_kind = {i["kind"]: i for i in incidents}
    assert sorted(by_kind) == ["device_trouble", "sos"]
    assert by_kind["sos"]["event_count"] == 3  # the resend did not count again
    assert by_kind["sos"]["summary"]["restored"] is True
    assert by_kind["device_trouble"]["event_count"] == 2
    assert by_kind["device_trouble"]["state"] == "resolved"  # its one trouble restored
    timeline = client.get(f"/api/v1/incidents/{incident_of[sos.id]}").json()["timeline"]
    assert sorted(t["event_id"] for t in timeline if t["type"] == "event") == sorted(
        (sos.id, again_sos.id, restores[0].id)
    )


def test_the_events_reply_is_the_json_of_its_models() -> None:
    """The events route serialises acknowledgements without building their models: the bytes
    must be the models' own JSON, whatever the incident carries."""
    ref = IncidentRef(
        id="01INCIDENT", state="acknowledged", operator='Zoë "Z" Ng', acknowledged=True
    )
    ingested = Ingested(
        [
            ("01A", AckStatus.STORED, None),
            ("01B", AckStatus.DUPLICATE, ref),
            ("01C", AckStatus.STORED, ref.model_copy(update={"acknowledged": False})),
        ]
    )
    assert ingested.reply_json() == ingested.reply().model_dump_json().encode()
    assert IngestReply.model_validate_json(ingested.reply_json()) == ingested.reply()


def test_heartbeat_updates_gateway_and_reports_acknowledged_alarms(
    server: DispatchApp,
) -> None:
    gw = server.enroll(unique("hh-2"))
    sos = event(gw.gateway_id, EventKind.SOS)
    ack = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, sos)).content)
    incident_id = ack.acks[0].incident.id  # type: ignore[union-attr]

    reply = gw.heartbeat(heartbeat(gw.gateway_id))
    assert reply.status_code == 200, reply.text
    assert HeartbeatReply.model_validate_json(reply.content).acknowledged_events == []

    client = server.operator_client()
    assert client.post(f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200
    beat = HeartbeatReply.model_validate_json(gw.heartbeat(heartbeat(gw.gateway_id)).content)
    assert beat.acknowledged_events == [sos.id]
    resend = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, sos)).content)
    assert resend.acks[0].incident is not None
    assert resend.acks[0].incident.acknowledged is True
    assert resend.acks[0].incident.operator == "admin"

    info = client.get(f"/api/v1/gateways/{gw.gateway_id}").json()
    assert info["online"] is True
    assert info["version"] == "1.2.3"
    assert info["buffer_depth"] == {"alarm": 0, "trouble": 1, "telemetry": 7}
    assert info["last_heartbeat_at"] is not None


def test_a_gateway_cannot_write_as_another(server: DispatchApp) -> None:
    mine = server.enroll(unique("hh-a"))
    other = server.enroll(unique("hh-b"))
    forged = batch(other.gateway_id, event(other.gateway_id, EventKind.SOS))
    reply = mine.send_events(forged)
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["title"] == "gateway id mismatch"
    # Signing as the other gateway with my secret fails the signature.
    reply = mine.send_events(forged, as_gateway=other.gateway_id)
    assert reply.status_code == 401
    assert reply.json()["title"] == "bad signature"
    assert mine.heartbeat(heartbeat(other.gateway_id)).status_code == 403


def test_revoked_gateway_is_refused(server: DispatchApp) -> None:
    household = unique("hh-r")
    gw = server.enroll(household)
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    result = server.cli("gateway", "revoke", gw.gateway_id)
    assert result.returncode == 0, result.stderr
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    assert reply.status_code == 403
    assert reply.json()["title"] == "gateway revoked"
    assert "revoked" in reply.json()["detail"]
    again = server.cli("gateway", "revoke", gw.gateway_id)
    assert again.returncode == 6
    # A new code re-enrolls it with a fresh secret once a supervisor allowed it; the old secret
    # stays dead.
    allowed = server.cli("gateway", "allow-reenroll", gw.gateway_id)
    assert allowed.returncode == 0, allowed.stderr
    renewed = server.enroll(household, gw.gateway_id)
    assert renewed.secret != gw.secret
    assert renewed.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 401


def test_replayed_request_is_refused(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh-replay"))
    body = batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)).model_dump_json().encode()
    headers = gw.signed_headers("/api/v1/gateway/events", body)
    url = "/api/v1/gateway/events"
    anonymous = server.http()
    assert anonymous.post(url, content=body, headers=headers).status_code == 200
    replay = anonymous.post(url, content=body, headers=headers)
    assert replay.status_code == 409
    assert replay.json()["title"] == "replayed request"


def test_stale_timestamp_names_the_clock_skew(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh-skew"))
    reply = gw.heartbeat(heartbeat(gw.gateway_id), now=time.time() - 3600)
    assert reply.status_code == 401
    problem = reply.json()
    assert problem["title"] == "stale request timestamp"
    assert "clock" in problem["detail"]
    assert "-3600" in problem["detail"] or "-3599" in problem["detail"]


def test_unsigned_and_unknown_gateways_are_refused(server: DispatchApp) -> None:
    reply = server.http().post("/api/v1/gateway/heartbeat", json={"gateway_id": "x"})
    assert reply.status_code == 401
    assert "X-Gateway-Id" in reply.json()["detail"]
    ghost = server.gateway("ghost", "hh", "c2VjcmV0c2VjcmV0c2VjcmV0")
    reply = ghost.heartbeat(heartbeat("ghost"))
    assert reply.status_code == 401
    assert reply.json()["title"] == "unknown gateway"


def test_enrollment_codes_are_one_time_and_expire(server: DispatchApp) -> None:
    enroll = "/api/v1/gateway/enroll"
    anonymous = server.http()
    code = server.enroll_code(unique("hh-e"))
    first = unique("gw")
    assert anonymous.post(enroll, json={"code": code, "gateway_id": first}).status_code == 200
    used = anonymous.post(enroll, json={"code": code, "gateway_id": unique("gw")})
    assert used.status_code == 401
    assert used.json()["title"] == "enrollment code already used"
    bogus = anonymous.post(enroll, json={"code": "AAAA-BBBB-CCCC", "gateway_id": unique("gw")})
    assert bogus.status_code == 401
    # Another household's code cannot take over an enrolled gateway id.
    foreign = server.enroll_code(unique("hh-other"))
    taken = anonymous.post(enroll, json={"code": foreign, "gateway_id": first})
    assert taken.status_code == 409
    assert taken.json()["title"] == "gateway enrolled to another household"


def test_expired_enrollment_code_is_refused(server: DispatchApp) -> None:
    # The shortest TTL allowed is 60 s: age the code in the database instead of waiting.
    code = server.enroll_code(unique("hh-x"), ttl=60)
    _expire_codes(server.db_url)
    reply = server.http().post(
        "/api/v1/gateway/enroll", json={"code": code, "gateway_id": unique("gw")}
    )
    assert reply.status_code == 401
    assert reply.json()["title"] == "enrollment code expired"


def _expire_codes(db_url: str) -> None:
    import sqlalchemy as sa

    url = db_url.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                sa.text("UPDATE enroll_codes SET expires_at = '2000-01-01 00:00:00.000000'")
            )
        else:
            conn.execute(sa.text("UPDATE enroll_codes SET expires_at = now() - interval '1 hour'"))
    engine.dispose()


def test_bad_bodies_are_4xx_problems(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh-bad"))
    too_many = [event(gw.gateway_id, EventKind.MOTION) for _ in range(MAX_BATCH_EVENTS + 1)]
    body = json.dumps(
        {
            "v": 1,
            "gateway_id": gw.gateway_id,
            "events": [e.model_dump(mode="json") for e in too_many],
        }
    ).encode()
    reply = gw.send_events(body)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"

    wrong_version = gw.send_events({"v": 2, "gateway_id": gw.gateway_id, "events": []})
    assert wrong_version.status_code == 422
    assert wrong_version.json()["title"] == "unsupported contract version"

    assert gw.send_events(b"not json").status_code == 422
    assert gw.send_events(b"[1, 2]").status_code == 422

    # Values the contract allows but a database column cannot hold are refused by name.
    big_seq = event(gw.gateway_id, EventKind.SOS).model_copy(update={"seq": 2**64})
    reply = gw.send_events(batch(gw.gateway_id, big_seq))
    assert reply.status_code == 422
    assert "seq" in reply.json()["detail"]
    reply = gw.heartbeat(heartbeat(gw.gateway_id).model_copy(update={"version": "1\x00"}))
    assert reply.status_code == 422
    assert "NUL" in reply.json()["detail"]
    client = server.operator_client()
    assert client.get("/api/v1/incidents/a%00b").status_code == 400
    assert client.post("/api/v1/households", json={"name": "a\x00b"}).status_code == 422

    huge = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    reply = gw.send_events(huge)
    assert reply.status_code == 413
    assert reply.json()["title"] == "request body too large"


@pytest.mark.parametrize("kind", [EventKind.TEST, EventKind.SOS])
def test_test_events_are_stored_and_open_nothing(server: DispatchApp, kind: EventKind) -> None:
    household = unique("hh-t")
    gw = server.enroll(household)
    ev = event(gw.gateway_id, kind, test=True)
    reply = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, ev)).content)
    assert reply.acks[0].status == "stored"
    assert reply.acks[0].incident is None
    client = server.operator_client()
    listed = client.get("/api/v1/incidents", params={"state": "all", "household_id": household})
    assert listed.json()["total"] == 0
    # Shown, though: the installer's walk test is visible to the centre.
    shown = client.get("/api/v1/events", params={"household_id": household, "test": True}).json()
    assert [e["id"] for e in shown["items"]] == [ev.id]
    assert shown["items"][0]["incident_id"] is None
    others = client.get("/api/v1/events", params={"household_id": household, "test": False})
    assert others.json()["total"] == 0


def test_concurrent_heartbeats_each_get_their_own_answer(server: DispatchApp) -> None:
    """Heartbeats are stored in group commits; one bad request must not affect its batch-mates."""
    from concurrent.futures import ThreadPoolExecutor

    gateways = [server.enroll(unique("hh")) for _ in range(4)]
    path = "/api/v1/gateway/heartbeat"
    requests: list[tuple[str, bytes, dict[str, str]]] = []
    expected: list[int] = []
    for gw in gateways:
        for _ in range(5):
            body = heartbeat(gw.gateway_id).model_dump_json().encode()
            requests.append((gw.gateway_id, body, gw.signed_headers(path, body)))
            expected.append(200)
    # The same signed request twice: exactly one of the two is stored.
    body = heartbeat(gateways[0].gateway_id).model_dump_json().encode()
    twice = gateways[0].signed_headers(path, body)
    requests += [(gateways[0].gateway_id, body, twice)] * 2
    forged = server.gateway(gateways[1].gateway_id, "", "d3Jvbmctc2VjcmV0LXdyb25n")
    body = heartbeat(forged.gateway_id).model_dump_json().encode()
    requests.append((forged.gateway_id, body, forged.signed_headers(path, body)))

    anonymous = server.http()

    def send(request: tuple[str, bytes, dict[str, str]]) -> int:
        return anonymous.post(path, content=request[1], headers=request[2]).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(send, requests))
    assert statuses[: len(expected)] == expected
    assert sorted(statuses[len(expected) : len(expected) + 2]) == [200, 409]
    assert statuses[-1] == 401
    client = server.operator_client()
    for gw in gateways:
        assert client.get(f"/api/v1/gateways/{gw.gateway_id}").json()["version"] == "1.2.3"


def test_accepted_events_survive_a_crash(dispatch_server: DispatchServer) -> None:
    """What dispatch acknowledged is on disk: after SIGKILL a resend is a duplicate."""
    gw = dispatch_server.enroll(unique("hh"))
    sos = event(gw.gateway_id, EventKind.SOS)
    first = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, sos)).content)
    dispatch_server.kill()
    dispatch_server.start()
    again = IngestReply.model_validate_json(gw.send_events(batch(gw.gateway_id, sos)).content)
    assert again.acks[0].status == "duplicate"
    assert again.acks[0].incident is not None
    assert first.acks[0].incident is not None
    assert again.acks[0].incident.id == first.acks[0].incident.id


@pytest.mark.postgres
def test_sessions_and_credentials_survive_a_restart(dispatch_server_pg: DispatchServer) -> None:
    """Nothing that must be shared lives in one process's memory."""
    gw = dispatch_server_pg.enroll(unique("hh"))
    client = dispatch_server_pg.operator_client()
    dispatch_server_pg.restart()
    assert client.get("/api/v1/auth/me").status_code == 200
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    listed = dispatch_server_pg.cli("gateway", "list")
    assert listed.returncode == 0
    assert gw.gateway_id in listed.stdout
