"""Scenario 6b: the wall clock jumping forwards and backwards under a running pipeline.

``faketime`` is not part of the test machine, so the pipeline, rule engine and buffer run in this
process with an injected clock that jumps; the frames carry the same jumping wall time, as a
driver stamps them. The buffer is then forwarded to a real dispatchd by the real forwarder.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.home import parse_config
from contract.wire import Event, RawFrame
from drivers.base import LocalCommand
from drivers.registry import load_driver
from forwarder.client import Credential, DispatchClient
from forwarder.delivery import Forwarder
from gatewayd.devicestate import DeviceStates
from gatewayd.pipeline import Pipeline
from rules import RuleEngine, load_rules
from tests.faults.harness import check_exactly_once, scaled, settle, stored_events
from tests.faults.rflink_load import DOORS, rflink_config
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import home_toml
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

INACTIVITY_AFTER_S = 3600


class JumpingClock:
    """Wall time that mostly ticks 10 s per step and sometimes jumps hours or days either way."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
        self.forward_jumps = 0
        self.backward_jumps = 0

    def __call__(self) -> datetime:
        return self.now

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.04:
            self.now += timedelta(seconds=self.rng.uniform(2 * 3600, 3 * 86400))
            self.forward_jumps += 1
        elif roll < 0.08:
            self.now -= timedelta(seconds=self.rng.uniform(2 * 3600, 3 * 86400))
            self.backward_jumps += 1
        else:
            self.now += timedelta(seconds=10)


async def _noop(command: LocalCommand) -> None:
    return None


def _frame(clock: JumpingClock, mono: float, body: str) -> RawFrame:
    return RawFrame(
        driver="rflink",
        source="/dev/rflink",
        payload=f"20;00;{body}".encode(),
        wall_time=clock(),
        mono_time=mono,
    )


