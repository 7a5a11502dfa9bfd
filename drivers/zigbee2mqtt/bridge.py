"""Zigbee2MQTT's bridge messages, decoded: the device inventory, bridge events, online states.

Pure functions over already-decoded JSON (or raw bytes for the online states). Shared by the
parser, the transport (which keeps the inventory for :meth:`send`) and pairing. Each raises
:class:`BridgeMessageError` naming what is wrong, never anything else.

Wire forms (Zigbee2MQTT 1.x and 2.x):

- ``BASE/bridge/state`` and ``BASE/<name>/availability``: ``online``/``offline`` (1.x, or 2.x
  with ``legacy_availability_payload``) or ``{"state": "online"}`` (2.x).
- ``BASE/bridge/devices``: a JSON list of devices (``ieee_address``, ``friendly_name``,
  ``type``, ``definition`` with ``model``/``vendor``/``description``/``exposes``, or ``null``).
- ``BASE/bridge/event``: ``{"type": "device_joined" | "device_interview" | "device_leave" |
  "device_announce", "data": {...}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IEEE_ADDRESS",
    "BridgeDevice",
    "BridgeEvent",
    "BridgeMessageError",
    "decode_json",
    "parse_devices",
    "parse_event",
    "parse_online",
    "settable_properties",
]

#: ``0x`` and 16 hex digits: how Zigbee2MQTT writes an IEEE address.
IEEE_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{16}$")
_MAX_NAME = 128


class BridgeMessageError(ValueError):
    """A bridge message is not in a form Zigbee2MQTT sends; ``reason`` is short and literal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_json(payload: bytes) -> Any:
    """JSON from bytes; NaN/Infinity, bad UTF-8 and absurd nesting are refused."""
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BridgeMessageError("not JSON") from exc


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_online(payload: bytes) -> bool:
    """``online``/``offline``, bare (1.x) or as ``{"state": ...}`` (2.x)."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    try:
        data = decode_json(payload)
    except BridgeMessageError:
        data = None
    if isinstance(data, str) and data in ("online", "offline"):
        return data == "online"
    if isinstance(data, dict) and data.get("state") in ("online", "offline"):
        return bool(data["state"] == "online")
    raise BridgeMessageError("not an online/offline state")


@dataclass(frozen=True)
class BridgeDevice:
    """One device of ``bridge/devices``: what is paired, what it is and what it exposes."""

    ieee_address: str
    friendly_name: str
    type: str = ""
    model: str = ""
    vendor: str = ""
    description: str = ""
    supported: bool = False
    interview_completed: bool = False
    #: Zigbee2MQTT's exposes list as sent (for the CLI and for settable features).
    exposes: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def exposed_properties(self) -> list[str]:
        """The state properties the device publishes (``access`` bit 1), flattened."""
        return [e["property"] for e in _walk(self.exposes) if _access(e) & 1]


def _walk(exposes: tuple[dict[str, Any], ...] | list[Any]) -> Iterator[dict[str, Any]]:
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        if isinstance(expose.get("property"), str):
            yield expose
        features = expose.get("features")
        if isinstance(features, list) and expose.get("type") != "composite":
            yield from _walk(features)


def _access(expose: dict[str, Any]) -> int:
    access = expose.get("access")
    return access if isinstance(access, int) and not isinstance(access, bool) else 0


def settable_properties(device: BridgeDevice) -> set[str]:
    """Top-level properties that can be set (``access`` bit 2), composites by their name."""
    found: set[str] = set()
    for expose in _walk(device.exposes):
        if expose.get("type") == "composite":
            features = expose.get("features")
            if isinstance(features, list) and any(
                isinstance(f, dict) and _access(f) & 2 for f in features
            ):
                found.add(expose["property"])
        elif _access(expose) & 2:
            found.add(expose["property"])
    return found


def _device(entry: Any) -> BridgeDevice | None:
    if not isinstance(entry, dict):
        raise BridgeMessageError("inventory entry is not an object")
    ieee = entry.get("ieee_address")
    name = entry.get("friendly_name")
    if not isinstance(ieee, str) or not IEEE_ADDRESS.match(ieee):
        raise BridgeMessageError("inventory entry without an IEEE address")
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
        raise BridgeMessageError("inventory entry without a usable friendly name")
    if entry.get("type") == "Coordinator":
        return None
    definition = entry.get("definition")
    if not isinstance(definition, dict):
        definition = {}
    exposes = definition.get("exposes")
    return BridgeDevice(
        ieee_address=ieee.lower(),
        friendly_name=name,
        type=_text(entry.get("type")),
        model=_text(definition.get("model")),
        vendor=_text(definition.get("vendor")),
        description=_text(definition.get("description")),
        supported=entry.get("supported") is True,
        interview_completed=entry.get("interview_completed") is True
        or entry.get("interview_state") == "SUCCESSFUL",
        exposes=tuple(e for e in exposes if isinstance(e, dict))
        if isinstance(exposes, list)
        else (),
    )


def _text(value: Any) -> str:
    return value[:256] if isinstance(value, str) else ""


def parse_devices(data: Any) -> tuple[list[BridgeDevice], list[str]]:
    """The inventory from a decoded ``bridge/devices`` message, and why entries were skipped."""
    if not isinstance(data, list):
        raise BridgeMessageError("bridge/devices is not a list")
    devices: list[BridgeDevice] = []
    problems: list[str] = []
    for entry in data:
        try:
            device = _device(entry)
        except BridgeMessageError as exc:
            problems.append(exc.reason)
            continue
        if device is not None:
            devices.append(device)
    return devices, problems


@dataclass(frozen=True)
class BridgeEvent:
    """One ``bridge/event``; ``status`` is the interview's (started, successful, failed)."""

    type: str
    ieee_address: str
    friendly_name: str
    status: str = ""
    supported: bool = False
    model: str = ""
    vendor: str = ""
    description: str = ""
    exposes: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def parse_event(data: Any) -> BridgeEvent:
    """A decoded ``bridge/event`` message."""
    if not isinstance(data, dict):
        raise BridgeMessageError("bridge/event is not an object")
    kind = data.get("type")
    body = data.get("data")
    if not isinstance(kind, str) or not isinstance(body, dict):
        raise BridgeMessageError("bridge/event without type and data")
    ieee = body.get("ieee_address")
    if not isinstance(ieee, str) or not IEEE_ADDRESS.match(ieee):
        raise BridgeMessageError("bridge/event without an IEEE address")
    name = body.get("friendly_name")
    definition = body.get("definition")
    if not isinstance(definition, dict):
        definition = {}
    exposes = definition.get("exposes")
    return BridgeEvent(
        type=kind[:64],
        ieee_address=ieee.lower(),
        friendly_name=name[:_MAX_NAME] if isinstance(name, str) and name else ieee.lower(),
        status=_text(body.get("status")),
        supported=body.get("supported") is True,
        model=_text(definition.get("model")),
        vendor=_text(definition.get("vendor")),
        description=_text(definition.get("description")),
        exposes=tuple(e for e in exposes if isinstance(e, dict))
        if isinstance(exposes, list)
        else (),
    )
