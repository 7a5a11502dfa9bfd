"""Scenario 5: the gateway's disk budget exhausted by a telemetry flood while dispatch is away."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.harness import (
    ALARM_KINDS,
    check_exactly_once,
    committed_events,
    enroll_into,
    scaled,
    stored_events,
    wait_drained,
)
from tests.faults.rflink_load import CountingRflinkSimulator, RflinkLoad, rflink_config
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.netfault import FaultProxy
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

BUDGET_MIB = 0.25


async def test_full_disk_budget_keeps_alarms_evicts_telemetry_and_says_so(
    dispatch_server: DispatchServer,
    faults_gateway: Callable[..., GatewayProcess],
    fault_proxy_factory: type[FaultProxy],
) -> None:
    """With a 256 KiB buffer and dispatch refused, a flood of door telemetry (one alarm in 25
    frames) overfills the budget many times. While the outage lasts the buffer must still hold
    every alarm, fewer telemetry events than were committed, and a ``buffer_evicted`` trouble.
    Once dispatch is back: every alarm stored once, the ``buffer_evicted`` trouble(s) delivered,
    and the telemetry accounted for exactly: stored + evicted (as the last report counts them)
    = committed."""
    frames = scaled(2500, minimum=1200)
    gateway_id = "gw-budget"
    proxy = fault_proxy_factory("127.0.0.1", dispatch_server.port)
    proxy.start()
    proxy.set_mode("refuse")
    async with CountingRflinkSimulator() as sim:
        gw = faults_gateway(
            dispatch_url=proxy.url,
            gateway_id=gateway_id,
            buffer=f"disk_budget_mib = {BUDGET_MIB}",
            **rflink_config(sim.port),
        )
        enroll_into(dispatch_server, gw, gateway_id=gateway_id, url=proxy.url)
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        load = RflinkLoad(sim, alarm_every=25)
        # Slow enough that one door's frame never repeats within the receiver's 1 s window.
        await load.send(frames, rate=250.0)
        assert not sim.dropped, f"the simulator could not write: {sim.dropped_text()[:300]}"
        await await_until(
            lambda: sum(1 for e in gw.buffered() if e["kind"] == "smoke") == len(load.alarms),
            15,
            "every alarm committed",
        )
        held = gw.buffered()
        committed = committed_events([gw])
        committed_contacts = sum(1 for k in committed.values() if k == "contact")
        held_contacts = sum(1 for e in held if e["kind"] == "contact")
        reports = [e for e in held if e["kind"] == "buffer_evicted"]
        assert reports, "no buffer_evicted trouble while telemetry was evicted"
        assert all(r["payload"]["reason"] == "disk_budget" for r in reports)
        assert held_contacts < committed_contacts / 2, "the flood did not overfill the budget"

        proxy.set_mode("pass")
        await wait_drained(gw, within=60)
        stored = stored_events(dispatch_server.db_url, gateway_id)
        # Alarms and troubles: each committed one stored, each alarm once.
        kept = {i: k for i, k in committed.items() if k != "contact"}
        verdict = check_exactly_once(kept, stored, expected_conditions=set(load.alarms))
        stored_reports = [e for e in stored if e.kind == "buffer_evicted"]
        assert {r["id"] for r in reports} <= {e.id for e in stored_reports}
        last = max(stored_reports, key=lambda e: e.seq)
        evicted_telemetry = last.payload["evicted_total"]["telemetry"]
        stored_contacts = sum(1 for e in stored if e.kind == "contact")
        # Counted again now that everything is drained: the first count was taken as soon as the
        # alarms were in, and frames of the flood may still have been on their way then.
        committed_contacts = sum(1 for k in committed_events([gw]).values() if k == "contact")
        assert stored_contacts + evicted_telemetry == committed_contacts, (
            f"telemetry unaccounted for: {stored_contacts} stored + {evicted_telemetry} evicted "
            f"!= {committed_contacts} committed"
        )
        assert sum(1 for e in stored if e.kind in ALARM_KINDS) == len(load.alarms)
        assert gw.running
        assert gw.stop() == 0
    print(
        f"\ndisk budget {BUDGET_MIB} MiB: {committed_contacts} telemetry committed, "
        f"{evicted_telemetry} evicted in {len(stored_reports)} reported rounds, "
        f"{stored_contacts} delivered; {verdict.alarms_stored} alarms kept, each once"
    )
