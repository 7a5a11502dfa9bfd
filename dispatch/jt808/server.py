"""The JT/T 808 server: wristbands connect over TCP, one connection per terminal.

Every frame is answered as the standard says: registration (0x0100) with 0x8100 and an auth
code; everything else with a platform general response (0x8001): 0 success, 1 failure (a wrong
auth code), 2 message error (a bad check code or length), 3 unsupported (an unknown message,
encryption). A frame with a bad check code or length is counted and answered 2, so that the
terminal sends it again; if it is a location whose emergency or fall bit is set, the alarm is
raised at once all the same, marked unverified: the resend may never come.

An alarm is durable before its frame is answered. Heartbeats and ordinary positions go through
the :class:`~dispatch.jt808.tracker.Tracker`'s group commit.

Once a terminal has authenticated, it is told the centre's heartbeat interval (0x8103,
parameter 0x0001) and answers with a terminal general response (0x0001); unanswered, it is sent
again a bounded number of times, each wait longer (the standard's T(n+1) = T(n) x (n+1)).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from contract import jt808
from contract.jt808 import Message, MsgId, Param, Result
from dispatch.db import Database
from dispatch.jt808 import store
from dispatch.jt808.tracker import Tracker
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, transaction
from runtime.timeouts import within

__all__ = ["Jt808Server"]

log = structlog.get_logger(__name__)

#: Sub-packaged messages being put together per connection, and their parts, at most.
_MAX_ASSEMBLIES = 8
_MAX_PARTS = 64


@dataclass
class _Conn:
    peer: str
    terminal: str | None = None
    #: The phone as the terminal wrote it (answers carry it back unchanged) and its header.
    phone: str = ""
    version: int | None = None
    flags: int = 0
    serial: int = 0
    assemblies: dict[tuple[int, int, int], dict[int, bytes]] = field(default_factory=dict)
    #: Telling the terminal its heartbeat interval: the task, the serials sent, its answer.
    configuring: asyncio.Task[None] | None = None
    param_serials: set[int] = field(default_factory=set)
    param_answer: asyncio.Future[int] | None = None

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial


class Jt808Server:
    def __init__(self, db: Database, settings: Settings, feed: ChangeFeed) -> None:
        self.db = db
        self.settings = settings
        self.feed = feed
        self.tracker = Tracker(db, settings, feed)
        #: frames, bad_check, bad_length, unreadable, unknown, unverified_alarms, refused, ...
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._tracking: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096)
        self._tracking = asyncio.create_task(self.tracker.run())
        log.info("jt808 listening", host=host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._tracking is not None:
            self._tracking.cancel()
            await asyncio.gather(self._tracking, return_exceptions=True)
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self.tracker.flush()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= self.settings.jt808_max_connections:
            self.stats["refused"] += 1
            writer.close()
            return
        self._conns.add(task)
        peer = str(writer.get_extra_info("peername"))
        conn = _Conn(peer)
        splitter = jt808.Splitter()
        idle = self.settings.jt808_heartbeat_s * self.settings.heartbeat_misses
        try:
            while True:
                try:
                    data = await within(reader.read(4096), idle)
                except TimeoutError:
                    self.stats["idle_closed"] += 1
                    break
                if not data:
                    break
                for frame in splitter.feed(data):
                    try:
                        await self._frame(conn, frame, writer)
                    except (SQLAlchemyError, ConnectionError, OSError):
                        raise
                    except Exception:
                        # A frame this server cannot handle must not end the terminal's link:
                        # unanswered, it is sent again.
                        self.stats["frame_failed"] += 1
                        log.exception("jt808 frame failed", peer=peer, terminal=conn.terminal)
                if splitter.discarded:
                    self.stats["discarded_bytes"] += splitter.discarded
                    splitter.discarded = 0
        except (ConnectionError, OSError):
            pass
        except (SQLAlchemyError, asyncio.IncompleteReadError) as exc:
            # The database is away: drop the link unanswered so the terminal sends it again.
            log.error("jt808 connection dropped", peer=peer, error=str(exc))
            self.stats["store_failed"] += 1
        finally:
            self._conns.discard(task)
            if conn.configuring is not None:
                conn.configuring.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        conn: _Conn,
        writer: asyncio.StreamWriter,
        header: jt808.Header,
        msg_id: int,
        body: bytes,
    ) -> None:
        frame = jt808.encode_frame(
            msg_id, header.phone, conn.next_serial(), body, version=header.version
        )
        writer.write(frame)
        await writer.drain()

    async def _general(
        self, conn: _Conn, writer: asyncio.StreamWriter, header: jt808.Header, result: Result
    ) -> None:
        body = jt808.encode_general_response(header.serial, header.msg_id, result)
        await self._answer(conn, writer, header, MsgId.PLATFORM_RESPONSE, body)

    async def _frame(self, conn: _Conn, frame: bytes, writer: asyncio.StreamWriter) -> None:
        self.stats["frames"] += 1
        try:
            msg = jt808.decode_frame(frame)
        except jt808.FrameError as exc:
            # No header to answer to: counted and logged, once per connection reason.
            self.stats[f"unreadable_{exc.reason}"] += 1
            log.warning("jt808 frame unreadable", peer=conn.peer, error=str(exc))
            return
        header = msg.header
        try:
            terminal = jt808.normalise_phone(header.phone)
        except ValueError:
            # Not BCD: nobody to file it under but the terminal this link already proved it is.
            self.stats["bad_phone"] += 1
            if conn.terminal is not None:
                await self._salvage(conn.terminal, msg)
            await self._general(conn, writer, header, Result.MESSAGE_ERROR)
            return
        if not (msg.check_ok and msg.length_ok):
            self.stats["bad_check" if not msg.check_ok else "bad_length"] += 1
            # The terminal this link already proved it is, not a phone number read from noise.
            await self._salvage(conn.terminal or terminal, msg)
            await self._general(conn, writer, header, Result.MESSAGE_ERROR)
            return
        if conn.terminal != terminal:
            await self._hello(conn, terminal, header)
        if header.encryption:
            self.stats["encrypted"] += 1
            await self._general(conn, writer, header, Result.UNSUPPORTED)
            return
        if header.packages is not None and header.packages > 1:
            whole = self._assemble(conn, msg)
            await self._general(conn, writer, header, Result.SUCCESS)
            if whole is None:
                return
            msg = whole
            header = msg.header
        await self._dispatch(conn, msg, writer)

    async def _hello(self, conn: _Conn, terminal: str, header: jt808.Header) -> None:
        """The first valid frame of a link: who it is, and its stored alarm bits."""
        conn.terminal, conn.phone, conn.version = terminal, header.phone, header.version
        async with self.db.read() as c:
            row = await store.load(c, terminal)
        if row is None and header.msg_id != MsgId.REGISTER:
            async with transaction(self.db, feed=self.feed) as tx:
                await store.ensure(tx, terminal)
        conn.flags = int(row["alarm_flags"]) if row is not None else 0

    def _assemble(self, conn: _Conn, msg: Message) -> Message | None:
        h = msg.header
        assert h.packages is not None
        assert h.index is not None
        # Sub-packages of one message carry consecutive serials: the first's names the whole.
        key = (h.msg_id, h.packages, (h.serial - h.index + 1) & 0xFFFF)
        if h.packages > _MAX_PARTS or not 1 <= h.index <= h.packages:
            self.stats["bad_subpackage"] += 1
            return None
        if key not in conn.assemblies and len(conn.assemblies) >= _MAX_ASSEMBLIES:
            conn.assemblies.pop(next(iter(conn.assemblies)))
            self.stats["subpackage_dropped"] += 1
        parts = conn.assemblies.setdefault(key, {})
        parts[h.index] = msg.body
        if len(parts) < h.packages:
            return None
        del conn.assemblies[key]
        self.stats["reassembled"] += 1
        body = b"".join(parts[n] for n in range(1, h.packages + 1))
        whole = jt808.Header(h.msg_id, h.phone, key[2], h.version, body_length=len(body))
        return Message(whole, body)

    async def _dispatch(self, conn: _Conn, msg: Message, writer: asyncio.StreamWriter) -> None:
        header, terminal = msg.header, conn.terminal
        assert terminal is not None
        now = datetime.now(UTC)
        try:
            if header.msg_id == MsgId.HEARTBEAT:
                self.tracker.seen(terminal, now)
                await self._general(conn, writer, header, Result.SUCCESS)
            elif header.msg_id == MsgId.REGISTER:
                reg = jt808.decode_registration(msg.body, is_2019=header.is_2019)
                protocol = "2019" if header.is_2019 else "2013"
                code, _ = await store.register(self.db, self.feed, terminal, reg, protocol)
                self.stats["registered"] += 1
                self.tracker.seen(terminal, now)
                body = jt808.encode_register_reply(header.serial, Result.SUCCESS, code)
                await self._answer(conn, writer, header, MsgId.REGISTER_REPLY, body)
            elif header.msg_id == MsgId.AUTHENTICATE:
                auth = jt808.decode_authentication(msg.body, is_2019=header.is_2019)
                async with self.db.read() as c:
                    row = await store.load(c, terminal)
                ok = row is not None and bool(row["auth_code"]) and row["auth_code"] == auth.code
                self.stats["authenticated" if ok else "auth_refused"] += 1
                if ok:
                    self.tracker.seen(terminal, now)
                await self._general(conn, writer, header, Result.SUCCESS if ok else Result.FAILURE)
                if ok:
                    if conn.configuring is not None:
                        conn.configuring.cancel()
                    conn.configuring = asyncio.create_task(self._configure(conn, writer, header))
            elif header.msg_id == MsgId.LOCATION:
                loc = jt808.decode_location(msg.body)
                await self._location(conn, store.Report(terminal, loc, True, now))
                await self._general(conn, writer, header, Result.SUCCESS)
            elif header.msg_id == MsgId.BATCH_LOCATION:
                _, locations = jt808.decode_batch(msg.body)
                for loc in sorted(locations, key=lambda item: item.at):
                    await self._location(conn, store.Report(terminal, loc, True, now))
                await self._general(conn, writer, header, Result.SUCCESS)
            elif header.msg_id == MsgId.TERMINAL_RESPONSE:
                self.stats["terminal_responses"] += 1
                self.tracker.seen(terminal, now)
                serial, answered, result = jt808.decode_general_response(msg.body)
                waiting = conn.param_answer
                ours = answered == MsgId.SET_PARAMS and serial in conn.param_serials
                if ours and waiting is not None and not waiting.done():
                    waiting.set_result(result)
            else:
                self.stats["unknown"] += 1
                await self._general(conn, writer, header, Result.UNSUPPORTED)
        except jt808.FrameError as exc:
            self.stats[f"bad_{exc.reason}"] += 1
            log.warning("jt808 body unreadable", terminal=terminal, error=str(exc))
            await self._general(conn, writer, header, Result.MESSAGE_ERROR)

    async def _configure(
        self, conn: _Conn, writer: asyncio.StreamWriter, header: jt808.Header
    ) -> None:
        """Tell the terminal the heartbeat interval the centre supervises it with."""
        seconds = max(1, round(self.settings.jt808_heartbeat_s))
        body = jt808.encode_set_params({Param.HEARTBEAT_S: seconds})
        wait = self.settings.jt808_answer_timeout_s
        conn.param_serials = set()
        sends = 1 + self.settings.jt808_resends
        for attempt in range(sends):
            conn.param_answer = asyncio.get_running_loop().create_future()
            serial = conn.next_serial()
            conn.param_serials.add(serial)
            frame = jt808.encode_frame(
                MsgId.SET_PARAMS, header.phone, serial, body, version=header.version
            )
            try:
                writer.write(frame)
                await writer.drain()
            except (ConnectionError, OSError):
                return
            self.stats["heartbeat_sent"] += 1
            try:
                result = await within(conn.param_answer, wait)
            except TimeoutError:
                wait *= attempt + 2
                continue
            if result == Result.SUCCESS:
                self.stats["heartbeat_set"] += 1
                return
            if result != Result.MESSAGE_ERROR:  # a garbled copy is worth sending again
                self._not_set(conn, "refused", seconds, result=result)
                return
        self._not_set(conn, "unanswered", seconds, sent=sends)

    def _not_set(self, conn: _Conn, outcome: str, seconds: int, **detail: int) -> None:
        """Counted and logged; the terminal is still served (its silence is supervised)."""
        self.stats[f"heartbeat_{outcome}"] += 1
        log.warning(
            f"jt808 heartbeat interval {outcome}",
            terminal=conn.terminal,
            heartbeat_s=seconds,
            **detail,
        )

    async def _location(self, conn: _Conn, report: store.Report) -> None:
        self.stats["locations"] += 1
        if (report.location.alarm & store.WATCHED) == (conn.flags & store.WATCHED):
            self.tracker.report(report)
            return
        await self._alarm(report)
        _, conn.flags = store.edges(conn.flags, report.location.alarm, verified=report.verified)

    async def _alarm(self, report: store.Report) -> None:
        started = asyncio.get_running_loop().time()
        opened = await store.raise_alarms(self.db, self.settings, self.feed, report)
        self.stats["alarm_reports"] += 1
        log.info(
            "jt808 alarm bits changed",
            terminal=report.terminal,
            alarm=report.location.alarm,
            verified=report.verified,
            incidents=opened,
            took_ms=round((asyncio.get_running_loop().time() - started) * 1000, 1),
        )

    async def _salvage(self, terminal: str, msg: Message) -> None:
        """An emergency or fall in a damaged location frame is raised, unverified."""
        locations: list[jt808.Location] = []
        with contextlib.suppress(jt808.FrameError):
            if msg.header.msg_id == MsgId.LOCATION:
                locations = [jt808.decode_location(msg.body)]
            elif msg.header.msg_id == MsgId.BATCH_LOCATION:
                locations = jt808.decode_batch(msg.body)[1]
        now = datetime.now(UTC)
        for loc in locations:
            if loc.emergency or loc.fall:
                self.stats["unverified_alarms"] += 1
                log.warning("jt808 alarm in a damaged frame", terminal=terminal, alarm=loc.alarm)
                await self._alarm(store.Report(terminal, loc, False, now))


def counters(server: Jt808Server | None) -> dict[str, Any]:
    """The server's counters, for the API (empty when the port is off)."""
    if server is None:
        return {"enabled": False}
    return {"enabled": True, "connections": server.connections, **dict(server.stats)}
