"""A GATT wristband or pendant without a radio, in this process or in another one.

- :class:`SimWristband`: a button on a notify characteristic (service 0xFFE0, characteristic
  0xFFE1 by default) that can be pressed, lose its link, go out of range and come back.
- :func:`sim_client_factory`: the driver's :data:`~drivers.ble.transport.ClientFactory` that
  reaches these wristbands in this process.
- :class:`WristbandServer` / :func:`udp_client_factory`: the same wristbands served from another
  process over loopback UDP (driver option ``client = "udp://127.0.0.1:PORT"``).

Clients hand the driver bleak's own ``BleakGATTCharacteristic`` (inside a ``BleakGATTService``)
and raise bleak's own errors (``BleakDeviceNotFoundError``, ``BleakError``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakCharacteristicNotFoundError, BleakDeviceNotFoundError, BleakError

from drivers.ble.loopback import dumps, gatt_characteristic, udp_client_factory
from drivers.ble.transport import ClientBackend, ClientFactory, NotifyCallback

__all__ = [
    "BUTTON_CHARACTERISTIC",
    "BUTTON_SERVICE",
    "SimWristband",
    "WristbandServer",
    "sim_client_factory",
    "udp_client_factory",
]

BUTTON_SERVICE = "0000ffe0-0000-1000-8000-00805f9b34fb"
BUTTON_CHARACTERISTIC = "0000ffe1-0000-1000-8000-00805f9b34fb"


# -- GATT wristband -----------------------------------------------------------------------


class SimWristband:
    """A wristband or pendant with a button on a notify characteristic (0xFFE0/0xFFE1)."""

    def __init__(
        self,
        address: str,
        *,
        service: str = BUTTON_SERVICE,
        characteristic: str = BUTTON_CHARACTERISTIC,
        press_value: bytes = b"\x01",
        in_range: bool = True,
    ) -> None:
        self.address = address.upper()
        self.char = gatt_characteristic(service, characteristic)
        self.press_value = press_value
        self.in_range = in_range
        self.connects = 0
        self.connect_attempts = 0
        #: (characteristic, data) of every write the gateway made (acknowledgements).
        self.writes: list[tuple[str, bytes]] = []
        self._client: _SimClient | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def subscribed(self) -> bool:
        return self._client is not None and self._client.notify_callback is not None

    def press(self, value: bytes | None = None) -> bool:
        """Press the button; False when nobody is subscribed (the press is lost, as on air)."""
        client = self._client
        if client is None or client.notify_callback is None:
            return False
        data = value if value is not None else self.press_value
        client.notify_callback(self.char, bytearray(data))
        return True

    def out_of_range(self) -> None:
        """Walk away: the connection drops and new ones fail until :meth:`back_in_range`."""
        self.in_range = False
        self.drop()

    def back_in_range(self) -> None:
        self.in_range = True

    def drop(self) -> None:
        """The link is lost (supervision timeout on the air)."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            client.lost()

    def _connect(self, client: _SimClient) -> None:
        self.connect_attempts += 1
        if not self.in_range:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        self.connects += 1
        self._client = client


class _SimClient:
    def __init__(
        self, band: SimWristband, on_disconnect: Callable[[], None], *, service: str
    ) -> None:
        self._band = band
        self._on_disconnect = on_disconnect
        #: Only this service is resolved, as bleak's ``services=`` does.
        self._service = service.lower()
        self._connected = False
        self.notify_callback: NotifyCallback | None = None

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        await asyncio.sleep(0)
        self._band._connect(self)
        self._connected = True

    async def start_notify(self, characteristic: str, callback: NotifyCallback) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        char = self._band.char
        if characteristic.lower() != char.uuid or self._service != char.service_uuid:
            raise BleakCharacteristicNotFoundError(characteristic)
        self.notify_callback = callback

    async def write(self, characteristic: str, data: bytes) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        self._band.writes.append((characteristic.lower(), bytes(data)))

    async def disconnect(self) -> None:
        self._connected = False
        self.notify_callback = None

    def lost(self) -> None:
        self._connected = False
        self.notify_callback = None
        self._on_disconnect()


def sim_client_factory(*bands: SimWristband) -> ClientFactory:
    """A ClientFactory reaching these wristbands (any other address is not found)."""
    by_address = {b.address: b for b in bands}

    def factory(address: str, on_disconnect: Callable[[], None], *, service: str) -> ClientBackend:
        band = by_address.get(address.upper())
        if band is None:
            return _AbsentClient(address)
        return _SimClient(band, on_disconnect, service=service)

    return factory


