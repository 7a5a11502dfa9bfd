"""Our bleak wrappers against bleak's real front classes, through bleak's own ``backend=``.

bleak documents its platform backends as ABCs (``BaseBleakScanner``, ``BaseBleakClient``) with
an explicit ``backend=`` override; these tests plug minimal backends in there, so
``BleakScanner`` / ``BleakClient`` themselves (callback arity checks, characteristic lookup by
UUID, the disconnected-callback wrapping) run for real.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from drivers.base import TransportError
from drivers.ble import BleDriver
from drivers.ble.transport import BTHOME_OR_PATTERN, BleakScannerBackend, bleak_client_factory
from firmware_sim.ble import BthomeDevice
from tests.ble.helpers import Pipeline, running, spec
from tests.fixtures.waiting import await_until

BAND = "FF:FF:10:2A:4B:01"
PENDANT = "A4:C1:38:8D:18:B2"


class RadioScanner(BaseBleakScanner):
    """A platform scanner backend whose "radio" is the test."""

    instances: ClassVar[list[RadioScanner]] = []
    fail: ClassVar[BaseException | None] = None

    def __init__(
        self, detection_callback: Any, service_uuids: Any, scanning_mode: str, **kwargs: Any
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning_mode = scanning_mode
        self.bluez = kwargs.get("bluez", {})
        self.running = False
        RadioScanner.instances.append(self)

    async def start(self) -> None:
        if RadioScanner.fail is not None:
            raise RadioScanner.fail
        self.seen_devices = {}
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def hear(self, pair: tuple[Any, AdvertisementData]) -> None:
        device, adv = pair
        path, _props = adv.platform_data
        found = self.create_or_update_device(path, device.address, device.name, device.details, adv)
        self.call_detection_callbacks(found, adv)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RadioScanner.instances.clear()
    RadioScanner.fail = None
    RadioGatt.instances.clear()


async def test_bleak_scanner_passive_mode_asks_bluez_for_bthome_only() -> None:
    backend = BleakScannerBackend(scanning_mode="passive", adapter="hci1", backend=RadioScanner)
    heard: list[str] = []
    await backend.start(lambda device, adv: heard.append(device.address))
    (radio,) = RadioScanner.instances
    assert radio.running
    assert radio.scanning_mode == "passive"
    assert radio.bluez == {"adapter": "hci1", "or_patterns": [BTHOME_OR_PATTERN]}
    radio.hear(BthomeDevice(PENDANT).smoke())
    assert heard == [PENDANT]
    await backend.stop()
    assert not radio.running


async def test_bleak_scanner_failure_is_a_transport_error() -> None:
    RadioScanner.fail = BleakError("No Bluetooth adapters found.")
    backend = BleakScannerBackend(backend=RadioScanner)
    with pytest.raises(TransportError, match="No Bluetooth adapters found"):
        await backend.start(lambda device, adv: None)


async def test_driver_over_bleak_scanner_front() -> None:
    driver = BleDriver(
        "ble",
        {},
        [spec("pendant", PENDANT, "pendant")],
        scanner=BleakScannerBackend(backend=RadioScanner),
    )
    async with running(driver) as pipe:
        (radio,) = RadioScanner.instances
        button = BthomeDevice(PENDANT)
        radio.hear(button.press())
        radio.hear(button.repeat())
        await pipe.wait(lambda: pipe.seen("pendant", "action"))
    assert len(pipe.seen("pendant", "action")) == 1
    assert not radio.running


class RadioGatt(BaseBleakClient):
    """A platform client backend with one button characteristic (0xFFE0 / 0xFFE1)."""

    instances: ClassVar[list[RadioGatt]] = []

    def __init__(self, address_or_ble_device: Any, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs["disconnected_callback"],
            timeout=kwargs["timeout"],
        )
        self._connected = False
        self._callback: Any = None
        RadioGatt.instances.append(self)

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        services = BleakGATTServiceCollection()
        service = BleakGATTService(None, 0x0C, "0000ffe0-0000-1000-8000-00805f9b34fb")
        services.add_service(service)
        services.add_characteristic(
            BleakGATTCharacteristic(
                None, 0x0E, "0000ffe1-0000-1000-8000-00805f9b34fb", ["notify"], lambda: 20, service
            )
        )
        self.services = services
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def start_notify(self, characteristic: Any, callback: Any, **kwargs: Any) -> None:
        self._callback = callback

    async def stop_notify(self, characteristic: Any) -> None:
        self._callback = None

    def press(self, data: bytes) -> None:
        self._callback(bytearray(data))

    def lose_link(self) -> None:
        self._connected = False
        assert self._disconnected_callback is not None
        self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def unpair(self) -> None:
        raise NotImplementedError

    async def read_gatt_char(self, *args: Any, **kwargs: Any) -> bytearray:
        raise NotImplementedError

    async def read_gatt_descriptor(self, *args: Any, **kwargs: Any) -> bytearray:
        raise NotImplementedError

    async def write_gatt_char(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def write_gatt_descriptor(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


async def test_driver_over_bleak_client_front_reconnects() -> None:
    driver = BleDriver(
        "ble",
        {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.05},
        [spec("band", BAND, "wristband", gatt=True, characteristic="0xFFE1")],
        client_factory=bleak_client_factory(backend=RadioGatt),
    )
    pipe: Pipeline
    async with running(driver) as pipe:
        await await_until(lambda: RadioGatt.instances and RadioGatt.instances[-1]._callback, 5)
        RadioGatt.instances[-1].press(b"\x01")
        await pipe.wait(lambda: pipe.seen("band", "action", "single"))
        RadioGatt.instances[-1].lose_link()
        await await_until(
            lambda: len(RadioGatt.instances) == 2 and RadioGatt.instances[1]._callback, 5
        )
        RadioGatt.instances[1].press(b"\x01")
        await pipe.wait(lambda: len(pipe.seen("band", "action", "single")) == 2)
    assert RadioGatt.instances[0].address == BAND
    assert not RadioGatt.instances[1].is_connected
