"""Adding devices that join no network: RFLink and Modbus by their address, BLE by a scan.

Zigbee devices join through Zigbee2MQTT's permit-join (:mod:`gatewayd.commands.devices`). The
others are only listened to or polled, so "pairing" one means writing its address into the home
config, checked by its own driver exactly as the daemon will check it:

- RFLink: ``Protocol:ID`` (or ``Protocol:ID:SWITCH``) as the receiver prints it.
- Modbus: ``tcp://HOST[:PORT]/UNIT`` or ``rtu://PORT/UNIT``, with ``--option profile=NAME``.
- BLE: a MAC, given with ``--address`` or picked from a short scan that lists the BTHome devices
  heard, through the driver's own scanner (``bleak``, or ``udp://`` for the simulator).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from pydantic import ValidationError

from contract.devices import DriverEntry
from drivers.base import DeviceSpec, DriverConfigError, TransportError
from drivers.ble.bthome import BthomeRejected, EncryptionState, decode_bthome
from drivers.ble.config import BleOptions, parse_endpoint
from drivers.ble.frames import BTHOME_UUID, normalize_address
from drivers.ble.transport import BleakScannerBackend, ScannerBackend
from drivers.registry import UnknownDriver, load_driver

__all__ = [
    "ADDRESS_DRIVERS",
    "AddressPairingError",
    "HeardDevice",
    "ScanFailed",
    "check_driver_devices",
    "parse_option",
    "role_from_bthome",
    "scan_bthome",
    "scanner_for",
]

#: Driver types whose devices are added by address (and, for BLE, by a scan).
ADDRESS_DRIVERS = ("rflink", "modbus", "ble")

#: BTHome keys a device reports -> the role it most likely plays, in order of preference.
_BTHOME_ROLES = (
    ("smoke", "smoke"),
    ("gas", "gas"),
    ("carbon_monoxide", "co"),
    ("moisture", "water_leak"),
    ("opening", "door"),
    ("door", "door"),
    ("window", "door"),
    ("motion", "motion"),
    ("occupancy", "motion"),
    ("button", "sos_button"),
)


class AddressPairingError(ValueError):
    """A device that its driver would refuse; the message names the problem."""


class ScanFailed(RuntimeError):
    """The BLE scanner could not be started."""


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (key, value); the value is read as TOML (``5``, ``true``, ``["01"]``)
    when it is valid TOML, else kept as the text (``combustible_gas``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not key.replace("_", "").isalnum():
        raise AddressPairingError(
            f"--option must be KEY=VALUE (like profile=combustible_gas), got {text!r}"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def check_driver_devices(entry: DriverEntry, devices: list[DeviceSpec]) -> None:
    """Build the driver with these devices as the daemon would; raises AddressPairingError."""
    try:
        driver_class = load_driver(entry.type)
    except UnknownDriver as exc:
        raise AddressPairingError(str(exc)) from exc
    try:
        driver_class(entry.id, entry.options, devices)
    except DriverConfigError as exc:
        raise AddressPairingError(str(exc)) from exc


def role_from_bthome(reports: set[str]) -> str:
    """The likeliest role of a BTHome device from the keys it reported (``other`` if none)."""
    return next((role for key, role in _BTHOME_ROLES if key in reports), "other")


@dataclass
class HeardDevice:
    """A BTHome device heard during a scan."""

    address: str
    name: str | None
    rssi: int | None
    encrypted: bool
    #: What it reported (bthome-ble keys): ``button``, ``smoke``, ``battery``, ...
    reports: set[str] = field(default_factory=set)
    adverts: int = 0

    @property
    def role_guess(self) -> str:
        return role_from_bthome(self.reports)


def scanner_for(entry: DriverEntry) -> ScannerBackend:
    """The scanner the BLE driver of ``entry`` uses: bleak, or the simulator's ``udp://``."""
    try:
        options = BleOptions.model_validate(entry.options)
    except ValidationError as exc:
        raise AddressPairingError(f"driver {entry.id!r}: {exc.errors()[0]['msg']}") from exc
    endpoint = parse_endpoint(options.scanner, what="scanner")
    if endpoint is None:
        return BleakScannerBackend(scanning_mode=options.scanning_mode, adapter=options.adapter)
    from drivers.ble.loopback import UdpScannerBackend  # only the loopback link needs it

    return UdpScannerBackend(endpoint.host, endpoint.port)


async def scan_bthome(scanner: ScannerBackend, *, seconds: float) -> list[HeardDevice]:
    """Listen for ``seconds``; every BTHome v2 device heard, strongest signal first."""
    heard: dict[str, HeardDevice] = {}
    states: dict[str, EncryptionState] = {}

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.service_data.get(BTHOME_UUID)
        if not data:
            return  # not BTHome: the neighbours' phones, headphones, ...
        address = normalize_address(device.address)
        entry = heard.setdefault(
            address, HeardDevice(address, adv.local_name, adv.rssi, encrypted=bool(data[0] & 1))
        )
        entry.adverts += 1
        entry.rssi = adv.rssi if adv.rssi is not None else entry.rssi
        entry.name = entry.name or adv.local_name
        if entry.encrypted:
            return  # what it says is sealed until the bind key is known
        try:
            decoded = decode_bthome(
                data,
                address=address,
                name=adv.local_name,
                bind_key=None,
                state=states.setdefault(address, EncryptionState()),
                time=time.time(),
            )
        except BthomeRejected:
            return
        entry.reports |= {k.rstrip("_0123456789") for k in decoded.events}
        entry.reports |= set(decoded.binary) | set(decoded.sensors)

    try:
        await scanner.start(on_advertisement)
    except TransportError as exc:
        raise ScanFailed(str(exc)) from exc
    try:
        await asyncio.sleep(seconds)
    finally:
        try:
            await scanner.stop()
        except TransportError as exc:
            raise ScanFailed(str(exc)) from exc
    return sorted(heard.values(), key=lambda d: -(d.rssi if d.rssi is not None else -999))
