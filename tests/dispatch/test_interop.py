"""The gateway's own dispatch client against a real dispatchd over loopback: the contract holds."""

from __future__ import annotations

import pytest

from contract.wire import EventKind
from forwarder.client import DispatchAuthRejected, DispatchClient, EnrollmentRefused
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.waiting import await_until


async def test_gateway_client_enrolls_sends_and_learns_of_acknowledgement(
    live_server: DispatchServer,
) -> None:
    server = live_server
    household = unique("hh")
    code = server.enroll_code(household)
    gateway_id = unique("gw")
    credential = await DispatchClient.enroll(
        server.url, code=code, gateway_id=gateway_id, insecure_http=True
    )
    assert credential.household_id == household
    with pytest.raises(EnrollmentRefused) as refused:
        await DispatchClient.enroll(
            server.url, code=code, gateway_id=unique("gw"), insecure_http=True
        )
    assert refused.value.status == 401

    async with DispatchClient(server.url, credential=credential, insecure_http=True) as client:
        sos = event(gateway_id, EventKind.SOS)
        reply = await client.send_events(
            batch(gateway_id, sos, event(gateway_id, EventKind.MOTION))
        )
        assert [a.status for a in reply.acks] == ["stored", "stored"]
        incident = reply.acks[0].incident
        assert incident is not None
        beat = await client.send_heartbeat(heartbeat(gateway_id))
        assert beat.acknowledged_events == []

        operator = server.operator_client()
        assert operator.post(f"/api/v1/incidents/{incident.id}/acknowledge").status_code == 200
        beat = await client.send_heartbeat(heartbeat(gateway_id))
        assert beat.acknowledged_events == [sos.id]

        assert server.cli("gateway", "revoke", gateway_id).returncode == 0

        # Revoked by another process: this server's cached identity learns of it at its next
        # group write of heartbeats (every 0.5 s); what it answered meanwhile is not written.
        async def refused() -> int | None:
            try:
                await client.send_heartbeat(heartbeat(gateway_id))
            except DispatchAuthRejected as exc:
                return exc.status
            return None

        assert await await_until(refused, 10, "the revoked gateway refused") == 403
