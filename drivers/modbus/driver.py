"""The ``modbus`` driver: detectors and controllers polled over Modbus TCP or RTU.

A ``[[drivers]]`` table::

    [[drivers]]
    id = "mb"
    type = "modbus"
    # interval = 2.0       poll every device this often (seconds)
    # timeout = 1.0        per request attempt
    # retries = 1          attempts after the first, per request
    # offline_after = 3    failed polls in a row before the device is offline

Devices give an address (see :mod:`.address`) and a profile (see :mod:`.profiles`)::

    [[devices]]
    id = "gas-kitchen"
    driver = "mb"
    address = "tcp://192.168.1.40:502/1"
    role = "gas"
    options = { profile = "combustible_gas", lel_step = 5 }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from drivers.base import DeviceSpec, Driver, DriverConfigError, DriverOptions, FrameSink

from .address import AddressError, parse_modbus_address
from .pairing import ModbusPairing
from .parser import ModbusDevice, ModbusParser
from .profiles import PROFILES, ProfileError, get_profile
from .transport import ClientFactory, ModbusPoller, make_client

__all__ = ["ModbusDriver", "ModbusOptions"]

_DEVICE_OPTIONS = frozenset({"profile", "lel_step"})


class ModbusOptions(DriverOptions):
    interval: float = Field(default=2.0, gt=0, le=3600)
    timeout: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    offline_after: int = Field(default=3, ge=1, le=1000)


class ModbusDriver(Driver):
    type_name = "modbus"
    options_model = ModbusOptions
    example_table = '[[drivers]]\nid = "modbus"\ntype = "modbus"'

    def __init__(
        self,
        driver_id: str,
        options: dict[str, Any],
        devices: Sequence[DeviceSpec],
        *,
        client_factory: ClientFactory = make_client,
    ) -> None:
        super().__init__(driver_id, options, devices)
        self.modbus_devices = [modbus_device(driver_id, spec) for spec in self.devices]
        _check_shared_lines(driver_id, self.modbus_devices)
        opts = self.opts
        self.poller = ModbusPoller(
            driver_id,
            self.modbus_devices,
            interval=opts.interval,
            timeout=opts.timeout,
            retries=opts.retries,
            client_factory=client_factory,
        )

    @property
    def opts(self) -> ModbusOptions:
        assert isinstance(self.options, ModbusOptions)
        return self.options

    def pairing(self) -> ModbusPairing:
        """Devices are added by their address and profile; see :mod:`.pairing`."""
        return ModbusPairing(self)

    def create_parser(self) -> ModbusParser:
        return ModbusParser(self.id, self.modbus_devices, offline_after=self.opts.offline_after)

    async def run(self, emit: FrameSink) -> None:
        await self.poller.run(emit)


def modbus_device(driver_id: str, spec: DeviceSpec, *, where: str = "") -> ModbusDevice:
    """The device as the poller knows it; DriverConfigError names it (or ``where``)."""
    where = where or f"driver {driver_id!r}: device {spec.id!r}"
    try:
        address = parse_modbus_address(spec.address)
    except AddressError as exc:
        raise DriverConfigError(f"{where}: {exc}") from exc
    unknown = set(spec.options) - _DEVICE_OPTIONS
    if unknown:
        raise DriverConfigError(
            f"{where}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_DEVICE_OPTIONS))}"
        )
    name = spec.options.get("profile")
    if not isinstance(name, str):
        raise DriverConfigError(
            f"{where}: options.profile must name a profile ({', '.join(sorted(PROFILES))})"
        )
    try:
        profile = get_profile(name)
    except ProfileError as exc:
        raise DriverConfigError(f"{where}: {exc}") from exc
    step = spec.options.get("lel_step", profile.defaults.get("lel_step", 5.0))
    if isinstance(step, bool) or not isinstance(step, int | float) or step < 0:
        raise DriverConfigError(f"{where}: options.lel_step must be a number >= 0, got {step!r}")
    return ModbusDevice(id=spec.id, address=address, profile=profile, lel_step=float(step))


def _check_shared_lines(driver_id: str, devices: list[ModbusDevice]) -> None:
    """Devices on one serial line must agree on its settings, and on the unit ids."""
    seen: dict[tuple[object, ...], ModbusDevice] = {}
    units: dict[tuple[object, ...], str] = {}
    for device in devices:
        address = device.address
        other = seen.setdefault(address.endpoint, device)
        if address.line_settings != other.address.line_settings:
            raise DriverConfigError(
                f"driver {driver_id!r}: devices {other.id!r} and {device.id!r} share serial "
                f"port {address.host} with different settings"
            )
        key = (*address.endpoint, address.unit)
        if key in units:
            raise DriverConfigError(
                f"driver {driver_id!r}: devices {units[key]!r} and {device.id!r} have the same "
                f"address {address}"
            )
        units[key] = device.id
