"""The BLE driver's loopback seam: advertisements and a GATT link over loopback UDP.

There is no radio on a development machine, a CI runner or a demo laptop. With the driver options
``scanner = "udp://127.0.0.1:PORT"`` and ``client = "udp://127.0.0.1:PORT"`` the driver hears
advertisements and reaches GATT wristbands over loopback instead of BlueZ, as bleak's own types
(``BLEDevice``, ``AdvertisementData``, ``BleakGATTCharacteristic``) and raising bleak's own errors,
so everything above the transport runs as it does with a radio. The BLE simulators are the
other end of these sockets.

Advertisement datagrams are JSON objects (:func:`encode_datagram`). GATT datagrams are JSON
objects with an "op" and a "session" (one per client connection):

- client → server: connect {address}, subscribe {char}, write {char, data}, disconnect, ping
- server → client: connected, subscribed, written, error {error, not_found},
  notify {char, data}, disconnected, pong

The client pings every :data:`PING_S`; a link that answers nothing for :data:`LINK_TIMEOUT_S` is
lost, as a BLE supervision timeout would be (so killing the simulator looks like range loss).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.backends.service import BleakGATTService
from bleak.exc import BleakDeviceNotFoundError, BleakError

from drivers.base import TransportError
from drivers.ble.transport import (
    AdvertisementCallback,
    ClientBackend,
    ClientFactory,
    NotifyCallback,
)
from runtime.timeouts import within

__all__ = [
    "LINK_TIMEOUT_S",
    "PING_S",
    "UdpScannerBackend",
    "advertisement",
    "decode_datagram",
    "dumps",
    "encode_datagram",
    "gatt_characteristic",
    "udp_client_factory",
]

log = structlog.get_logger(__name__)


def advertisement(
    address: str,
    *,
    name: str | None = None,
    rssi: int = -60,
    service_data: dict[str, bytes] | None = None,
    manufacturer_data: dict[int, bytes] | None = None,
    tx_power: int | None = None,
    adapter: str = "hci0",
) -> tuple[BLEDevice, AdvertisementData]:
    """A ``(BLEDevice, AdvertisementData)`` pair as bleak's BlueZ backend makes one."""
    service_data = dict(service_data or {})
    manufacturer_data = dict(manufacturer_data or {})
    path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"
    props: dict[str, Any] = {
        "Address": address,
        "Alias": name or address.replace(":", "-"),
        "RSSI": rssi,
        "ServiceData": service_data,
        "ManufacturerData": manufacturer_data,
        "UUIDs": list(service_data),
    }
    if name is not None:
        props["Name"] = name
    adv = AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=list(service_data),
        tx_power=tx_power,
        rssi=rssi,
        platform_data=(path, props),
    )
    return BLEDevice(address, props["Alias"], {"path": path, "props": props}), adv


def encode_datagram(device: BLEDevice, adv: AdvertisementData) -> bytes:
    return json.dumps(
        {
            "address": device.address,
            "name": device.name,
            "local_name": adv.local_name,
            "rssi": adv.rssi,
            "tx_power": adv.tx_power,
            "service_data": {k: v.hex() for k, v in adv.service_data.items()},
            "manufacturer_data": {str(k): v.hex() for k, v in adv.manufacturer_data.items()},
        },
        separators=(",", ":"),
    ).encode()


def decode_datagram(data: bytes) -> tuple[BLEDevice, AdvertisementData]:
    """Raises ValueError (or KeyError/TypeError) on anything that is not our datagram."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or not isinstance(obj.get("address"), str):
        raise ValueError("not an advertisement datagram")
    return advertisement(
        obj["address"],
        name=obj.get("local_name"),
        rssi=int(obj.get("rssi", -127)),
        tx_power=obj.get("tx_power"),
        service_data={str(k): bytes.fromhex(v) for k, v in obj.get("service_data", {}).items()},
        manufacturer_data={
            int(k): bytes.fromhex(v) for k, v in obj.get("manufacturer_data", {}).items()
        },
    )


class _AdvertisementProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpScannerBackend, callback: AdvertisementCallback) -> None:
        self._owner = owner
        self._callback = callback

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            adv = decode_datagram(data)
        except (ValueError, KeyError, TypeError) as exc:
            self._owner.rejected += 1
            if self._owner.rejected == 1:
                log.warning("ble_udp_datagram_rejected", error=str(exc)[:200])
            return
        self._owner.received += 1
        self._callback(*adv)


class UdpScannerBackend:
    """A ScannerBackend that listens on loopback UDP for a :class:`BleBroadcaster`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.received = 0
        self.rejected = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, callback: AdvertisementCallback) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _AdvertisementProtocol(self, callback), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise TransportError(
                f"simulated BLE scanner cannot listen on udp://{self.host}:{self.port}: {exc}"
            ) from exc
        self._transport = transport

    async def stop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


