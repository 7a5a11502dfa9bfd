"""The forwarder over real sockets through a fault proxy: refused, hanging and reset connections."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from forwarder.client import DispatchClient
from forwarder.delivery import Forwarder
from tests.buffer.fake_dispatch import CREDENTIAL, FakeDispatch, serve_on_loopback
from tests.buffer.helpers import alarm, draft, trouble
from tests.buffer.test_forwarder import Running
from tests.fixtures.netfault import FaultProxy
from tests.fixtures.waiting import await_until


@pytest.fixture
def http_dispatch() -> Iterator[tuple[FakeDispatch, int]]:
    """The fake dispatch served over real HTTP on loopback."""
    dispatch = FakeDispatch()
    with serve_on_loopback(dispatch) as port:
        yield dispatch, port


async def test_outage_modes_then_recovery_exactly_once(
    tmp_path: Path,
    http_dispatch: tuple[FakeDispatch, int],
    fault_proxy_factory: type[FaultProxy],
) -> None:
    dispatch, port = http_dispatch
    proxy = fault_proxy_factory("127.0.0.1", port)
    proxy.start()
    abuf = AsyncEventBuffer(EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1"))
    client = DispatchClient(proxy.url, credential=CREDENTIAL, timeout=0.3, insecure_http=True)
    forwarder = Forwarder(abuf, client, backoff_initial=0.02, backoff_max=0.2)
    appended = []
    try:
        async with Running(forwarder):
            appended += await abuf.append([draft(), alarm("a")])
            await await_until(lambda: forwarder.status.sent_total == 2, 5)
            for mode in ("blackhole", "reset", "refuse"):
                await asyncio.to_thread(proxy.set_mode, mode)
                failures = forwarder.status.consecutive_failures
                appended += await abuf.append([alarm(f"in-{mode}"), trouble(mode), draft()])
                await await_until(
                    lambda f=failures: forwarder.status.consecutive_failures >= f + 2, 5
                )
                assert forwarder.status.reachable is False
                assert abuf.stats(appended[0].at).pending_total >= 3
            await asyncio.to_thread(proxy.set_mode, "pass")
            await await_until(lambda: forwarder.status.sent_total >= len(appended), 10)
    finally:
        await client.aclose()
        await abuf.aclose()
    assert set(dispatch.stored) == {e.id for e in appended}
    assert forwarder.status.reachable is True
    # Every event arrived; alarms of the outage went before its troubles and telemetry.
    last = dispatch.batches[-1]
    lanes = [dispatch.stored[i].lane.rank for i in last]
    assert lanes == sorted(lanes)
