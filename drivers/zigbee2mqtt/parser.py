"""Zigbee2MQTT frames to readings: merged device state in, changes out.

Zigbee2MQTT publishes ``BASE/<friendly_name>`` with the device's *merged last known state*
(every property it ever reported, plus ``linkquality``), so a message says nothing about what
changed. The parser remembers each device's state and emits a :class:`Reading` only for a
property whose value changed; the first sight of a property counts as a change.

The contract, property by property:

- ``smoke``, ``gas``, ``carbon_monoxide``, ``water_leak``, ``tamper``, ``battery_low``, ``test``:
  booleans, emitted on change.
- ``occupancy`` and ``presence`` become ``motion``; ``contact`` becomes ``contact_open`` (its
  negation: Zigbee2MQTT's ``contact: true`` means *closed*).
- ``battery`` (percent) on any change; ``voltage`` (mV) once it moved ``voltage_delta`` from the
  last emitted value; ``linkquality`` becomes ``signal`` (``extra.unit = "lqi"``) once it moved
  ``signal_delta``.
- ``action``: an event, not a state. Every live message with a non-empty ``action`` is a new
  press, even when the value repeats (Reading ``action`` with the device's own word:
  ``single``, ``double``, ``emergency``, ...), whatever the device's role: which action of
  which device is an SOS is the rule engine's decision (``sos_actions``), never the parser's.
  An empty ``action`` is no event. ``sos: true`` as a state (some pendants have their own SOS
  flag) is Reading ``sos = True`` when it turns true.
- ``null`` means unknown: neither alarm nor restore. Nothing is emitted and the remembered value
  is kept, so a later real value is compared with the last *known* one.
- ``BASE/<name>/availability`` (``online``/``offline`` or ``{"state": ...}``) becomes
  ``available``, on change. A ``device_leave`` event of a known device is ``available = False``.
- ``BASE/bridge/state`` and the transport's own link frames both feed ``link`` (device = the
  driver id): it is True only while the broker link is up and the bridge is not offline.

Retained messages (``RawFrame.retained``, MQTT's retain flag) are the broker's state sync at
(re)connect. They go through the same change detection, so a state the parser already knows
(a reconnect) emits nothing, and a retained message can never fake a transition. After a
restart the parser knows nothing: the retained state is emitted with ``Reading.retained =
True``, and the rule engine (seeded with the conditions already reported) decides whether it
is news. A retained state already in alarm that was never reported therefore still produces
its reading. A retained ``action`` is the last value of an old event, never a new press, and
is ignored.

``BASE/bridge/devices`` is the inventory: :attr:`Zigbee2MqttParser.inventory`, by IEEE
address. Devices are matched to the home config by ``DeviceSpec.address``, which is a friendly
name or an IEEE address (resolved through the inventory); ``Reading.device`` is the configured
device id, or the native friendly name of a device the config does not know.

The parser never raises: a frame it cannot use is counted with ``stats.reject(reason)`` (one
count per problem found) and each reason is logged once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import structlog

from contract.parsing import FrameRejected
from contract.wire import RawFrame, Reading
from drivers.base import DeviceSpec, ParserBase
from drivers.zigbee2mqtt.bridge import (
    BridgeDevice,
    BridgeEvent,
    BridgeMessageError,
    parse_devices,
    parse_event,
    parse_online,
)
from drivers.zigbee2mqtt.state import StateDecoder, decode_json, number

__all__ = ["MAX_DEVICES", "Zigbee2MqttParser"]

log = structlog.get_logger(__name__)

_MAX_NAME: Final = 128
_MAX_ACTION: Final = 64
_EVENTS_KEPT: Final = 64
#: Remembered devices at most: a home has dozens; garbage topics must not grow memory forever.
MAX_DEVICES: Final = 4096


class Zigbee2MqttParser(ParserBase):
    """Turns Zigbee2MQTT's merged device states into readings of what changed."""

    rejected_event = "zigbee_frame_rejected"

    def __init__(
        self,
        *,
        driver_id: str,
        base_topic: str = "zigbee2mqtt",
        devices: Sequence[DeviceSpec] = (),
        signal_delta: float = 10.0,
        voltage_delta: float = 50.0,
    ) -> None:
        super().__init__(driver_id)
        self.base_topic = base_topic.strip("/")
        self.signal_delta = signal_delta
        self.voltage_delta = voltage_delta
        #: The bridge's inventory by IEEE address (lower case).
        self.inventory: dict[str, BridgeDevice] = {}
        #: The last bridge events (joins, interviews, leaves), newest last.
        self.events: deque[BridgeEvent] = deque(maxlen=_EVENTS_KEPT)
        self._specs_by_address = {d.address.lower(): d for d in devices}
        self._names_to_ieee: dict[str, str] = {}
        #: (device id, extra) by native name: asked for on every message, so kept until the
        #: inventory (the only thing it depends on besides the config) changes.
        self._identities: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Remembered values by native name, in our vocabulary; numbers are the last emitted.
        self._state: dict[str, dict[str, Any]] = {}
        #: Payload -> its meaning, for the payloads a home repeats (see .state).
        self._decode = StateDecoder()
        self._broker_up = False
        self._bridge_online: bool | None = None
        self._link: bool | None = None

    # -- public --------------------------------------------------------------------------

    def reject_context(self, frame: RawFrame) -> dict[str, Any]:
        return {"topic": frame.source[:200]}

    def device_spec(self, native_name: str) -> DeviceSpec | None:
        """The configured device behind a friendly name, directly or through its IEEE address."""
        spec = self._specs_by_address.get(native_name.lower())
        if spec is not None:
            return spec
        ieee = self._names_to_ieee.get(native_name)
        return self._specs_by_address.get(ieee) if ieee else None

    # -- dispatch ------------------------------------------------------------------------

    def parse_data(self, frame: RawFrame) -> list[Reading]:
        prefix = self.base_topic + "/"
        if not frame.source.startswith(prefix):
            raise FrameRejected("topic outside the base topic")
        rest = frame.source[len(prefix) :]
        if rest.startswith("bridge/"):
            return self._bridge(rest[len("bridge/") :], frame)
        if rest.endswith("/availability"):
            return self._availability(rest[: -len("/availability")], frame)
        if "/" in rest and _is_command_topic(rest):  # a plain device name has no "/"
            return []  # our own /set and /get requests, echoed by the subscription
        return self._device_state(rest, frame)

    def _bridge(self, what: str, frame: RawFrame) -> list[Reading]:
        if what == "state":
            try:
                self._bridge_online = parse_online(frame.payload)
            except BridgeMessageError as exc:
                raise FrameRejected(f"bridge/state: {exc.reason}") from exc
            return self._link_reading(frame, reason="bridge")
        if what == "devices":
            return self._inventory(frame)
        if what == "event":
            return self._event(frame)
        # bridge/info, logging, groups, definitions, extensions, requests and responses.
        return []

    # -- link ----------------------------------------------------------------------------

    def parse_link(self, frame: RawFrame) -> list[Reading]:
        if frame.payload == b"up":
            self._broker_up = True
        elif frame.payload.startswith(b"down"):
            self._broker_up = False
        else:
            raise FrameRejected("link frame neither up nor down")
        reason = frame.payload.decode("utf-8", "replace").partition(":")[2]
        return self._link_reading(frame, reason=reason or "broker")

    def _link_reading(self, frame: RawFrame, *, reason: str) -> list[Reading]:
        link = self._broker_up and self._bridge_online is not False
        if self._link is not None and link == self._link:
            return []
        self._link = link
        extra: dict[str, Any] = {"reason": reason[:200], "bridge_online": self._bridge_online}
        return [self.reading(frame, self.driver_id, "link", link, extra)]

    # -- inventory and events --------------------------------------------------------------

    def _inventory(self, frame: RawFrame) -> list[Reading]:
        try:
            devices, problems = parse_devices(_json(frame))
        except BridgeMessageError as exc:
            raise FrameRejected(f"bridge/devices: {exc.reason}") from exc
        for problem in dict.fromkeys(problems):
            self.reject(f"bridge/devices: {problem}", frame)
        self.inventory = {d.ieee_address: d for d in devices}
        self._names_to_ieee = {d.friendly_name: d.ieee_address for d in devices}
        self._identities.clear()
        return []

    def _event(self, frame: RawFrame) -> list[Reading]:
        try:
            event = parse_event(_json(frame))
        except BridgeMessageError as exc:
            raise FrameRejected(f"bridge/event: {exc.reason}") from exc
        if frame.retained:
            return []  # events are never retained by Zigbee2MQTT; a retained one is stale
        self.events.append(event)
        log.info(
            "zigbee_bridge_event",
            driver=self.driver_id,
            kind=event.type,
            ieee=event.ieee_address,
            device=event.friendly_name,
            status=event.status or None,
        )
        if event.type == "device_leave":
            name = event.friendly_name
            spec = self.device_spec(name) or self._specs_by_address.get(event.ieee_address)
            if spec is None:
                return []
            return self._changes(name, {"available": False}, frame, extra={"reason": "left"})
        return []

    # -- devices ---------------------------------------------------------------------------

    def _availability(self, name: str, frame: RawFrame) -> list[Reading]:
        _check_name(name)
        if not frame.payload:
            return []  # a retained availability cleared (device removed or renamed)
        try:
            online = parse_online(frame.payload)
        except BridgeMessageError as exc:
            raise FrameRejected(f"availability: {exc.reason}") from exc
        return self._changes(name, {"available": online}, frame)

    def _device_state(self, name: str, frame: RawFrame) -> list[Reading]:
        _check_name(name)
        if not frame.payload:
            # Zigbee2MQTT clears a removed or renamed device's retained state this way.
            self._state.pop(name, None)
            return []
        state = self._decode(frame.payload)
        problems = state.problems
        for problem in problems:
            self.reject(problem, frame)
        readings = self._changes(name, state.values, frame)
        action = state.action
        if action is not None and not isinstance(action, str):
            problems += ("action is not text",)
            self.reject("action is not text", frame)
        elif action and not frame.retained:
            device, extra = self._identity(name)  # Reading copies the kept extra
            readings.append(self.reading(frame, device, "action", action[:_MAX_ACTION], extra))
        if not readings and not frame.retained and not problems:
            # A live message that changed nothing is still a check-in: without it, a device
            # that reports the same state every hour would look silent to supervision.
            readings.append(self.reading(frame, self._device_id(name), "seen", True, {}))
        return readings

    def _changes(
        self,
        name: str,
        values: dict[str, Any],
        frame: RawFrame,
        *,
        extra: dict[str, Any] | None = None,
    ) -> list[Reading]:
        if not values:
            return []
        if name not in self._state and len(self._state) >= MAX_DEVICES:
            raise FrameRejected("too many devices")
        known = self._state.setdefault(name, {})
        device, name_extra = self._identity(name)
        # The kept dict is shared, never changed: Reading copies what it is given.
        base_extra = {**name_extra, **extra} if extra else name_extra
        readings: list[Reading] = []
        for prop, value in values.items():
            before = known.get(prop)
            if prop == "sos_state":
                known[prop] = value
                if value and before is not True:
                    readings.append(self.reading(frame, device, "sos", True, base_extra))
                continue
            # Most values repeat (a merged state): the plain case of _changed, inline.
            if before is not None and prop != "signal" and prop != "voltage":
                if before == value:
                    continue
            elif not self._changed(prop, before, value):
                continue
            known[prop] = value
            prop_extra = {**base_extra, "unit": "lqi"} if prop == "signal" else base_extra
            readings.append(self.reading(frame, device, prop, value, prop_extra))
        return readings

    def _changed(self, prop: str, before: Any, value: Any) -> bool:
        if before is None:
            return True
        if prop == "signal":
            return bool(abs(value - before) >= self.signal_delta)
        if prop == "voltage":
            return bool(abs(value - before) >= self.voltage_delta)
        return bool(before != value)

    # -- helpers -------------------------------------------------------------------------

    def _identity(self, name: str) -> tuple[str, dict[str, Any]]:
        """The device id of a native name and the extra every reading of it carries (kept)."""
        known = self._identities.get(name)
        if known is None:
            if len(self._identities) >= MAX_DEVICES:
                self._identities.clear()  # garbage topics must not grow memory forever
            spec = self.device_spec(name)
            extra: dict[str, Any] = {"native": name}
            ieee = self._names_to_ieee.get(name)
            if ieee:
                extra["ieee"] = ieee
            known = (spec.id if spec is not None else name, extra)
            self._identities[name] = known
        return known

    def _device_id(self, name: str) -> str:
        return self._identity(name)[0]


def _json(frame: RawFrame) -> Any:
    """:func:`~drivers.zigbee2mqtt.bridge.decode_json` of the payload (same result, same
    refusals), faster."""
    return decode_json(frame.payload)


def _check_name(name: str) -> None:
    if not name or len(name) > _MAX_NAME:
        raise FrameRejected("device name empty or too long")


def _is_command_topic(rest: str) -> bool:
    parts = rest.rsplit("/", 2)
    return (len(parts) >= 2 and parts[-1] in ("set", "get")) or (
        len(parts) == 3 and parts[-2] in ("set", "get")
    )


_number = number
