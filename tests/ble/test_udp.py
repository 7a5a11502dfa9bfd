"""The simulator in another process: advertisements and a GATT wristband over loopback UDP."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest

from drivers.base import LocalCommand, TransportError
from drivers.ble import BleDriver
from firmware_sim.ble import BleBroadcaster, BthomeDevice, UdpScannerBackend
from runtime.timeouts import within
from tests.ble.helpers import running, spec
from tests.ble.test_driver import KEY, PENDANT, SMOKE
from tests.fixtures.procs import REPO_ROOT, module_cmd, project_env

BAND = "FF:FF:10:2A:4B:01"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_broadcaster_reaches_a_udp_scanner_driver() -> None:
    port = free_udp_port()
    driver = BleDriver(
        "ble",
        {"scanner": f"udp://127.0.0.1:{port}"},
        [spec("smoke", SMOKE, "smoke", bind_key=KEY), spec("pendant", PENDANT, "pendant")],
    )
    smoke, pendant = BthomeDevice(SMOKE, bind_key=KEY), BthomeDevice(PENDANT)
    async with running(driver) as pipe:
        with BleBroadcaster(port) as air:
            air.send(smoke.smoke(True), repeats=3)
            air.send(pendant.press(), repeats=3)
            await pipe.wait(lambda: pipe.seen("pendant", "action"))
            await pipe.wait(lambda: pipe.seen("smoke", "smoke", True))
            # Garbage on the port is refused and counted by the stand-in scanner, not fatal.
            air._sock.sendto(b"not an advertisement", air.address)
            air.send(smoke.smoke(False))
            await pipe.wait(lambda: pipe.seen("smoke", "smoke", False))
    assert len(pipe.seen("pendant", "action")) == 1
    assert pipe.parser.stats.rejected == 0


async def test_udp_scanner_port_in_use_is_a_transport_error() -> None:
    port = free_udp_port()
    first = UdpScannerBackend("127.0.0.1", port)
    await first.start(lambda _d, _a: None)
    try:
        with pytest.raises(TransportError, match=f"udp://127.0.0.1:{port}"):
            await UdpScannerBackend("127.0.0.1", port).start(lambda _d, _a: None)
    finally:
        await first.stop()


async def test_advertisements_from_another_process() -> None:
    port = free_udp_port()
    driver = BleDriver(
        "ble",
        {"scanner": f"udp://127.0.0.1:{port}"},
        [spec("smoke", SMOKE, "smoke", bind_key=KEY), spec("pendant", PENDANT, "pendant")],
    )
    async with running(driver) as pipe:
        for args in (
            ["--address", PENDANT, "press"],
            ["--address", SMOKE, "--bind-key", KEY, "smoke", "tamper", "battery=4"],
        ):
            proc = await asyncio.create_subprocess_exec(
                *module_cmd("firmware_sim.ble", "advertise", "--port", str(port), *args),
                env=project_env(),
                cwd=REPO_ROOT,
            )
            assert await within(proc.wait(), 30) == 0
        await pipe.wait(lambda: pipe.seen("smoke", "battery", 4.0), within=10)
    assert len(pipe.seen("pendant", "action", "single")) == 1
    assert pipe.seen("smoke", "smoke", True)
    assert pipe.seen("smoke", "tamper", True)


@pytest.mark.slow
async def test_wristband_in_another_process_press_loss_and_return() -> None:
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        *module_cmd("firmware_sim.ble", "wristband", "--port", str(port), "--address", BAND),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=project_env(),
        cwd=REPO_ROOT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def command(line: str) -> str:
        stdin.write(line.encode() + b"\n")
        await stdin.drain()
        return (await within(stdout.readline(), 10)).decode().strip()

    try:
        assert (await within(stdout.readline(), 30)).decode().strip() == "ready"
        driver = BleDriver(
            "ble",
            {
                "client": f"udp://127.0.0.1:{port}",
                "gatt_offline_after_s": 1.0,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
                "connect_timeout_s": 2.0,
            },
            [spec("band", BAND, "wristband", gatt=True, ack_characteristic="2a06")],
        )
        async with running(driver) as pipe:
            await pipe.wait(lambda: pipe.seen("band", "available", True), within=10)
            assert await command("press") == "pressed"
            await pipe.wait(lambda: pipe.seen("band", "action", "single"))
            assert await driver.send(LocalCommand(device="band", action="ack"))
            assert await command("writes") == "00002a06-0000-1000-8000-00805f9b34fb=01"

            assert await command("drop") == "dropped"
            await pipe.wait(lambda: driver.links[BAND].connects == 2, within=10)
            assert await command("status") == "connected"
            assert await command("press") == "pressed"
            await pipe.wait(lambda: len(pipe.seen("band", "action", "single")) == 2)

            # The simulator process dies: the link times out and the band becomes unavailable.
            proc.kill()
            await proc.wait()
            await pipe.wait(lambda: pipe.seen("band", "available", False), within=10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert [r.value for r in pipe.seen("band", "available")] == [True, False]


def test_advertise_cli_refuses_unknown_events() -> None:
    result = subprocess.run(
        module_cmd(
            "firmware_sim.ble",
            "advertise",
            "--port",
            str(free_udp_port()),
            "--address",
            PENDANT,
            "explode",
        ),
        capture_output=True,
        text=True,
        env=project_env(),
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown event(s): explode" in result.stderr
