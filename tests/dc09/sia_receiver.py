"""pysiaalarm's receiver (Home Assistant's SIA integration uses it) as a real loopback server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pysiaalarm import CommunicationsProtocol, SIAAccount, SIAEvent
from pysiaalarm.aio import SIAClient

from contract.dc09 import Dc09Message, encode, split_frames

__all__ = ["ACCOUNT", "ASCII_KEY", "HEX_KEY", "DuhReceiver", "SiaReceiver", "closed_port"]

ACCOUNT = "1234"
#: pysiaalarm takes a key as 16, 24 or 32 characters whose ASCII bytes are the AES key.
ASCII_KEY = "ABCDEF0123456789"
HEX_KEY = ASCII_KEY.encode("ascii").hex()


class SiaReceiver:
    def __init__(self, *, transport: str = "tcp", key: str | None = None, port: int = 0) -> None:
        self.transport = transport
        self.key = key
        self.events: list[SIAEvent] = []
        self.port = port
        self._client: Any = None

    async def _on_event(self, event: SIAEvent) -> None:
        self.events.append(event)

    async def __aenter__(self) -> SiaReceiver:
        protocol = (
            CommunicationsProtocol.UDP if self.transport == "udp" else CommunicationsProtocol.TCP
        )
        self._client = SIAClient(
            "127.0.0.1",
            self.port,
            [SIAAccount(ACCOUNT, self.key)],
            self._on_event,
            protocol=protocol,
        )
        await self._client.async_start()
        if self.transport == "udp":
            # pysiaalarm keeps the transport only if it is an asyncio.DatagramTransport, which
            # uvloop's is not (it then never answers): hand it over ourselves.
            self._client.sia_server.transport = self._client.transport
            self.port = self._client.transport.get_extra_info("sockname")[1]
        else:
            self.port = self._client.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.async_stop()

    @property
    def counts(self) -> Any:
        """pysiaalarm's own counters: events, and errors by kind (crc, timestamp, ...)."""
        return self._client.counts

    @property
    def alarms(self) -> list[SIAEvent]:
        return [e for e in self.events if str(e.message_type.value) != "NULL"]

    @property
    def firsts(self) -> list[SIAEvent]:
        """The alarms, each sequence number once (a repeat after a lost answer is allowed)."""
        seen: dict[str | None, SIAEvent] = {}
        for event in self.alarms:
            seen.setdefault(event.sequence, event)
        return list(seen.values())

    @property
    def nulls(self) -> list[SIAEvent]:
        return [e for e in self.events if str(e.message_type.value) == "NULL"]

    def receiver_toml(self) -> str:
        return (
            f'[[dc09.receivers]]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'transport = "{self.transport}"\n'
        )


def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DuhReceiver:
    """A receiver that understands nothing: it answers DUH to every message (TCP)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        try:
            while chunk := await reader.read(1024):
                frames, pending = split_frames(pending + chunk)
                for frame in frames:
                    self.frames.append(frame)
                    seq = int(frame.split(b'"')[2][:4])
                    writer.write(encode(Dc09Message("DUH", seq, ACCOUNT)))
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> DuhReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
