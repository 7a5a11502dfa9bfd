"""The Modbus driver polling the simulated devices over real Modbus TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes

from drivers.base import DeviceSpec, DriverConfigError
from drivers.modbus import ModbusDriver, parse_modbus_address
from drivers.modbus.transport import make_client
from drivers.registry import load_driver
from firmware_sim.modbus import GAS, LEAK, ModbusSimulator
from tests.fixtures.broker import free_port
from tests.fixtures.procs import module_cmd, project_env
from tests.rflink.harness import has, running

FAST = {"interval": 0.1, "timeout": 0.25, "retries": 0, "offline_after": 3}


def specs(sim: ModbusSimulator) -> list[DeviceSpec]:
    return [
        DeviceSpec(
            id="gas-kitchen",
            driver="mb",
            address=sim.address(1),
            role="gas",
            options={"profile": GAS, "lel_step": 5},
        ),
        DeviceSpec(
            id="leak-bath",
            driver="mb",
            address=sim.address(2),
            role="water_leak",
            options={"profile": LEAK},
        ),
    ]


@pytest.fixture
async def sim() -> AsyncIterator[ModbusSimulator]:
    async with ModbusSimulator({1: GAS, 2: LEAK}) as simulator:
        yield simulator


async def test_gas_and_leak_alarms_and_restores(sim: ModbusSimulator) -> None:
    driver = ModbusDriver("mb", FAST, specs(sim))
    async with running(driver) as p:
        await p.wait_for(has("gas-kitchen", "gas", False))
        await p.wait_for(has("leak-bath", "water_leak", False))
        sim.set_gas(1, alarm1=True, lel=25)
        alarm = await p.wait_for(has("gas-kitchen", "gas", True))
        assert alarm.extra == {"level": 1, "lel": 25.0}
        await p.wait_for(has("gas-kitchen", "gas_concentration", 25.0))
        sim.set_gas(1, alarm2=True, lel=60)
        await p.wait_for(lambda r: r.property == "gas" and r.extra.get("level") == 2)
        sim.set_leak(2, leak=True, distance=7, feet=True)
        leak = await p.wait_for(has("leak-bath", "water_leak", True))
        assert leak.extra == {"distance": 7, "unit": "ft"}
        sim.set_leak(2, leak=False, cable_break=True)
        await p.wait_for(has("leak-bath", "fault", True))
        await p.wait_for(has("leak-bath", "water_leak", False))
        mark = p.mark()
        sim.set_gas(1, alarm1=False, alarm2=False, lel=0)
        await p.wait_for(has("gas-kitchen", "gas", False), after=mark)
        # Changes only: one alarm reading per change, however many polls saw it.
        assert p.count(has("gas-kitchen", "gas", True)) == 2
        assert p.count(has("leak-bath", "water_leak", True)) == 1
        assert p.parser.stats.rejected == 0
        data = [f for f in p.frames if f.kind == "data"]
        assert all(f.source in (sim.address(1), sim.address(2)) for f in data)
        # Unchanged polls are not sent on: far fewer frames than polls.
        polls = sum(driver.poller.polls.values())
        assert len(data) < polls
        # The recorded frames replay to the same readings through a fresh parser.
        fresh = driver.create_parser()
        assert [r for f in p.frames for r in fresh.parse(f)] == p.readings


async def test_link_is_up_at_every_start_of_the_poller(sim: ModbusSimulator) -> None:
    # After a failed run() (reported by the daemon as link down), the restart restores it.
    driver = ModbusDriver("mb", FAST, specs(sim))
    for _ in range(2):
        async with running(driver) as p:
            await p.wait_for(has("mb", "link", True))
            await p.wait_for(has("gas-kitchen", "available", True))


async def test_devices_offline_when_the_server_stops_and_back_on_the_same_port(
    sim: ModbusSimulator,
) -> None:
    driver = ModbusDriver("mb", FAST, specs(sim))
    async with running(driver) as p:
        await p.wait_for(has("gas-kitchen", "available", True))
        await p.wait_for(has("leak-bath", "available", True))
        sim.set_gas(1, alarm1=True, lel=30)
        await p.wait_for(has("gas-kitchen", "gas", True))
        mark = p.mark()
        await sim.stop()
        off = await p.wait_for(has("gas-kitchen", "available", False), after=mark)
        assert off.extra["failed_polls"] == 3
        await p.wait_for(has("leak-bath", "available", False), after=mark)
        await asyncio.sleep(0.3)  # more failed polls: still one offline reading each
        assert p.count(has("gas-kitchen", "available", False)) == 1
        mark = p.mark()
        await sim.start()
        await p.wait_for(has("gas-kitchen", "available", True), after=mark)
        await p.wait_for(has("leak-bath", "available", True), after=mark)
        # The alarm held across the outage: no second alarm reading.
        assert p.count(has("gas-kitchen", "gas", True)) == 1
        fresh = driver.create_parser()
        assert [r for f in p.frames for r in fresh.parse(f)] == p.readings


async def test_exception_responses_make_the_device_offline(sim: ModbusSimulator) -> None:
    driver = ModbusDriver("mb", FAST, specs(sim))
    async with running(driver) as p:
        await p.wait_for(has("gas-kitchen", "available", True))
        sim.fail(1, ExcCodes.DEVICE_BUSY)
        off = await p.wait_for(has("gas-kitchen", "available", False))
        assert "exception 6" in str(off.extra["error"])
        sim.heal(1)
        await p.wait_for(has("gas-kitchen", "available", True), after=p.mark() - 1)
        assert p.count(has("leak-bath", "available", False)) == 0


async def test_a_silent_device_times_out_without_blocking_its_neighbour(
    sim: ModbusSimulator,
) -> None:
    driver = ModbusDriver("mb", FAST, specs(sim))
    async with running(driver) as p:
        await p.wait_for(has("leak-bath", "available", True))
        sim.hang(2, seconds=5)
        off = await p.wait_for(has("leak-bath", "available", False))
        assert "no answer" in str(off.extra["error"])
        # The gas detector on the same connection keeps being read.
        sim.set_gas(1, alarm1=True, lel=20)
        await p.wait_for(has("gas-kitchen", "gas", True))
        sim.heal(2)
        mark = p.mark()
        await p.wait_for(has("leak-bath", "available", True), after=mark)
        assert p.count(has("gas-kitchen", "available", False)) == 0


async def test_serial_line_that_does_not_exist_is_offline_not_a_dead_driver() -> None:
    spec = DeviceSpec(
        id="leak-cellar",
        driver="mb",
        address="rtu:///nonexistent/ttyUSB9/4?baudrate=9600",
        role="water_leak",
        options={"profile": LEAK},
    )
    driver = ModbusDriver("mb", {**FAST, "offline_after": 2}, [spec])
    async with running(driver) as p:
        off = await p.wait_for(has("leak-cellar", "available", False))
        assert off.extra["failed_polls"] == 2
        await asyncio.sleep(0.3)
        assert driver.poller.polls["leak-cellar"] >= 4


async def test_clients_for_each_scheme() -> None:
    tcp = make_client(parse_modbus_address("tcp://127.0.0.1:5020/1"), 1.0, 0)
    rtu = make_client(parse_modbus_address("rtu:///dev/ttyUSB0/3?baudrate=19200"), 1.0, 0)
    assert isinstance(tcp, AsyncModbusTcpClient)
    assert isinstance(rtu, AsyncModbusSerialClient)
    assert rtu.ctx.comm_params.baudrate == 19200


def test_registered_under_its_type_name() -> None:
    assert load_driver("modbus") is ModbusDriver


def _spec(address: str = "tcp://h/1", **options: Any) -> DeviceSpec:
    return DeviceSpec(id="d", driver="mb", address=address, role="gas", options=options)


@pytest.mark.parametrize(
    ("options", "devices", "message"),
    [
        ({"interval": 0}, [], "interval"),
        ({"offline_after": 0}, [], "offline_after"),
        ({"polling": 2}, [], "polling"),
        ({}, [_spec("modbus://h/1", profile=GAS)], "'d'.*tcp:// or rtu://"),
        ({}, [_spec("tcp://h/1")], "options.profile"),
        ({}, [_spec(profile="smoke_panel")], "unknown Modbus profile 'smoke_panel'"),
        ({}, [_spec(profile=GAS, colour="red")], "unknown option.*colour"),
        ({}, [_spec(profile=GAS, lel_step="five")], "lel_step"),
        (
            {},
            [
                _spec("rtu:///dev/ttyUSB0/1?baudrate=9600", profile=GAS),
                DeviceSpec(
                    id="e",
                    driver="mb",
                    address="rtu:///dev/ttyUSB0/2?baudrate=19200",
                    role="gas",
                    options={"profile": GAS},
                ),
            ],
            "share serial port /dev/ttyUSB0 with different settings",
        ),
        (
            {},
            [
                _spec("tcp://h:502/1", profile=GAS),
                DeviceSpec(
                    id="e", driver="mb", address="tcp://h/1", role="gas", options={"profile": GAS}
                ),
            ],
            "same address",
        ),
    ],
)
def test_bad_config_is_named(
    options: dict[str, Any], devices: list[DeviceSpec], message: str
) -> None:
    with pytest.raises(DriverConfigError, match=message):
        ModbusDriver("mb", options, devices)


async def test_simulator_standalone() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *module_cmd("firmware_sim.modbus", "--port", str(port)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=project_env(),
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        async with asyncio.timeout(10):
            first = (await proc.stdout.readline()).decode()
            assert f"tcp://127.0.0.1:{port}/1" in first
            proc.stdin.write(b"gas 1 alarm1 lel=25\n")
            assert (await proc.stdout.readline()).strip() == b"ok"
            async with AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2) as client:
                status = await client.read_holding_registers(0, count=4, device_id=1)
                assert status.registers == [0x41, 261, 16840, 0]
            proc.stdin.close()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
