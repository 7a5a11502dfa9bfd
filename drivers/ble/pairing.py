"""Pairing BLE devices: a short scan lists the BTHome devices heard to pick from, or a MAC.

Most BTHome devices advertise only when used, so the installer presses the new device's button
during the scan. An encrypted device says nothing readable until its bind key is known: the
candidate asks for the key (:class:`~drivers.pairing.Needed`), and :meth:`BlePairing.identify`
checks the key against what the device sent during the scan before anything is written, since a
wrong key would leave its alarms unreadable. GATT devices (wristbands) are given by MAC with
``gatt = true`` among their options.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from pydantic import ValidationError

from drivers.base import TransportError, _describe
from drivers.ble.bthome import BthomeRejected, EncryptionState, decode_bthome
from drivers.ble.config import MAC_ADDRESS, BleDeviceOptions
from drivers.ble.frames import BTHOME_UUID, normalize_address
from drivers.ble.transport import ScannerBackend
from drivers.pairing import (
    Candidate,
    DeviceRefused,
    Identified,
    InvalidDevice,
    Needed,
    NothingFound,
    Pairing,
    PairingUnreachable,
    ProgressSink,
)

if TYPE_CHECKING:
    from drivers.ble.driver import BleDriver

__all__ = [
    "BlePairing",
    "HeardDevice",
    "ScanFailed",
    "check_bind_key",
    "role_from_bthome",
    "scan_bthome",
]

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
_BIND_KEY = re.compile(r"[0-9A-Fa-f]{32}")


class ScanFailed(PairingUnreachable):
    """The BLE scanner could not be started (or stopped)."""


def role_from_bthome(reports: set[str]) -> str:
    """The likeliest role of a BTHome device from the keys it reported (``other`` if none)."""
    return next((role for key, role in _BTHOME_ROLES if key in reports), "other")


def check_bind_key(value: str) -> str:
    """A bind key as the installer typed it → as the config keeps it (lower-case hex)."""
    if not _BIND_KEY.fullmatch(value.strip()):
        raise ValueError("a bind key is 32 hex digits (16 bytes)")
    return value.strip().lower()


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
    #: The last service data it sent, to check a bind key against (encrypted devices).
    last_data: bytes = b""

    @property
    def role_guess(self) -> str:
        return role_from_bthome(self.reports)


def _reports(data: bytes, address: str, name: str | None, bind_key: bytes | None) -> set[str]:
    """The keys one BTHome service data reports; BthomeRejected if it cannot be read."""
    decoded = decode_bthome(
        data, address=address, name=name, bind_key=bind_key, state=EncryptionState(),
        time=time.time(),
    )  # fmt: skip
    return (
        {k.rstrip("_0123456789") for k in decoded.events}
        | set(decoded.binary)
        | set(decoded.sensors)
    )


async def scan_bthome(scanner: ScannerBackend, *, seconds: float) -> list[HeardDevice]:
    """Listen for ``seconds``; every BTHome v2 device heard, strongest signal first."""
    heard: dict[str, HeardDevice] = {}

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
        entry.last_data = bytes(data)
        if entry.encrypted:
            return  # what it says is sealed until the bind key is known
        try:
            entry.reports |= _reports(data, address, adv.local_name, None)
        except BthomeRejected:
            return

    try:
        await scanner.start(on_advertisement)
    except TransportError as exc:
        raise ScanFailed(_scan_failed(exc)) from exc
    try:
        await asyncio.sleep(seconds)
    finally:
        try:
            await scanner.stop()
        except TransportError as exc:
            raise ScanFailed(_scan_failed(exc)) from exc
    return sorted(heard.values(), key=lambda d: -(d.rssi if d.rssi is not None else -999))


def _scan_failed(exc: TransportError) -> str:
    return (
        f"{exc}. Is Bluetooth on? (A udp:// loopback scanner can be listened to by one process "
        f"at a time: stop gatewayd for the scan.)"
    )


class BlePairing(Pairing):
    """A scan for BTHome devices to pick from, or a device given by its MAC."""

    discovery = "scan"
    address_example = "the Bluetooth MAC, like A4:C1:38:8D:18:B2"
    address_kind = "MAC"
    discovery_seconds = 10.0
    max_discovery_seconds = 300.0

    def __init__(self, driver: BleDriver) -> None:
        super().__init__(driver)
        self.ble = driver
        #: What the last scan heard, by address: a bind key is checked against it.
        self.heard: dict[str, HeardDevice] = {}

    def announce(self, seconds: float) -> str:
        return (
            f"Listening for BTHome devices for {seconds:g} s through {self.driver.id!r}. "
            f"Press the new device's button now (most BTHome devices advertise only when used)."
        )

    async def discover(self, seconds: float, progress: ProgressSink) -> AsyncIterator[Candidate]:
        heard = await scan_bthome(self.ble.make_scanner(), seconds=seconds)
        if not heard:
            raise NothingFound(
                f"no BTHome device heard in {seconds:g} s; press the device's button and scan again"
            )
        self.heard = {device.address: device for device in heard}
        for device in heard:
            needs: tuple[Needed, ...] = ()
            if device.encrypted:
                needs = (
                    Needed(
                        option="bind_key",
                        reason="encrypted",
                        prompt=f"{device.address} sends encrypted BTHome. Its bind key (32 hex "
                        f"digits, from the device's label or app)",
                        check=check_bind_key,
                    ),
                )
            yield Candidate(
                address=device.address,
                name=device.name or "",
                reports=tuple(sorted(device.reports)),
                signal="" if device.rssi is None else f"{device.rssi} dBm",
                role_guess=device.role_guess,
                needs=needs,
            )

    async def identify(self, target: Candidate | str, options: Mapping[str, Any]) -> Identified:
        address = target.address if isinstance(target, Candidate) else target.strip()
        if not MAC_ADDRESS.match(address):
            raise InvalidDevice(f"address {address!r} is not a Bluetooth MAC (AA:BB:CC:DD:EE:FF)")
        address = normalize_address(address)
        try:
            checked = BleDeviceOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise InvalidDevice(f"device {address}: {_describe(exc)}") from exc
        role_guess = target.role_guess if isinstance(target, Candidate) else "other"
        heard = self.heard.get(address) if isinstance(target, Candidate) else None
        if heard is not None and heard.encrypted:
            if checked.bind_key is None:
                raise InvalidDevice(f"{address} sends encrypted BTHome: its bind_key is needed")
            try:
                reports = _reports(
                    heard.last_data, address, heard.name, bytes.fromhex(checked.bind_key)
                )
            except BthomeRejected as exc:
                raise DeviceRefused(
                    f"the bind key does not open what {address} sent ({exc.reason}); check the "
                    f"key on the device's label or in its app"
                ) from exc
            role_guess = role_from_bthome(reports)
        return Identified(address=address, options=dict(options), role_guess=role_guess)
