"""RFLink lines to readings: pure, deterministic, never raises on bad input.

What each line says, in our vocabulary:

- ``SMOKEALERT=ON/OFF`` → ``smoke``; ``PIR=ON/OFF`` → ``motion``; ``BAT=LOW/OK`` → ``battery_low``.
- ``CMD=...`` of a detector (role ``door`` → ``contact_open``; ``water_leak``, ``gas``,
  ``smoke``, ``co``, ``motion`` → that detector state) is its state, ``ON`` or ``OFF``; of any
  other device (buttons, remotes, pendants) an ``action``: the command in lower case (``on``,
  ``off``, ``allon``), each line a press. Whether a button's action is an SOS is the rule
  engine's decision (``sos_actions``), never the parser's.
- A door sensor that sends one code for open and another for closed is configured with
  ``options.open_switch`` / ``options.closed_switch``: its ``SWITCH`` value says which.
- A line from a device not in the config gives readings with device ``Protocol:ID``.
- ``link`` frames → ``link`` for the driver itself.

Cheap 433 MHz remotes send every packet several times within a second, and the receiver reports
each copy with a new counter. Copies (same text after the counter) within ``repeat_window_s`` of
the first copy *accepted* are dropped. The window is anchored at the accepted copy, not slid by
each repeat, so two SOS presses further apart than the window are always two presses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from contract.wire import RawFrame, Reading
from drivers.base import ParserBase

from .protocol import LineError, RflinkLine, decode_line

__all__ = ["RflinkDevice", "RflinkParser", "parse_address"]

log = structlog.get_logger(__name__)

#: Roles whose ``CMD=ON/OFF`` is the state of one detector property.
CMD_STATE_ROLES = {
    "door": "contact_open",
    "water_leak": "water_leak",
    "gas": "gas",
    "smoke": "smoke",
    "co": "carbon_monoxide",
    "motion": "motion",
}
_ON = frozenset({"ON", "ALLON"})
_OFF = frozenset({"OFF", "ALLOFF"})
#: Bound on remembered packet bodies; older entries are pruned (they are outside the window).
_MAX_REMEMBERED = 2048


@dataclass(frozen=True)
class RflinkDevice:
    """A configured RFLink device: protocol name and RF id (and optionally one switch/button)."""

    id: str
    protocol: str
    rf_id: str
    role: str
    switch: str | None = None
    open_switch: str | None = None
    closed_switch: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_address(address: str) -> tuple[str, str, str | None]:
    """``Protocol:ID`` or ``Protocol:ID:SWITCH`` → (protocol, id, switch); ValueError if not."""
    parts = [p.strip() for p in address.split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"RFLink address must be 'Protocol:ID' or 'Protocol:ID:SWITCH' "
            f"(like 'SmokeAlert:123456'), got {address!r}"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


class RflinkParser(ParserBase):
    """Frame in, readings out; see the module docstring for the mapping."""

    rejected_event = "rflink_frame_rejected"

    def __init__(
        self,
        driver_id: str,
        devices: Iterable[RflinkDevice] = (),
        *,
        repeat_window_s: float = 1.0,
    ) -> None:
        super().__init__(driver_id)
        #: Repeated copies of a packet that were dropped.
        self.duplicates = 0
        self.repeat_window_s = repeat_window_s
        self._by_switch: dict[tuple[str, str, str], RflinkDevice] = {}
        self._by_id: dict[tuple[str, str], RflinkDevice] = {}
        for device in devices:
            key = (device.protocol.lower(), device.rf_id.lower())
            if device.switch is not None:
                self._by_switch[(*key, device.switch.lower())] = device
            else:
                self._by_id[key] = device
        self._accepted_at: dict[str, float] = {}

    def device_for(self, protocol: str, rf_id: str, switch: str | None) -> RflinkDevice | None:
        key = (protocol.lower(), rf_id.lower())
        if switch is not None:
            device = self._by_switch.get((*key, switch.lower()))
            if device is not None:
                return device
        return self._by_id.get(key)

    def reject_context(self, frame: RawFrame) -> dict[str, Any]:
        return {"payload": frame.payload[:120].decode("ascii", "replace")}

    # -- frames ------------------------------------------------------------------------------

    def parse_data(self, frame: RawFrame) -> list[Reading]:
        line = decode_line(frame.payload)
        rf_id = line.rf_id
        if rf_id is None:
            # The receiver's own lines: banner, PONG, OK, status. Nothing to read from them.
            return []
        if not rf_id:
            raise LineError("empty_id")
        if self._is_repeat(line.body, frame.mono_time):
            self.duplicates += 1
            return []
        device = self.device_for(line.name, rf_id, line.switch)
        facts = _facts(line, device)
        if not facts:
            return []
        device_id = device.id if device is not None else f"{line.name}:{rf_id}"
        extra: dict[str, Any] = {"protocol": line.name, "rf_id": rf_id}
        if line.switch is not None:
            extra["switch"] = line.switch
        if "CMD" in line.fields:
            extra["cmd"] = line.fields["CMD"]
        return [self.reading(frame, device_id, prop, value, extra) for prop, value in facts]

    def _is_repeat(self, body: str, now: float) -> bool:
        accepted = self._accepted_at.get(body)
        # A clock that went backwards (a replayed trace, another process) is never a repeat.
        if accepted is not None and 0 <= now - accepted <= self.repeat_window_s:
            return True
        if len(self._accepted_at) >= _MAX_REMEMBERED:
            self._accepted_at = {
                k: t for k, t in self._accepted_at.items() if 0 <= now - t <= self.repeat_window_s
            }
            if len(self._accepted_at) >= _MAX_REMEMBERED:  # a flood of distinct packets
                self._accepted_at.clear()
        self._accepted_at[body] = now
        return False


def _on_off(value: str | None) -> bool | None:
    if value is None:
        return None
    upper = value.upper()
    if upper in _ON:
        return True
    if upper in _OFF:
        return False
    return None


def _facts(line: RflinkLine, device: RflinkDevice | None) -> list[tuple[str, Any]]:
    """(property, value) pairs of one line, for a configured device or an unknown one."""
    fields = line.fields
    facts: list[tuple[str, Any]] = []
    smoke = _on_off(fields.get("SMOKEALERT"))
    if smoke is not None:
        facts.append(("smoke", smoke))
    pir = _on_off(fields.get("PIR"))
    if pir is not None:
        facts.append(("motion", pir))
    facts.extend(_command_facts(line, device))
    battery = fields.get("BAT", "").upper()
    if battery in ("LOW", "OK"):
        facts.append(("battery_low", battery == "LOW"))
    return facts


def _command_facts(line: RflinkLine, device: RflinkDevice | None) -> list[tuple[str, Any]]:
    cmd = line.fields.get("CMD")
    role = device.role if device is not None else None
    if device is not None and role == "door" and device.open_switch is not None:
        switch = (line.switch or "").lower()
        if switch == device.open_switch.lower():
            return [("contact_open", True)]
        if device.closed_switch is not None and switch == device.closed_switch.lower():
            return [("contact_open", False)]
    if cmd is None or not cmd:
        return []
    state = _on_off(cmd)
    if role in CMD_STATE_ROLES and state is not None:
        return [(CMD_STATE_ROLES[role], state)]
    return [("action", cmd.lower())]
