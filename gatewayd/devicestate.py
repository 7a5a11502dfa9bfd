"""What the gateway last heard from each device: for status, heartbeats and the walk test."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contract.wire import DeviceHealth, Reading
from drivers.base import DeviceSpec
from gatewayd.status import DeviceStatus

__all__ = ["DeviceState", "DeviceStates"]

#: Readings from devices that are not in the config are remembered too (the installer wants to
#: see them), but only this many, oldest forgotten first.
MAX_UNKNOWN = 64


@dataclass
class DeviceState:
    id: str
    driver: str
    role: str = ""
    room: str = ""
    known: bool = True
    last_seen: datetime | None = None
    battery: float | None = None
    signal: float | None = None
    online: bool = True

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            id=self.id,
            driver=self.driver,
            role=self.role,
            room=self.room,
            known=self.known,
            last_seen=self.last_seen,
            battery=self.battery,
            signal=self.signal,
            online=self.online,
        )

    def health(self) -> DeviceHealth:
        return DeviceHealth(
            id=self.id,
            last_seen=self.last_seen,
            battery=self.battery,
            signal=self.signal,
            online=self.online,
        )


class DeviceStates:
    def __init__(self, devices: Sequence[DeviceSpec]) -> None:
        self._known = {
            d.id: DeviceState(id=d.id, driver=d.driver, role=d.role, room=d.room) for d in devices
        }
        self._unknown: OrderedDict[str, DeviceState] = OrderedDict()

    def observe(self, reading: Reading) -> None:
        if reading.property == "link":
            return  # the driver's own link, not a device
        state = self._known.get(reading.device)
        if state is None:
            state = self._unknown.pop(reading.device, None) or DeviceState(
                id=reading.device, driver=reading.driver, known=False
            )
            self._unknown[reading.device] = state
            while len(self._unknown) > MAX_UNKNOWN:
                self._unknown.popitem(last=False)
        if state.last_seen is None or reading.at >= state.last_seen:
            state.last_seen = reading.at
        value = reading.value
        if reading.property == "battery" and isinstance(value, int | float):
            state.battery = float(value)
        elif reading.property == "signal" and isinstance(value, int | float):
            state.signal = float(value)
        elif reading.property == "available" and isinstance(value, bool):
            state.online = value
        elif reading.property != "available":
            state.online = True

    def all(self) -> list[DeviceState]:
        return [*self._known.values(), *self._unknown.values()]

    def get(self, device_id: str) -> DeviceState | None:
        return self._known.get(device_id) or self._unknown.get(device_id)
