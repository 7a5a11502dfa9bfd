"""The BLE driver's options (its ``[[drivers]]`` table) and each device's ``options``.

Example home config::

    [[drivers]]
    id = "ble"
    type = "ble"
    scanning_mode = "passive"      # or "active" (bleak's default)
    adapter = "hci0"               # BlueZ adapter; default: the system's default adapter
    scanner = "bleak"              # or "udp://127.0.0.1:47001" (the simulator, another process)

    [[devices]]
    id = "pendant-1"
    driver = "ble"
    address = "A4:C1:38:8D:18:B2"
    role = "pendant"
    options = { bind_key = "231d39c1d7cc1ab1aee224cd096db932" }   # encrypted BTHome

    [[devices]]
    id = "wristband-1"
    driver = "ble"
    address = "FF:FF:10:2A:4B:01"
    role = "wristband"
    options = { gatt = true, service = "ffe0", characteristic = "ffe1", press_values = ["01"],
                ack_characteristic = "2a06", ack_value = "02" }   # acknowledge: alert, high
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.base import DeviceSpec, DriverConfigError, DriverOptions, _describe
from drivers.ble.frames import normalize_address

__all__ = [
    "MAC_ADDRESS",
    "BleDeviceOptions",
    "BleOptions",
    "DeviceConfig",
    "UdpEndpoint",
    "full_uuid",
    "parse_endpoint",
    "resolve_devices",
]

MAC_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_SHORT_UUID = re.compile(r"^(0x)?[0-9A-Fa-f]{4}$")
_LONG_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"


def full_uuid(value: str) -> str:
    """``ffe0``, ``0xFFE0`` or a 128-bit UUID → the 128-bit lower-case form bleak reports."""
    text = value.strip()
    if _SHORT_UUID.match(text):
        return f"0000{text[-4:].lower()}{_BASE_UUID_TAIL}"
    if _LONG_UUID.match(text.lower()):
        return text.lower()
    raise ValueError(f"{value!r} is not a 16-bit or 128-bit UUID")


@dataclass(frozen=True, slots=True)
class UdpEndpoint:
    host: str
    port: int


def parse_endpoint(value: str, *, what: str) -> UdpEndpoint | None:
    """``bleak`` → None (the real radio); ``udp://HOST:PORT`` → the endpoint, loopback only."""
    if value == "bleak":
        return None
    parts = urlsplit(value)
    if parts.scheme != "udp" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{what} must be 'bleak' or 'udp://HOST:PORT', got {value!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{what}: bad port in {value!r}") from exc
    if port is None or port == 0:
        raise ValueError(f"{what}: {value!r} names no port")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") and not parts.hostname.startswith(
        "127."
    ):
        raise ValueError(f"{what}: the simulator link listens on loopback only, not {value!r}")
    return UdpEndpoint(parts.hostname, port)


class BleOptions(DriverOptions):
    """The ``[[drivers]]`` table of a BLE driver."""

    scanning_mode: Literal["active", "passive"] = "active"
    #: BlueZ adapter name (``hci0``); None is the system default.
    adapter: str | None = Field(default=None, pattern=r"^hci[0-9]{1,2}$")
    #: ``bleak`` (the radio) or ``udp://127.0.0.1:PORT`` (a simulator in another process).
    scanner: str = "bleak"
    #: ``bleak`` or ``udp://127.0.0.1:PORT`` for GATT devices (a simulated wristband).
    client: str = "bleak"
    #: A repeat of a packet id (or encryption counter) within this window is the same packet.
    duplicate_window_s: float = Field(default=30.0, gt=0, le=3600)
    #: Identical service data without a packet id within this window is a repeat.
    repeat_window_s: float = Field(default=2.0, gt=0, le=60)
    #: Report RSSI again only when it moved by at least this much.
    signal_delta_db: float = Field(default=10.0, ge=1, le=100)
    #: A GATT device not connected for this long is reported unavailable.
    gatt_offline_after_s: float = Field(default=120.0, gt=0, le=86_400)
    #: An advertising device not heard for this long is reported unavailable (None: never;
    #: many BTHome buttons advertise only when pressed). A device's ``offline_after_s`` wins.
    advert_offline_after_s: float | None = Field(default=None, gt=0, le=7 * 86_400)
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    reconnect_initial_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: Frames waiting for the pipeline; beyond this they are dropped and counted.
    queue_size: int = Field(default=10_000, ge=10, le=1_000_000)

    @field_validator("scanner", "client")
    @classmethod
    def _endpoint(cls, value: str, info: object) -> str:
        parse_endpoint(value, what=getattr(info, "field_name", "endpoint"))
        return value

    @model_validator(mode="after")
    def _backoff(self) -> BleOptions:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self


