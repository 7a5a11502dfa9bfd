"""Manual MQTT acknowledgements: a QoS 1 message is PUBACKed only once the gateway made it durable.

paho-mqtt 2.x sends a QoS 1 message's PUBACK as soon as it receives it, unless manual
acknowledgement is on (``manual_ack_set(True)``, then ``ack(mid, qos)`` per message). A gateway
killed between that PUBACK and its buffer's commit loses the alarm: the broker will not send it
again. aiomqtt 2.5 has no public API for it yet, so this module, and only this one, reaches the
paho client under aiomqtt (``aiomqtt.Client._client``) and aiomqtt's message queue. The day
aiomqtt grows the API, this is the one place to change.

Order: MQTT 3.1.1 (section 4.6) wants PUBACKs in the order the PUBLISHes arrived, and paho acks
per message id. Frames may become durable out of order, so a message is acknowledged only once it
and every message received before it on the same connection are durable.

Connections: a PUBACK belongs to the connection its message came on. When the connection is
lost, the messages not yet acknowledged are forgotten: a persistent session makes the broker send
them again, and a late PUBACK on the next connection could hit a message id the broker has given
to another message since.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho
import structlog

__all__ = ["ManualAcks", "Receipt"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Which message to acknowledge: its place among the messages of one connection."""

    connection: int
    position: int


@dataclass(slots=True)
class _Unacked:
    mid: int
    qos: int
    durable: bool = False


class ManualAcks:
    """PUBACKs for one aiomqtt client, sent when the application says a message is durable.

    Create it before the client connects (a persistent session delivers what it kept at once),
    call :meth:`received` for every message taken from ``client.messages``, :meth:`durable`
    when its outcome is on disk, and :meth:`connection_lost` when the client's connection ends.
    All calls are made on the event loop that runs the client.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho: paho.Client = client._client
        self._paho.manual_ack_set(True)
        self._connection = 0
        self._first = 0  # position of _unacked[0] on this connection
        self._unacked: collections.deque[_Unacked] = collections.deque()
        #: PUBACKs sent, and those paho could not send (the connection was going).
        self.sent = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Messages of this connection received and not yet acknowledged."""
        return len(self._unacked)

    def received(self, message: aiomqtt.Message) -> Receipt | None:
        """Note a message taken from the client; None for QoS 0 (nothing to acknowledge)."""
        if message.qos == 0:
            return None
        self._unacked.append(_Unacked(message.mid, message.qos))
        return Receipt(self._connection, self._first + len(self._unacked) - 1)

    def durable(self, receipt: Receipt | None) -> None:
        """The message's outcome is durable: acknowledge it and every durable one before it."""
        if receipt is None or receipt.connection != self._connection:
            return  # QoS 0, or a connection since lost: the broker sends it again
        index = receipt.position - self._first
        if not 0 <= index < len(self._unacked):
            return  # acknowledged already
        self._unacked[index].durable = True
        while self._unacked and self._unacked[0].durable:
            done = self._unacked.popleft()
            self._first += 1
            if self._paho.ack(done.mid, done.qos) == paho.MQTT_ERR_SUCCESS:
                self.sent += 1
            else:
                self.failed += 1

    def connection_lost(self) -> list[aiomqtt.Message]:
        """Forget this connection's unacknowledged messages; return those still queued in the
        client (received on the lost connection, never handed out, never acknowledged).

        With a persistent session the broker sends them all again, so the caller drops them;
        with a clean session they exist nowhere else, so the caller processes them.
        """
        forgotten = len(self._unacked)
        self._connection += 1
        self._first = 0
        self._unacked.clear()
        queue = self._client._queue
        leftovers: list[aiomqtt.Message] = []
        while not queue.empty():
            leftovers.append(queue.get_nowait())
        if forgotten or leftovers:
            log.info("mqtt_unacked_forgotten", in_hand=forgotten, queued=len(leftovers))
        return leftovers
