"""A gateway's identity at dispatch, on SQLite and PostgreSQL: replies signed with its key,
secrets sealed at rest, event ids its own, enrollment throttled, audited and never a take-over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from contract.signing import HEADER_NONCE, HEADER_REPLY_SIGNATURE, SignatureError, verify_reply
from contract.wire import EventKind, IngestReply
from dispatch import schema
from dispatch.sealing import is_sealed
from tests.dispatch.conftest import new_operator, unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch_app import DispatchApp


def _secret_column(server: DispatchApp, gateway_id: str) -> str:
    async def read() -> str:
        g = schema.gateways
        async with server.database.read() as conn:
            return str(
                (await conn.execute(select(g.c.secret).where(g.c.id == gateway_id))).scalar()
            )

    return server.run(read())


def _audit(server: DispatchApp, action: str, entity_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        a = schema.audit_log
        async with server.database.read() as conn:
            rows = await conn.execute(
                select(a).where(a.c.action == action, a.c.entity_id == entity_id)
            )
            return [dict(r) for r in rows.mappings()]

    return server.run(read())


def _enroll(server: DispatchApp, code: str, gateway_id: str, address: str = "") -> Any:
    client = server.http()
    return client.post(
        "/api/v1/gateway/enroll", json={"code": code, "gateway_id": gateway_id, "version": "t"}
    )


def test_replies_are_signed_for_the_request_they_answer(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh-sig"))
    nonce = "n-" + unique("reply")
    body = batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS))
    reply = gw.send_events(body, nonce=nonce)
    assert reply.status_code == 200, reply.text
    signature = reply.headers[HEADER_REPLY_SIGNATURE]
    verify_reply(
        signature,
        secret=gw.secret,
        path="/api/v1/gateway/events",
        request_nonce=nonce,
        status=200,
        body=reply.content,
    )
    # Not for another request, another body or another key.
    for change in (
        {"request_nonce": nonce + "x"},
        {"body": reply.content + b" "},
        {"secret": gw.secret[::-1]},
        {"path": "/api/v1/gateway/heartbeat"},
    ):
        args: dict[str, Any] = {
            "secret": gw.secret,
            "path": "/api/v1/gateway/events",
            "request_nonce": nonce,
            "status": 200,
            "body": reply.content,
        } | change
        with pytest.raises(SignatureError):
            verify_reply(signature, **args)
    beat_nonce = "h-" + unique("beat")
    beat = gw.heartbeat(heartbeat(gw.gateway_id), nonce=beat_nonce)
    assert beat.status_code == 200, beat.text
    verify_reply(
        beat.headers[HEADER_REPLY_SIGNATURE],
        secret=gw.secret,
        path="/api/v1/gateway/heartbeat",
        request_nonce=beat_nonce,
        status=200,
        body=beat.content,
    )
    assert HEADER_NONCE not in beat.headers


def test_secrets_are_sealed_at_rest(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh-seal"))
    stored = _secret_column(server, gw.gateway_id)
    assert is_sealed(stored)
    assert gw.secret not in stored
    key_file = server.secrets_key_file
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The sealed secret still authenticates the gateway.
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200


def test_a_sealed_secret_moved_to_another_gateway_does_not_open(server: DispatchApp) -> None:
    """The gateway id is the sealing's associated data: a row copied over another's is refused
    (a server error for the centre to fix, never a gateway signing as another)."""
    victim = server.enroll(unique("hh-victim"))
    thief = server.enroll(unique("hh-thief"))

    async def copy() -> None:
        g = schema.gateways
        async with server.database.write() as conn:
            sealed = (
                await conn.execute(select(g.c.secret).where(g.c.id == victim.gateway_id))
            ).scalar()
            await conn.execute(update(g).where(g.c.id == thief.gateway_id).values(secret=sealed))

    server.run(copy())
    forged = server.gateway(thief.gateway_id, thief.household_id, victim.secret)
    reply = forged.send_events(batch(thief.gateway_id, event(thief.gateway_id, EventKind.SOS)))
    assert reply.status_code == 500, reply.text
    assert reply.json()["title"] == "gateway secret unreadable at dispatch"
    assert forged.heartbeat(heartbeat(thief.gateway_id)).status_code == 500


def test_event_ids_are_unique_per_gateway_not_across_gateways(server: DispatchApp) -> None:
    home_a = unique("hh-a")
    home_b = unique("hh-b")
    gw_a = server.enroll(home_a)
    gw_b = server.enroll(home_b)
    sos_a = event(gw_a.gateway_id, EventKind.SOS)
    # Gateway B reuses A's event id (a bug, a clone, or on purpose).
    sos_b = sos_a.model_copy(update={"gateway_id": gw_b.gateway_id})
    first = IngestReply.model_validate_json(gw_a.send_events(batch(gw_a.gateway_id, sos_a)).content)
    second = gw_b.send_events(batch(gw_b.gateway_id, sos_b))
    assert second.status_code == 200, second.text
    reply_b = IngestReply.model_validate_json(second.content)
    assert [a.status for a in reply_b.acks] == ["stored"]
    ref_a, ref_b = first.acks[0].incident, reply_b.acks[0].incident
    assert ref_a is not None
    assert ref_b is not None
    assert ref_b.id != ref_a.id, "B was told A's incident"
    assert ref_a.id not in second.text
    client = server.operator_client()
    for home in (home_a, home_b):
        queue = client.get("/api/v1/incidents", params={"household_id": home}).json()
        assert queue["total"] == 1, queue
        assert queue["items"][0]["state"] == "new"
    # Each one's resend is still its own duplicate.
    again = IngestReply.model_validate_json(gw_b.send_events(batch(gw_b.gateway_id, sos_b)).content)
    assert again.acks[0].status == "duplicate"
    assert again.acks[0].incident is not None
    assert again.acks[0].incident.id == ref_b.id


def test_reenrolling_an_existing_gateway_needs_a_supervisors_permission(
    server: DispatchApp,
) -> None:
    household = unique("hh-re")
    gw = server.enroll(household)
    # A second household code must not take the gateway's identity over.
    refused = _enroll(server, server.enroll_code(household), gw.gateway_id)
    assert refused.status_code == 409, refused.text
    assert "allow-reenroll" in refused.json()["detail"]
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200, "the old secret still works"
    assert _audit(server, "gateway.enroll_failed", gw.gateway_id)

    _, operator = new_operator(server, "operator")
    assert operator.post(f"/api/v1/gateways/{gw.gateway_id}/allow-reenroll").status_code == 403
    _, supervisor = new_operator(server, "supervisor")
    missing = supervisor.post("/api/v1/gateways/no-such-gateway/allow-reenroll")
    assert missing.status_code == 404
    allowed = supervisor.post(f"/api/v1/gateways/{gw.gateway_id}/allow-reenroll")
    assert allowed.status_code == 200, allowed.text
    expires = datetime.fromisoformat(allowed.json()["expires_at"])
    assert datetime.now(UTC) < expires <= datetime.now(UTC) + timedelta(hours=1, seconds=5)
    assert _audit(server, "gateway.reenroll_allowed", gw.gateway_id)

    renewed = _enroll(server, server.enroll_code(household), gw.gateway_id)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["secret"] != gw.secret
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 401
    # One use only.
    once_more = _enroll(server, server.enroll_code(household), gw.gateway_id)
    assert once_more.status_code == 409, once_more.text


def test_a_reenroll_permission_expires(server: DispatchApp) -> None:
    household = unique("hh-exp")
    gw = server.enroll(household)
    result = server.cli("gateway", "allow-reenroll", gw.gateway_id)
    assert result.returncode == 0, result.stderr
    assert "once" in result.stdout

    async def expire() -> None:
        a = schema.reenroll_allowances
        async with server.database.write() as conn:
            await conn.execute(
                update(a)
                .where(a.c.gateway_id == gw.gateway_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )

    server.run(expire())
    late = _enroll(server, server.enroll_code(household), gw.gateway_id)
    assert late.status_code == 409, late.text
    assert server.cli("gateway", "allow-reenroll", "gw-nobody").returncode == 5


def test_a_revoked_gateway_stays_revoked_without_permission(server: DispatchApp) -> None:
    household = unique("hh-rev")
    gw = server.enroll(household)
    assert server.cli("gateway", "revoke", gw.gateway_id).returncode == 0
    lifted = _enroll(server, server.enroll_code(household), gw.gateway_id)
    assert lifted.status_code == 409, lifted.text
    reply = gw.heartbeat(heartbeat(gw.gateway_id))
    assert reply.status_code == 403
