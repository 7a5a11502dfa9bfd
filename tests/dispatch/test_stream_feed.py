"""What this process commits reaches its live streams at once: the transaction hands its changes
to the feed as written, and a stream sends them from there, without waiting for a poll and
without reading them back; what it sends is what a reader of the table gets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contract.wire import EventKind
from dispatch import stream
from dispatch.tx import ChangeFeed, Committed, sse_event, transaction
from runtime.timeouts import within
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event
from tests.fixtures.dispatch_app import DispatchApp
from tests.fixtures.waiting import wait_until

#: Longer than any test here runs: a stream that waited for its poll would fail the test.
NEVER_S = 3600.0


def _committed(change_id: int, audience: str = "all") -> Committed:
    return Committed(change_id, audience, {"id": change_id, "kind": "incident.updated"})


def test_a_committed_run_stops_at_the_first_change_not_kept() -> None:
    feed = ChangeFeed(keep=4)
    feed.publish([_committed(5), _committed(6)])
    feed.publish([_committed(8)])  # 7: committed elsewhere, so read from the table
    assert [c.id for c in feed.committed_after(4)] == [5, 6]
    assert feed.committed_after(6) == []
    assert [c.id for c in feed.committed_after(7)] == [8]
    assert [c.id for c in feed.committed_after(4, limit=1)] == [5]
    feed.publish([_committed(9), _committed(10)])  # keeps the last 4: 6, 8, 9, 10
    assert feed.committed_after(4) == []
    assert [c.id for c in feed.committed_after(7)] == [8, 9, 10]


def test_a_wake_while_the_reader_was_busy_is_not_lost() -> None:
    async def scenario() -> tuple[bool, bool]:
        feed = ChangeFeed()
        seen = feed.generation
        feed.publish([_committed(1)])  # between the reader's look and its wait
        returned = asyncio.create_task(feed.wait(NEVER_S, since=seen))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        first = returned.done()
        # Nothing new since: this one waits for the next wake.
        waiting = asyncio.create_task(feed.wait(NEVER_S, since=feed.generation))
        await asyncio.sleep(0)
        still_waiting = not waiting.done()
        feed.wake()
        await within(waiting, 30)
        return first, still_waiting

    first, still_waiting = asyncio.run(scenario())
    assert first, "a wake before the wait began must end the wait at once"
    assert still_waiting


def _incident_opened(household: str) -> Any:
    return lambda c: c.row["kind"] == "incident.opened" and household in c.event


def test_an_events_request_hands_its_changes_to_the_feed(server: DispatchApp) -> None:
    services = server.services
    household = unique("hh")
    gw = server.enroll(household)
    after = server.run(stream.latest_change_id(services.db))
    generation = services.feed.generation
    reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
    assert reply.status_code == 200, reply.text
    assert services.feed.generation > generation, "the streams were not woken"
    kept = [c for c in services.feed.committed_after(after) if _incident_opened(household)(c)]
    assert len(kept) == 1
    # As a stream resuming from the table would send it, byte for byte.
    changes, _ = server.run(
        stream.read_changes(services.db, after=kept[0].id - 1, audiences=("all",), limit=1)
    )
    assert [sse_event(c) for c in changes] == [kept[0].event]


def test_the_changes_of_one_transaction_are_kept_in_order_as_a_read_gives_them(
    server: DispatchApp,
) -> None:
    services = server.services
    entity = unique("entity")
    after = server.run(stream.latest_change_id(services.db))

    async def write() -> None:
        async with transaction(services.db, feed=services.feed) as tx:
            for n in range(3):
                tx.change("test", "test.changed", entity, {"n": n, "nested": {"list": [n, None]}})

    server.run(write())
    kept = [c for c in services.feed.committed_after(after) if c.row["entity_id"] == entity]
    assert [c.row["data"]["n"] for c in kept] == [0, 1, 2]
    assert [c.id for c in kept] == sorted(c.id for c in kept)
    changes, _ = server.run(
        stream.read_changes(services.db, after=after, audiences=("all",), limit=500)
    )
    assert [c.event for c in kept] == [sse_event(c) for c in changes if c.entity_id == entity]


def test_the_stream_sends_a_change_committed_here_without_a_read_or_a_poll(
    server: DispatchApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = server.services
    household = unique("hh")
    gw = server.enroll(household)
    reads: list[int] = []
    read_changes = stream.read_changes

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs["after"])
        return await read_changes(*args, **kwargs)

    monkeypatch.setattr(stream, "read_changes", counted)
    after = server.run(stream.latest_change_id(services.db))

    async def no() -> bool:
        return False

    async def valid() -> bool:
        return True

    async def until_the_alarm() -> str:
        lines = stream.sse_stream(
            services.db,
            services.feed,
            after=after,
            audiences=("all",),
            poll_s=NEVER_S,
            keepalive_s=NEVER_S,
            is_disconnected=no,
            stopping=asyncio.Event(),
            session_valid=valid,
            session_check_s=NEVER_S,
        )
        try:
            async for line in lines:
                if "event: incident.opened" in line and household in line:
                    return line
        finally:
            await lines.aclose()
        raise AssertionError("the stream ended")

    reading = asyncio.run_coroutine_threadsafe(until_the_alarm(), server.loop)
    try:
        wait_until(lambda: reads, what="the stream's first look at the table")
        reply = gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.SOS)))
        assert reply.status_code == 200, reply.text
        line = reading.result(60)
    finally:
        reading.cancel()
    assert line.startswith("id: ")
    if services.db.is_sqlite:
        # (On PostgreSQL the NOTIFY of the same commit may wake the stream first: a read.)
        assert reads == [after], "the alarm's change was read back instead of sent as committed"
