"""Scenario 3: the network between gateway and dispatch refused, blackholed and reset for a
while, then restored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    ALARM_KINDS,
    check_exactly_once,
    committed_events,
    enroll_into,
    injected_fault,
    scale,
    scaled,
    stored_events,
    tamper_buffer,
    wait_drained,
)
from tests.faults.rflink_load import CountingRflinkSimulator, RflinkLoad, rflink_config
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.netfault import FaultProxy, Mode
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow


async def test_network_cut_then_restored_drains_everything_alarms_first(
    dispatch_server: DispatchServer,
    faults_gateway: Callable[..., GatewayProcess],
    fault_proxy_factory: type[FaultProxy],
) -> None:
    """Dispatch is reached through a proxy that refuses connections, then accepts and never
    answers (the gateway's timeouts must save it), then resets every connection; events flow all
    along (mostly telemetry, a fifth alarms). Restored, the gateway drains its backlog in batches
    of 20: every committed event is stored once, every alarm caused is stored once, and no
    backlog telemetry is received before the last backlog alarm (alarms first)."""
    phase_s = 4.0 * scale()
    events_total = scaled(450, minimum=90)
    gateway_id = "gw-netcut"
    proxy = fault_proxy_factory("127.0.0.1", dispatch_server.port)
    proxy.start()
    async with CountingRflinkSimulator() as sim:
        gw = faults_gateway(
            dispatch_url=proxy.url,
            gateway_id=gateway_id,
            timeout=2.0,
            dispatch_extra="batch_max_events = 20",
            **rflink_config(sim.port),
        )
        enroll_into(dispatch_server, gw, gateway_id=gateway_id, url=proxy.url)
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        load = RflinkLoad(sim, alarm_every=5)
        await load.send(50)
        await wait_drained(gw)
        before_outage = {e.id for e in stored_events(dispatch_server.db_url, gateway_id)}

        rate = events_total / (3 * phase_s)
        sender = asyncio.create_task(load.send(events_total, rate=rate))
        modes: tuple[Mode, ...] = ("refuse", "blackhole", "reset")
        for mode in modes:
            proxy.set_mode(mode)
            await asyncio.sleep(phase_s)
        await sender
        assert gw.buffered(), "the outage must have left a backlog"
        if (how := injected_fault()) is not None:
            tamper_buffer(gw, how)
        assert gw.logged("dispatch_unreachable"), "the gateway must have noticed the outage"
        proxy.set_mode("pass")
        await wait_drained(gw, within=60 + phase_s)

        stored = stored_events(dispatch_server.db_url, gateway_id)
        verdict = check_exactly_once(
            committed_events([gw]), stored, expected_conditions=set(load.alarms)
        )
        backlog = [e for e in stored if e.id not in before_outage]
        assert backlog, "nothing was stored after the restore"
        alarms = [e for e in backlog if e.kind in ALARM_KINDS]
        telemetry = [e for e in backlog if e.kind == "contact"]
        assert len(telemetry) > 20, "the backlog must hold more telemetry than one batch"
        last_alarm = max(e.received_at for e in alarms)
        first_telemetry = min(e.received_at for e in telemetry)
        assert last_alarm <= first_telemetry, (
            f"telemetry of the backlog reached dispatch at {first_telemetry}, before the last "
            f"backlog alarm at {last_alarm}"
        )
        assert gw.running
        assert gw.stop() == 0
    print(
        f"\nnetwork cut: {3 * phase_s:.0f} s of outage, backlog {len(backlog)} events "
        f"({len(alarms)} alarms first, {len(telemetry)} telemetry after), "
        f"{verdict.alarms_stored} alarms each once"
    )
