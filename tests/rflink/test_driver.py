"""The RFLink driver against the simulated receiver on a real pty: alarms, troubles, reconnects."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import serial

from contract.wire import RawFrame
from drivers.base import DeviceSpec, DriverConfigError, LocalCommand
from drivers.registry import load_driver
from drivers.rflink import RflinkDriver
from drivers.rflink.transport import RflinkTransport, SerialSettings
from firmware_sim.rflink import RflinkSimulator
from runtime.backoff import Backoff
from tests.fixtures.procs import module_cmd, project_env
from tests.rflink.harness import has, running

DEVICES = [
    DeviceSpec(id="smoke-hall", driver="rf", address="SmokeAlert:123456", role="smoke"),
    DeviceSpec(id="pir-hall", driver="rf", address="Pir:aa66", role="motion"),
    DeviceSpec(id="sos-bed", driver="rf", address="Kaku:41", role="sos_button"),
    DeviceSpec(id="door-front", driver="rf", address="NewKaku:cac142", role="door"),
    DeviceSpec(id="siren", driver="rf", address="NewKaku:00c142:1", role="siren"),
]
FAST = {
    "ping_interval": 0.3,
    "ping_timeout": 0.25,
    "startup_delay": 0.05,
    "reconnect_min": 0.05,
    "reconnect_max": 0.3,
}


def make_driver(port: str, **options: Any) -> RflinkDriver:
    return RflinkDriver("rf", {"port": port, **FAST, **options}, DEVICES)


@pytest.fixture
async def sim() -> AsyncIterator[RflinkSimulator]:
    async with RflinkSimulator() as simulator:
        yield simulator


async def test_alarms_from_the_receiver(sim: RflinkSimulator) -> None:
    async with running(make_driver(sim.port)) as p:
        await p.wait_for(has("rf", "link", True))
        await sim.smoke("123456", on=True, repeats=3)
        await sim.pir("aa66")
        await sim.button("NewKaku", "cac142", switch="3", cmd="ON")
        await sim.battery_low("Pir", "aa66", extra="PIR=OFF;")
        await p.wait_for(has("smoke-hall", "smoke", True))
        await p.wait_for(has("pir-hall", "motion", True))
        await p.wait_for(has("door-front", "contact_open", True))
        await p.wait_for(has("pir-hall", "battery_low", True))
        await p.wait_for(has("pir-hall", "motion", False))
        await sim.smoke("123456", on=False)
        await p.wait_for(has("smoke-hall", "smoke", False))
        # Three copies on the air, one alarm.
        assert p.count(has("smoke-hall", "smoke", True)) == 1
        assert p.parser.stats.rejected == 0


async def test_sos_presses_are_each_reported_once(sim: RflinkSimulator) -> None:
    async with running(make_driver(sim.port, repeat_window=0.5)) as p:
        await p.wait_for(has("rf", "link", True))
        await sim.button("Kaku", "41", repeats=4)  # 4 copies, 50 ms apart
        await p.wait_for(has("sos-bed", "action", "on"))
        await asyncio.sleep(0.6)
        await sim.button("Kaku", "41", repeats=4)
        mark = p.mark()
        await p.wait_for(has("sos-bed", "action", "on"), after=mark - 1)
        await asyncio.sleep(0.3)
        assert p.count(has("sos-bed", "action", "on")) == 2
        assert p.count(has("sos-bed", "sos", True)) == 0  # the rules decide what is an SOS


async def test_banner_after_a_receiver_reboot_is_no_reading(sim: RflinkSimulator) -> None:
    async with running(make_driver(sim.port)) as p:
        await p.wait_for(has("rf", "link", True))
        sim.reboot()
        await sim.pir("aa66")
        await p.wait_for(has("pir-hall", "motion", True))
        assert any(b"RFLink Gateway" in f.payload for f in p.frames)
        assert p.parser.stats.rejected == 0


async def test_unplugged_receiver_is_link_down_and_recovers(sim: RflinkSimulator) -> None:
    driver = make_driver(sim.port)
    async with running(driver) as p:
        await p.wait_for(has("rf", "link", True))
        mark = p.mark()
        sim.unplug()
        down = await p.wait_for(has("rf", "link", False), after=mark)
        assert "port" in str(down.extra["reason"])
        await asyncio.sleep(0.4)  # a few failed reopen attempts
        mark = p.mark()
        sim.replug()
        await p.wait_for(has("rf", "link", True), after=mark)
        await sim.smoke("123456")
        await p.wait_for(has("smoke-hall", "smoke", True), after=mark)
        assert driver.transport.opens == 2
        # One down and one up per outage, however many reopen attempts failed.
        assert [r.value for r in p.readings if r.property == "link"] == [True, False, True]
        # The recorded frames, link frames included, replay to the same readings.
        fresh = driver.create_parser()
        assert [r for f in p.frames for r in fresh.parse(f)] == p.readings


async def test_receiver_that_stops_answering_pings_is_link_down(sim: RflinkSimulator) -> None:
    async with running(make_driver(sim.port)) as p:
        await p.wait_for(has("rf", "link", True))
        mark = p.mark()
        sim.stop_answering_pings()
        down = await p.wait_for(has("rf", "link", False), after=mark)
        assert "PING" in str(down.extra["reason"])
        pings = sim.pings
        sim.answer_pings()
        await p.wait_for(has("rf", "link", True), after=mark)
        assert sim.pings > pings


async def test_missing_port_at_start_then_plugged_in() -> None:
    sim = RflinkSimulator()
    async with running(make_driver(sim.port)) as p:
        down = await p.wait_for(has("rf", "link", False))
        assert "cannot open" in str(down.extra["reason"])
        await sim.start()
        try:
            await p.wait_for(has("rf", "link", True))
            await sim.pir("aa66")
            await p.wait_for(has("pir-hall", "motion", True))
        finally:
            await sim.stop()


async def test_siren_command_is_transmitted(sim: RflinkSimulator) -> None:
    driver = make_driver(sim.port)
    async with running(driver) as p:
        await p.wait_for(has("rf", "link", True))
        assert await driver.send(LocalCommand(device="siren", action="siren_on"))
        assert not await driver.send(LocalCommand(device="nobody", action="siren_on"))
        assert not await driver.send(LocalCommand(device="siren", action="ack"))
        await sim.wait_for_command("10;NewKaku;00c142;1;ON;", within=3)


async def test_send_without_a_port_is_false() -> None:
    driver = make_driver("/nonexistent/rflink")
    assert not await driver.send(LocalCommand(device="siren", action="siren_on"))


def test_registered_under_its_type_name() -> None:
    assert load_driver("rflink") is RflinkDriver


@pytest.mark.parametrize(
    ("options", "devices", "message"),
    [
        ({}, [], "port"),
        ({"port": "/dev/x", "ping_timeout": 20}, [], "ping_timeout"),
        ({"port": "/dev/x", "stopbits": 3}, [], "stopbits"),
        ({"port": "/dev/x", "baud": 9600}, [], "baud"),
        (
            {"port": "/dev/x"},
            [DeviceSpec(id="s", driver="rf", address="SmokeAlert", role="smoke")],
            "'s'.*Protocol:ID",
        ),
        (
            {"port": "/dev/x"},
            [
                DeviceSpec(id="a", driver="rf", address="Pir:AA66", role="motion"),
                DeviceSpec(id="b", driver="rf", address="pir:aa66", role="motion"),
            ],
            "'a' and 'b' have the same RFLink address",
        ),
    ],
)
def test_bad_config_is_named(
    options: dict[str, Any], devices: list[DeviceSpec], message: str
) -> None:
    with pytest.raises(DriverConfigError, match=message):
        RflinkDriver("rf", options, devices)


def backoff_of(minimum: float, maximum: float) -> Backoff:
    settings = SerialSettings("socket://127.0.0.1:1")
    return RflinkTransport("rf", settings, reconnect_min=minimum, reconnect_max=maximum).backoff


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff_of(0.5, 30.0).delay_for(n) for n in range(12)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(d <= 30.0 for d in delays)
    assert delays[10] >= 24.0  # capped near the maximum
    assert len({round(backoff_of(1, 60).delay_for(3), 6) for _ in range(20)}) > 1


def test_simulator_standalone() -> None:
    with subprocess.Popen(
        module_cmd("firmware_sim.rflink"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=project_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            first = proc.stdout.readline()
            assert first.startswith("RFLink simulator on ")
            port = first.rsplit(" ", 1)[1].strip()
            with serial.serial_for_url(port, baudrate=57600, timeout=3) as ser:
                ser.write(b"10;PING;\r\n")
                assert ser.readline().strip() == b"20;99;PONG;"
                proc.stdin.write("pir aa66\n")
                proc.stdin.flush()
                line = ser.readline().strip()
                assert line.endswith(b";Pir;ID=aa66;PIR=ON;")
            proc.stdin.close()  # end of input: the simulator cleans up and exits
            assert proc.wait(5) == 0
            assert not os.path.lexists(port)
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_a_restarted_transport_states_its_link_again(sim: RflinkSimulator) -> None:
    # The daemon restarts a failed run() and reports the failure as link down itself; the
    # new run must say "up" again or the driver fault would never be restored.
    driver = make_driver(sim.port)
    parser = driver.create_parser()
    seen: list[tuple[str, object]] = []

    async def failing_emit(frame: RawFrame) -> None:
        seen.extend((r.property, r.value) for r in parser.parse(frame))
        if frame.kind == "data":
            raise RuntimeError("pipeline refused the frame")

    first = asyncio.create_task(driver.run(failing_emit))
    await asyncio.sleep(0.2)
    await sim.pir("aa66")
    with pytest.raises(RuntimeError, match="pipeline refused"):
        async with asyncio.timeout(5):
            await first
    assert seen == [("link", True), ("motion", True)]
    async with running(driver) as p:
        await p.wait_for(has("rf", "link", True))


async def test_line_noise_and_split_lines_on_the_wire(sim: RflinkSimulator) -> None:
    async with running(make_driver(sim.port)) as p:
        await p.wait_for(has("rf", "link", True))
        await sim.raw("\x00\xfe\xff garbage without sense\r\n")
        await sim.raw("Z" * 5000 + "\r\n")  # longer than the line limit: dropped, not fatal
        await sim.raw("20;30;Pir;ID=aa")  # one packet arriving in two reads
        await asyncio.sleep(0.05)
        await sim.raw("66;PIR=ON;\r\n")
        await p.wait_for(has("pir-hall", "motion", True))
        await sim.smoke("123456")
        await p.wait_for(has("smoke-hall", "smoke", True))
        assert p.parser.stats.rejected >= 1
        assert p.count(has("rf", "link", False)) == 0
