"""Device profiles: which registers to read, and what their values and bits mean.

A profile is data (the register blocks to poll) plus one pure function from the values read to
facts in our vocabulary. Addresses are protocol addresses, counted from 0: a manual's register
``40001`` is holding register 0, ``30001`` is input register 0.

Built in:

``combustible_gas`` - a fixed combustible gas detector, modelled on the Honeywell Midas Modbus
map (holding registers):

=====  ========  ==========================================================================
40001  status    bits 0-3 monitoring state (0 warm-up); bits 4-5 fault (0 none, 1 maintenance,
                 2 instrument); bit 6 alarm 1; bit 7 alarm 2; bit 11 heartbeat (ignored)
40002  gas       gas id / cartridge (not used)
40003  conc.     concentration, IEEE-754 float32, high word first, in %LEL (40003-40004)
=====  ========  ==========================================================================

→ ``gas`` True on alarm 1 or 2 (``extra.level`` 1 or 2), ``fault`` (``extra.kind``),
``gas_concentration`` (%LEL).

``water_leak_controller`` - a zone leak-detection controller with a sensing cable, modelled on
the RLE Technologies LD1500/LD5000 Modbus map (input registers):

=====  ========  ==========================================================================
30001  status    bit 0 leak; bit 1 cable break; bit 2 contamination; bit 3 summary alarm
30002  distance  where along the cable the leak is
30003  units     1 = feet, 0 = metres
=====  ========  ==========================================================================

→ ``water_leak`` (``extra.distance``/``extra.unit`` when wet), ``fault`` on cable break or
contamination (``extra.kind``), and on a summary alarm no other bit explains.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.parsing import FrameRejected

__all__ = [
    "PROFILES",
    "Block",
    "Fact",
    "Profile",
    "ProfileError",
    "Registers",
    "Table",
    "get_profile",
]

Table = Literal["holding", "input"]


class ProfileError(FrameRejected):
    """The values read do not fit the profile (a register missing, an impossible value)."""


@dataclass(frozen=True)
class Block:
    """A run of registers read with one request."""

    table: Table
    address: int
    count: int

    def __post_init__(self) -> None:
        if not (0 <= self.address <= 0xFFFF and 1 <= self.count <= 125):
            raise ValueError(f"impossible register block {self}")


@dataclass(frozen=True)
class Fact:
    """One property's value as a profile reads it."""

    property: str
    value: bool | float | None
    extra: dict[str, Any] = field(default_factory=dict)
    #: What must change for the fact to be news (default: the value). A gas alarm going from
    #: level 1 to level 2 is news although the value stays True.
    key: Any = None

    def change_key(self) -> Any:
        return self.value if self.key is None else self.key


class Registers:
    """The values of one poll, by table and address."""

    def __init__(self, values: Mapping[tuple[str, int], int]) -> None:
        self._values = dict(values)

    def __call__(self, table: Table, address: int) -> int:
        try:
            return self._values[(table, address)]
        except KeyError:
            raise ProfileError(f"missing_register_{table}_{address}") from None

    def float32(self, table: Table, address: int) -> float:
        """An IEEE-754 float in two registers, high word first."""
        raw = struct.pack(">HH", self(table, address), self(table, address + 1))
        return float(struct.unpack(">f", raw)[0])


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    blocks: tuple[Block, ...]
    decode: Callable[[Registers], list[Fact]]
    #: Options a device of this profile may set (with defaults), e.g. the concentration step.
    defaults: Mapping[str, Any] = field(default_factory=dict)


# -- combustible gas detector ----------------------------------------------------------------

_GAS_FAULTS = {1: "maintenance", 2: "instrument"}


def _decode_gas(regs: Registers) -> list[Fact]:
    status = regs("holding", 0)
    state = status & 0x000F
    fault_code = (status >> 4) & 0x3
    alarm1 = bool(status & (1 << 6))
    alarm2 = bool(status & (1 << 7))
    concentration = regs.float32("holding", 2)
    if not math.isfinite(concentration):
        raise ProfileError("concentration_not_finite")
    level = 2 if alarm2 else 1 if alarm1 else 0
    lel = round(concentration, 1)
    facts = [
        Fact("gas", level > 0, {"level": level, "lel": lel}, key=(level > 0, level)),
        Fact(
            "fault",
            fault_code != 0,
            {"kind": _GAS_FAULTS.get(fault_code, f"code_{fault_code}")} if fault_code else {},
            key=(fault_code != 0, fault_code),
        ),
    ]
    # During warm-up the sensor reads nonsense; the detector itself suppresses its alarms then.
    if state != 0:
        facts.append(Fact("gas_concentration", lel, {"unit": "%LEL"}))
    return facts


COMBUSTIBLE_GAS = Profile(
    name="combustible_gas",
    description="combustible gas detector (Midas-style holding registers 40001-40004)",
    blocks=(Block("holding", 0, 4),),
    decode=_decode_gas,
    defaults={"lel_step": 5.0},
)


# -- water-leak controller -------------------------------------------------------------------


def _decode_leak(regs: Registers) -> list[Fact]:
    status = regs("input", 0)
    leak = bool(status & 0x1)
    cable_break = bool(status & 0x2)
    contamination = bool(status & 0x4)
    summary = bool(status & 0x8)
    leak_extra: dict[str, Any] = {}
    if leak:
        leak_extra = {
            "distance": regs("input", 1),
            "unit": "ft" if regs("input", 2) == 1 else "m",
        }
    kinds = [k for k, on in (("cable_break", cable_break), ("contamination", contamination)) if on]
    # A summary alarm that no specific bit explains is still something wrong with the device.
    if summary and not (leak or kinds):
        kinds.append("summary_alarm")
    fault_extra = {"kind": ",".join(kinds)} if kinds else {}
    return [
        Fact("water_leak", leak, leak_extra),
        Fact("fault", bool(kinds), fault_extra, key=(bool(kinds), tuple(kinds))),
    ]


WATER_LEAK_CONTROLLER = Profile(
    name="water_leak_controller",
    description="leak-detection controller with sensing cable (RLE LD-style input registers)",
    blocks=(Block("input", 0, 3),),
    decode=_decode_leak,
)


PROFILES: dict[str, Profile] = {p.name: p for p in (COMBUSTIBLE_GAS, WATER_LEAK_CONTROLLER)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(
            f"unknown Modbus profile {name!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None
