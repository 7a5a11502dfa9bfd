"""``kill -9`` of a real gatewayd while it reports to pysiaalarm's receiver over DC-09."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from buffer.store import EventBuffer, EventDraft
from contract.wire import EventKind
from tests.dc09.sia_receiver import ACCOUNT, SiaReceiver
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.procs import run_module
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

ALARMS = 1500


def dc09_section(receiver: SiaReceiver) -> str:
    return (
        f'[dc09]\naccount = "{ACCOUNT}"\nreport_to_dispatchd = false\ntimeout = 10\n\n'
        + receiver.receiver_toml()
    )


async def test_kill_9_mid_flow_every_alarm_arrives_repeats_keep_their_sequence(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    async with SiaReceiver() as receiver:
        gw = gateway_factory(gateway_id="gw-dc09", extra=dc09_section(receiver))
        # The home's alarms are already in its buffer (committed before the daemon starts).
        with EventBuffer.open(gw.state_dir / "buffer.db", gateway_id="gw-dc09") as buffer:
            events = buffer.append(
                [
                    EventDraft(kind=EventKind.SOS, at=datetime.now(UTC), device_id=f"btn-{i}")
                    for i in range(ALARMS)
                ]
            )
        gw.start()
        await await_until(lambda: len(receiver.alarms) >= ALARMS // 3, within=60)
        gw.kill()
        arrived_before = len(receiver.alarms)
        assert arrived_before < ALARMS, "the flow ended before the kill: raise ALARMS"
        gw.start()
        expected = {f"{e.seq % 9999 + 1:04d}" for e in events}
        await await_until(
            lambda: {e.sequence for e in receiver.alarms} >= expected,
            within=120,
            what="every alarm arrived",
        )
        await await_until(lambda: gw.buffered() == [], within=30, what="buffer drained")
        shown = await asyncio.to_thread(
            run_module, "gatewayd", "status", "--json", "--config", str(gw.config_path)
        )
    assert shown.returncode == 0, shown.stderr
    link = json.loads(shown.stdout)["dc09"]
    assert link["reachable"] is True
    assert link["receiver"] == f"tcp://127.0.0.1:{receiver.port}"
    assert link["refused_total"] == 0
    assert 0 < link["sent_total"] <= ALARMS
    counts = collections.Counter(e.sequence for e in receiver.alarms)
    repeats = {seq: n for seq, n in counts.items() if n > 1}
    # A repeat is the same message again (same sequence number, same event), never a new one,
    # and only for what was in flight when the process died (one unacknowledged read).
    assert set(counts) == expected
    assert len(receiver.alarms) - ALARMS == sum(n - 1 for n in repeats.values())
    # At most the batch whose bookkeeping the kill interrupted (100 events), and a repeat
    # carries the same data as the first (the same event: same code, same zone).
    assert sum(n - 1 for n in repeats.values()) <= 100
    for seq in repeats:
        copies = {
            (e.event_qualifier, e.event_type, e.ri) for e in receiver.alarms if e.sequence == seq
        }
        assert len(copies) == 1