class _AbsentClient:
    def __init__(self, address: str) -> None:
        self._address = address

    @property
    def is_connected(self) -> bool:
        return False

    async def connect(self) -> None:
        raise BleakDeviceNotFoundError(self._address, f"Device {self._address} was not found.")

    async def start_notify(self, characteristic: str, callback: NotifyCallback) -> None:
        raise BleakError("Not connected")

    async def write(self, characteristic: str, data: bytes) -> None:
        raise BleakError("Not connected")

    async def disconnect(self) -> None:
        return None


# -- another process: loopback UDP ---------------------------------------------------------
#
# Datagrams are JSON objects with an "op" and a "session" (one per client connection):
#   client → server: connect {address}, subscribe {char}, write {char, data}, disconnect, ping
#   server → client: connected, subscribed, written, error {error, not_found},
#                    notify {char, data}, disconnected, pong
# The client pings every PING_S; a link that answers nothing for LINK_TIMEOUT_S is lost, as a
# BLE supervision timeout would be (so killing the simulator process looks like range loss).


class _RemoteSession:
    """The server's side of one client connection, shaped like :class:`_SimClient` for a band."""

    def __init__(self, server: WristbandServer, session: str, peer: tuple[str, int]) -> None:
        self._server = server
        self.session = session
        self.peer = peer
        self.band: SimWristband | None = None
        self._connected = False
        self.notify_callback: NotifyCallback | None = None

    @property
    def is_connected(self) -> bool:
        return self._connected

    def lost(self) -> None:
        self._connected = False
        self.notify_callback = None
        self._server.send(self.peer, {"op": "disconnected", "session": self.session})

    def notify(self, char: BleakGATTCharacteristic, data: bytearray) -> None:
        self._server.send(
            self.peer,
            {"op": "notify", "session": self.session, "char": char.uuid, "data": bytes(data).hex()},
        )


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: WristbandServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            msg = json.loads(data)
            if not isinstance(msg, dict) or not isinstance(msg.get("session"), str):
                raise ValueError("no session")
        except ValueError:
            self._server.rejected += 1
            return
        self._server.handle(msg, (str(addr[0]), int(addr[1])))


class WristbandServer:
    """Serves :class:`SimWristband` s to :func:`udp_client_factory` clients in other processes."""

    def __init__(self, port: int, *bands: SimWristband, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.bands = {b.address: b for b in bands}
        self.rejected = 0
        self._sessions: dict[str, _RemoteSession] = {}
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ServerProtocol(self), local_addr=(self.host, self.port)
        )
        self._transport = transport

    async def stop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    async def __aenter__(self) -> WristbandServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def send(self, peer: tuple[str, int], msg: dict[str, object]) -> None:
        if self._transport is not None:
            self._transport.sendto(dumps(msg), peer)

    def handle(self, msg: dict[str, Any], peer: tuple[str, int]) -> None:
        op, session = msg.get("op"), msg["session"]
        reply: dict[str, object] = {"session": session}
        remote = self._sessions.get(session)
        if op == "connect":
            band = self.bands.get(str(msg.get("address", "")).upper())
            if band is None:
                self.send(peer, {**reply, "op": "error", "error": "not found", "not_found": True})
                return
            remote = self._sessions[session] = _RemoteSession(self, session, peer)
            try:
                band._connect(remote)  # type: ignore[arg-type]  # same shape as _SimClient
            except BleakError as exc:
                del self._sessions[session]
                self.send(peer, {**reply, "op": "error", "error": str(exc), "not_found": True})
                return
            remote.band = band
            remote._connected = True
            self.send(peer, {**reply, "op": "connected"})
        elif remote is None or not remote.is_connected:
            self.send(peer, {**reply, "op": "disconnected"})
        elif op == "subscribe":
            assert remote.band is not None
            char = remote.band.char
            if (
                str(msg.get("char", "")).lower() != char.uuid
                or str(msg.get("service", "")).lower() != char.service_uuid
            ):
                self.send(peer, {**reply, "op": "error", "error": "characteristic not found"})
                return
            remote.notify_callback = remote.notify
            self.send(peer, {**reply, "op": "subscribed"})
        elif op == "write":
            assert remote.band is not None
            try:
                data = bytes.fromhex(str(msg.get("data", "")))
            except ValueError:
                self.send(peer, {**reply, "op": "error", "error": "bad data"})
                return
            remote.band.writes.append((str(msg.get("char", "")).lower(), data))
            self.send(peer, {**reply, "op": "written"})
        elif op == "ping":
            self.send(peer, {**reply, "op": "pong"})
        elif op == "disconnect":
            remote._connected = False
            remote.notify_callback = None
            del self._sessions[session]
