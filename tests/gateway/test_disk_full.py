"""The pipeline on a real 8 MiB file system filled by another file: the smoke alarm is decided,
sounds the siren and reaches the forwarder whatever the disk does, and the watchdog, listening
on a real notify socket, keeps being fed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.home import load_config, parse_config
from contract.wire import EventKind, RawFrame
from drivers.base import LocalCommand
from drivers.registry import load_driver
from gatewayd.control import ControlClient
from gatewayd.devicestate import DeviceStates
from gatewayd.pipeline import Pipeline
from gatewayd.status import parse_status
from rules import RuleEngine, load_rules
from runtime import sdnotify
from runtime.timeouts import within
from tests.faults.rflink_load import CountingRflinkSimulator, RflinkLoad, rflink_config
from tests.fixtures.gateway import GatewayProcess, NotifyListener, home_toml
from tests.fixtures.smalldisk import fill_disk, small_disk
from tests.fixtures.waiting import await_until

__all__ = ["small_disk"]  # the fixture, used by name below

DEVICES = """
[[devices]]
id = "smoke-kitchen"
driver = "rflink"
address = "SmokeAlert:123456"
role = "smoke"
room = "kitchen"

[[devices]]
id = "motion-hall"
driver = "rflink"
address = "Pir:aa66"
role = "motion"
room = "hall"

