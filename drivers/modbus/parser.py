"""Modbus poll results to readings: pure, deterministic, never raises on bad input.

The transport turns every poll of a device into one frame; ``source`` is the device's canonical
address (:mod:`.address`) and the payload is JSON, one of::

    {"ok": true, "blocks": [{"table": "holding", "address": 0, "values": [193, 0, 16840, 0]}]}
    {"ok": false, "error": "timeout after 1.0s"}

The parser keeps the last state of each device and emits readings only on change:

- each profile fact when its value (or its change key, such as a gas alarm's level) changes;
- ``gas_concentration`` when it moved by at least the device's ``lel_step`` since last emitted;
- ``available`` False after ``offline_after`` failed polls in a row (a Modbus exception
  response counts: a device that only answers with exceptions is not supervised), and True at
  the first good poll (including the very first, so a restart states where each device is).
- ``link`` frames → ``link`` for the driver itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from contract.parsing import FrameRejected
from contract.wire import RawFrame, Reading
from drivers.base import ParserBase

from .address import ModbusAddress
from .profiles import Block, Fact, Profile, Registers

__all__ = [
    "FrameError",
    "ModbusDevice",
    "ModbusParser",
    "failed_poll_payload",
    "poll_payload",
]

log = structlog.get_logger(__name__)

_TABLES = ("holding", "input")


class FrameError(FrameRejected):
    """A frame the parser refuses; the message is a short, fixed reason for counting."""


@dataclass(frozen=True)
class ModbusDevice:
    id: str
    address: ModbusAddress
    profile: Profile
    #: Emit ``gas_concentration`` when it moved this much (%LEL) since last emitted.
    lel_step: float = 5.0


@dataclass
class _DeviceState:
    failures: int = 0
    available: bool | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    last_lel: float | None = None


def poll_payload(blocks: Iterable[tuple[Block, list[int]]]) -> bytes:
    """The frame payload of a good poll: each block with the values read."""
    body = {
        "ok": True,
        "blocks": [
            {"table": b.table, "address": b.address, "values": list(values)} for b, values in blocks
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def failed_poll_payload(error: str) -> bytes:
    return json.dumps({"ok": False, "error": error[:300]}, separators=(",", ":")).encode()


class ModbusParser(ParserBase):
    rejected_event = "modbus_frame_rejected"

    def __init__(
        self, driver_id: str, devices: Iterable[ModbusDevice] = (), *, offline_after: int = 3
    ) -> None:
        super().__init__(driver_id)
        self.offline_after = max(1, offline_after)
        self._devices = {str(d.address): d for d in devices}
        self._state: dict[str, _DeviceState] = {}

    def reject_context(self, frame: RawFrame) -> dict[str, Any]:
        return {
            "source": frame.source[:120],
            "payload": frame.payload[:120].decode("utf-8", "replace"),
        }

    def parse_data(self, frame: RawFrame) -> list[Reading]:
        device = self._devices.get(frame.source)
        if device is None:
            raise FrameError("unknown_device")
        body = _json_object(frame.payload)
        ok = body.get("ok")
        if ok is False:
            error = body.get("error")
            return self._failed(frame, device, error if isinstance(error, str) else "unknown")
        if ok is not True:
            raise FrameError("bad_ok_field")
        registers = _registers(body.get("blocks"))
        facts = device.profile.decode(registers)
        return self._answered(frame, device, facts)

    def _failed(self, frame: RawFrame, device: ModbusDevice, error: str) -> list[Reading]:
        state = self._state.setdefault(device.id, _DeviceState())
        state.failures += 1
        if state.failures < self.offline_after or state.available is False:
            return []
        state.available = False
        extra = {"error": error[:200], "failed_polls": state.failures}
        return [self.reading(frame, device.id, "available", False, extra)]

    def _answered(self, frame: RawFrame, device: ModbusDevice, facts: list[Fact]) -> list[Reading]:
        state = self._state.setdefault(device.id, _DeviceState())
        readings = []
        if state.available is not True:
            extra = {"after_failed_polls": state.failures} if state.failures else {}
            readings.append(self.reading(frame, device.id, "available", True, extra))
        state.available = True
        state.failures = 0
        for fact in facts:
            if fact.value is None:
                continue
            if fact.property == "gas_concentration" and isinstance(fact.value, float | int):
                value = float(fact.value)
                if state.last_lel is not None and abs(value - state.last_lel) < device.lel_step:
                    continue
                state.last_lel = value
            else:
                key = fact.change_key()
                if fact.property in state.facts and state.facts[fact.property] == key:
                    continue
                state.facts[fact.property] = key
            readings.append(self.reading(frame, device.id, fact.property, fact.value, fact.extra))
        return readings


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError("not_json") from exc
    if not isinstance(body, dict):
        raise FrameError("not_an_object")
    return body


def _registers(blocks: Any) -> Registers:
    if not isinstance(blocks, list) or not blocks:
        raise FrameError("no_blocks")
    values: dict[tuple[str, int], int] = {}
    for block in blocks:
        if not isinstance(block, dict):
            raise FrameError("bad_block")
        table: Any = block.get("table")
        address: Any = block.get("address")
        regs: Any = block.get("values")
        if table not in _TABLES:
            raise FrameError("bad_table")
        if not _is_int(address) or not 0 <= address <= 0xFFFF:
            raise FrameError("bad_address")
        if not isinstance(regs, list) or not 1 <= len(regs) <= 125:
            raise FrameError("bad_values")
        for offset, value in enumerate(regs):
            if not _is_int(value) or not 0 <= value <= 0xFFFF:
                raise FrameError("bad_register_value")
            values[(table, address + offset)] = value
    return Registers(values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
