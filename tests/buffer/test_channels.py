"""Dual reporting: each channel keeps its own delivery bookkeeping in the buffer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer.store import EventBuffer
from contract.wire import Lane
from tests.buffer.helpers import T0, alarm, draft, trouble


@pytest.fixture
def buf(tmp_path: Path) -> Iterator[EventBuffer]:
    buffer = EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw-1", clock=lambda: T0)
    buffer.set_channels(["dispatch", "dc09"])
    yield buffer
    buffer.close()


def test_event_leaves_only_when_every_channel_delivered(buf: EventBuffer) -> None:
    events = buf.append([alarm(), draft()])
    ids = [e.id for e in events]
    assert buf.acknowledge(ids, channel="dispatch") == 0
    assert buf.pending(channel="dispatch") == []
    assert [e.id for e in buf.pending(channel="dc09")] == ids
    assert buf.stats(T0).depth[Lane.ALARM] == 1
    assert buf.acknowledge(ids[:1], channel="dc09") == 1
    assert buf.stats(T0).depth[Lane.ALARM] == 0
    assert [e.id for e in buf.pending(channel="dc09")] == ids[1:]
    assert buf.acknowledge(ids[1:], channel="dc09") == 1
    assert buf.stats(T0).pending_total == 0


def test_each_channel_goes_alarms_first(buf: EventBuffer) -> None:
    tel, tro, ala = buf.append([draft()]), buf.append([trouble()]), buf.append([alarm()])
    for channel in ("dispatch", "dc09"):
        assert [e.id for e in buf.pending(channel=channel)] == [
            ala[0].id,
            tro[0].id,
            tel[0].id,
        ]


def test_bookkeeping_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with EventBuffer.open(path, gateway_id="gw-1") as first:
        first.set_channels(["dispatch", "dc09"])
        event = first.append([alarm()])[0]
        first.acknowledge([event.id], channel="dc09")
    with EventBuffer.open(path, gateway_id="gw-1") as second:
        second.set_channels(["dispatch", "dc09"])
        assert second.pending(channel="dc09") == []
        assert [e.id for e in second.pending(channel="dispatch")] == [event.id]


def test_refused_by_one_channel_still_goes_by_the_other(buf: EventBuffer) -> None:
    event = buf.append([alarm()])[0]
    buf.quarantine([event.id], reason="DUH", channel="dc09")
    assert buf.pending(channel="dc09") == []
    assert [e.id for e in buf.pending(channel="dispatch")] == [event.id]
    assert buf.stats(T0).quarantined_events == 1
    assert buf.acknowledge([event.id], channel="dispatch") == 1
    assert buf.stats(T0).pending_total == 0


def test_one_channel_alone_removes_at_once(tmp_path: Path) -> None:
    with EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1") as buffer:
        buffer.set_channels(["dc09"])
        event = buffer.append([alarm()])[0]
        assert buffer.acknowledge([event.id], channel="dc09") == 1
        assert buffer.pending(channel="dc09") == []


def test_channel_names_are_unique(buf: EventBuffer) -> None:
    with pytest.raises(ValueError, match="unique"):
        buf.set_channels(["dc09", "dc09"])


def test_a_channel_reads_on_from_what_it_delivered(buf: EventBuffer) -> None:
    first = buf.append([alarm("a"), alarm("b"), alarm("c")])
    buf.acknowledge([e.id for e in first[:2]], channel="dc09")
    assert [e.id for e in buf.pending(channel="dc09")] == [first[2].id]
    later = buf.append([alarm("d")])
    assert [e.id for e in buf.pending(channel="dc09")] == [first[2].id, later[0].id]
    # The other channel still has all of them, from the head.
    assert len(buf.pending(channel="dispatch")) == 4


def test_released_refusals_come_back_for_that_channel(buf: EventBuffer) -> None:
    events = buf.append([alarm("a"), alarm("b")])
    buf.quarantine([events[0].id], reason="DUH", channel="dc09")
    buf.acknowledge([events[1].id], channel="dc09")
    assert buf.pending(channel="dc09") == []
    buf.release_quarantined(channel="dc09")
    assert [e.id for e in buf.pending(channel="dc09")] == [events[0].id]
    assert buf.stats(T0).quarantined_events == 0
