"""The exactly-once check itself: it must fail when an alarm is lost or delivered twice.

Each case runs a real gateway while dispatch is refused, stops it, tampers with one pending alarm
in the gateway's buffer file (deleted, or copied under a new id), starts it again, lets the
backlog drain, and expects the check to name the fault. ``FAULTS_INJECT=lose`` (or
``duplicate``) does the same tampering inside the network-cut scenario, which then fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.harness import (
    ExactlyOnceViolation,
    check_exactly_once,
    committed_events,
    enroll_into,
    stored_events,
    tamper_buffer,
    wait_drained,
)
from tests.faults.rflink_load import CountingRflinkSimulator, RflinkLoad, rflink_config
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.netfault import FaultProxy
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["lose", "duplicate"])
async def test_the_check_fails_on_a_lost_or_duplicated_alarm(
    how: str,
    dispatch_server: DispatchServer,
    faults_gateway: Callable[..., GatewayProcess],
    fault_proxy_factory: type[FaultProxy],
) -> None:
    gateway_id = f"gw-check-{how}"
    proxy = fault_proxy_factory("127.0.0.1", dispatch_server.port)
    proxy.start()
    proxy.set_mode("refuse")
    async with CountingRflinkSimulator() as sim:
        gw = faults_gateway(
            dispatch_url=proxy.url, gateway_id=gateway_id, **rflink_config(sim.port)
        )
        enroll_into(dispatch_server, gw, gateway_id=gateway_id, url=proxy.url)
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        load = RflinkLoad(sim)
        await load.send(20)
        await await_until(lambda: len(gw.buffered()) >= 20, 15, "events buffered")
        # Tampered with while the gateway is stopped: a running forwarder may already hold the
        # alarm in a batch it keeps retrying, and would deliver it after all.
        assert gw.stop() == 0
        tampered = tamper_buffer(gw, how)
        proxy.set_mode("pass")
        gw.start()
        await wait_drained(gw)
        committed = committed_events([gw])
        stored = stored_events(dispatch_server.db_url, gateway_id)
        assert gw.stop() == 0
    with pytest.raises(ExactlyOnceViolation) as caught:
        check_exactly_once(committed, stored, expected_conditions=set(load.alarms))
    message = str(caught.value)
    if how == "lose":
        assert tampered in message
        assert "never reached dispatch" in message
    else:
        assert "more than once" in message
    print(f"\n{how}: {message}")
