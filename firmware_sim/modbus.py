"""Modbus TCP devices on loopback: gas detectors and water-leak controllers with real register maps.

A pymodbus TCP server on 127.0.0.1 (a free port unless one is given) serving one or more unit
ids, each with the register map of a profile in :mod:`drivers.modbus.profiles`:

- ``combustible_gas``: holding 40001 status (bits 0-3 state, 4-5 fault, 6 alarm 1, 7 alarm 2),
  40003-40004 concentration as float32 %LEL;
- ``water_leak_controller``: input 30001 status (bit 0 leak, 1 cable break, 2 contamination,
  3 summary), 30002 leak distance, 30003 units.

Scenarios change what the devices report, make a device answer with a Modbus exception or not
at all, and stop and restart the whole server on the same port::

    async with ModbusSimulator({1: "combustible_gas", 2: "water_leak_controller"}) as sim:
        sim.set_gas(1, alarm1=True, lel=25)
        sim.set_leak(2, leak=True, distance=12)
        await sim.stop()     # the driver sees the connection refused
        await sim.start()    # same port; the driver recovers

Standalone: ``python -m firmware_sim.modbus --port 5020`` serves unit 1 (gas) and 2 (leak) and
reads commands on stdin (``gas 1 alarm1 lel=25``, ``gas 1 clear``, ``leak 2 on``, ``leak 2 off``,
``break 2``, ``fail 1``, ``heal 1``, ``hang 1``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
from types import TracebackType
from typing import Any

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["GAS", "LEAK", "ModbusSimulator"]

log = structlog.get_logger(__name__)

GAS = "combustible_gas"
LEAK = "water_leak_controller"
_REGISTERS = 16  # each table of each device: addresses 0..15
_READ_HOLDING, _READ_INPUT = 3, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Device:
    def __init__(self, unit: int, profile: str) -> None:
        if profile not in (GAS, LEAK):
            raise ValueError(f"unknown profile {profile!r}; the simulator has {GAS}, {LEAK}")
        self.unit = unit
        self.profile = profile
        self.holding = [0] * _REGISTERS
        self.input = [0] * _REGISTERS
        #: A Modbus exception code to answer with instead of data.
        self.exception: ExcCodes | None = None
        #: Seconds to sit on each request before answering (longer than the client's timeout:
        #: the device does not answer).
        self.delay = 0.0
        self.reads = 0
        if profile == GAS:
            self.holding[0] = 0x0001  # monitoring, no inhibit
            self.holding[1] = 0x0105  # gas id / cartridge id, decorative
        else:
            self.input[2] = 0  # metres


class ModbusSimulator:
    def __init__(
        self,
        devices: dict[int, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        devices = devices if devices is not None else {1: GAS, 2: LEAK}
        if not devices:
            raise ValueError("a simulator needs at least one device")
        for unit in devices:
            if not 1 <= unit <= 247:
                raise ValueError(f"unit ids are 1..247, got {unit}")
        self.host = host
        self.port = port or _free_port()
        self.devices = {unit: _Device(unit, profile) for unit, profile in devices.items()}
        self._server: ModbusTcpServer | None = None

    def address(self, unit: int) -> str:
        """The device address the driver's config names (``tcp://127.0.0.1:PORT/UNIT``)."""
        return f"tcp://{self.host}:{self.port}/{unit}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        sim_devices = [self._sim_device(d) for d in self.devices.values()]
        server = ModbusTcpServer(sim_devices, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        log.info("modbus_sim_started", host=self.host, port=self.port, units=list(self.devices))

    async def stop(self) -> None:
        """Close the listener and every connection, as a device losing power would."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it bare
            # Let the transports' close callbacks run, so the port is free for start().
            await asyncio.sleep(0)
            log.info("modbus_sim_stopped", port=self.port)

    # -- what the devices report -------------------------------------------------------------

    def set_gas(
        self,
        unit: int,
        *,
        alarm1: bool | None = None,
        alarm2: bool | None = None,
        fault: int | None = None,
        lel: float | None = None,
        warmup: bool | None = None,
    ) -> None:
        """Change a gas detector: alarms, fault (0 none, 1 maintenance, 2 instrument), %LEL."""
        device = self._device(unit, GAS)
        status = device.holding[0]
        if alarm1 is not None:
            status = _bit(status, 6, alarm1)
        if alarm2 is not None:
            status = _bit(status, 7, alarm2)
        if fault is not None:
            if fault not in (0, 1, 2, 3):
                raise ValueError("fault is 0 (none), 1 (maintenance) or 2 (instrument)")
            status = (status & ~0x0030) | (fault << 4)
        if warmup is not None:
            status = (status & ~0x000F) | (0 if warmup else 1)
        device.holding[0] = status
        if lel is not None:
            high, low = struct.unpack(">HH", struct.pack(">f", float(lel)))
            device.holding[2], device.holding[3] = high, low

    def set_leak(
        self,
        unit: int,
        *,
        leak: bool | None = None,
        cable_break: bool | None = None,
        contamination: bool | None = None,
        distance: int | None = None,
        feet: bool | None = None,
    ) -> None:
        """Change a leak controller; the summary bit follows the alarm bits, as on the device."""
        device = self._device(unit, LEAK)
        status = device.input[0]
        if leak is not None:
            status = _bit(status, 0, leak)
        if cable_break is not None:
            status = _bit(status, 1, cable_break)
        if contamination is not None:
            status = _bit(status, 2, contamination)
        status = _bit(status, 3, bool(status & 0x7))
        device.input[0] = status
        if distance is not None:
            device.input[1] = distance & 0xFFFF
        if feet is not None:
            device.input[2] = 1 if feet else 0

    def fail(self, unit: int, code: ExcCodes = ExcCodes.DEVICE_FAILURE) -> None:
        """Answer every request to this unit with a Modbus exception."""
        self._device(unit).exception = code

    def hang(self, unit: int, seconds: float = 30.0) -> None:
        """Sit on every request to this unit for ``seconds`` (the client times out)."""
        self._device(unit).delay = seconds

    def heal(self, unit: int) -> None:
        device = self._device(unit)
        device.exception = None
        device.delay = 0.0

    def reads(self, unit: int) -> int:
        return self._device(unit).reads

    # -- internals ---------------------------------------------------------------------------

    def _device(self, unit: int, profile: str | None = None) -> _Device:
        device = self.devices.get(unit)
        if device is None:
            raise KeyError(f"no simulated device with unit id {unit}")
        if profile is not None and device.profile != profile:
            raise ValueError(f"unit {unit} is a {device.profile}, not a {profile}")
        return device

    def _sim_device(self, device: _Device) -> SimDevice:
        async def action(
            func_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            # pymodbus hands us the table's registers to fill in before it answers.
            device.reads += 1
            if device.delay:
                await asyncio.sleep(device.delay)
            if device.exception is not None:
                return device.exception
            source = device.holding if func_code == _READ_HOLDING else device.input
            if func_code in (_READ_HOLDING, _READ_INPUT):
                for i in range(min(len(source), len(registers))):
                    if 0 <= start_address + i < len(source):
                        registers[i] = source[start_address + i]
            return None

        def table() -> list[SimData]:
            return [SimData(0, count=_REGISTERS, values=0, datatype=DataType.REGISTERS)]

        def bits() -> list[SimData]:
            return [SimData(0, count=16, values=False, datatype=DataType.BITS)]

        return SimDevice(id=device.unit, simdata=(bits(), bits(), table(), table()), action=action)


def _bit(value: int, bit: int, on: bool) -> int:
    return value | (1 << bit) if on else value & ~(1 << bit)


# -- standalone ------------------------------------------------------------------------------


def _apply(sim: ModbusSimulator, words: list[str]) -> str:
    cmd, args = words[0].lower(), words[1:]
    if not args or not args[0].isdigit():
        return "usage: <gas|leak|break|fail|heal|hang> UNIT [...]"
    unit, rest = int(args[0]), [a.lower() for a in args[1:]]
    options: dict[str, Any] = dict(a.split("=", 1) for a in rest if "=" in a)
    if cmd == "gas":
        clear = "clear" in rest
        sim.set_gas(
            unit,
            alarm1=False if clear else ("alarm1" in rest or "alarm2" in rest or None),
            alarm2=False if clear else ("alarm2" in rest or None),
            lel=float(options["lel"]) if "lel" in options else (0.0 if clear else None),
        )
    elif cmd == "leak":
        sim.set_leak(unit, leak="off" not in rest, distance=int(options.get("distance", 0)))
    elif cmd == "break":
        sim.set_leak(unit, cable_break="off" not in rest)
    elif cmd == "fail":
        sim.fail(unit)
    elif cmd == "hang":
        sim.hang(unit)
    elif cmd == "heal":
        sim.heal(unit)
    else:
        return f"unknown command: {' '.join(words)}"
    return "ok"


async def _main(port: int | None) -> None:
    async with ModbusSimulator(port=port) as sim:
        print(f"Modbus simulator: gas at {sim.address(1)}, leak at {sim.address(2)}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            words = line.decode("utf-8", "replace").split()
            if words:
                try:
                    print(_apply(sim, words), flush=True)
                except (ValueError, KeyError) as exc:
                    print(f"error: {exc}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim.modbus",
        description="A gas detector (unit 1) and a leak controller (unit 2) on Modbus TCP.",
    )
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    args = parser.parse_args(argv)
    # Stdout answers the commands; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port))


if __name__ == "__main__":
    main()
