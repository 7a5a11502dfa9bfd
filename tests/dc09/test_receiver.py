"""dispatchd's DC-09 receiver: published frames, third-party frames, our own gateway's channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pysiaalarm import SIAAccount, SIAEvent
from sqlalchemy import insert, select

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer, EventDraft
from contract.dc09 import Dc09Config, Dc09Message, decode, encode, format_timestamp
from contract.wire import EventKind
from dispatch import schema
from dispatch.db import Database
from dispatch.dc09 import Dc09Intake, Dc09Receiver
from dispatch.dc09.accounts import add_account, remove_account
from dispatch.migrations import migrate
from dispatch.settings import Settings
from dispatch.tx import transaction
from forwarder.dc09 import Dc09Channel
from tests.dc09.test_codec import (
    FIELD_CID,
    FIELD_CID_RESTORE,
    FIELD_CID_TEST,
    PYSIAALARM_NULL,
)
from tests.fixtures.waiting import await_until

KEY_HEX = "000102030405060708090A0B0C0D0E0F"


class Centre:
    def __init__(self, db: Database, receiver: Dc09Receiver) -> None:
        self.db = db
        self.receiver = receiver
        self.intake = receiver.intake

    @property
    def port(self) -> int:
        return self.receiver.port

    async def add(self, account: str, key: str | None = None, supervision: float = 0) -> None:
        async with transaction(self.db) as tx:
            await add_account(
                tx,
                self.intake.settings,
                household_id="hh-1",
                account=account,
                key=key,
                supervision_s=supervision,
            )
        # What the receiver does on its own within a second (an unknown account reloads).
        await self.intake.reload()

    async def incidents(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            i = schema.incidents
            return [
                dict(r) for r in (await conn.execute(select(i).order_by(i.c.opened_at))).mappings()
            ]

    async def events(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            e = schema.events
            return [
                dict(r)
                for r in (await conn.execute(select(e).order_by(e.c.received_at))).mappings()
            ]

    async def gateway(self, gateway_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            g = schema.gateways
            return dict(
                (await conn.execute(select(g).where(g.c.id == gateway_id))).mappings().one()
            )

    async def tcp(self, *frames: bytes) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        answers = []
        try:
            for frame in frames:
                writer.write(frame)
                await writer.drain()
                async with asyncio.timeout(5):
                    answers.append(await reader.readuntil(b"\r"))
        finally:
            writer.close()
        return answers

    async def udp(self, frame: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if not answer.done():
                    answer.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            Protocol, remote_addr=("127.0.0.1", self.port)
        )
        try:
            transport.sendto(frame)
            async with asyncio.timeout(5):
                return await answer
        finally:
            transport.close()


@contextlib.asynccontextmanager
async def centre_at(path: Path, **settings: Any) -> AsyncIterator[Centre]:
    db = Database(f"sqlite:///{path}")
    await db.check()
    await migrate(db)
    async with transaction(db) as tx:
        await tx.conn.execute(
            insert(schema.households).values(
                id="hh-1",
                name="Household one",
                residents=[],
                emergency_contacts=[],
                devices=[],
                created_at=tx.now,
                updated_at=tx.now,
            )
        )
    receiver = Dc09Receiver(Dc09Intake(db, Settings(**settings)), host="127.0.0.1", port=0)
    await receiver.start()
    try:
        yield Centre(db, receiver)
    finally:
        await receiver.aclose()
        await db.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def answer_type(frame: bytes, key: bytes | None = None) -> str:
    return decode(frame, keys=lambda _acct: key).type


def third_party_frame(body: str) -> bytes:
    """A frame laid out by hand as DC-09 says, its CRC and length computed by pysiaalarm."""
    crc = SIAEvent._crc_calc(body)
    assert crc is not None
    return f"\n{crc}{len(body):04X}{body}\r".encode("ascii")


async def test_published_frames(tmp_path: Path) -> None:
    # The frames are years old: a window that takes them in, as a replay of old captures would.
    async with centre_at(tmp_path / "d.db", dc09_window_past_s=1e10) as centre:
        await centre.add("1002")
        await centre.add("3456")
        await centre.add("AAAB", key="41" * 16)
        answers = await centre.tcp(FIELD_CID_TEST, FIELD_CID_RESTORE, FIELD_CID)
        assert [answer_type(a) for a in answers] == ["ACK", "DUH", "DUH"]
        assert decode(answers[0]).sequence == 1
        # 3354 restores a condition we cannot close, 1407 (remote arming) is no kind of ours:
        # not understood, and counted.
        assert centre.intake.rejections["unknown_code"] == 2
        null = await centre.udp(PYSIAALARM_NULL)
        assert answer_type(null, b"A" * 16) == "ACK"
        assert decode(null, keys={"AAAB": b"A" * 16}).encrypted
        kinds = [e["kind"] for e in await centre.events()]
        assert kinds == ["heartbeat"]
        assert await centre.incidents() == []


async def test_published_frame_outside_the_window_gets_a_nak_with_our_clock(
    tmp_path: Path,
) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("3456")
        (answer,) = await centre.tcp(FIELD_CID)
        nak = decode(answer)
        assert nak.type == "NAK"
        assert nak.timestamp is not None
        assert abs((nak.timestamp - now()).total_seconds()) < 5
        assert centre.intake.rejections["timestamp"] == 1


async def test_account_added_elsewhere_is_picked_up(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        async with transaction(centre.db) as tx:
            await add_account(
                tx,
                centre.intake.settings,
                household_id="hh-1",
                account="ABC",
                key=None,
                supervision_s=0,
            )
        frame = encode(Dc09Message("NULL", 0, "ABC", timestamp=now()))

        async def answered() -> str:
            (answer,) = await centre.tcp(frame)
            return decode(answer).type

        await await_until(answered, check=lambda t: t == "ACK", within=5)


async def test_third_party_alarm_opens_an_incident_for_the_household(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        stamp = format_timestamp(now())
        alarm = third_party_frame(f'"ADM-CID"0042R1L2#1234[#1234|1101 01 005]_{stamp}')
        restore = third_party_frame(f'"ADM-CID"0043R1L2#1234[#1234|3101 01 005]_{stamp}')
        answers = await centre.tcp(alarm, restore)
        assert [decode(a).type for a in answers] == ["ACK", "ACK"]
        assert [decode(a).sequence for a in answers] == [42, 43]
        assert [(decode(a).receiver, decode(a).line) for a in answers] == [("1", "2")] * 2
        (incident,) = await centre.incidents()
        assert incident["household_id"] == "hh-1"
        assert incident["kind"] == "sos"
        assert incident["gateway_id"] == "dc09:1234"
        assert incident["summary"]["restored"] is True
        events = await centre.events()
        assert [e["device_id"] for e in events] == ["zone-005", "zone-005"]
        assert all(e["payload"]["source"] == "dc09" for e in events)


async def test_third_party_encrypted_frame_pysiaalarm_padding(tmp_path: Path) -> None:
    key = "ABCDEF0123456789"
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234", key=key.encode().hex())
        event = SIAEvent(sia_account=SIAAccount("1234", key))
        clear = f"#1234|1111 01 007]_{format_timestamp(now())}"
        hidden = event.encrypt_content(clear)
        frame = third_party_frame(f'"*ADM-CID"0007R0L0#1234[{hidden}')
        (answer,) = await centre.tcp(frame)
        decoded = decode(answer, keys={"1234": key.encode()})
        assert decoded.type == "ACK"
        assert decoded.encrypted
        (incident,) = await centre.incidents()
        assert incident["kind"] == "smoke"


async def test_every_rejection_is_counted_with_its_reason(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        await centre.add("5678", key=KEY_HEX)
        stamp = now()
        good = Dc09Message("ADM-CID", 9, "1234", data="#1234|1101 01 001", timestamp=stamp)
        late = Dc09Message(
            "ADM-CID", 9, "1234", data="#1234|1101 01 001", timestamp=stamp - timedelta(minutes=2)
        )
        early = Dc09Message(
            "ADM-CID", 9, "1234", data="#1234|1101 01 001", timestamp=stamp + timedelta(minutes=1)
        )
        unknown = Dc09Message("ADM-CID", 9, "9999", data="#9999|1101 01 001", timestamp=stamp)
        clear_for_keyed = Dc09Message(
            "ADM-CID", 9, "5678", data="#5678|1101 01 001", timestamp=stamp
        )
        garbled = Dc09Message("ADM-CID", 9, "1234", data="#1234|hello", timestamp=stamp)
        answers = await centre.tcp(
            encode(late),
            encode(early),
            encode(unknown),
            encode(clear_for_keyed),
            encode(garbled),
            encode(good, key=bytes.fromhex("00" * 16)),
        )
        assert [decode(a, keys=lambda _a: None).type for a in answers[:5]] == [
            "NAK",
            "NAK",
            "NAK",
            "NAK",
            "DUH",
        ]
        nak = decode(answers[0])
        assert nak.timestamp is not None
        assert abs((nak.timestamp - now()).total_seconds()) < 5
        # Encrypted for an account without a key: refused too.
        assert decode(answers[5]).type == "NAK"
        # A bad CRC gets no answer at all; the connection stays usable.
        bad_crc = bytearray(encode(good))
        bad_crc[1:5] = b"0000"
        answers = await centre.tcp(bytes(bad_crc) + encode(good))
        assert decode(answers[0]).type == "ACK"
        assert dict(centre.intake.rejections) == {
            "timestamp": 2,
            "unknown_account": 1,
            "not_encrypted": 1,
            "content": 1,
            "no_key": 1,
            "crc": 1,
        }


async def test_replayed_message_is_acknowledged_and_stored_once(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        frame = encode(Dc09Message("ADM-CID", 5, "1234", data="#1234|1100 01 002", timestamp=now()))
        answers = await centre.tcp(frame, frame)
        assert [decode(a).type for a in answers] == ["ACK", "ACK"]
        assert len(await centre.events()) == 1
        assert centre.intake.accepted["repeat"] == 1


async def test_null_messages_supervise_the_transmitter(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234", supervision=60)
        before = await centre.gateway("dc09:1234")
        assert before["last_heartbeat_at"] is None
        (answer,) = await centre.tcp(encode(Dc09Message("NULL", 0, "1234", timestamp=now())))
        assert decode(answer).type == "ACK"
        after = await centre.gateway("dc09:1234")
        assert after["last_heartbeat_at"] is not None
        assert after["online"] is True
        assert after["offline_after"] > now() + timedelta(seconds=170)


async def test_removed_account_is_refused(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        async with transaction(centre.db) as tx:
            await remove_account(tx, "1234")
        await centre.intake.reload()
        (answer,) = await centre.tcp(
            encode(Dc09Message("ADM-CID", 1, "1234", data="#1234|1101 01 001", timestamp=now()))
        )
        assert decode(answer).type == "NAK"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_our_gateway_channel_end_to_end(tmp_path: Path, transport: str) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("4321", key=KEY_HEX, supervision=30)
        raw = EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1", reserve_bytes=0)
        raw.set_channels(["dc09"])
        buffer = AsyncEventBuffer(raw)
        await buffer.start()
        kinds = [EventKind.SOS, EventKind.SMOKE, EventKind.LOW_BATTERY, EventKind.FALL_RESTORE]
        await buffer.append(
            [EventDraft(kind=k, at=now(), device_id=f"d{i}") for i, k in enumerate(kinds)]
        )
        config = Dc09Config.model_validate(
            {
                "account": "4321",
                "key": KEY_HEX,
                "null_interval": 0.2,
                "receivers": [{"host": "127.0.0.1", "port": centre.port, "transport": transport}],
            }
        )
        channel = Dc09Channel(buffer, config, zone_of=lambda d: int(d[1:]) + 1 if d else 0)
        task = asyncio.create_task(channel.run())
        try:
            await await_until(lambda: channel.status.sent_total == 4, within=15)
            await await_until(lambda: channel.status.nulls_sent >= 1, within=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await buffer.aclose()
        incidents = await centre.incidents()
        assert sorted(i["kind"] for i in incidents) == ["device_trouble", "smoke", "sos"]
        assert {i["gateway_id"] for i in incidents} == {"dc09:4321"}
        events = await centre.events()
        assert [e["kind"] for e in events] == ["sos", "smoke", "fall_restore", "low_battery"]
        assert all(e["payload"]["encrypted"] for e in events)
        assert (await centre.gateway("dc09:4321"))["last_heartbeat_at"] is not None
        assert dict(centre.intake.rejections) == {}


async def test_silent_transmitter_goes_offline_and_its_null_brings_it_back(
    tmp_path: Path,
) -> None:
    from dispatch.supervision import Supervisor
    from dispatch.tx import ChangeFeed

    async with centre_at(tmp_path / "d.db", heartbeat_misses=1) as centre:
        await centre.add("1234", supervision=0.3)
        null = encode(Dc09Message("NULL", 0, "1234", timestamp=now()))
        assert decode((await centre.tcp(null))[0]).type == "ACK"
        supervisor = Supervisor(centre.db, centre.intake.settings, ChangeFeed())
        supervisor.started_at = now() - timedelta(minutes=1)

        async def offline_incidents() -> list[dict[str, Any]]:
            await supervisor.run_once()
            return [i for i in await centre.incidents() if i["kind"] == "gateway_offline"]

        (lost,) = await await_until(offline_incidents, within=10)
        assert lost["gateway_id"] == "dc09:1234"
        assert lost["household_id"] == "hh-1"
        assert (await centre.gateway("dc09:1234"))["online"] is False
        null = encode(Dc09Message("NULL", 0, "1234", timestamp=now()))
        assert decode((await centre.tcp(null))[0]).type == "ACK"
        assert (await centre.gateway("dc09:1234"))["online"] is True
        (back,) = [i for i in await centre.incidents() if i["kind"] == "gateway_offline"]
        assert back["state"] == "resolved"


async def test_malformed_frames_never_stop_the_receiver(tmp_path: Path) -> None:
    """Frames mutated at random (bytes changed, cut short, CR and LF thrown in) over one TCP
    connection: every answer is a frame we can read, and a good one is still acknowledged
    after them."""
    import random

    rng = random.Random(9)
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234", key=KEY_HEX)
        key = bytes.fromhex(KEY_HEX)
        sent = 0
        reader, writer = await asyncio.open_connection("127.0.0.1", centre.port)
        try:
            for i in range(300):
                good = Dc09Message(
                    rng.choice(["ADM-CID", "SIA-DCS", "NULL"]),
                    i % 9999,
                    "1234",
                    data=rng.choice(["#1234|1101 01 001", "#1234|NFA001", "", "#1234|x"]),
                    timestamp=now(),
                )
                frame = bytearray(encode(good, key=key if rng.random() < 0.5 else None))
                for _ in range(rng.randint(1, 4)):
                    at = rng.randrange(len(frame))
                    frame[at] = rng.choice([rng.randrange(256), 0x0D, 0x0A, 0x5B, 0x5D, 0x7C])
                if rng.random() < 0.2:
                    frame = frame[: rng.randrange(1, len(frame))]
                writer.write(bytes(frame))
                sent += 1
            await writer.drain()
            # A CR ends whatever cut-short frame is pending; then a good frame.
            writer.write(b"\r")
            writer.write(
                encode(
                    Dc09Message("ADM-CID", 77, "1234", data="#1234|1101 01 002", timestamp=now()),
                    key=key,
                )
            )
            await writer.drain()
            answers: list[bytes] = []
            while True:
                async with asyncio.timeout(10):
                    answer = await reader.readuntil(b"\r")
                answers.append(answer)
                message = decode(answer, keys=lambda _a: key)
                if message.type == "ACK" and message.sequence == 77:
                    break
        finally:
            writer.close()
        assert all(decode(a, keys=lambda _a: key).type in ("ACK", "NAK", "DUH") for a in answers)
        assert sum(centre.intake.rejections.values()) > 0
        assert sent == 300
