"""BLE: BTHome v2 advertisements (buttons, smoke, gas, leak, motion, door, tamper, battery) and
GATT button devices (wristbands, pendants), through bleak.

- :mod:`drivers.ble.driver`: :class:`BleDriver` (options: :class:`BleOptions`).
- :mod:`drivers.ble.parser`: :class:`BleParser`, pure frames → readings.
- :mod:`drivers.ble.bthome`: BTHome v2 decoding and decryption (bthome-ble).
- :mod:`drivers.ble.transport`: the scanner and client seam, with bleak's implementations.
- :mod:`drivers.ble.gatt`: one GATT device kept connected.
- :mod:`drivers.ble.frames`: what a BLE frame carries.
"""

from drivers.ble.config import BleDeviceOptions, BleOptions
from drivers.ble.driver import BleDriver
from drivers.ble.parser import BleParser
from drivers.ble.transport import ClientBackend, ClientFactory, ScannerBackend

__all__ = [
    "BleDeviceOptions",
    "BleDriver",
    "BleOptions",
    "BleParser",
    "ClientBackend",
    "ClientFactory",
    "ScannerBackend",
]
