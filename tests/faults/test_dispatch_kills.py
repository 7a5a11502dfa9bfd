"""Scenario 2: dispatchd killed (SIGKILL) and restarted during ingest, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import pytest

from tests.faults.harness import (
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
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow


async def test_dispatch_killed_during_ingest_loses_and_duplicates_nothing(
    any_dispatch_server: DispatchServer, faults_gateway: Callable[..., GatewayProcess]
) -> None:
    """While the gateway forwards a steady stream, dispatchd is SIGKILLed (a crash: transactions
    cut anywhere, replies never sent) and restarted on the same database, and once stopped and
    started gracefully. A batch stored whose reply was lost is sent again and answered
    ``duplicate``; a batch whose transaction was cut is sent again and stored. At the end every
    event the gateway committed is stored under its id, and each detector that went off has
    exactly one alarm: the gateway was not killed, so nothing may be missing at all."""
    dispatch = any_dispatch_server
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "0")) or None)
    events_total = scaled(1200, minimum=100)
    kills = scaled(6, minimum=2)
    gateway_id = "gw-dispatch-kill"
    async with CountingRflinkSimulator() as sim:
        gw = faults_gateway(
            dispatch_url=dispatch.url,
            gateway_id=gateway_id,
            dispatch_extra="batch_max_events = 50",
            **rflink_config(sim.port),
        )
        enroll_into(dispatch, gw, gateway_id=gateway_id)
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        load = RflinkLoad(sim)
        sender = asyncio.create_task(load.send(events_total, rate=200.0))
        for n in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            if n == kills - 1:
                await asyncio.to_thread(dispatch.restart)  # graceful, SIGTERM
                continue
            dispatch.kill()
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await asyncio.to_thread(dispatch.start)
        await sender
        assert not sim.dropped, f"the simulator could not write: {sim.dropped_text()[:300]}"
        await wait_drained(gw, within=90)
        assert gw.logged("dispatch_unreachable"), "the gateway must have seen dispatch go away"
        verdict = check_exactly_once(
            committed_events([gw]),
            stored_events(dispatch.db_url, gateway_id),
            expected_conditions=set(load.alarms),
        )
        assert gw.running
        assert gw.stop() == 0
    assert verdict.alarms_stored == len(load.alarms)
    print(
        f"\ndispatch kills ({dispatch.db_url.split(':')[0]}): {load.sent} frames, "
        f"{kills} kills/restarts, {verdict.committed} committed, {verdict.stored} stored, "
        f"{verdict.alarms_stored} alarms each once"
    )
