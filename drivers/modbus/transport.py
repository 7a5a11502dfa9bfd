"""Polling Modbus devices with pymodbus: each poll becomes one frame.

One task per endpoint (a TCP host:port, or a serial line) polls its devices in turn every
``interval`` seconds, over one connection: an RS-485 line carries one request at a time, and
most Modbus TCP gateways allow few connections. For each device it reads the profile's register
blocks and emits a ``data`` frame (:func:`~.parser.poll_payload`) or, when the device did not
answer, a failed-poll frame (:func:`~.parser.failed_poll_payload`); the parser decides what is a
change and when a device is offline. A good poll identical to the previous one is not emitted
again (nothing changed and the parser would drop it), but one after a failure always is.

A timeout, a refused connection, a Modbus exception response, even an unexpected error in
pymodbus, is a failed poll of that device, never the end of the task: the next poll reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from drivers.base import FrameSink, data_frame, link_frame

from .address import ModbusAddress
from .parser import ModbusDevice, failed_poll_payload, poll_payload
from .profiles import Block

__all__ = ["ClientFactory", "ModbusPoller", "make_client"]

log = structlog.get_logger(__name__)

#: Exception codes of the Modbus application protocol, for readable errors.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

_READ_HOLDING, _READ_INPUT = 3, 4
T = TypeVar("T")

_READ_HOLDING, _READ_INPUT = 3, 4

ClientFactory = Callable[[ModbusAddress, float, int], ModbusBaseClient]


def make_client(address: ModbusAddress, timeout: float, retries: int) -> ModbusBaseClient:
    """A pymodbus client for the endpoint; reconnects are ours (reconnect_delay=0)."""
    if address.scheme == "tcp":
        return AsyncModbusTcpClient(
            address.host, port=address.port, timeout=timeout, retries=retries, reconnect_delay=0
        )
    return AsyncModbusSerialClient(
        address.host,
        baudrate=address.baudrate,
        parity=address.parity,
        bytesize=address.bytesize,
        stopbits=address.stopbits,
        timeout=timeout,
        retries=retries,
        reconnect_delay=0,
    )


class _PollFailed(Exception):
    pass


async def _bounded(call: Awaitable[T], seconds: float) -> T:
    """Await a pymodbus call for at most ``seconds``, and stay cancellable whatever it does.

    pymodbus awaits with ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation
    that races with completion; the call runs in its own task behind a shield, so cancelling
    the poller always cancels the poller, and the call is cancelled after it.
    """
    inner = asyncio.ensure_future(call)
    # Whatever it ends with after we stop waiting is already reported (or moot): retrieve it.
    inner.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.shield(inner)
    finally:
        if not inner.done():
            inner.cancel()


class ModbusPoller:
    def __init__(
        self,
        driver_id: str,
        devices: Sequence[ModbusDevice],
        *,
        interval: float = 2.0,
        timeout: float = 1.0,
        retries: int = 1,
        client_factory: ClientFactory = make_client,
    ) -> None:
        self.driver_id = driver_id
        self.interval = interval
        self.timeout = timeout
        self.retries = retries
        self._client_factory = client_factory
        self._endpoints: dict[tuple[object, ...], list[ModbusDevice]] = {}
        for device in devices:
            self._endpoints.setdefault(device.address.endpoint, []).append(device)
        self._last: dict[str, bytes] = {}
        #: Polls done and failed, by device id; for status and tests.
        self.polls: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    async def run(self, emit: FrameSink) -> None:
        # A restarted transport may feed a fresh parser: the first poll of each device is news.
        self._last.clear()
        # The poller itself is up (each device's reachability is its own ``available``); after
        # a failure the daemon reported as link down, this restores it.
        await emit(link_frame(self.driver_id, True))
        if not self._endpoints:
            # Nothing to poll; stay alive like any driver until cancelled.
            await asyncio.Event().wait()
        async with asyncio.TaskGroup() as group:
            for devices in self._endpoints.values():
                group.create_task(self._poll_endpoint(devices, emit))

    async def _poll_endpoint(self, devices: list[ModbusDevice], emit: FrameSink) -> None:
        first = devices[0].address
        client = self._client_factory(first, self.timeout, self.retries)
        log_ = log.bind(driver=self.driver_id, endpoint=str(first).rsplit("/", 1)[0])
        try:
            while True:
                started = time.monotonic()
                for device in devices:
                    payload, ok = await self._poll(client, device, log_)
                    source = str(device.address)
                    if not ok or self._last.get(source) != payload:
                        await emit(data_frame(self.driver_id, source, payload))
                    self._last[source] = payload
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(0.0, self.interval - elapsed))
        finally:
            with contextlib.suppress(Exception):
                client.close()

    async def _poll(
        self, client: ModbusBaseClient, device: ModbusDevice, log_: Any
    ) -> tuple[bytes, bool]:
        """One poll of one device: (frame payload, answered)."""
        self.polls[device.id] = self.polls.get(device.id, 0) + 1
        try:
            blocks = await self._read_device(client, device)
        except _PollFailed as exc:
            error = str(exc)
        except (ModbusException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # pymodbus internals: a failed poll, not a dead driver
            log_.exception("modbus_poll_error", device=device.id)
            error = f"unexpected {type(exc).__name__}: {exc}"
        else:
            return poll_payload(blocks), True
        self.failures[device.id] = self.failures.get(device.id, 0) + 1
        log_.info("modbus_poll_failed", device=device.id, error=error)
        return failed_poll_payload(error), False

    async def _read_device(
        self, client: ModbusBaseClient, device: ModbusDevice
    ) -> list[tuple[Block, list[int]]]:
        # A bound on the whole exchange: pymodbus's own timeout is per attempt.
        budget = self.timeout * (self.retries + 1) + 1.0
        if not client.connected and not await _bounded(client.connect(), budget):
            raise _PollFailed("cannot connect")
        results = []
        for block in device.profile.blocks:
            read = (
                client.read_holding_registers
                if block.table == "holding"
                else client.read_input_registers
            )
            try:
                response = await _bounded(
                    read(block.address, count=block.count, device_id=device.address.unit), budget
                )
            except (TimeoutError, ModbusIOException) as exc:
                self._drop_connection(client, device)
                raise _PollFailed(f"no answer: {exc or 'timeout'}") from exc
            if response.isError():
                code = getattr(response, "exception_code", 0)
                name = EXCEPTION_NAMES.get(code, "unknown")
                raise _PollFailed(f"modbus exception {code} ({name})")
            function = _READ_HOLDING if block.table == "holding" else _READ_INPUT
            values = list(response.registers)
            # A late answer to an earlier request must never pass for this one.
            if response.function_code != function or len(values) != block.count:
                self._drop_connection(client, device)
                raise _PollFailed(
                    f"answer does not match the request (function {response.function_code}, "
                    f"{len(values)} of {block.count} registers)"
                )
            results.append((block, values))
        return results

    @staticmethod
    def _drop_connection(client: ModbusBaseClient, device: ModbusDevice) -> None:
        """After a lost answer, start a TCP connection afresh so a late answer cannot be taken
        for the next request's. (On a serial line there is nothing to reopen.)"""
        if device.address.scheme == "tcp":
            with contextlib.suppress(Exception):
                client.close()
