"""BLE frames → readings. Pure: no I/O, no clock (time comes from the frame).

What becomes what:

- BTHome v2 button events (``press``, ``double_press``, ``long_press``, ``hold_press``...) →
  ``action`` (``single``, ``double``, ``triple``, ``long``, ``long_double``, ``long_triple``,
  ``hold``, ``release``), one per new packet, whatever the device's role: which action of
  which device is an SOS is the rule engine's decision (``sos_actions``), never the parser's.
- BTHome binary sensors → ``smoke``, ``gas``, ``carbon_monoxide``, ``water_leak`` (moisture),
  ``motion`` (motion, occupancy), ``tamper``, ``contact_open`` (opening, door, window, garage
  door: BTHome's 1 means open), ``battery_low`` (BTHome's binary battery: 1 means low),
  ``fault`` (problem); numeric ``battery`` (%) and ``voltage`` (mV). Each is reported when it
  changes (devices re-advertise their state), events on every new packet.
- RSSI → ``signal`` with ``extra.unit = "dBm"``, when it moved by ``signal_delta_db``.
- A GATT notification on the configured characteristic (a press value) → ``action``
  ``single``: the band's button was pressed.
- The transport's ``presence`` frames → ``available`` (on change).
- ``link`` frames → ``link`` for the driver itself.

Duplicates: a device repeats each advertisement several times. Same packet id (object 0x00)
within ``duplicate_window_s`` of the last sighting, or the same encryption counter with the same
bytes, or (no packet id, not encrypted) identical service data within ``repeat_window_s`` → the
same packet, counted in :attr:`BleParser.duplicates`, not a rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from contract.wire import RawFrame, Reading, ReadingValue
from drivers.base import ParserBase
from drivers.ble.bthome import BthomeDecoded, BthomeRejected, EncryptionState, decode_bthome
from drivers.ble.config import DeviceConfig
from drivers.ble.frames import (
    BTHOME_UUID,
    Advertisement,
    FrameFormatError,
    Notification,
    Presence,
    decode_frame,
)

__all__ = ["BleParser"]

log = structlog.get_logger(__name__)

#: bthome-ble binary sensor key → our property.
_BINARY: Mapping[str, str] = {
    "smoke": "smoke",
    "gas": "gas",
    "carbon_monoxide": "carbon_monoxide",
    "moisture": "water_leak",
    "motion": "motion",
    "occupancy": "motion",
    "tamper": "tamper",
    "opening": "contact_open",
    "door": "contact_open",
    "window": "contact_open",
    "garage_door": "contact_open",
    "battery": "battery_low",
    "problem": "fault",
}

#: bthome-ble button event → our ``action`` value.
_ACTIONS: Mapping[str, str] = {
    "press": "single",
    "double_press": "double",
    "triple_press": "triple",
    "long_press": "long",
    "long_double_press": "long_double",
    "long_triple_press": "long_triple",
    "hold_press": "hold",
    "hold_release": "release",
}


@dataclass(slots=True)
class _DeviceState:
    encryption: EncryptionState = field(default_factory=EncryptionState)
    last_packet_id: int | None = None
    last_packet_at: float = 0.0
    last_raw: bytes | None = None
    last_raw_at: float = 0.0
    #: Last value reported per property key, for change detection.
    values: dict[str, ReadingValue] = field(default_factory=dict)
    rssi_reported: int | None = None
    available: bool | None = None


class BleParser(ParserBase):
    """Frame in, readings out; never raises on bad input (counts it in :attr:`stats`)."""

    rejected_event = "ble_frame_rejected"

    def __init__(
        self,
        driver_id: str,
        devices: Mapping[str, DeviceConfig],
        *,
        duplicate_window_s: float = 30.0,
        repeat_window_s: float = 2.0,
        signal_delta_db: float = 10.0,
    ) -> None:
        super().__init__(driver_id)
        #: Repeats of a packet already turned into readings.
        self.duplicates = 0
        self._devices = dict(devices)
        self._duplicate_window_s = duplicate_window_s
        self._repeat_window_s = repeat_window_s
        self._signal_delta_db = signal_delta_db
        self._state: dict[str, _DeviceState] = {}

    def parse_data(self, frame: RawFrame) -> list[Reading]:
        decoded = decode_frame(frame.payload)
        if isinstance(decoded, Advertisement):
            return self._advertisement(frame, decoded)
        if isinstance(decoded, Notification):
            return self._notification(frame, decoded)
        return self._presence(frame, decoded)

    def reject_context(self, frame: RawFrame) -> dict[str, Any]:
        return {"source": frame.source}

    # -- frame kinds ---------------------------------------------------------------------

    def _advertisement(self, frame: RawFrame, adv: Advertisement) -> list[Reading]:
        device = self._devices.get(adv.address)
        device_id = device.id if device is not None else adv.address
        state = self._state_of(adv.address)
        at = frame.wall_time
        readings: list[Reading] = []

        data = adv.service_data.get(BTHOME_UUID)
        if data is None:
            if device is None or not device.gatt:
                raise BthomeRejected("no_bthome_service_data")
            # A GATT device's own advertisement: it is near, that is all it says.
        else:
            decoded = decode_bthome(
                data,
                address=adv.address,
                name=adv.name,
                bind_key=device.bind_key if device is not None else None,
                state=state.encryption,
                time=frame.mono_time,
            )
            if self._is_duplicate(state, decoded, data, frame.mono_time):
                self.duplicates += 1
            else:
                readings.extend(self._bthome_readings(device_id, state, decoded, at))

        if device is not None and device.offline_after_s is not None and not device.gatt:
            readings.extend(self._availability(state, device_id, True, at, {}))
        readings.extend(self._signal(state, device_id, adv.rssi, at))
        return readings

    def _notification(self, frame: RawFrame, note: Notification) -> list[Reading]:
        device = self._devices.get(note.address)
        if device is None or not device.gatt:
            raise FrameFormatError("notification_from_unconfigured_device")
        if note.characteristic != device.characteristic:
            raise FrameFormatError("notification_on_other_characteristic")
        if not note.data:
            raise FrameFormatError("empty_notification")
        if device.press_values is not None and note.data not in device.press_values:
            raise FrameFormatError("notification_not_a_press_value")
        extra: dict[str, Any] = {"via": "gatt", "value": note.data.hex()}
        return [self._reading(device.id, "action", "single", frame.wall_time, extra)]

    def _presence(self, frame: RawFrame, presence: Presence) -> list[Reading]:
        device = self._devices.get(presence.address)
        if device is None:
            raise FrameFormatError("presence_of_unconfigured_device")
        state = self._state_of(presence.address)
        extra: dict[str, Any] = {}
        if presence.reason:
            extra["reason"] = presence.reason
        if presence.silent_s is not None:
            extra["silent_s"] = round(presence.silent_s, 1)
        if presence.state in ("connected", "heard"):
            return self._availability(state, device.id, True, frame.wall_time, extra)
        if presence.state in ("unreachable", "silent"):
            return self._availability(state, device.id, False, frame.wall_time, extra)
        return []  # "disconnected": the transport reconnects; only a long absence is news

    # -- pieces --------------------------------------------------------------------------

    def _is_duplicate(
        self, state: _DeviceState, decoded: BthomeDecoded, data: bytes, now: float
    ) -> bool:
        if decoded.repeat:
            return True
        if decoded.packet_id is not None:
            same = (
                decoded.packet_id == state.last_packet_id
                and now - state.last_packet_at < self._duplicate_window_s
            )
            # Sliding: a device that keeps repeating one packet never makes it new again.
            state.last_packet_id = decoded.packet_id
            state.last_packet_at = now
            return same
        if decoded.encrypted:
            return False  # a new counter is a new packet (the repeat case was handled above)
        same = data == state.last_raw and now - state.last_raw_at < self._repeat_window_s
        state.last_raw = data
        state.last_raw_at = now
        return same

    def _bthome_readings(
        self,
        device_id: str,
        state: _DeviceState,
        decoded: BthomeDecoded,
        at: datetime,
    ) -> list[Reading]:
        readings: list[Reading] = []
        packet: dict[str, Any] = {}
        if decoded.packet_id is not None:
            packet["packet_id"] = decoded.packet_id
        if decoded.counter is not None:
            packet["counter"] = decoded.counter

        for key, event_type in sorted(decoded.events.items()):
            base, index = _split_key(key)
            if base != "button":
                continue  # dimmers and commands are not part of an alarm kit
            action = _ACTIONS.get(event_type, event_type)
            extra = dict(packet)
            if index is not None:
                extra["button"] = index
            readings.append(self._reading(device_id, "action", action, at, extra))

        for key, flag in sorted(decoded.binary.items()):
            base, index = _split_key(key)
            prop = _BINARY.get(base)
            if prop is not None:
                readings.extend(self._changed(state, device_id, prop, index, flag, at, packet))

        for key, value in sorted(decoded.sensors.items()):
            base, index = _split_key(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if base == "battery":
                number: float = float(value)
                prop = "battery"
            elif base == "voltage":
                number = round(float(value) * 1000.0, 1)  # bthome-ble reports volts
                prop = "voltage"
            else:
                continue  # temperature, humidity, ...: not part of the alarm vocabulary
            readings.extend(self._changed(state, device_id, prop, index, number, at, packet))
        return readings

    def _changed(
        self,
        state: _DeviceState,
        device_id: str,
        prop: str,
        index: int | None,
        value: ReadingValue,
        at: datetime,
        packet: dict[str, Any],
    ) -> list[Reading]:
        key = prop if index is None else f"{prop}_{index}"
        if state.values.get(key) == value and key in state.values:
            return []
        state.values[key] = value
        extra = dict(packet)
        if index is not None:
            extra["channel"] = index
        return [self._reading(device_id, prop, value, at, extra)]

    def _availability(
        self,
        state: _DeviceState,
        device_id: str,
        available: bool,
        at: datetime,
        extra: dict[str, Any],
    ) -> list[Reading]:
        if state.available is available:
            return []
        state.available = available
        return [self._reading(device_id, "available", available, at, extra)]

    def _signal(
        self, state: _DeviceState, device_id: str, rssi: int | None, at: datetime
    ) -> list[Reading]:
        if rssi is None:
            return []
        if (
            state.rssi_reported is not None
            and abs(rssi - state.rssi_reported) < self._signal_delta_db
        ):
            return []
        state.rssi_reported = rssi
        return [self._reading(device_id, "signal", float(rssi), at, {"unit": "dBm"})]

    def _state_of(self, address: str) -> _DeviceState:
        state = self._state.get(address)
        if state is None:
            if len(self._state) >= 4096 and address not in self._devices:
                # A flood of strangers must not grow memory without bound: forget them.
                for other in [a for a in self._state if a not in self._devices]:
                    del self._state[other]
            state = self._state[address] = _DeviceState()
        return state

    def _reading(
        self, device: str, prop: str, value: ReadingValue, at: datetime, extra: dict[str, Any]
    ) -> Reading:
        return Reading(
            driver=self.driver_id, device=device, property=prop, value=value, at=at, extra=extra
        )


def _split_key(key: str) -> tuple[str, int | None]:
    """bthome-ble numbers repeated objects: ``button_2`` → (``button``, 2)."""
    base, sep, tail = key.rpartition("_")
    if sep and tail.isdigit():
        return base, int(tail)
    return key, None
