"""Gateways authenticate from a cache: a revocation or a re-enrollment takes effect at once in
the process that made it, and a revocation made elsewhere is never written through the cache."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from contract.wire import EventKind
from dispatch import schema
from dispatch.tx import transaction
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch_app import DispatchApp
from tests.fixtures.waiting import wait_until


def cached(server: DispatchApp, gateway_id: str) -> bool:
    cache = server.services.gateway_cache
    assert cache is not None
    return cache.get(gateway_id) is not None


def test_revocation_through_the_api_refuses_a_cached_gateway_at_once(
    server: DispatchApp,
) -> None:
    gw = server.enroll(unique("hh-c"))
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    assert (
        gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.MOTION))).status_code
        == 200
    )
    assert cached(server, gw.gateway_id)
    revoked = server.operator_client().post(f"/api/v1/gateways/{gw.gateway_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert gw.heartbeat(heartbeat(gw.gateway_id)).json()["title"] == "gateway revoked"
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    assert reply.status_code == 403
    assert reply.json()["title"] == "gateway revoked"


def test_re_enrollment_refuses_the_old_secret_at_once(server: DispatchApp) -> None:
    household = unique("hh-c")
    gw = server.enroll(household)
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    assert cached(server, gw.gateway_id)
    client = server.operator_client()
    assert client.post(f"/api/v1/gateways/{gw.gateway_id}/allow-reenroll").status_code == 200
    renewed = server.enroll(household, gw.gateway_id)
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 401
    assert (
        gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.MOTION))).status_code
        == 401
    )
    assert renewed.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    assert (
        renewed.send_events(
            batch(gw.gateway_id, event(gw.gateway_id, EventKind.MOTION))
        ).status_code
        == 200
    )


def test_revocation_elsewhere_refuses_events_at_once_and_heartbeats_are_not_written(
    server: DispatchApp,
) -> None:
    """Another process revokes (here: the database written behind the application's back)."""
    gw = server.enroll(unique("hh-c"))
    assert gw.heartbeat(heartbeat(gw.gateway_id)).status_code == 200
    assert cached(server, gw.gateway_id)
    g = schema.gateways

    async def revoke_behind_its_back() -> None:
        async with transaction(server.database) as tx:
            await tx.conn.execute(
                update(g).where(g.c.id == gw.gateway_id).values(revoked_at=tx.now)
            )

    async def row() -> dict[str, Any]:
        async with server.database.read() as conn:
            found = (await conn.execute(select(g).where(g.c.id == gw.gateway_id))).mappings()
            return dict(found.one())

    server.run(revoke_behind_its_back())
    assert cached(server, gw.gateway_id)  # nothing told this process
    # An event batch burns its nonce only while the stored row still matches the cached one.
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    assert reply.status_code == 403
    assert reply.json()["title"] == "gateway revoked"
    heartbeats = server.services.heartbeats
    assert heartbeats is not None
    server.run(heartbeats.flush())
    before = server.run(row())["uptime_s"]
    # A heartbeat may be answered until the next group write, which re-reads the row: it is
    # not written, and the ones after it are refused.
    later = heartbeat(gw.gateway_id).model_copy(update={"uptime_s": 999.0})
    wait_until(lambda: gw.heartbeat(later.model_copy()).status_code == 403)
    server.run(heartbeats.flush())
    assert server.run(row())["uptime_s"] == before