async def test_clock_jumps_lose_nothing_duplicate_nothing_and_raise_no_flood(
    tmp_path: Path, dispatch_server: DispatchServer
) -> None:
    """Each step a new smoke detector goes off and clears, and a door moves (activity), while
    the clock jumps 2 h to 3 days forwards or backwards now and then. Every detector must give
    exactly one alarm and one restore, ids unique and ``seq`` strictly increasing whatever the
    clock did; inactivity may be raised at most once per forward jump (the engine cannot tell
    a jump from real silence) and never for a backward one; and dispatch, reached by the real
    forwarder, stores every alarm once in spite of the events' wild ``at``."""
    rng = random.Random(7)
    steps = scaled(400, minimum=100)
    clock = JumpingClock(rng)
    text = home_toml(
        tmp_path / "state",
        gateway_id="gw-clock",
        rules=f'[rules.inactivity]\nafter_s = {INACTIVITY_AFTER_S}\nactive_hours = "00:00-24:00"',
        drivers=rflink_config("/dev/null")["drivers"],
        devices=rflink_config("/dev/null")["devices"],
    )
    config = parse_config(text)
    driver = load_driver("rflink")("rflink", {"port": "/dev/null"}, config.devices)
    raw = EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw-clock", clock=clock)
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    engine = RuleEngine(
        load_rules(config.rules, devices=config.devices), config.devices, timezone="UTC"
    )
    pipeline = Pipeline(
        engine=engine,
        buffer=buffer,
        parsers={"rflink": driver.create_parser()},
        send_command=_noop,
        devices=DeviceStates(config.devices),
        clock=clock,
    )
    events: list[Event] = []
    detectors: list[str] = []
    inactivity_after_backward = 0
    mono = time.monotonic()
    for n in range(steps):
        backward_before = clock.backward_jumps
        clock.step()
        mono += 5.0  # beyond the receiver's 1 s repeat window
        rf_id = f"{0xB00000 + n:06X}"
        detectors.append(f"smoke:SmokeAlert:{rf_id}")
        door = f"{0x200 + n % DOORS:x}"
        frames = [
            _frame(clock, mono, f"SmokeAlert;ID={rf_id};SMOKEALERT=ON;"),
            _frame(clock, mono + 0.1, f"SmokeAlert;ID={rf_id};SMOKEALERT=OFF;"),
            _frame(
                clock, mono + 0.2, f"NewKaku;ID={door};SWITCH=1;CMD={'ON' if n % 2 else 'OFF'};"
            ),
        ]
        decided = await pipeline.process(frames, tick=True)
        if clock.backward_jumps > backward_before:
            inactivity_after_backward += sum(1 for e in decided if e.kind.value == "inactivity")
        events.extend(decided)

    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event id was given twice"
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs), "seq went backwards"
    assert len(set(seqs)) == len(seqs), "a seq was given twice"
    per_condition = collections.Counter(
        (e.payload.get("condition"), e.kind.value)
        for e in events
        if e.kind.value.startswith("smoke")
    )
    for detector in detectors:
        assert per_condition[(detector, "smoke")] == 1, f"{detector}: alarms"
        assert per_condition[(detector, "smoke_restore")] == 1, f"{detector}: restores"
    inactivity = sum(1 for e in events if e.kind.value == "inactivity")
    assert inactivity <= clock.forward_jumps, (
        f"{inactivity} inactivity alarms for {clock.forward_jumps} forward jumps"
    )
    assert inactivity_after_backward == 0
    assert clock.forward_jumps
    assert clock.backward_jumps

    # The buffer, as jumpy as it is, goes to a real dispatch.
    enrolled = dispatch_server.enroll("hh-clock", "gw-clock")
    credential = Credential("gw-clock", enrolled.household_id, enrolled.secret, dispatch_server.url)
    client = DispatchClient(
        dispatch_server.url, credential=credential, timeout=5, insecure_http=True
    )
    forwarder = Forwarder(buffer, client, max_events=200)
    task = asyncio.create_task(forwarder.run())
    try:
        await await_until(lambda: buffer.stats(datetime.now(UTC)).pending_total == 0, 60, "drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await buffer.aclose()
    verdict = check_exactly_once(
        {e.id: e.kind.value for e in events},
        stored_events(dispatch_server.db_url, "gw-clock"),
        expected_conditions=set(detectors),
    )
    print(
        f"\nclock jumps: {steps} steps, {clock.forward_jumps} forward and "
        f"{clock.backward_jumps} backward jumps, {inactivity} inactivity alarms, "
        f"{verdict.alarms_stored} alarms at dispatch each once"
    )


class _ShiftedTime:
    """The ``time`` module as a gateway with a wall clock ``offset_s`` off sees it."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


async def test_alarm_delivered_while_the_gateway_clock_is_ten_minutes_ahead(
    tmp_path: Path, dispatch_server: DispatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alarm committed while the gateway's clock is 10 minutes fast reaches dispatch."""
    import contract.signing
    import forwarder.client
    from buffer.store import EventDraft
    from contract.wire import EventKind

    # The gateway's whole clock is 10 minutes fast: what signs and what stamps requests.
    monkeypatch.setattr(contract.signing, "time", _ShiftedTime(600.0))
    monkeypatch.setattr(forwarder.client, "time", _ShiftedTime(600.0))
    enrolled = dispatch_server.enroll("hh-skew", "gw-skew")
    credential = Credential("gw-skew", enrolled.household_id, enrolled.secret, dispatch_server.url)
    raw = EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw-skew")
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    [alarm] = await buffer.append(
        [
            EventDraft(
                kind=EventKind.SMOKE,
                at=datetime.now(UTC) + timedelta(seconds=600),
                device_id=None,
                payload={"condition": "smoke:SmokeAlert:C00001", "address": "SmokeAlert:C00001"},
            )
        ]
    )
    client = DispatchClient(
        dispatch_server.url, credential=credential, timeout=5, insecure_http=True
    )
    forwarder = Forwarder(buffer, client, backoff_max=1.0)
    task = asyncio.create_task(forwarder.run())
    try:
        await settle(lambda: not buffer.stats(datetime.now(UTC)).pending_total, 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await buffer.aclose()
    assert forwarder.status.rejected is None, forwarder.status.rejected
    assert alarm.id in {e.id for e in stored_events(dispatch_server.db_url, "gw-skew")}
