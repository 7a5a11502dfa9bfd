"""A real gatewayd reporting to a real dispatchd and to pysiaalarm's receiver at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from buffer.store import EventBuffer, EventDraft
from contract.wire import EventKind
from tests.dc09.sia_receiver import ACCOUNT, SiaReceiver, closed_port
from tests.faults.harness import enroll_into, stored_events
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

ALARMS = 40
TELEMETRY = 10


async def test_an_event_leaves_the_buffer_once_both_channels_have_it(
    dispatch_server: DispatchServer, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    port = closed_port()
    section = (
        f'[dc09]\naccount = "{ACCOUNT}"\ntimeout = 5\nattempts = 1\nbackoff_max = 0.5\n\n'
        f'[[dc09.receivers]]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    gw = gateway_factory(gateway_id="gw-dual", dispatch_url=dispatch_server.url, extra=section)
    now = datetime.now(UTC)
    with EventBuffer.open(gw.state_dir / "buffer.db", gateway_id="gw-dual") as buffer:
        buffer.append(
            [EventDraft(kind=EventKind.SOS, at=now, device_id=f"b{i}") for i in range(ALARMS)]
            + [EventDraft(kind=EventKind.MOTION, at=now, device_id="m") for _ in range(TELEMETRY)]
        )
    enroll_into(dispatch_server, gw, gateway_id="gw-dual")
    gw.start()
    # The DC-09 receiver is down: dispatchd gets everything, the buffer keeps everything.
    await await_until(
        lambda: len(stored_events(dispatch_server.db_url, "gw-dual")) == ALARMS + TELEMETRY,
        within=60,
        what="dispatchd stored every event",
    )
    assert len(gw.buffered()) == ALARMS + TELEMETRY
    # The receiver comes up: every alarm reaches it, and only then does the buffer empty.
    async with SiaReceiver(port=port) as receiver:
        await await_until(lambda: len(receiver.firsts) == ALARMS, within=60, what="alarms")
        await await_until(lambda: gw.buffered() == [], within=30, what="buffer drained")
    assert {e.event_type for e in receiver.firsts} == {"101"}
    # dispatchd stored each event once, whatever the other channel did.
    ids = [e.id for e in stored_events(dispatch_server.db_url, "gw-dual")]
    assert len(ids) == len(set(ids)) == ALARMS + TELEMETRY
