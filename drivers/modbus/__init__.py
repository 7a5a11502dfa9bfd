"""Modbus TCP/RTU detectors and controllers: gas detectors, water-leak controllers.

- :mod:`.address`: device addresses (``tcp://host:port/unit``, ``rtu:///dev/ttyUSB0/unit?...``).
- :mod:`.profiles`: register maps of device families (pure).
- :mod:`.parser`: poll results to readings (pure; :class:`ModbusParser`).
- :mod:`.transport`: polling with pymodbus.
- :mod:`.driver`: the ``modbus`` :class:`~drivers.base.Driver`.
"""

from __future__ import annotations

from .address import AddressError, ModbusAddress, parse_modbus_address
from .driver import ModbusDriver, ModbusOptions
from .parser import ModbusDevice, ModbusParser
from .profiles import PROFILES, Profile, get_profile

__all__ = [
    "PROFILES",
    "AddressError",
    "ModbusAddress",
    "ModbusDevice",
    "ModbusDriver",
    "ModbusOptions",
    "ModbusParser",
    "Profile",
    "get_profile",
    "parse_modbus_address",
]
