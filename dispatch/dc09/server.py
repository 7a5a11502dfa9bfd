"""dispatchd's DC-09 receiver: one TCP and one UDP socket on the same port.

TCP: a transmitter may keep its connection open and send message after message; each frame is
answered in turn. UDP: each datagram is one frame, answered to its sender. A connection that says
nothing for :data:`IDLE_S` is closed; bytes that never form a frame are dropped, never stored up.
Nothing a transmitter sends can stop the receiver: every error is logged and the next frame read.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import BaseModel, Field

from contract.dc09 import split_frames
from dispatch.db import Database
from dispatch.dc09.intake import REJECTION_REASONS, Dc09Intake
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed

__all__ = ["Dc09Receiver", "Dc09ReceiverStatus"]

log = structlog.get_logger(__name__)

#: Seconds a TCP connection may stay silent before it is closed.
IDLE_S: Final = 300.0
#: Bytes of an unfinished frame kept; a longer run without CR is noise.
_MAX_PENDING: Final = 8192


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receiver: Dc09Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receiver._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Any) -> None:
        frames, _ = split_frames(data)
        for frame in frames or [data]:
            answer = await self.receiver.intake.handle(
                frame, transport="udp", peer=f"{addr[0]}:{addr[1]}"
            )
            if answer is not None and self.transport is not None:
                self.transport.sendto(answer, addr)


class Dc09ReceiverStatus(BaseModel):
    """What this process's receiver has answered since it started."""

    listening: bool = Field(description="false: this dispatchd runs no DC-09 receiver")
    port: int | None = None
    since: datetime | None = Field(default=None, description="when the counting started")
    accepted: dict[str, int] = Field(
        default_factory=dict,
        description="messages acknowledged, by type (ADM-CID, SIA-DCS, NULL) and `repeat`: a "
        "replayed message acknowledged again and stored once",
    )
    rejected: dict[str, int] = Field(
        default_factory=dict,
        description="frames rejected, by reason (every reason listed, 0 included): framing, "
        "length, crc, header, encoding, no_key, decrypt, content, timestamp, unknown_account, "
        "not_encrypted, unknown_code, storage",
    )


class Dc09Receiver:
    def __init__(self, intake: Dc09Intake, *, host: str, port: int) -> None:
        self.intake = intake
        self.host = host
        self.port = port
        self.since = datetime.now(UTC)
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    def status(self) -> Dc09ReceiverStatus:
        counted = self.intake.rejections
        return Dc09ReceiverStatus(
            listening=self._server is not None,
            port=self.port,
            since=self.since,
            accepted=dict(self.intake.accepted),
            rejected={
                **{reason: counted[reason] for reason in REJECTION_REASONS},
                **counted,  # a reason added later is shown, not lost
            },
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dc09_receiver_error", error=repr(task.exception()))

    async def start(self) -> int:
        """Listen (TCP and UDP); returns the port (the one chosen when ``port`` is 0)."""
        await self.intake.reload()
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self.host, self.port)
        )
        log.info("dc09_receiver_listening", host=self.host, port=self.port, transports="tcp+udp")
        return self.port

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        pending = b""
        # Known, so that stopping the receiver ends open connections too (by closing them:
        # asyncio reports a cancelled connection handler as an error).
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while True:
                async with asyncio.timeout(IDLE_S):
                    chunk = await reader.read(4096)
                if not chunk:
                    return
                frames, pending = split_frames(pending + chunk)
                if len(pending) > _MAX_PENDING:
                    self.intake.rejections["framing"] += 1
                    log.warning("dc09_rejected", reason="framing", detail="no CR", peer=name)
                    pending = b""
                for frame in frames:
                    answer = await self.intake.handle(frame, transport="tcp", peer=name)
                    if answer is not None:
                        writer.write(answer)
                        await writer.drain()
        except (TimeoutError, OSError):
            return
        except Exception as exc:
            log.error("dc09_connection_error", peer=name, error=repr(exc))
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def aclose(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()


async def start_dc09(db: Database, settings: Settings, feed: ChangeFeed) -> Dc09Receiver | None:
    """The receiver ``dispatchd serve`` runs when ``--dc09-port`` is set; None when it is not."""
    if not settings.dc09_port:
        return None
    receiver = Dc09Receiver(
        Dc09Intake(db, settings, feed), host=settings.host, port=settings.dc09_port
    )
    await receiver.start()
    return receiver
