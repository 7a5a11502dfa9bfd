"""The wire to one DC-09 receiver: TCP (one connection, kept open) or UDP (one datagram each way).

A link sends a frame and hands back the frames that come back; matching an answer to the
message it answers is the channel's business (:mod:`forwarder.dc09`). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from contract.dc09 import split_frames

__all__ = ["Dc09Link", "LinkError", "TcpLink", "UdpLink", "open_link"]

#: A receiver's answer is a few dozen bytes; anything longer without a CR is noise.
_MAX_PENDING = 4096


class LinkError(Exception):
    """The receiver cannot be reached, closed the connection, or did not answer in time."""


class Dc09Link(Protocol):
    name: str

    async def send(self, frame: bytes, timeout: float) -> None: ...  # noqa: ASYNC109

    async def receive(self, timeout: float) -> bytes: ...  # noqa: ASYNC109

    async def aclose(self) -> None: ...


class TcpLink:
    """One TCP connection to a receiver, opened on first use and again after any failure."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"tcp://{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending = b""
        self._frames: list[bytes] = []

    async def send(self, frame: bytes, timeout: float) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                    self._pending, self._frames = b"", []
                self._writer.write(frame)
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            await self.aclose()
            raise LinkError(f"{self.name}: cannot send: {exc!r}") from exc

    async def receive(self, timeout: float) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while not self._frames:
                    if self._reader is None:
                        raise LinkError(f"{self.name}: not connected")
                    chunk = await self._reader.read(1024)
                    if not chunk:
                        raise LinkError(f"{self.name}: the receiver closed the connection")
                    frames, self._pending = split_frames(self._pending + chunk)
                    self._frames.extend(frames)
                    if len(self._pending) > _MAX_PENDING:
                        self._pending = b""
        except TimeoutError as exc:
            # A late answer must not be taken for the next message's: start afresh.
            await self.aclose()
            raise LinkError(f"{self.name}: no answer within {timeout:g} s") from exc
        except OSError as exc:
            await self.aclose()
            raise LinkError(f"{self.name}: {exc!r}") from exc
        except LinkError:
            await self.aclose()
            raise
        return self._frames.pop(0)

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(exc)


class UdpLink:
    """A connected UDP socket to a receiver: each message and its answer is one datagram."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"udp://{host}:{port}"
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Datagrams | None = None

    async def send(self, frame: bytes, timeout: float) -> None:  # noqa: ASYNC109
        try:
            if self._transport is None:
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(timeout):
                    self._transport, self._protocol = await loop.create_datagram_endpoint(
                        _Datagrams, remote_addr=(self.host, self.port)
                    )
            self._transport.sendto(frame)
        except (OSError, TimeoutError) as exc:
            await self.aclose()
            raise LinkError(f"{self.name}: cannot send: {exc!r}") from exc

    async def receive(self, timeout: float) -> bytes:  # noqa: ASYNC109
        if self._protocol is None:
            raise LinkError(f"{self.name}: not open")
        try:
            async with asyncio.timeout(timeout):
                item = await self._protocol.queue.get()
        except TimeoutError as exc:
            raise LinkError(f"{self.name}: no answer within {timeout:g} s") from exc
        if isinstance(item, Exception):
            # An ICMP "port unreachable" comes back as an error on a connected socket.
            await self.aclose()
            raise LinkError(f"{self.name}: {item!r}")
        frames, _ = split_frames(item)
        return frames[0] if frames else item

    async def aclose(self) -> None:
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.close()


def open_link(transport: str, host: str, port: int) -> Dc09Link:
    if transport == "udp":
        return UdpLink(host, port)
    return TcpLink(host, port)