[[devices]]
id = "siren-hall"
driver = "rflink"
address = "NewKaku:1a2b"
role = "siren"
room = "hall"
"""


@dataclass
class Home:
    pipeline: Pipeline
    buffer: AsyncEventBuffer
    commands: list[LocalCommand]
    mono: float = 0.0

    def frame(self, body: str) -> RawFrame:
        self.mono += 5.0  # beyond the receiver's repeat window
        return RawFrame(
            driver="rflink",
            source="/dev/rflink",
            payload=f"20;00;{body}".encode(),
            wall_time=datetime.now(UTC),
            mono_time=self.mono,
        )

    async def flood_until_telemetry_is_dropped(self) -> None:
        for n in range(5000):
            state = "ON" if n % 2 == 0 else "OFF"
            frames = [self.frame(f"Pir;ID=aa66;PIR={state};")]
            await within(self.pipeline.process(frames), 10)
            if self.pipeline.stats.telemetry_dropped:
                return
        pytest.fail("the full disk never refused telemetry")


async def _home(state: Path, *, reserve_bytes: int) -> Home:
    drivers = '[[drivers]]\nid = "rflink"\ntype = "rflink"\nport = "/dev/null"\n'
    config = parse_config(home_toml(state, drivers=drivers, devices=DEVICES))
    driver = load_driver("rflink")("rflink", {"port": "/dev/null"}, config.devices)
    raw = EventBuffer.open(state / "buffer.db", gateway_id="gw-1", reserve_bytes=reserve_bytes)
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    commands: list[LocalCommand] = []

    async def send(command: LocalCommand) -> None:
        commands.append(command)

    engine = RuleEngine(
        load_rules(config.rules, devices=config.devices), config.devices, timezone="UTC"
    )
    pipeline = Pipeline(
        engine=engine,
        buffer=buffer,
        parsers={"rflink": driver.create_parser()},
        send_command=send,
        devices=DeviceStates(config.devices),
        stall_after=1.0,
        tick_interval=0.2,
    )
    return Home(pipeline, buffer, commands, time.monotonic())


@pytest.fixture
def watchdog(notify_listener: NotifyListener, monkeypatch: pytest.MonkeyPatch) -> NotifyListener:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.path)
    return notify_listener


async def _smoke_goes_off(home: Home, listener: NotifyListener) -> list[str]:
    """A telemetry frame and the smoke alarm together, then two seconds of the worker running
    with the watchdog at a 1 s interval. Returns the kinds the forwarder would send."""
    dog = asyncio.create_task(sdnotify.run_watchdog(home.pipeline.healthy, 1.0))
    worker = asyncio.create_task(home.pipeline.run())
    try:
        await home.pipeline.submit(home.frame("Pir;ID=aa66;PIR=ON;"))
        await home.pipeline.submit(home.frame("SmokeAlert;ID=123456;SMOKEALERT=ON;"))
        await asyncio.sleep(1.0)
        since = time.monotonic()
        await asyncio.sleep(2.0)
        assert listener.seen("WATCHDOG", "1", since=since), "the watchdog starved"
    finally:
        for task in (dog, worker):
            task.cancel()
        await asyncio.gather(dog, worker, return_exceptions=True)
    assert [c.action for c in home.commands] == ["siren_on"]
    return [e.kind.value for e in await home.buffer.pending(max_events=500)]


@pytest.mark.parametrize(
    ("reserve_bytes", "not_durable"),
    [
        pytest.param(2 * 2**20, 0, id="committed-from-the-reserve"),
        # No reserve: the alarm and the disk-full trouble are held in memory and forwarded.
        pytest.param(0, 2, id="held-in-memory"),
    ],
)
async def test_a_full_disk_still_sounds_and_forwards_the_smoke_alarm(
    small_disk: Path, watchdog: NotifyListener, reserve_bytes: int, not_durable: int
) -> None:
    home = await _home(small_disk / "state", reserve_bytes=reserve_bytes)
    try:
        fill_disk(small_disk)
        await home.flood_until_telemetry_is_dropped()
        kinds = await _smoke_goes_off(home, watchdog)
        assert kinds[:2] == [EventKind.SMOKE.value, EventKind.BUFFER_EVICTED.value]
        stats = home.buffer.stats(datetime.now(UTC))
        assert stats.disk_full
        assert stats.not_durable == not_durable
    finally:
        await home.buffer.aclose()


@pytest.mark.slow
async def test_the_daemon_on_a_full_disk_keeps_the_alarm_its_status_and_its_watchdog(
    small_disk: Path,
    gateway_factory: Callable[..., GatewayProcess],
    notify_listener: NotifyListener,
) -> None:
    """The reported case, end to end: a real `gatewayd run` under a notify socket with a 2 s
    watchdog, its state folder on an 8 MiB file system that another file fills. Doors flood
    telemetry until it is refused, then a smoke detector goes off: the alarm is committed,
    `gatewayd status` counts it and says the buffer is full, and the watchdog is fed."""
    async with CountingRflinkSimulator() as sim:
        text = home_toml(small_disk / "state", stall_after_s=1.0, **rflink_config(sim.port))
        gw = gateway_factory(
            text, env={"NOTIFY_SOCKET": notify_listener.path, "WATCHDOG_USEC": "2000000"}
        )
        gw.state_dir = small_disk / "state"
        gw.start()
        await await_until(lambda: notify_listener.seen("READY", "1"), 30, "READY=1")
        filler = fill_disk(small_disk)
        doors = RflinkLoad(sim, alarm_every=10**9)
        doors.sent = 1  # the load's first frame would be a smoke detector
        for _ in range(200):
            await doors.send(50)
            if gw.logged("telemetry_not_stored"):
                break
        assert gw.logged("telemetry_not_stored"), "the full disk never refused telemetry"
        await sim.smoke("123456", on=True)
        await await_until(
            lambda: [e for e in gw.logged("event") if e.get("kind") == "smoke"], 15, "smoke"
        )
        client = ControlClient(load_config(gw.config_path).status_socket, timeout=5)
        status = parse_status(await client.status()).status
        assert status.buffer.full
        assert status.buffer.depth.alarm >= 1
        assert "buffer_full" in [t.kind for t in status.troubles]
        since = time.monotonic()
        await asyncio.sleep(2.0)
        assert notify_listener.seen("WATCHDOG", "1", since=since), "the watchdog starved"
        assert status.buffer.not_durable == 0, "the alarm is committed, from the reserve"
        assert gw.running
        assert gw.stop() == 0
        filler.unlink()
        assert "smoke" in gw.kinds()
