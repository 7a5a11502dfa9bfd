"""A device's state message (its JSON payload) decoded into our vocabulary, remembered by payload.

What a payload means depends on its bytes alone, and a home's sensors repeat the same few
payloads (the same battery, temperature and link quality, motion on or off): in a recorded week,
a fifth of the frames have payloads never seen before. Decoding is a JSON decode and a walk over
every key, the largest single cost of a replayed frame; :class:`StateDecoder` keeps the result
of the last payloads seen and gives it back for the same bytes. What the parser does with it
(comparing with the device's remembered state, refusing, building readings) happens per frame
as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from contract.parsing import FrameRejected

__all__ = ["BOOLEANS", "NUMBERS", "DecodedState", "StateDecoder", "decode_state", "number"]

#: Zigbee2MQTT boolean property -> our vocabulary.
BOOLEANS: Final = {
    "smoke": "smoke",
    "gas": "gas",
    "carbon_monoxide": "carbon_monoxide",
    "water_leak": "water_leak",
    "tamper": "tamper",
    "battery_low": "battery_low",
    "test": "test",
    "occupancy": "motion",
    "presence": "motion",
    "fall": "fall",
}
#: Zigbee2MQTT numeric property -> (our property, lowest, highest).
NUMBERS: Final = {
    "battery": ("battery", 0.0, 100.0),
    "voltage": ("voltage", 0.0, 100_000.0),
    "linkquality": ("signal", 0.0, 255.0),
}
#: Payloads remembered at most (a home repeats a few hundred; more is garbage or a new day).
MEMO_SIZE: Final = 1024
#: Payloads longer than this are decoded every time: a state worth remembering is short.
_MEMO_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class DecodedState:
    """One payload's meaning. Shared between the frames that carry the same bytes: read only."""

    values: dict[str, Any]
    problems: tuple[str, ...]
    #: The payload's ``action`` as sent (None when absent): the parser checks it per frame.
    action: Any


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: Made once: ``json.loads`` with an option builds a new decoder per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constants)


def decode_json(payload: bytes) -> Any:
    """The payload's JSON; refuses bad UTF-8, NaN and the like as "not JSON"."""
    try:
        return _DECODER.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise FrameRejected("not JSON") from exc


def decode_state(payload: bytes) -> DecodedState:
    """A device state payload in our vocabulary; raises FrameRejected for a payload that is not
    a JSON object (a bad value is a problem of that key, not of the message)."""
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise FrameRejected("device state is not a JSON object")
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        if value is None:
            continue  # unknown: neither alarm nor restore, and nothing remembered
        if key in BOOLEANS:
            if isinstance(value, bool):
                values[BOOLEANS[key]] = value
            else:
                problems.append(f"{key} is not a boolean")
        elif key == "contact":
            if isinstance(value, bool):
                values["contact_open"] = not value
            else:
                problems.append("contact is not a boolean")
        elif key in NUMBERS:
            ours, low, high = NUMBERS[key]
            kind = type(value)
            if (kind is int or kind is float) and low <= value <= high:
                # The common case, what number() gives for it without its checks (NaN and
                # out-of-range values fail the comparison and take the full path).
                values[ours] = float(value)
                continue
            num = number(value)
            if num is None or not low <= num <= high:
                problems.append(f"{key} is not a number in range")
            else:
                values[ours] = num
        elif key == "sos":
            if isinstance(value, bool):
                values["sos_state"] = value
            else:
                problems.append("sos is not a boolean")
    return DecodedState(values, tuple(problems), data.get("action"))


class StateDecoder:
    """:func:`decode_state` with the last :data:`MEMO_SIZE` payloads remembered."""

    def __init__(self) -> None:
        self._memo: dict[bytes, DecodedState] = {}

    def __call__(self, payload: bytes) -> DecodedState:
        known = self._memo.get(payload)
        if known is not None:
            return known
        decoded = decode_state(payload)  # a refused payload is not remembered: it raises
        if len(payload) <= _MEMO_BYTES:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()  # simpler than an LRU, and a home refills it in minutes
            self._memo[payload] = decoded
        return decoded


def number(value: Any) -> float | None:
    """A finite number; some older converters send numbers as text ("80.00"); booleans are not
    numbers."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str) or (isinstance(value, str) and len(value) > 32):
        return None
    try:
        parsed = float(value)
    except (ValueError, OverflowError):
        return None
    return parsed if math.isfinite(parsed) else None
