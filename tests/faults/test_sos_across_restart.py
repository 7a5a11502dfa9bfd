"""An SOS press whose repeats straddle a gateway restart: one press must stay one alarm.

A pendant or BLE button sends each press several times (BLE advertises the same packet for a
second or two). If the gateway restarts between the copies, the restarted one has a fresh
repeat filter, so the next copy reaches the rule engine as a press; within ``sos_collapse_s``
of the open SOS alarm it must be collapsed into it, as it would be without the restart.

Run in-process, as the daemon wires it: pipeline, rule engine and the real buffer file, closed
and reopened in between (what a restart keeps is what the buffer holds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.home import HomeConfig, parse_config
from contract.wire import Event, RawFrame
from drivers.base import LocalCommand
from gatewayd.daemon import build_drivers
from gatewayd.devicestate import DeviceStates
from gatewayd.pipeline import Pipeline
from rules import RuleEngine, load_rules
from tests.fixtures.gateway import home_toml

pytestmark = pytest.mark.slow

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def _noop(command: LocalCommand) -> None:
    return None


async def _run_once(config: HomeConfig, path: Path, frame: RawFrame) -> list[Event]:
    """Start as the daemon does (buffer, engine seeded from it), decide one frame, stop."""
    buffer = AsyncEventBuffer(EventBuffer.open(path, gateway_id="gw-sos", clock=lambda: T0))
    await buffer.start()
    engine = RuleEngine(load_rules(config.rules, devices=config.devices), config.devices)
    engine.seed_active(buffer.buffer.active_conditions())
    pipeline = Pipeline(
        engine=engine,
        buffer=buffer,
        parsers={d: drv.create_parser() for d, drv in build_drivers(config).items()},
        send_command=_noop,
        devices=DeviceStates(config.devices),
        clock=lambda: frame.wall_time,
    )
    try:
        return await pipeline.process([frame])
    finally:
        await buffer.aclose()


def _press(at: datetime, mono: float) -> RawFrame:
    return RawFrame(
        driver="rflink",
        source="/dev/rflink",
        payload=b"20;00;NewKaku;ID=3a1;SWITCH=1;CMD=ON;",
        wall_time=at,
        mono_time=mono,
    )


async def test_a_press_repeat_after_a_restart_is_not_a_second_sos_alarm(tmp_path: Path) -> None:
    config = parse_config(
        home_toml(
            tmp_path / "state",
            drivers='[[drivers]]\nid = "rflink"\ntype = "rflink"\nport = "/dev/null"\n',
            devices='[[devices]]\nid = "pendant-1"\ndriver = "rflink"\n'
            'address = "NewKaku:3a1:1"\nrole = "pendant"\n',
        )
    )
    path = tmp_path / "buffer.db"
    first = await _run_once(config, path, _press(T0, 100.0))
    assert [e.kind.value for e in first] == ["sos"]
    # The same press's next copy, a second later, read by the restarted gateway.
    again = await _run_once(config, path, _press(T0 + timedelta(seconds=1), 101.0))
    assert [e.kind.value for e in again] == [], "one press, two SOS alarms"
