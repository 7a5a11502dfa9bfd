"""Pairing Modbus devices: by address (``tcp://HOST:PORT/UNIT``, ``rtu://PORT/UNIT``) and the
profile of their register map (``--option profile=NAME``), checked as the poller will use them.
"""

from __future__ import annotations

from drivers.base import DeviceSpec
from drivers.pairing import AddressPairing

__all__ = ["ModbusPairing"]


class ModbusPairing(AddressPairing):
    """A Modbus unit by its address, with its ``profile`` among the options."""

    address_example = "tcp://HOST:PORT/UNIT or rtu://PORT/UNIT, like tcp://192.168.1.40:502/1"

    def check(self, spec: DeviceSpec, where: str) -> None:
        from drivers.modbus.driver import modbus_device  # the driver module imports this one

        modbus_device(self.driver.id, spec, where=where)
