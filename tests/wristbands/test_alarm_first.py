"""An alarm never waits for telemetry: the write gate's order, the tracker's short transactions."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.jt808 import Location
from dispatch import schema
from dispatch.db import Database
from dispatch.jt808.store import Report
from dispatch.jt808.tracker import Tracker
from dispatch.migrations import migrate
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, transaction
from dispatch.write_gate import Priority, WriteGate


async def test_an_alarm_goes_before_the_writes_queued_ahead_of_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'dispatch.db'}")
    try:
        order: list[str] = []
        running = asyncio.Event()
        finish = asyncio.Event()

        async def write(name: str, **kw: bool) -> None:
            async with db.write(**kw):
                order.append(name)
                if name == "running":
                    running.set()
                    await finish.wait()

        first = asyncio.create_task(write("running", durable=False))
        await running.wait()
        queued = [asyncio.create_task(write(f"telemetry-{n}", durable=False)) for n in range(3)] + [
            asyncio.create_task(write("operator")),
            asyncio.create_task(write("sos", urgent=True)),
        ]
        await asyncio.sleep(0)  # one step each: every one is queued at the gate
        assert db._write_gate is not None
        assert db._write_gate.waiting == 5
        finish.set()
        await asyncio.gather(first, *queued)
        assert order == ["running", "sos", "operator", "telemetry-0", "telemetry-1", "telemetry-2"]
    finally:
        await db.dispose()


async def test_a_waiter_cancelled_as_it_is_handed_the_gate_passes_it_on() -> None:
    gate = WriteGate()
    got: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        async with gate.hold(priority):
            got.append(name)

    async with gate.hold(Priority.TELEMETRY):
        doomed = asyncio.create_task(take("doomed", Priority.ALARM))
        later = asyncio.create_task(take("later", Priority.TELEMETRY))
        await asyncio.sleep(0)
        assert gate.waiting == 2
    doomed.cancel()  # handed the gate by the release above, cancelled before it ran
    await asyncio.gather(doomed, later, return_exceptions=True)
    assert got == ["later"]
    assert gate.waiting == 0
    async with asyncio.timeout(1):
        await take("free again", Priority.TELEMETRY)


@given(
    priorities=st.lists(st.sampled_from(list(Priority)), min_size=1, max_size=12),
    cancelled=st.sets(st.integers(0, 11)),
)
def test_the_gate_serves_by_priority_then_arrival_and_never_sticks(
    priorities: list[Priority], cancelled: set[int]
) -> None:
    async def main() -> list[int]:
        gate = WriteGate()
        served: list[int] = []

        async def take(n: int) -> None:
            async with gate.hold(priorities[n]):
                served.append(n)
                await asyncio.sleep(0)

        async with gate.hold(Priority.TELEMETRY):
            tasks = [asyncio.create_task(take(n)) for n in range(len(priorities))]
            await asyncio.sleep(0)
            for n in cancelled & set(range(len(tasks))):
                tasks[n].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with asyncio.timeout(1):
            async with gate.hold(Priority.TELEMETRY):  # free: nothing left holding it
                pass
        return served

    served = asyncio.run(main())
    expected = sorted(
        (n for n in range(len(priorities)) if n not in cancelled),
        key=lambda n: (priorities[n], n),
    )
    assert served == expected


@pytest.mark.parametrize("pending", [1, 100, 250])
async def test_a_flush_is_written_in_short_transactions(tmp_path: Path, pending: int) -> None:
    db = Database(f"sqlite:///{tmp_path / 'dispatch.db'}")
    try:
        await migrate(db)
        now = datetime.now(UTC)
        terminals = [f"1380{n:07d}" for n in range(pending)]
        async with transaction(db) as tx:
            await tx.conn.execute(
                schema.wristbands.insert(),
                [{"terminal": t, "created_at": now} for t in terminals],
            )
        tracker = Tracker(db, Settings(), ChangeFeed(), chunk=100)
        for t in terminals:
            loc = Location(0, 2, 31.2, 121.4, 10, 3.0, 0, now.replace(microsecond=0))
            tracker.report(Report(t, loc, True, now))
        transactions = 0
        real_write = db.write

        def counting(**kw: bool) -> AbstractAsyncContextManager[AsyncConnection]:
            nonlocal transactions
            transactions += 1
            return real_write(**kw)

        db.write = counting  # type: ignore[method-assign]
        await tracker.flush()
        assert transactions == -(-pending // 100)
        async with db.read() as conn:
            rows = (await conn.execute(schema.wristband_fixes.select())).all()
            seen = (
                await conn.execute(
                    schema.wristbands.select().where(schema.wristbands.c.last_seen_at.is_not(None))
                )
            ).all()
        assert (len(rows), len(seen)) == (pending, pending)
        assert tracker.pending == 0
    finally:
        await db.dispose()
