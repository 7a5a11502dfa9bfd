"""SIA DC-09 both ways: 10,000 messages out of a gateway, 10,000 into dispatchd.

    python -m bench.dc09 [--quick] [--messages N]

Out: N events committed to a gateway buffer on disk, delivered by the real DC-09 channel (one
message at a time, each answered, the buffer's bookkeeping updated) to pysiaalarm's receiver on
loopback TCP; the clock runs from the channel's start until the buffer is empty. Limit: the same
number of ready-made frames sent one at a time to the same receiver over one connection, each
answer awaited (the round trip with nothing of ours in it).

In: N Contact ID alarms sent one at a time by a bare transmitter over loopback TCP to dispatchd's
receiver on SQLite; each is checked, stored and routed to the household's incident before its ACK.
Then the same N over 16 transmitters at once (``--transmitters``), each one message at a time:
messages arriving together share a commit. Limit: the same frames answered by a bare server that
acknowledges without looking (the loopback round trips, over as many connections), and, as a
note, one fsync'd SQLite commit.

No goal: the figures are what a centre can expect of one connection (one home's worst day is a
few hundred messages; a centre's load is many connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import func, insert, select

from bench.common import Report, fsync_commit_ms
from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer, EventDraft
from contract.dc09 import Dc09Config, Dc09Message, encode, split_frames
from contract.wire import EventKind
from dispatch import schema
from dispatch.db import Database
from dispatch.dc09 import Dc09Intake, Dc09Receiver
from dispatch.dc09.accounts import add_account
from dispatch.migrations import migrate
from dispatch.settings import Settings
from dispatch.tx import transaction
from forwarder.dc09 import Dc09Channel

ACCOUNT = "1234"
KINDS = (EventKind.SOS, EventKind.SMOKE, EventKind.WATER_LEAK, EventKind.SOS_RESTORE)


def _frame(i: int) -> bytes:
    zone = i % 999 + 1
    code = (101, 111, 154, 130)[i % 4]
    return encode(
        Dc09Message(
            "ADM-CID",
            i % 9999 + 1,
            ACCOUNT,
            data=f"#{ACCOUNT}|1{code:03d} 01 {zone:03d}",
            timestamp=datetime.now(UTC),
        )
    )


async def _round_trips(port: int, count: int, connections: int = 1) -> float:
    """Seconds to send ``count`` frames, each stamped as it goes, and read each answer, one at a
    time on each of ``connections`` connections (the frames dealt out among them)."""

    async def one(indexes: range) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        pending = b""
        try:
            for i in indexes:
                writer.write(_frame(i))
                await writer.drain()
                while True:
                    got, pending = split_frames(pending)
                    if got:
                        break
                    chunk = await reader.read(1024)
                    if not chunk:
                        raise RuntimeError("the receiver closed the connection")
                    pending += chunk
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(range(c, count, connections)) for c in range(connections)))
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def _bare_acker() -> Any:
    """A server that answers every frame with a ready-made ACK, reading nothing."""
    ack = encode(Dc09Message("ACK", 1, ACCOUNT))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        while chunk := await reader.read(4096):
            frames, pending = split_frames(pending + chunk)
            for _ in frames:
                writer.write(ack)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def outbound(count: int, workdir: Path) -> tuple[float, float, int]:
    # pysiaalarm (a test dependency) is typed loosely: its client picks its class at run time.
    from pysiaalarm.account import SIAAccount
    from pysiaalarm.aio.client import SIAClient

    received = 0

    async def on_event(_event: Any) -> None:
        nonlocal received
        received += 1

    make: Any = SIAClient  # its __new__ picks the TCP subclass
    client = make("127.0.0.1", 0, [SIAAccount(ACCOUNT, None)], on_event)
    await client.async_start()
    port = client.server.sockets[0].getsockname()[1]
    try:
        bare = await _round_trips(port, count)
        received = 0
        raw = EventBuffer.open(workdir / "buffer.db", gateway_id="gw-bench", reserve_bytes=0)
        raw.set_channels(["dc09"])
        buffer = AsyncEventBuffer(raw)
        await buffer.start()
        now = datetime.now(UTC)
        for start in range(0, count, 1000):
            await buffer.append(
                [
                    EventDraft(kind=KINDS[i % 4], at=now, device_id=f"d{i % 999}")
                    for i in range(start, min(count, start + 1000))
                ]
            )
        config = Dc09Config.model_validate(
            {"account": ACCOUNT, "receivers": [{"host": "127.0.0.1", "port": port}]}
        )
        channel = Dc09Channel(buffer, config, zone_of=lambda d: int(d[1:]) + 1 if d else 0)
        started = time.perf_counter()
        task = asyncio.create_task(channel.run())
        try:
            await _until(lambda: buffer.stats(now).pending_total == 0, 600)
            elapsed = time.perf_counter() - started
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await buffer.aclose()
        return elapsed, bare, received
    finally:
        await client.async_stop()


async def inbound(
    count: int, workdir: Path, connections: int = 1
) -> tuple[float, float, int, float]:
    """Seconds for ``count`` messages over ``connections`` transmitters, the bare round trips'
    seconds, messages stored, and messages per commit (group commit)."""
    async with _bare_acker() as port:
        bare = await _round_trips(port, count, connections)
    db = Database(f"sqlite:///{workdir / f'dispatch-{connections}.db'}")
    await db.check()
    await migrate(db)
    settings = Settings()
    async with transaction(db) as tx:
        now = tx.now
        await tx.conn.execute(
            insert(schema.households).values(
                id="hh-bench",
                name="bench",
                residents=[],
                emergency_contacts=[],
                devices=[],
                created_at=now,
                updated_at=now,
            )
        )
        await add_account(
            tx, settings, household_id="hh-bench", account=ACCOUNT, key=None, supervision_s=0
        )
    receiver = Dc09Receiver(Dc09Intake(db, settings), host="127.0.0.1", port=0)
    port = await receiver.start()
    try:
        elapsed = await _round_trips(port, count, connections)
        async with db.read() as conn:
            stored = (await conn.execute(select(func.count()).select_from(schema.events))).scalar()
        rejected = sum(receiver.intake.rejections.values())
        if rejected:
            raise RuntimeError(f"{rejected} messages rejected: {dict(receiver.intake.rejections)}")
        commits = receiver.intake.commits
        per_commit = commits.writes / max(commits.commits, 1)
    finally:
        await receiver.aclose()
        await db.dispose()
    return elapsed, bare, int(stored or 0), per_commit


async def _until(predicate: Callable[[], bool | Awaitable[bool]], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the buffer did not drain")
        await asyncio.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages each way")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument(
        "--transmitters", type=int, default=16, help="connections of the many-transmitter run"
    )
    args = parser.parse_args(argv)
    # One log line per message would be most of what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    count = args.messages or (2_000 if args.quick else 10_000)
    report = Report("dc09")
    with tempfile.TemporaryDirectory(prefix="bench-dc09-") as tmp:
        out_s, out_bare_s, received = asyncio.run(outbound(count, Path(tmp)))
        in_s, in_bare_s, stored, _ = asyncio.run(inbound(count, Path(tmp)))
        many_s, many_bare_s, many_stored, per_commit = asyncio.run(
            inbound(count, Path(tmp), args.transmitters)
        )
        commit = fsync_commit_ms(Path(tmp))
    for name, elapsed, bare, done, limit_name in (
        (
            "gateway -> pysiaalarm receiver",
            out_s,
            out_bare_s,
            received,
            "bare round trips, one at a time",
        ),
        ("transmitter -> dispatchd", in_s, in_bare_s, stored, "bare round trips, one at a time"),
        (
            f"{args.transmitters} transmitters -> dispatchd",
            many_s,
            many_bare_s,
            many_stored,
            f"bare round trips, {args.transmitters} connections",
        ),
    ):
        report.add(f"{name}, messages/s", count / elapsed, "msg/s", count / bare, limit_name)
        report.notes.append(f"{name}: {count:,} messages in {elapsed:.2f} s ({done:,} arrived)")
        if done != count:
            report.notes.append(f"MISMATCH: {name}: {done:,} of {count:,} arrived")
    report.notes.append(
        f"{args.transmitters} transmitters: {per_commit:.1f} messages per commit (group commit)"
    )
    report.notes.append(f"one fsync'd SQLite commit: {commit['p50']:.2f} ms (p50)")
    report.print()


if __name__ == "__main__":
    main()
