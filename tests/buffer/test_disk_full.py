"""A disk filled by another file: the alarm lane still commits, from the space kept for it, and
what cannot be made durable is held in memory and forwarded from there."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import BufferStorageError, EventBuffer
from contract.wire import EventKind, Lane
from tests.buffer.helpers import T0, alarm, draft
from tests.fixtures.smalldisk import fill_disk, small_disk

__all__ = ["small_disk"]  # the fixture, used by name below

PADDING = "x" * 400


def _flood_telemetry(buffer: EventBuffer, limit: int = 20_000) -> int:
    """Append telemetry until the full disk refuses it; returns how many were appended."""
    for n in range(limit):
        try:
            buffer.append([draft(n=n, pad=PADDING) for _ in range(20)])
        except BufferStorageError:
            return n
    pytest.fail("the full disk never refused a telemetry commit")


def _exhaust_alarm_space(buffer: EventBuffer, limit: int = 50_000) -> int:
    """Append alarms until the disk refuses five in a row (the reserve spent as well)."""
    refused = 0
    for n in range(limit):
        try:
            buffer.append([alarm(f"btn-{n}", pad=PADDING)])
            refused = 0
        except BufferStorageError:
            refused += 1
            if refused == 5:
                return n
    pytest.fail("the full disk never refused an alarm commit")


async def _full_to_the_last_byte(disk: Path) -> tuple[EventBuffer, AsyncEventBuffer, Path]:
    """A buffer on ``disk``, which is full with its reserve spent too; and the filler file."""
    raw = EventBuffer.open(disk / "buffer.db", gateway_id="gw-1")
    filler = fill_disk(disk)
    _flood_telemetry(raw)
    _exhaust_alarm_space(raw)
    abuf = AsyncEventBuffer(raw)
    await abuf.start()
    return raw, abuf, filler


def test_an_alarm_commits_on_a_disk_filled_by_another_file(small_disk: Path) -> None:
    path = small_disk / "buffer.db"
    buffer = EventBuffer.open(path, gateway_id="gw-1")
    fill_disk(small_disk)
    _flood_telemetry(buffer)

    [event] = buffer.append([alarm("smoke-kitchen")])

    stats = buffer.stats(T0)
    assert stats.disk_full
    assert stats.not_durable == 0
    pending = buffer.pending(max_events=500)
    assert event.id in [e.id for e in pending]
    reports = [e for e in pending if e.kind is EventKind.BUFFER_EVICTED]
    assert [r.payload["reason"] for r in reports] == ["disk_full"]
    # The space given back is the alarm lane's: telemetry is refused while it is spent.
    with pytest.raises(BufferStorageError, match="disk is full"):
        buffer.append([draft()])
    buffer.close()
    with EventBuffer.open(path, gateway_id="gw-1", lock=False) as reopened:
        assert event.id in [e.id for e in reopened.pending(max_events=500)]


def test_the_reserve_comes_back_once_space_does(small_disk: Path) -> None:
    path = small_disk / "buffer.db"
    buffer = EventBuffer.open(path, gateway_id="gw-1")
    filler = fill_disk(small_disk)
    _flood_telemetry(buffer)
    buffer.append([alarm()])
    assert buffer.stats(T0).disk_full
    filler.unlink()
    buffer.acknowledge([e.id for e in buffer.pending(max_events=500)])
    assert not buffer.stats(T0).disk_full
    assert path.with_name("buffer.db.reserve").exists()
    buffer.append([draft()])
    buffer.close()


async def test_a_failing_telemetry_commit_does_not_hold_an_alarm_back(small_disk: Path) -> None:
    raw = EventBuffer.open(small_disk / "buffer.db", gateway_id="gw-1")
    fill_disk(small_disk)
    abuf = AsyncEventBuffer(raw)
    await abuf.start()
    try:
        await asyncio.to_thread(_flood_telemetry, raw)
        # Queued together, as the pipeline's worker would: the alarm commits first, on its own.
        telemetry, smoke = await asyncio.gather(
            abuf.append([draft(pad=PADDING)]),
            abuf.append([alarm("smoke-kitchen")]),
            return_exceptions=True,
        )
        assert isinstance(telemetry, BufferStorageError)
        assert not isinstance(smoke, BaseException)
        assert smoke[0].lane is Lane.ALARM
    finally:
        await abuf.aclose()


async def test_an_alarm_that_cannot_be_made_durable_is_held_and_forwarded_from_memory(
    small_disk: Path,
) -> None:
    path = small_disk / "buffer.db"
    raw, abuf, filler = await _full_to_the_last_byte(small_disk)
    try:
        held = await abuf.hold([alarm("smoke-kitchen")])
        stats = abuf.stats(T0)
        assert stats.disk_full
        assert stats.not_durable == 2  # the alarm and the disk-full trouble
        assert abuf.alarm_appended.is_set()
        first = await abuf.pending(max_events=2)
        assert [e.id for e in first][:1] == [held[0].id]
        assert {e.kind for e in first} == {EventKind.SOS, EventKind.BUFFER_EVICTED}
        assert all(e.seq >= raw.next_seq - 2 for e in first)
        # Space comes back: the next commit makes the held events durable first.
        filler.unlink()
        assert await abuf.persist_held() == 2
        assert abuf.stats(T0).not_durable == 0
    finally:
        await abuf.aclose()
    with EventBuffer.open(path, gateway_id="gw-1", lock=False) as reopened:
        assert held[0].id in [e.id for e in reopened.pending(max_events=500)]


async def test_an_acknowledged_held_event_is_not_written_later(small_disk: Path) -> None:
    _, abuf, filler = await _full_to_the_last_byte(small_disk)
    try:
        [event, *_] = await abuf.hold([alarm("smoke-kitchen")])
        assert await abuf.acknowledge([event.id]) == 1
        filler.unlink()
        await abuf.persist_held()
        assert event.id not in [e.id for e in await abuf.pending(max_events=500)]
    finally:
        await abuf.aclose()


def test_fill_disk_fills_it(small_disk: Path) -> None:
    fill_disk(small_disk)
    with pytest.raises(OSError) as caught:
        (small_disk / "more").write_bytes(b"\0" * 8192)
    assert caught.value.errno == errno.ENOSPC
