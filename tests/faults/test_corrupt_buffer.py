"""Scenario 6a: garbage written over the buffer file while the gateway was stopped."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    check_exactly_once,
    committed_events,
    enroll_into,
    stored_events,
    wait_drained,
)
from tests.faults.rflink_load import CountingRflinkSimulator, RflinkLoad, rflink_config
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.netfault import FaultProxy
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow


async def test_corrupt_buffer_is_quarantined_reported_and_alarms_flow_again(
    dispatch_server: DispatchServer,
    faults_gateway: Callable[..., GatewayProcess],
    fault_proxy_factory: type[FaultProxy],
) -> None:
    """The gateway buffers alarms while dispatch is refused and is stopped; its buffer file is
    overwritten with random bytes (a failing SD card). At the next start the file is moved
    aside as ``buffer.db.corrupt-*``, a fresh buffer is started, the loss is logged loudly and a
    ``buffer_evicted`` trouble (reason ``corrupt``, naming the quarantined file) reaches
    dispatch; alarms raised afterwards reach dispatch exactly once. The alarms that were in the
    destroyed file are gone: the trouble is how dispatch learns of it."""
    gateway_id = "gw-corrupt"
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
        before = RflinkLoad(sim)
        await before.send(20)
        await await_until(lambda: len(gw.buffered()) >= 20, 15, "events buffered")
        assert gw.stop() == 0
        first_run = set(committed_events([gw]))
        path = gw.state_dir / "buffer.db"
        size = path.stat().st_size
        path.write_bytes(os.urandom(max(size, 8192)))

        proxy.set_mode("pass")
        gw.start()
        await await_until(lambda: len(gw.logged("gateway_ready")) == 2, 30, "gateway ready again")
        quarantined = sorted(gw.state_dir.glob("buffer.db.corrupt-*"))
        assert [p for p in quarantined if not p.name.endswith(("-wal", "-shm"))]
        logged = gw.logged("buffer_corrupt_quarantined")
        assert logged
        assert logged[0]["level"] == "error"
        after = RflinkLoad(sim, first_alarm=1000)  # new detectors, not the lost ones
        await after.send(40)
        await wait_drained(gw)
        stored = stored_events(dispatch_server.db_url, gateway_id)
        troubles = [e for e in stored if e.kind == "buffer_evicted"]
        assert [t.payload["reason"] for t in troubles] == ["corrupt"]
        assert troubles[0].payload["quarantined_file"] == logged[0]["moved_to"].rsplit("/", 1)[1]
        # What the second run committed is all there, each alarm once.
        second_run = {i: k for i, k in committed_events([gw]).items() if i not in first_run}
        verdict = check_exactly_once(
            second_run,
            stored,
            expected_conditions=set(after.alarms),
        )
        assert gw.running
        assert gw.stop() == 0
    print(f"\ncorrupt buffer: quarantined, reported; {verdict.alarms_stored} new alarms each once")
