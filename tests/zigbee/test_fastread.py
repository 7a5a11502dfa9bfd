"""Buffered MQTT reads: every packet comes out whole, once and in order, however the bytes arrive.

The broker's bytes are cut at arbitrary points (a packet split across reads, many packets in one
read, a flood larger than one wake-up handles) and fed to a client given :func:`speed_up`
through a socket that says "would block" between chunks, as a non-blocking socket does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.mqtt_flood import remaining_length
from drivers.zigbee2mqtt.fastread import (
    PACKETS_PER_WAKEUP,
    messages,
    share_property_tables,
    speed_up,
)
from drivers.zigbee2mqtt.options import BrokerAddress, make_client


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish_v5(topic: str, payload: bytes, *, qos: int, mid: int, user: str | None) -> bytes:
    """An MQTT 5 PUBLISH as a broker sends it (a user property when ``user`` is given)."""
    props = b"" if user is None else b"\x26" + _utf8("k") + _utf8(user)
    body = _utf8(topic) + (mid.to_bytes(2, "big") if qos else b"")
    body += remaining_length(len(props)) + props + payload
    return bytes([0x30 | (qos << 1)]) + remaining_length(len(body)) + body


class ChunkedSocket:
    """A non-blocking socket whose reads return the given chunks, one ``recv`` at most each."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = deque(chunks)
        self.sent = bytearray()
        self.recvs = 0

    def recv(self, bufsize: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        self.recvs += 1
        chunk = self.chunks.popleft()
        if len(chunk) > bufsize:
            self.chunks.appendleft(chunk[bufsize:])
            chunk = chunk[:bufsize]
        return chunk

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def fileno(self) -> int:
        return -1

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        self.chunks.clear()

    def setblocking(self, flag: bool) -> None:
        pass


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def client_on(sock: ChunkedSocket) -> aiomqtt.Client:
    client = make_client(BrokerAddress(host="127.0.0.1", port=1883))
    inner = client._client
    inner._sock = sock
    inner.manual_ack_set(True)  # as the driver runs it: nothing is sent back here
    return client


async def read_all(client: aiomqtt.Client, sock: ChunkedSocket) -> list[aiomqtt.Message]:
    """Wake the reader as the event loop would: while the socket has bytes, and let the loop
    run what the reader scheduled for itself."""
    inner = client._client
    got: list[aiomqtt.Message] = []
    for _ in range(10_000):
        if sock.chunks:
            inner.loop_read()
        await asyncio.sleep(0)
        while not client._queue.empty():
            got.append(client._queue.get_nowait())
        if not sock.chunks:
            await asyncio.sleep(0)
            while not client._queue.empty():
                got.append(client._queue.get_nowait())
            if not sock.chunks and client._queue.empty():
                break
    return got


#: MQTT strings are UTF-8 without U+0000 (paho refuses such a packet, buffered or not).
MQTT_CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
MESSAGES = st.lists(
    st.tuples(
        st.text(alphabet="abcz/_0189", min_size=1, max_size=40),
        st.binary(max_size=300),
        st.sampled_from([0, 1]),
        st.one_of(st.none(), st.text(MQTT_CHARACTERS, max_size=8)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_every_packet_comes_out_whole_once_and_in_order(
    messages: list[tuple[str, bytes, int, str | None]], points: list[int]
) -> None:
    async def scenario() -> None:
        wire = b"".join(
            publish_v5(topic, payload, qos=qos, mid=i + 1, user=user)
            for i, (topic, payload, qos, user) in enumerate(messages)
        )
        sock = ChunkedSocket(cut(wire, points))
        client = client_on(sock)
        got = await read_all(client, sock)
        assert [(str(m.topic), m.payload, m.qos) for m in got] == [
            (topic, payload, qos) for topic, payload, qos, _ in messages
        ]
        users = [getattr(m.properties, "UserProperty", None) if m.properties else None for m in got]
        assert users == [None if u is None else [("k", u)] for *_, u in messages]

    asyncio.run(scenario())


async def test_a_flood_in_one_read_is_handled_over_several_wakeups() -> None:
    """More packets than one wake-up handles arrive in one read: the rest are read at the
    loop's next turns, without the socket waking the loop again."""
    count = PACKETS_PER_WAKEUP * 3 + 7
    wire = b"".join(
        publish_v5("z/door", b'{"contact":true}', qos=1, mid=i + 1, user=None) for i in range(count)
    )
    sock = ChunkedSocket([wire])
    client = client_on(sock)
    client._client.loop_read()
    first = client._queue.qsize()
    for _ in range(10):
        await asyncio.sleep(0)
    assert first == PACKETS_PER_WAKEUP
    assert client._queue.qsize() == count
    assert sock.recvs <= 2 + len(wire) // 65536


async def test_bytes_of_a_lost_connection_are_never_fed_to_the_next() -> None:
    """Packets still in the buffer when the connection goes are dropped with it (a persistent
    session sends them again on the next one)."""
    old_wire = b"".join(
        publish_v5("z/old", b"x", qos=1, mid=i + 1, user=None)
        for i in range(PACKETS_PER_WAKEUP + 5)
    )
    client = client_on(ChunkedSocket([old_wire]))
    client._client.loop_read()  # one wake-up: five packets are left in the buffer
    assert client._queue.qsize() == PACKETS_PER_WAKEUP
    client._client._sock = ChunkedSocket([publish_v5("z/new", b"y", qos=0, mid=1, user=None)])
    for _ in range(5):
        await asyncio.sleep(0)
    client._client.loop_read()
    topics = [str(client._queue.get_nowait().topic) for _ in range(client._queue.qsize())]
    assert topics == ["z/old"] * PACKETS_PER_WAKEUP + ["z/new"]


def test_shared_property_tables_read_and_write_as_before() -> None:
    share_property_tables()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 2000
    props.UserProperty = ("a", "b")
    packed = props.pack()  # type: ignore[no-untyped-call]
    back = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    back.unpack(packed[0:])  # type: ignore[no-untyped-call]
    assert back.ReceiveMaximum == 2000
    assert back.UserProperty == [("a", "b")]
    back.clear()  # type: ignore[no-untyped-call]
    assert not hasattr(back, "ReceiveMaximum")
    assert not hasattr(back, "UserProperty")
    assert back.packetType == PacketTypes.CONNECT
    assert not hasattr(Properties(PacketTypes.CONNECT), "ReceiveMaximum")  # type: ignore[no-untyped-call]
    with pytest.raises(Exception, match="does not apply"):
        Properties(PacketTypes.PUBLISH).ReceiveMaximum = 5  # type: ignore[no-untyped-call]


def test_speed_up_returns_the_client() -> None:
    async def scenario() -> None:
        client = aiomqtt.Client("127.0.0.1", 1883)
        assert speed_up(client) is client

    asyncio.run(scenario())


async def test_messages_reach_on_message_and_per_topic_callbacks_as_before() -> None:
    """The empty per-topic trie is skipped; once a per-topic callback is added, it takes the
    messages of its topic (and on_message the others), as paho does."""
    packets = [
        publish_v5("z2m/hall", b"1", qos=0, mid=0, user=None),
        publish_v5("z2m/door", b"2", qos=0, mid=0, user=None),
    ]
    sock = ChunkedSocket([b"".join(packets)])
    client = client_on(sock)  # make_client gives every client speed_up
    assert [m.payload for m in await read_all(client, sock)] == [b"1", b"2"]
    filtered: list[bytes] = []
    client._client.message_callback_add("z2m/door", lambda _c, _u, m: filtered.append(m.payload))
    sock.chunks.append(b"".join(packets))
    assert [m.payload for m in await read_all(client, sock)] == [b"1"]
    assert filtered == [b"2"]


async def test_queued_messages_come_before_the_disconnect_error() -> None:
    """What is queued is handed out in order without waiting; then, with the connection gone,
    aiomqtt's own iterator raises as before."""
    packets = [publish_v5(f"z2m/d{i}", bytes([i]), qos=0, mid=0, user=None) for i in range(5)]
    sock = ChunkedSocket([b"".join(packets)])
    client = client_on(sock)
    client._client.loop_read()
    await asyncio.sleep(0)
    disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    disconnected.set_exception(ConnectionError("gone"))
    client._disconnected = disconnected
    got: list[bytes] = []

    async def take_all() -> None:
        async for message in messages(client):
            got.append(message.payload)

    with pytest.raises(aiomqtt.MqttError):
        await take_all()
    assert got == [bytes([i]) for i in range(5)]
