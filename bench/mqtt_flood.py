"""A lean MQTT publisher for load: Zigbee2MQTT state messages at the highest rate it can.

It speaks MQTT 3.1.1 over a blocking socket (CONNECT, then QoS 0 PUBLISH packets), so TCP itself
pushes back and the publisher costs far less CPU than any client library; it runs in a process
of its own (:func:`start`) and stops at ``duration_s`` or ``max_count``, whichever first.

Flow control: the consumer sets ``pause`` while its backlog (``sent`` minus what it has taken)
is high and clears it once it has caught up, so a slow consumer is measured at its own sustained
rate without an unbounded queue building up anywhere.

Messages: door contact sensors (MCCGQ11LM) whose ``contact`` flips on every message (each one a
real change, so a ``contact`` telemetry event), and every ``alarm_every``-th message a smoke
detector (HS1SA) alternating ``smoke: true`` / ``false`` (an alarm or its restore, fsync'd by the
gateway's buffer), over enough detectors that no flapping rule holds an alarm back.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent

__all__ = ["Flood", "contact_name", "remaining_length", "smoke_name", "start"]

BATCH = 200


def contact_name(i: int) -> str:
    return f"door_{i:04d}"


def smoke_name(i: int) -> str:
    return f"smoke_{i:04d}"


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer (a packet's remaining length)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + payload
    return b"\x30" + remaining_length(len(body)) + body


def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x00"  # MQTT 3.1.1, clean session, keepalive 0
    body = variable + struct.pack("!H", len(cid)) + cid
    return b"\x10" + remaining_length(len(body)) + body


class Messages:
    """The packets, pre-encoded per device and state; :meth:`take` gives the next ``n``."""

    def __init__(self, base_topic: str, contacts: int, smokes: int, alarm_every: int) -> None:
        contact_state = {
            "battery": 100,
            "device_temperature": 21,
            "voltage": 3015,
            "power_outage_count": 2,
            "linkquality": 120,
        }
        smoke_state = {"battery_low": False, "battery": 100, "test": False, "linkquality": 120}
        self.contact = [
            [
                _publish_packet(
                    f"{base_topic}/{contact_name(i)}",
                    json.dumps({**contact_state, "contact": state}).encode(),
                )
                for state in (False, True)
            ]
            for i in range(contacts)
        ]
        self.smoke = [
            [
                _publish_packet(
                    f"{base_topic}/{smoke_name(i)}",
                    json.dumps({**smoke_state, "smoke": state}).encode(),
                )
                for state in (True, False)
            ]
            for i in range(smokes)
        ]
        self.alarm_every = alarm_every
        self.n = 0
        self.n_contact = 0
        self.n_smoke = 0

    def take(self, count: int) -> list[bytes]:
        out = []
        contacts, smokes = len(self.contact), len(self.smoke)
        for _ in range(count):
            self.n += 1
            if self.n % self.alarm_every == 0:
                k = self.n_smoke
                self.n_smoke += 1
                out.append(self.smoke[k % smokes][(k // smokes) % 2])
            else:
                k = self.n_contact
                self.n_contact += 1
                out.append(self.contact[k % contacts][(k // contacts) % 2])
        return out


def run(
    host: str,
    port: int,
    base_topic: str,
    contacts: int,
    smokes: int,
    alarm_every: int,
    duration_s: float,
    max_count: int,
    sent: Synchronized[int],
    pause: MpEvent,
    go: MpEvent,
) -> None:
    source = Messages(base_topic, contacts, smokes, alarm_every)
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect_packet(f"bench-flood-{time.monotonic_ns()}"))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[3] != 0:
        raise SystemExit(f"broker refused the connection: {connack!r}")
    go.wait()
    deadline = time.monotonic() + duration_s
    count = 0
    while count < max_count and time.monotonic() < deadline:
        if pause.is_set():
            time.sleep(0.002)
            continue
        sock.sendall(b"".join(source.take(BATCH)))
        count += BATCH
        sent.value = count
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


@dataclass
class Flood:
    process: mp.process.BaseProcess
    sent: Synchronized[int]
    pause: MpEvent
    go: MpEvent

    def begin(self) -> None:
        self.go.set()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


def start(
    *,
    base_topic: str,
    contacts: int,
    smokes: int,
    alarm_every: int,
    duration_s: float,
    max_count: int,
    host: str = "127.0.0.1",
    port: int = 1883,
) -> Flood:
    """Start the publisher process, connected and waiting for :meth:`Flood.begin`."""
    ctx = mp.get_context("spawn")
    sent: Synchronized[int] = ctx.Value("q", 0)
    pause = ctx.Event()
    go = ctx.Event()
    process = ctx.Process(
        target=run,
        args=(host, port, base_topic, contacts, smokes, alarm_every, duration_s, max_count),
        kwargs={"sent": sent, "pause": pause, "go": go},
        daemon=True,
    )
    process.start()
    return Flood(process, sent, pause, go)
