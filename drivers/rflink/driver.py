"""The ``rflink`` driver: an RFLink 433 MHz receiver on a serial port.

A ``[[drivers]]`` table::

    [[drivers]]
    id = "rf"
    type = "rflink"
    port = "/dev/serial/by-id/usb-Arduino_Mega_2560-if00"   # or socket://host:port (ser2net)
    # baudrate = 57600, bytesize = 8, parity = "N", stopbits = 1
    # ping_interval = 10, ping_timeout = 5, repeat_window = 1.0

Devices name it as their driver and give ``Protocol:ID`` (or ``Protocol:ID:SWITCH``) as address::

    [[devices]]
    id = "smoke-hall"
    driver = "rf"
    address = "SmokeAlert:123456"
    role = "smoke"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from drivers.base import (
    DeviceSpec,
    Driver,
    DriverConfigError,
    DriverOptions,
    FrameSink,
    LocalCommand,
)

from .pairing import RflinkPairing
from .parser import RflinkDevice, RflinkParser, parse_address
from .protocol import transmit_command
from .transport import RflinkTransport, SerialSettings

__all__ = ["RflinkDriver", "RflinkOptions"]


class RflinkOptions(DriverOptions):
    port: str = Field(min_length=1, description="a pyserial URL: /dev/ttyUSB0, socket://h:p, ...")
    baudrate: int = Field(default=57600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = Field(default=1, description="1, 1.5 or 2")
    ping_interval: float = Field(default=10.0, gt=0, le=3600)
    ping_timeout: float = Field(default=5.0, gt=0, le=3600)
    #: Wait this long after opening before the first PING (opening resets an Arduino).
    startup_delay: float = Field(default=2.0, ge=0, le=60)
    #: Copies of one radio packet within this many seconds are one packet.
    repeat_window: float = Field(default=1.0, ge=0, le=30)
    reconnect_min: float = Field(default=0.5, gt=0, le=60)
    reconnect_max: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RflinkOptions:
        self._ensure_not_above("ping_timeout", "ping_interval")
        self._ensure_not_above("reconnect_min", "reconnect_max")
        return self


class RflinkDriver(Driver):
    type_name = "rflink"
    options_model = RflinkOptions
    example_table = '[[drivers]]\nid = "rflink"\ntype = "rflink"\nport = "/dev/ttyUSB0"'

    def __init__(self, driver_id: str, options: dict[str, Any], devices: Sequence[DeviceSpec]):
        super().__init__(driver_id, options, devices)
        self.rf_devices = [rflink_device(driver_id, spec) for spec in self.devices]
        _check_unique(driver_id, self.rf_devices)
        opts = self.opts
        self.transport = RflinkTransport(
            driver_id,
            SerialSettings(
                url=opts.port,
                baudrate=opts.baudrate,
                bytesize=opts.bytesize,
                parity=opts.parity,
                stopbits=opts.stopbits,
            ),
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            startup_delay=opts.startup_delay,
            reconnect_min=opts.reconnect_min,
            reconnect_max=opts.reconnect_max,
        )

    @property
    def opts(self) -> RflinkOptions:
        assert isinstance(self.options, RflinkOptions)
        return self.options

    def pairing(self) -> RflinkPairing:
        """Devices are added by their ``Protocol:ID`` address; see :mod:`.pairing`."""
        return RflinkPairing(self)

    def create_parser(self) -> RflinkParser:
        return RflinkParser(self.id, self.rf_devices, repeat_window_s=self.opts.repeat_window)

    async def run(self, emit: FrameSink) -> None:
        await self.transport.run(emit)

    async def send(self, command: LocalCommand) -> bool:
        """``siren_on``/``siren_off`` on an RF siren or switch: the receiver transmits ON/OFF."""
        if command.action not in ("siren_on", "siren_off"):
            return False
        device = next((d for d in self.rf_devices if d.id == command.device), None)
        if device is None:
            return False
        try:
            line = transmit_command(
                device.protocol,
                device.rf_id,
                device.switch or str(device.options.get("switch", "1")),
                "ON" if command.action == "siren_on" else "OFF",
            )
        except ValueError:
            return False
        return await self.transport.write(line)


def rflink_device(driver_id: str, spec: DeviceSpec, *, where: str = "") -> RflinkDevice:
    """The device as the parser knows it; DriverConfigError names it (or ``where``)."""
    where = where or f"driver {driver_id!r}: device {spec.id!r}"
    try:
        protocol, rf_id, switch = parse_address(spec.address)
    except ValueError as exc:
        raise DriverConfigError(f"{where}: {exc}") from exc
    opts = spec.options
    for key in ("open_switch", "closed_switch"):
        if key in opts and not isinstance(opts[key], str | int):
            raise DriverConfigError(f"{where}: options.{key} must be a string")
    return RflinkDevice(
        id=spec.id,
        protocol=protocol,
        rf_id=rf_id,
        role=spec.role,
        switch=switch,
        open_switch=str(opts["open_switch"]) if "open_switch" in opts else None,
        closed_switch=str(opts["closed_switch"]) if "closed_switch" in opts else None,
        options=dict(opts),
    )


def _check_unique(driver_id: str, devices: list[RflinkDevice]) -> None:
    seen: dict[tuple[str, str, str | None], str] = {}
    for device in devices:
        key = (device.protocol.lower(), device.rf_id.lower(), (device.switch or "").lower() or None)
        if key in seen:
            raise DriverConfigError(
                f"driver {driver_id!r}: devices {seen[key]!r} and {device.id!r} have the same "
                f"RFLink address"
            )
        seen[key] = device.id
