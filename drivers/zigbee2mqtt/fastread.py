"""Reading MQTT at the broker's speed: buffered socket reads and MQTT 5 properties built cheaply.

paho-mqtt 2.2, under aiomqtt, spends most of a busy gateway's event loop on two things (profiled
with py-spy at a few thousand messages a second):

- it reads each packet with three or more ``recv`` calls (the command byte, each byte of the
  remaining length, then the body) and only one packet per event-loop wake-up (``loop_read``);
- every MQTT 5 PUBLISH (and every PUBACK sent) builds a :class:`paho.mqtt.properties.Properties`,
  whose constructor rebuilds two tables of every property name and type on each call;
- every message's topic is matched against per-topic callbacks that aiomqtt never registers;
- aiomqtt hands each message out through a new task and an ``asyncio.wait`` (:func:`messages`
  takes those already queued directly).

:func:`speed_up` gives one aiomqtt client a read buffer: one ``recv`` takes whatever the socket
holds (up to 64 KiB), and paho's packet reader is fed from it until it needs more than the
socket has, up to :data:`PACKETS_PER_WAKEUP` packets per wake-up (the rest are read at the loop's
next turn, so a flood cannot starve the pipeline that makes the messages durable). paho keeps its
own partial-packet state, so a packet split across reads is handled as before. Bytes left from a
lost connection are never fed to the next one: the buffer belongs to one socket.

:func:`share_property_tables` makes ``Properties`` share those tables (they are never changed
after construction), and clear an instance by what it holds rather than by every name. Both
reach paho's internals, as :mod:`drivers.zigbee2mqtt.acks` does: this module is the one place
to change when paho or aiomqtt change them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["PACKETS_PER_WAKEUP", "READ_SIZE", "messages", "share_property_tables", "speed_up"]

#: Bytes asked of the socket per ``recv``.
READ_SIZE = 65536
#: Packets handled per event-loop wake-up before the loop gets a turn.
PACKETS_PER_WAKEUP = 256

_shared = False


def share_property_tables() -> None:
    """Build ``Properties``' name and type tables once for all instances (idempotent)."""
    global _shared
    if _shared:
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    types, names, table = template.types, template.names, template.properties

    def __init__(self: Properties, packetType: int) -> None:
        # __setattr__ is paho's validating one; these four are its private names.
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "properties", table)

    private = frozenset(("packetType", "types", "names", "properties"))

    def clear(self: Properties) -> None:
        # paho walks every property name with hasattr (unpack clears first, on each message).
        for name in [n for n in vars(self) if n not in private]:
            delattr(self, name)

    Properties.__init__ = __init__  # type: ignore[method-assign]
    Properties.clear = clear  # type: ignore[method-assign]
    _shared = True


class _BufferedReads:
    """The read side of one paho client: a buffer in front of its socket, and a reader that
    handles every packet already received."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho: paho.Client = client._client
        self._buffer = bytearray()
        self._sock: Any = None
        self._resume_scheduled = False

    def recv(self, bufsize: int) -> bytes:
        """paho's ``_sock_recv``: up to ``bufsize`` bytes, from the buffer while it has some."""
        sock = self._paho._sock
        if sock is None:
            raise ConnectionError("no socket")
        if sock is not self._sock:  # a new connection: nothing of the old one is fed to it
            self._sock = sock
            self._buffer.clear()
        if not self._buffer:
            try:
                data = sock.recv(READ_SIZE)
            except ssl.SSLWantReadError as err:
                raise BlockingIOError from err
            except ssl.SSLWantWriteError as err:
                self._paho._call_socket_register_write()
                raise BlockingIOError from err
            if not data:
                return b""  # end of stream: paho reports the connection lost
            if len(data) <= bufsize:
                return bytes(data)
            self._buffer += data
        out = bytes(self._buffer[:bufsize])
        del self._buffer[:bufsize]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read``, handling every complete packet at hand (up to a bound)."""
        client = self._paho
        for _ in range(PACKETS_PER_WAKEUP):
            if client._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = client._packet_read()
            if rc > 0:
                return client._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if self._buffer and not self._resume_scheduled:
            # Packets wait in the buffer, and the socket may not wake the loop again for them.
            self._resume_scheduled = True
            asyncio.get_running_loop().call_soon(self._resume)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _resume(self) -> None:
        self._resume_scheduled = False
        try:
            self.loop_read()
        except Exception as exc:  # as aiomqtt's own reader does: the connection is broken
            disconnected: asyncio.Future[None] = self._client._disconnected
            if not disconnected.done():
                disconnected.set_exception(exc)


def _skip_empty_matcher(inner: Any) -> None:
    """paho looks every message's topic up in its per-topic callbacks (a trie walked by a
    recursive generator, 6% of a busy loop) before calling ``on_message``; aiomqtt registers
    none, so an empty trie is answered at once (one added later is walked as before)."""
    matcher = inner._on_message_filtered
    walk = matcher.iter_match

    def iter_match(topic: str) -> Any:
        root = matcher._root
        if not root._children and root._content is None:
            return iter(())
        return walk(topic)

    matcher.iter_match = iter_match


async def messages(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    """``client.messages``, taking the messages already queued as they are: aiomqtt's iterator
    makes a task and an ``asyncio.wait`` per message (10% of a busy loop). When the queue is
    empty it is aiomqtt's own, which waits, and raises ``MqttError`` once disconnected (messages
    queued before that are handed out first, as aiomqtt does)."""
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    waiting = client.messages
    while True:
        if queue.empty():
            yield await anext(waiting)
        else:
            yield queue.get_nowait()


def speed_up(client: aiomqtt.Client) -> aiomqtt.Client:
    """Give ``client`` buffered reads (before it connects); returns it."""
    share_property_tables()
    reads = _BufferedReads(client)
    inner: Any = client._client
    inner._sock_recv = reads.recv
    inner.loop_read = reads.loop_read
    _skip_empty_matcher(inner)
    return client
