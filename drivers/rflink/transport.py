"""The RFLink receiver on a serial port: lines in, frames out, the receiver supervised.

The port is any pyserial URL (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``,
``socket://host:port`` for ser2net, ``rfc2217://host:port``). The transport

- emits every received line as a ``data`` frame, except the receiver's ``PONG`` replies;
- sends ``10;PING;`` every ``ping_interval`` and expects ``20;99;PONG;`` within ``ping_timeout``:
  a receiver that is plugged in but hung is as dead as an unplugged one;
- emits ``link`` frames when the link changes: down when the port cannot be opened, fails,
  reaches EOF or the receiver stops answering PINGs; up at the first PONG after that;
- reopens a lost port with exponential back-off (capped, with jitter), forever.

A lost port is a trouble to report, not a driver fault, so :meth:`RflinkTransport.run` only
returns when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import serial_asyncio_fast
import structlog

from drivers.base import FrameSink, data_frame, link_frame
from runtime.backoff import NARROW_JITTER, Backoff

from .protocol import MAX_LINE, PING, is_pong

__all__ = ["PortOpener", "RflinkTransport", "SerialSettings"]

log = structlog.get_logger(__name__)

PortOpener = Callable[
    ["SerialSettings"], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
]


@dataclass(frozen=True)
class SerialSettings:
    url: str
    baudrate: int = 57600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


async def open_serial(
    settings: SerialSettings,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the port with pyserial-asyncio-fast; raises OSError (SerialException is one)."""
    return await serial_asyncio_fast.open_serial_connection(
        url=settings.url,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        limit=4 * MAX_LINE,
    )


class _PortLost(Exception):
    """The open port was lost; the message is the reason for the ``link`` frame."""


class RflinkTransport:
    def __init__(
        self,
        driver_id: str,
        settings: SerialSettings,
        *,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        startup_delay: float = 2.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        opener: PortOpener = open_serial,
    ) -> None:
        self.driver_id = driver_id
        self.settings = settings
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.startup_delay = startup_delay
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.backoff = Backoff(reconnect_min, reconnect_max, jitter=NARROW_JITTER)
        self._opener = opener
        self._link: bool | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pong = asyncio.Event()
        self._heard = asyncio.Event()
        self._emit: FrameSink | None = None
        #: Times the port was (re)opened; for status and tests.
        self.opens = 0

    @property
    def link_up(self) -> bool | None:
        return self._link

    async def run(self, emit: FrameSink) -> None:
        self._emit = emit
        # A restarted transport (after a failure the daemon reported as link down) states
        # its link afresh: the first PONG is "up" again.
        self._link = None
        self.backoff.reset()
        log_ = log.bind(driver=self.driver_id, port=self.settings.url)
        while True:
            try:
                reader, writer = await self._opener(self.settings)
            except (OSError, ValueError) as exc:  # SerialException is an OSError
                await self._set_link(False, f"cannot open port: {exc}")
                delay = self.backoff.next_delay()
                log_.warning("rflink_open_failed", error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            self.opens += 1
            log_.info("rflink_port_open")
            self._writer = writer
            try:
                reason = await self._serve(reader, writer)
            finally:
                self._writer = None
                with contextlib.suppress(Exception):
                    writer.close()
            # An open port that reached a live receiver resets the back-off.
            if self._link:
                self.backoff.reset()
            await self._set_link(False, reason)
            delay = self.backoff.next_delay()
            log_.warning("rflink_port_lost", reason=reason, retry_in=round(delay, 2))
            await asyncio.sleep(delay)

    async def write(self, line: bytes) -> bool:
        """Send one command line to the receiver; False when the port is not open."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        try:
            writer.write(line)
            await writer.drain()
        except (OSError, ConnectionError) as exc:
            log.warning("rflink_write_failed", driver=self.driver_id, error=str(exc))
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        self._heard.clear()
        reading = asyncio.create_task(self._read_lines(reader), name=f"{self.driver_id}-read")
        pinging = asyncio.create_task(self._ping(writer), name=f"{self.driver_id}-ping")
        try:
            done, _ = await asyncio.wait({reading, pinging}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, _PortLost):
                    return str(exc)
                if exc is not None:
                    raise exc
            return "port closed"
        finally:
            for task in (reading, pinging):
                task.cancel()
            await asyncio.gather(reading, pinging, return_exceptions=True)

    async def _read_lines(self, reader: asyncio.StreamReader) -> None:
        assert self._emit is not None
        while True:
            try:
                raw = await reader.readline()
            except ValueError:
                # More than the limit without a newline: line noise; readline dropped it.
                log.warning("rflink_overlong_line_dropped", driver=self.driver_id)
                continue
            except (OSError, ConnectionError) as exc:
                raise _PortLost(f"port failed: {exc}") from exc
            if not raw:
                raise _PortLost("port closed (EOF)")
            line = raw.strip(b"\r\n\x00 ")
            if not line:
                continue
            self._heard.set()
            if is_pong(line):
                self._pong.set()
                await self._set_link(True)  # at once, not at the next PING
                continue
            await self._emit(data_frame(self.driver_id, self.settings.url, line))

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        # The receiver may be booting (opening the port resets an Arduino): give it a moment,
        # or less if it already speaks (the banner).
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # races with the awaited event, and this task must end when the port is lost.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.startup_delay):
                await self._heard.wait()
        while True:
            started = time.monotonic()
            self._pong.clear()
            try:
                writer.write(PING)
                # A port that takes no bytes (flow control stuck) must not stall supervision.
                async with asyncio.timeout(self.ping_timeout):
                    await writer.drain()
                async with asyncio.timeout(self.ping_timeout):
                    await self._pong.wait()
            except TimeoutError:  # before OSError, of which it is a subclass
                await self._set_link(
                    False, f"receiver did not answer PING within {self.ping_timeout:g}s"
                )
            except (OSError, ConnectionError) as exc:
                raise _PortLost(f"port failed: {exc}") from exc
            await asyncio.sleep(max(0.0, self.ping_interval - (time.monotonic() - started)))

    async def _set_link(self, up: bool, reason: str = "") -> None:
        if self._link is up:
            return
        self._link = up
        if up:
            log.info("rflink_link_up", driver=self.driver_id)
        else:
            log.warning("rflink_link_down", driver=self.driver_id, reason=reason)
        if self._emit is not None:
            await self._emit(link_frame(self.driver_id, up, reason, source=self.settings.url))