# -- GATT over loopback UDP ---------------------------------------------------------------


def gatt_characteristic(service_uuid: str, char_uuid: str) -> BleakGATTCharacteristic:
    service = BleakGATTService(None, 0x000C, service_uuid)
    char = BleakGATTCharacteristic(None, 0x000E, char_uuid, ["read", "notify"], lambda: 20, service)
    service.add_characteristic(char)
    return char


PING_S = 0.25
LINK_TIMEOUT_S = 1.5
_REPLY_TIMEOUT_S = 3.0


def dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _UdpClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: _UdpClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("session") == self._client.session:
            self._client.received(msg)

    def error_received(self, exc: Exception) -> None:
        # Nobody listening on the server port (ICMP port unreachable): the link is gone.
        self._client.link_lost(f"simulator unreachable: {exc}")


class _UdpClient:
    def __init__(
        self,
        host: str,
        port: int,
        address: str,
        on_disconnect: Callable[[], None],
        *,
        service: str,
    ) -> None:
        self._server = (host, port)
        self._service = service
        self._address = address
        self._on_disconnect = on_disconnect
        self.session = uuid.uuid4().hex
        self._transport: asyncio.DatagramTransport | None = None
        self._connected = False
        self._reply: asyncio.Future[dict[str, Any]] | None = None
        self._notify: NotifyCallback | None = None
        self._char: BleakGATTCharacteristic | None = None
        self._last_heard = 0.0
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpClientProtocol(self), remote_addr=self._server
        )
        reply = await self._request({"op": "connect", "address": self._address})
        if reply["op"] != "connected":
            self._close()
            if reply.get("not_found"):
                raise BleakDeviceNotFoundError(self._address, str(reply.get("error")))
            raise BleakError(str(reply.get("error", reply["op"])))
        self._connected = True
        self._last_heard = loop.time()
        self._keepalive = asyncio.create_task(self._ping())

    async def start_notify(self, characteristic: str, callback: NotifyCallback) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        reply = await self._request(
            {"op": "subscribe", "char": characteristic, "service": self._service}
        )
        if reply["op"] != "subscribed":
            raise BleakError(str(reply.get("error", reply["op"])))
        self._char = gatt_characteristic(self._service, characteristic.lower())
        self._notify = callback

    async def write(self, characteristic: str, data: bytes) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        reply = await self._request({"op": "write", "char": characteristic, "data": data.hex()})
        if reply["op"] != "written":
            raise BleakError(str(reply.get("error", reply["op"])))

    async def disconnect(self) -> None:
        if self._connected and self._transport is not None:
            self._transport.sendto(dumps({"op": "disconnect", "session": self.session}))
        self._connected = False
        self._close()

    async def _request(self, msg: dict[str, object]) -> dict[str, Any]:
        if self._transport is None:
            raise BleakError("Not connected")
        self._reply = asyncio.get_running_loop().create_future()
        self._transport.sendto(dumps({**msg, "session": self.session}))
        try:
            return await within(self._reply, _REPLY_TIMEOUT_S)
        except TimeoutError as exc:
            raise BleakError(f"no answer from the simulator at {self._server}") from exc
        finally:
            self._reply = None

    def received(self, msg: dict[str, Any]) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        op = msg.get("op")
        if op == "notify" and self._notify is not None and self._char is not None:
            try:
                data = bytearray.fromhex(str(msg.get("data", "")))
            except ValueError:
                return
            self._notify(self._char, data)
        elif op == "disconnected":
            if self._reply is not None and not self._reply.done():
                self._reply.set_result(msg)
            self.link_lost("the device disconnected")
        elif op != "pong" and self._reply is not None and not self._reply.done():
            self._reply.set_result(msg)

    def link_lost(self, reason: str) -> None:
        del reason
        if self._reply is not None and not self._reply.done():
            self._reply.set_result({"op": "error", "error": "simulator unreachable"})
        if self._connected:
            self._connected = False
            self._close()
            self._on_disconnect()

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while self._connected and self._transport is not None:
            self._transport.sendto(dumps({"op": "ping", "session": self.session}))
            await asyncio.sleep(PING_S)
            if loop.time() - self._last_heard > LINK_TIMEOUT_S:
                self.link_lost("no answer")
                return

    def _close(self) -> None:
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        self._keepalive = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def udp_client_factory(host: str, port: int) -> ClientFactory:
    """A ClientFactory reaching the wristbands of a :class:`WristbandServer` on loopback."""

    def factory(address: str, on_disconnect: Callable[[], None], *, service: str) -> ClientBackend:
        return _UdpClient(host, port, address.upper(), on_disconnect, service=service)

    return factory
