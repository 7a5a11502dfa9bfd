"""Find driver plug-ins: the built-ins and those of the ``gatewayd.drivers`` entry-point group.

Each entry point names a :class:`drivers.base.Driver` subclass. Loading is wrapped per plug-in,
so one broken third-party driver is logged and skipped instead of taking the daemon down.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import structlog

from contract.devices import DeviceSpec, DriverEntry
from contract.home import HomeConfig
from drivers.base import Driver, DriverConfigError, DriverError

__all__ = [
    "BUILTIN_DRIVERS",
    "UnknownDriver",
    "available_drivers",
    "build_driver",
    "build_drivers",
    "load_driver",
]

ENTRY_POINT_GROUP = "gatewayd.drivers"

#: Built-in drivers, also declared in the entry-point group; listed here so that a source
#: checkout without installed metadata still finds them.
BUILTIN_DRIVERS: dict[str, str] = {
    "zigbee2mqtt": "drivers.zigbee2mqtt:Zigbee2MqttDriver",
    "rflink": "drivers.rflink:RflinkDriver",
    "modbus": "drivers.modbus:ModbusDriver",
    "ble": "drivers.ble:BleDriver",
}

log = structlog.get_logger(__name__)


class UnknownDriver(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no driver of type {name!r}; known types: {', '.join(sorted(known))}")
        self.name = name


def _import(target: str) -> type[Driver]:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        raise TypeError(f"{target} is not a Driver subclass")
    return obj


def _targets() -> dict[str, str]:
    targets = dict(BUILTIN_DRIVERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_DRIVERS and ep.value != BUILTIN_DRIVERS[ep.name]:
            log.warning("driver_shadowed", driver=ep.name, plugin=ep.value)
            continue
        targets[ep.name] = ep.value
    return targets


def available_drivers() -> dict[str, type[Driver]]:
    """Every driver that loads; a plug-in that fails to import is logged and skipped."""
    found: dict[str, type[Driver]] = {}
    for name, target in _targets().items():
        try:
            found[name] = _import(target)
        except Exception as exc:
            log.error("driver_plugin_failed", driver=name, target=target, error=repr(exc))
    return found


def load_driver(type_name: str) -> type[Driver]:
    targets = _targets()
    if type_name not in targets:
        raise UnknownDriver(type_name, list(targets))
    return _import(targets[type_name])


def build_driver(
    entry: DriverEntry, devices: list[DeviceSpec], *, gateway_id: str, observer: bool = False
) -> Driver:
    """One ``[[drivers]]`` entry's driver, bound to the gateway (see :meth:`Driver.bind`);
    raises DriverConfigError naming the problem."""
    try:
        cls = load_driver(entry.type)
        driver = cls(entry.id, entry.options, devices)
        driver.bind(gateway_id, observer=observer)
    except (LookupError, DriverError, ImportError, TypeError) as exc:
        raise DriverConfigError(f"driver {entry.id!r} (type {entry.type!r}): {exc}") from exc
    return driver


def build_drivers(config: HomeConfig, *, observer: bool = False) -> dict[str, Driver]:
    """Every enabled driver of the config, by id; raises DriverConfigError naming the first
    problem (:mod:`gatewayd.config_check` names them all)."""
    return {
        entry.id: build_driver(
            entry, config.devices, gateway_id=config.gateway.id, observer=observer
        )
        for entry in config.drivers
        if entry.enabled
    }
