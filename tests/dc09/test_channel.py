"""The gateway's DC-09 channel against pysiaalarm's receiver, a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer, EventDraft
from contract.dc09 import Dc09Config, cid_for, sia_code_for
from contract.home import ConfigError, parse_config
from contract.wire import EventKind, Lane
from forwarder.dc09 import Dc09Channel
from tests.dc09.sia_receiver import (
    ACCOUNT,
    ASCII_KEY,
    HEX_KEY,
    DuhReceiver,
    SiaReceiver,
    closed_port,
)
from tests.fixtures.waiting import await_until

T0 = datetime.now(UTC)


def config(ports: Sequence[tuple[int, str]], **overrides: Any) -> Dc09Config:
    return Dc09Config.model_validate(
        {
            "account": ACCOUNT,
            "receivers": [
                {"host": "127.0.0.1", "port": port, "transport": transport}
                for port, transport in ports
            ],
            # Generous: a loaded machine may answer late, and a refused connection fails at once.
            "timeout": 3.0,
            "attempts": 2,
            "backoff_max": 0.5,
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def buffer_at(
    path: Path, channels: Sequence[str] = ("dc09",)
) -> AsyncIterator[AsyncEventBuffer]:
    raw = EventBuffer.open(path, gateway_id="gw-1", reserve_bytes=0)
    raw.set_channels(list(channels))
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    try:
        yield buffer
    finally:
        await buffer.aclose()


@contextlib.asynccontextmanager
async def running(channel: Dc09Channel) -> AsyncIterator[Dc09Channel]:
    task = asyncio.create_task(channel.run())
    try:
        yield channel
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def drafts_of(kinds: Sequence[EventKind]) -> list[EventDraft]:
    return [
        EventDraft(kind=k, at=T0, device_id=f"dev-{i}", payload={"condition": f"{k.condition}:{i}"})
        for i, k in enumerate(kinds)
    ]


def zone_of(device: str | None) -> int:
    return 0 if device is None else int(device.removeprefix("dev-")) + 1


REPORTED = [k for k in EventKind if k.contact_id is not None]


async def test_every_kind_arrives_with_its_contact_id_code_and_qualifier(tmp_path: Path) -> None:
    async with SiaReceiver() as receiver, buffer_at(tmp_path / "b.db") as buffer:
        events = await buffer.append(drafts_of(list(EventKind)))
        channel = Dc09Channel(buffer, config([(receiver.port, "tcp")]), zone_of=zone_of)
        async with running(channel):
            await await_until(lambda: len(receiver.firsts) == len(REPORTED), within=20)
            await await_until(lambda: buffer.stats(T0).pending_total == 0, what="buffer drained")
    by_lane = sorted(
        (e for e in events if e.kind.contact_id is not None), key=lambda e: (e.lane.rank, e.seq)
    )
    got = [(ev.event_qualifier, ev.event_type, ev.ri, ev.partition) for ev in receiver.firsts]
    want = []
    for event in by_lane:
        cid = cid_for(event.kind, zone=zone_of(event.device_id))
        assert cid is not None
        want.append((str(cid.qualifier), f"{cid.code:03d}", f"{cid.zone:03d}", "01"))
    assert got == want
    # Alarms first: nothing of a lower lane arrived before the last alarm.
    lanes = [e.lane for e in by_lane]
    assert lanes == sorted(lanes, key=lambda lane: lane.rank)
    assert all(ev.account == ACCOUNT for ev in receiver.alarms)
    # Telemetry without a Contact ID was done for this channel without a message.
    assert channel.status.skipped_total == len(EventKind) - len(REPORTED)
    assert {ev.sequence for ev in receiver.alarms} == {f"{e.seq % 9999 + 1:04d}" for e in by_lane}


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes"])
async def test_plain_and_aes_over_tcp_and_udp(
    tmp_path: Path, transport: str, encrypted: bool
) -> None:
    key = ASCII_KEY if encrypted else None
    async with (
        SiaReceiver(transport=transport, key=key) as receiver,
        buffer_at(tmp_path / "b.db") as buffer,
    ):
        await buffer.append(drafts_of([EventKind.SOS, EventKind.SMOKE, EventKind.SOS_RESTORE]))
        cfg = config([(receiver.port, transport)], key=HEX_KEY if encrypted else "")
        async with running(Dc09Channel(buffer, cfg, zone_of=zone_of)):
            await await_until(lambda: len(receiver.firsts) == 3, within=15)
    assert [(e.event_qualifier, e.event_type) for e in receiver.firsts] == [
        ("1", "101"),
        ("1", "111"),
        ("3", "101"),
    ]
    assert all(e.encrypted is encrypted for e in receiver.alarms)
    assert all(e.code in ("QA", "FA", "QH") for e in receiver.alarms)


async def test_sia_dcs_format_where_configured(tmp_path: Path) -> None:
    kinds = [EventKind.SOS, EventKind.WATER_LEAK, EventKind.WATER_LEAK_RESTORE, EventKind.TAMPER]
    async with SiaReceiver() as receiver, buffer_at(tmp_path / "b.db") as buffer:
        await buffer.append(drafts_of(kinds))
        cfg = config([(receiver.port, "tcp")], format="SIA-DCS")
        async with running(Dc09Channel(buffer, cfg, zone_of=zone_of)):
            await await_until(lambda: len(receiver.firsts) == len(kinds), within=15)
    want = [sia_code_for(k) for k in kinds]
    assert [e.code for e in receiver.firsts] == [w.code for w in want if w is not None]
    assert all(str(e.message_type.value) == "SIA-DCS" for e in receiver.alarms)


async def test_null_supervision_while_idle(tmp_path: Path) -> None:
    async with SiaReceiver() as receiver, buffer_at(tmp_path / "b.db") as buffer:
        channel = Dc09Channel(buffer, config([(receiver.port, "tcp")], null_interval=0.2))
        async with running(channel):
            await await_until(lambda: len(receiver.nulls) >= 3, within=10)
    assert receiver.alarms == []
    assert channel.status.nulls_sent >= 3
    assert all(e.account == ACCOUNT for e in receiver.nulls)


async def test_nak_resends_with_the_receivers_clock(tmp_path: Path) -> None:
    # Our clock is five minutes slow: the receiver's window (-40 s/+20 s) refuses the first
    # try with a NAK that carries its own time; the channel re-stamps and is acknowledged.
    def slow_clock() -> datetime:
        return datetime.now(UTC) - timedelta(minutes=5)

    async with SiaReceiver() as receiver, buffer_at(tmp_path / "b.db") as buffer:
        await buffer.append(drafts_of([EventKind.FALL, EventKind.GAS]))
        channel = Dc09Channel(buffer, config([(receiver.port, "tcp")]), clock=slow_clock)
        async with running(channel):
            await await_until(lambda: len(receiver.firsts) == 2, within=15)
    assert channel.status.naks == 1
    assert 290 < channel.status.clock_offset_s < 310
    assert receiver.counts.error_timestamp == 1
    assert [e.event_type for e in receiver.firsts] == ["100", "151"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_primary_down_backup_used_nothing_lost(tmp_path: Path, transport: str) -> None:
    async with SiaReceiver(transport=transport) as backup, buffer_at(tmp_path / "b.db") as buffer:
        events = await buffer.append(drafts_of([EventKind.SOS] * 20))
        cfg = config([(closed_port(), transport), (backup.port, transport)])
        channel = Dc09Channel(buffer, cfg, zone_of=zone_of)
        async with running(channel):
            await await_until(lambda: len(backup.firsts) == 20, within=30)
            await await_until(lambda: buffer.stats(T0).pending_total == 0, what="drained")
    assert sorted(int(e.sequence) for e in backup.firsts) == sorted(e.seq + 1 for e in events)
    assert channel.status.failovers >= 1
    assert channel.status.receiver == f"{transport}://127.0.0.1:{backup.port}"


async def test_every_receiver_down_keeps_everything_then_delivers(tmp_path: Path) -> None:
    port = closed_port()
    async with buffer_at(tmp_path / "b.db") as buffer:
        await buffer.append(drafts_of([EventKind.SMOKE, EventKind.SOS]))
        channel = Dc09Channel(buffer, config([(port, "tcp")]))
        async with running(channel):
            await await_until(lambda: channel.status.consecutive_failures >= 2, within=10)
            assert buffer.stats(T0).depth[Lane.ALARM] == 2
            # The receiver comes up on the same port: both alarms arrive.
            receiver = SiaReceiver()
            receiver_port_bound = await _receiver_on(receiver, port)
            try:
                await await_until(lambda: len(receiver.firsts) == 2, within=15)
            finally:
                await receiver_port_bound()
        assert buffer.stats(T0).pending_total == 0


async def _receiver_on(receiver: SiaReceiver, port: int) -> Callable[[], Any]:
    from pysiaalarm import SIAAccount
    from pysiaalarm.aio import SIAClient

    client = SIAClient("127.0.0.1", port, [SIAAccount(ACCOUNT, None)], receiver._on_event)
    await client.async_start()
    return client.async_stop


async def test_duh_sets_the_event_aside_and_reports_it(tmp_path: Path) -> None:
    async with DuhReceiver() as receiver, buffer_at(tmp_path / "b.db") as buffer:
        await buffer.append(drafts_of([EventKind.INTRUSION]))
        channel = Dc09Channel(buffer, config([(receiver.port, "tcp")]))
        async with running(channel):
            await await_until(lambda: channel.status.refused_total >= 1, within=10)
            # The trouble raised about it is refused as well, and is not reported again.
            await await_until(lambda: len(receiver.frames) == 2, within=10)
            await await_until(lambda: buffer.stats(T0).pending_total == 0, what="nothing resent")
        conditions = await buffer.active_conditions()
    assert any(c.condition == "dc09:refused" for c in conditions)
    assert channel.status.refused_total == 2
    assert len(receiver.frames) == 2


async def test_dual_reporting_keeps_events_for_dispatchd(tmp_path: Path) -> None:
    async with (
        SiaReceiver() as receiver,
        buffer_at(tmp_path / "b.db", ("dispatch", "dc09")) as buffer,
    ):
        events = await buffer.append(drafts_of([EventKind.SOS, EventKind.MOTION]))
        async with running(Dc09Channel(buffer, config([(receiver.port, "tcp")]))):
            await await_until(lambda: len(receiver.firsts) == 1, within=10)
            await await_until(lambda: buffer.buffer.pending(channel="dc09") == [], what="dc09 done")
        assert [e.id for e in await buffer.pending(channel="dispatch")] == [e.id for e in events]
        await buffer.acknowledge([e.id for e in events], channel="dispatch")
        assert buffer.stats(T0).pending_total == 0


def test_config_section_errors_name_the_key() -> None:
    base = '[gateway]\nid = "gw-1"\n\n[dc09]\naccount = "12"\nkey = "abc"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(base, "home.toml")
    text = str(caught.value)
    assert "dc09.account" in text
    assert "dc09.key" in text
    assert "dc09.receivers" in text
