"""The seam to the radio: a scanner and a GATT client, each a tiny protocol.

Everything else of the driver (filtering, framing, supervision, reconnecting) is ours and runs
in tests; only these two are bleak, or the loopback stand-ins of :mod:`drivers.ble.loopback`
that hand over bleak's own ``BLEDevice`` / ``AdvertisementData`` / ``BleakGATTCharacteristic``.

- :class:`ScannerBackend`: ``start(callback)`` / ``stop()``; the callback receives
  ``(BLEDevice, AdvertisementData)`` exactly as bleak's ``detection_callback`` does.
- :class:`ClientBackend`: one GATT connection: ``connect()``, ``start_notify(char, callback)``,
  ``write(char, data)``, ``disconnect()``, ``is_connected``; made by a :class:`ClientFactory`
  with the address, a callback for an unexpected disconnection (bleak's
  ``disconnected_callback``) and the service the device's button is in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from drivers.base import TransportError

__all__ = [
    "AdvertisementCallback",
    "BleakClientBackend",
    "BleakScannerBackend",
    "ClientBackend",
    "ClientFactory",
    "NotifyCallback",
    "ScannerBackend",
    "bleak_client_factory",
]

AdvertisementCallback = Callable[[BLEDevice, AdvertisementData], None]
NotifyCallback = Callable[[BleakGATTCharacteristic, bytearray], None]

#: BlueZ's passive scanning needs a pattern; BTHome's is its 16-bit service data UUID 0xFCD2
#: (little-endian on the air).
BTHOME_OR_PATTERN = OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")


class ScannerBackend(Protocol):
    async def start(self, callback: AdvertisementCallback) -> None: ...

    async def stop(self) -> None: ...


class ClientBackend(Protocol):
    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def start_notify(self, characteristic: str, callback: NotifyCallback) -> None: ...

    async def write(self, characteristic: str, data: bytes) -> None: ...

    async def disconnect(self) -> None: ...


class ClientFactory(Protocol):
    """Makes a client for one device (not yet connected); ``service`` is the one it needs."""

    def __call__(
        self, address: str, on_disconnect: Callable[[], None], *, service: str
    ) -> ClientBackend: ...


class BleakScannerBackend:
    """bleak's :class:`BleakScanner`, started and stopped; failures become TransportError."""

    def __init__(
        self,
        *,
        scanning_mode: Literal["active", "passive"] = "active",
        adapter: str | None = None,
        backend: type[BaseBleakScanner] | None = None,
    ) -> None:
        self._mode = scanning_mode
        self._adapter = adapter
        #: bleak's own override of its platform backend (None: the platform's).
        self._backend = backend
        self._scanner: BleakScanner | None = None

    async def start(self, callback: AdvertisementCallback) -> None:
        bluez: BlueZScannerArgs = {}
        if self._adapter:
            bluez["adapter"] = self._adapter
        if self._mode == "passive":
            bluez["or_patterns"] = [BTHOME_OR_PATTERN]

        # bleak checks the callback's arity: exactly two parameters.
        def detection(device: BLEDevice, adv: AdvertisementData) -> None:
            callback(device, adv)

        try:
            self._scanner = BleakScanner(
                detection, scanning_mode=self._mode, bluez=bluez, backend=self._backend
            )
            await self._scanner.start()
        except (BleakError, OSError) as exc:
            self._scanner = None
            raise TransportError(f"BLE scanner did not start: {exc}") from exc

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                await scanner.stop()
            except (BleakError, OSError) as exc:
                raise TransportError(f"BLE scanner did not stop cleanly: {exc}") from exc


class BleakClientBackend:
    """bleak's :class:`BleakClient` for one device."""

    def __init__(
        self,
        address: str,
        on_disconnect: Callable[[], None],
        *,
        service: str | None = None,
        adapter: str | None = None,
        timeout: float = 20.0,
        backend: type[BaseBleakClient] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"timeout": timeout, "backend": backend}
        if service is not None:
            # Resolve only the button's service: a faster connection on most stacks.
            kwargs["services"] = [service]
        if adapter:
            kwargs["bluez"] = {"adapter": adapter}
        self._client = BleakClient(address, lambda _client: on_disconnect(), **kwargs)

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    async def connect(self) -> None:
        await self._client.connect()

    async def start_notify(self, characteristic: str, callback: NotifyCallback) -> None:
        await self._client.start_notify(characteristic, callback)

    async def write(self, characteristic: str, data: bytes) -> None:
        await self._client.write_gatt_char(characteristic, data, response=True)

    async def disconnect(self) -> None:
        await self._client.disconnect()


def bleak_client_factory(
    *,
    adapter: str | None = None,
    timeout: float = 20.0,
    backend: type[BaseBleakClient] | None = None,
) -> ClientFactory:
    def factory(address: str, on_disconnect: Callable[[], None], *, service: str) -> ClientBackend:
        return BleakClientBackend(
            address,
            on_disconnect,
            service=service,
            adapter=adapter,
            timeout=timeout,
            backend=backend,
        )

    return factory
