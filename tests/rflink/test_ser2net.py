"""The RFLink driver on a ``socket://`` port: the receiver behind a ser2net-style TCP bridge.

A receiver on another machine is commonly reached through ser2net, which accepts a TCP
connection and shuttles bytes to and from the serial port. The bridge here does the same with
the simulated receiver's pty, so the driver's pyserial ``socket://`` path is exercised for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import serial_asyncio_fast

from drivers.base import DeviceSpec
from drivers.rflink import RflinkDriver
from firmware_sim.rflink import RflinkSimulator
from tests.rflink.harness import has, running


class Ser2net:
    """Accept TCP clients and connect each to the serial port, as ser2net does."""

    def __init__(self, serial_port: str) -> None:
        self.serial_port = serial_port
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            port_reader, port_writer = await serial_asyncio_fast.open_serial_connection(
                url=self.serial_port, baudrate=57600
            )
        except OSError:
            writer.close()  # the serial port is gone: ser2net drops the connection
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(1024):
                    dst.write(data)
                    await dst.drain()

        tasks = [
            asyncio.create_task(pump(reader, port_writer)),
            asyncio.create_task(pump(port_reader, writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (writer, port_writer):
                with contextlib.suppress(Exception):
                    w.close()


@pytest.fixture
async def bridged() -> AsyncIterator[tuple[RflinkSimulator, Ser2net]]:
    async with RflinkSimulator() as sim:
        bridge = Ser2net(sim.port)
        await bridge.start()
        try:
            yield sim, bridge
        finally:
            await bridge.stop()


async def test_alarm_and_port_loss_through_a_tcp_bridge(
    bridged: tuple[RflinkSimulator, Ser2net],
) -> None:
    sim, bridge = bridged
    driver = RflinkDriver(
        "rf",
        {
            "port": f"socket://127.0.0.1:{bridge.port}",
            "ping_interval": 0.3,
            "ping_timeout": 0.25,
            "startup_delay": 0.05,
            "reconnect_min": 0.05,
            "reconnect_max": 0.3,
        },
        [DeviceSpec(id="smoke-hall", driver="rf", address="SmokeAlert:123456", role="smoke")],
    )
    async with running(driver) as p:
        await p.wait_for(has("rf", "link", True))
        await sim.smoke("123456")
        await p.wait_for(has("smoke-hall", "smoke", True))
        mark = p.mark()
        sim.unplug()
        await p.wait_for(has("rf", "link", False), after=mark)
        sim.replug()
        await p.wait_for(has("rf", "link", True), after=mark)
        await sim.smoke("123456", on=False)
        await p.wait_for(has("smoke-hall", "smoke", False))
