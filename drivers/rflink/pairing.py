"""Pairing RFLink devices: by the ``Protocol:ID`` address the receiver prints for them.

A 433 MHz sensor joins nothing; the receiver hears every sensor in range. So a device is added
by its address, checked as the driver will read it.
"""

from __future__ import annotations

from drivers.base import DeviceSpec
from drivers.pairing import AddressPairing

__all__ = ["RflinkPairing"]


class RflinkPairing(AddressPairing):
    """An RFLink device by its ``Protocol:ID`` (or ``Protocol:ID:SWITCH``) address."""

    address_example = "Protocol:ID as the receiver prints it, like SmokeAlert:123456"

    def check(self, spec: DeviceSpec, where: str) -> None:
        from drivers.rflink.driver import rflink_device  # the driver module imports this one

        rflink_device(self.driver.id, spec, where=where)