class BleDeviceOptions(BaseModel):
    """A device's ``options`` table, for a device of a BLE driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: BTHome encryption key: 16 bytes as 32 hex digits.
    bind_key: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{32}$")
    #: Reached over a GATT connection (a wristband's button) instead of advertisements.
    gatt: bool = False
    service: str = Field(default="ffe0", validate_default=True)
    characteristic: str = Field(default="ffe1", validate_default=True)
    #: Notification values (hex) that are a press; None: every non-empty notification is.
    press_values: list[str] | None = None
    #: Overrides the driver's ``advert_offline_after_s`` / ``gatt_offline_after_s``.
    offline_after_s: float | None = Field(default=None, gt=0, le=7 * 86_400)
    #: Characteristic written when dispatch acknowledges an SOS (the band beeps or vibrates),
    #: e.g. the Immediate Alert level 0x2A06; None: the device cannot be acknowledged.
    ack_characteristic: str | None = None
    ack_value: str = Field(default="01", pattern=r"^([0-9A-Fa-f]{2}){1,20}$")

    @field_validator("service", "characteristic")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return full_uuid(value)

    @field_validator("ack_characteristic")
    @classmethod
    def _ack_uuid(cls, value: str | None) -> str | None:
        return None if value is None else full_uuid(value)

    @field_validator("press_values")
    @classmethod
    def _hex_values(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("press_values must not be empty (leave it out to accept any value)")
        out = []
        for value in values:
            text = value.strip().lower().removeprefix("0x")
            if not text or len(text) % 2 or not re.fullmatch(r"[0-9a-f]+", text):
                raise ValueError(f"press value {value!r} is not hex bytes")
            out.append(text)
        return out


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One configured device as the parser and the transport use it."""

    id: str
    address: str
    role: str
    bind_key: bytes | None
    gatt: bool
    service: str
    characteristic: str
    press_values: frozenset[bytes] | None
    offline_after_s: float | None
    ack_characteristic: str | None = None
    ack_value: bytes = b"\x01"


def resolve_devices(
    driver_id: str, devices: Sequence[DeviceSpec], options: BleOptions
) -> dict[str, DeviceConfig]:
    """Validate every device of this driver; keyed by normalized address.

    Raises :class:`DriverConfigError` naming the device and the problem.
    """
    out: dict[str, DeviceConfig] = {}
    for spec in devices:
        where = f"driver {driver_id!r}, device {spec.id!r}"
        if not MAC_ADDRESS.match(spec.address.strip()):
            raise DriverConfigError(
                f"{where}: address {spec.address!r} is not a Bluetooth MAC (AA:BB:CC:DD:EE:FF)"
            )
        try:
            dev = BleDeviceOptions.model_validate(spec.options)
        except ValidationError as exc:
            raise DriverConfigError(f"{where}: {_describe(exc)}") from exc
        address = normalize_address(spec.address)
        if address in out:
            raise DriverConfigError(
                f"{where}: address {address} is also device {out[address].id!r}"
            )
        if dev.gatt and dev.bind_key:
            raise DriverConfigError(f"{where}: bind_key is for BTHome advertisements, not gatt")
        if dev.ack_characteristic and not dev.gatt:
            raise DriverConfigError(f"{where}: ack_characteristic needs gatt = true")
        offline = dev.offline_after_s
        if offline is None:
            offline = options.gatt_offline_after_s if dev.gatt else options.advert_offline_after_s
        out[address] = DeviceConfig(
            id=spec.id,
            address=address,
            role=spec.role,
            bind_key=bytes.fromhex(dev.bind_key) if dev.bind_key else None,
            gatt=dev.gatt,
            service=dev.service,
            characteristic=dev.characteristic,
            press_values=(
                frozenset(bytes.fromhex(v) for v in dev.press_values)
                if dev.press_values is not None
                else None
            ),
            offline_after_s=offline,
            ack_characteristic=dev.ack_characteristic,
            ack_value=bytes.fromhex(dev.ack_value),
        )
    return out
