"""The ``[rules]`` table of the home config: schema, defaults (the rule pack), validation.

An empty table is the default ``elderly_care`` pack (``rules/packs/elderly_care.toml``); any key
given in the home config overrides the pack's. Example::

    [rules]
    pack = "elderly_care"
    escalate_after_s = 90
    sos_actions = ["emergency", "hold"]

    [rules.inactivity]
    after_s = 10800            # 3 h without activity inside active hours
    active_hours = "07:30-21:30"
    not_up_by = "09:30"        # "" turns the morning check off

    [rules.supervision]
    default_s = 7200           # expected check-in interval by role; 0 = not supervised
    smoke = 0

    [rules.delay_on]
    water_leak = 10            # the leak must hold 10 s before it is an alarm

    [rules.devices.leak-bath]  # per device (ids must exist in [[devices]])
    delay_on_s = 30
    checkin_interval_s = 0

    [rules.contacts]           # door and window contacts (role "door")
    entry_delay_s = 30         # away mode: an opened door is an intrusion after this
    left_open_after_s = 0      # a door left open this long is an alarm; 0 = off
    left_open_hours = "00:00-24:00"

    [rules.contacts.front_door]  # the elderly-care pack: the front door left open at night
    device = "door-front"
    left_open_after_s = 600
    left_open_hours = "22:00-07:00"

Errors are :class:`RuleConfigError` with one ``source:line: key: problem`` per problem.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import time
from importlib import resources
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contract.devices import ROLES, DeviceSpec
from contract.home import describe_validation

__all__ = [
    "DELAYABLE_KINDS",
    "PACKS",
    "ContactRules",
    "FlappingRules",
    "InactivityRules",
    "RuleConfigError",
    "RuleSet",
    "load_rules",
]

PACKS: Final = ("elderly_care",)
#: Alarm kinds of detectors (state with a restore) that ``delay_on`` may hold back.
DELAYABLE_KINDS: Final = ("smoke", "gas", "carbon_monoxide", "water_leak", "fall")


class RuleConfigError(ValueError):
    """The rules table is wrong. ``problems`` lists each as ``source:line: key: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")


def parse_clock(value: str, *, allow_24: bool = False) -> time | None:
    """``"HH:MM"`` to a time; ``"24:00"`` (end of day) to None when allowed."""
    match = _CLOCK.match(value)
    if match is None:
        raise ValueError(f"expected a local time as HH:MM, got {value!r}")
    hour, minute = int(match[1]), int(match[2])
    if allow_24 and hour == 24 and minute == 0:
        return None
    if hour > 23 or minute > 59:
        raise ValueError(f"{value!r} is not a time of day (00:00 to 23:59)")
    return time(hour, minute)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_hours(value: str) -> str:
    """Validate local hours ``"HH:MM-HH:MM"`` (``24:00`` ends the day; may cross midnight)."""
    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}")
    s = parse_clock(start.strip())
    e = parse_clock(end.strip(), allow_24=True)
    if e is not None and s == e:
        raise ValueError(f"hours {value!r} are empty")
    return value


def hours_window(value: str) -> tuple[time, time | None]:
    """Checked hours as (start, end); end None means midnight at the end of the day."""
    start, _, end = value.partition("-")
    return parse_clock(start.strip()) or time(0), parse_clock(end.strip(), allow_24=True)


class InactivityRules(_Strict):
    enabled: bool = True
    after_s: float = Field(default=14_400, gt=0, le=7 * 86_400)
    active_hours: str = "07:00-22:00"
    night_end: str = "05:00"
    not_up_by: str = "10:00"

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        return check_hours(value)

    @field_validator("night_end")
    @classmethod
    def _night_end(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("not_up_by")
    @classmethod
    def _not_up_by(cls, value: str) -> str:
        if value:
            parse_clock(value)
        return value

    @model_validator(mode="after")
    def _morning_order(self) -> InactivityRules:
        morning = self.morning()
        if morning is not None and morning[0] >= morning[1]:
            raise ValueError(
                f"night_end ({self.night_end}) must come before not_up_by ({self.not_up_by})"
            )
        return self

    def window(self) -> tuple[time, time | None]:
        """Active hours as (start, end); end None means midnight at the end of the day."""
        return hours_window(self.active_hours)

    def morning(self) -> tuple[time, time] | None:
        if not self.not_up_by:
            return None
        return parse_clock(self.night_end) or time(0), parse_clock(self.not_up_by) or time(0)


class FlappingRules(_Strict):
    max_alarms: int = Field(default=5, ge=1, le=1000)
    window_s: float = Field(default=60, gt=0, le=86_400)


class FrontDoorRules(_Strict):
    """The home's front door, by device id: its own left-open rule (a home without it: none)."""

    device: str = "door-front"
    left_open_after_s: float = Field(default=0, ge=0, le=7 * 86_400)
    left_open_hours: str = "00:00-24:00"

    @field_validator("left_open_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        return check_hours(value)


class ContactRules(_Strict):
    """Door and window contacts (role ``door``): intrusion, left open, flapping."""

    #: Away mode: an opened contact is an intrusion unless the mode leaves away within this.
    entry_delay_s: float = Field(default=30, ge=0, le=600)
    #: A contact left open this long (inside ``left_open_hours``) is an alarm; 0 = off.
    left_open_after_s: float = Field(default=0, ge=0, le=7 * 86_400)
    left_open_hours: str = "00:00-24:00"
    #: More changes than this within ``flapping_window_s`` is a flapping contact; 0 = off.
    flapping_changes: int = Field(default=0, ge=0, le=1000)
    flapping_window_s: float = Field(default=60, gt=0, le=86_400)
    front_door: FrontDoorRules = FrontDoorRules()

    @field_validator("left_open_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        return check_hours(value)


#: Per-device keys that only door contacts take.
CONTACT_KEYS: Final = ("entry_delay_s", "left_open_after_s", "left_open_hours")


class DeviceRules(_Strict):
    checkin_interval_s: float | None = Field(default=None, ge=0)
    delay_on_s: float | None = Field(default=None, ge=0, le=3600)
    entry_delay_s: float | None = Field(default=None, ge=0, le=600)
    left_open_after_s: float | None = Field(default=None, ge=0, le=7 * 86_400)
    left_open_hours: str | None = None

    @field_validator("left_open_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        return None if value is None else check_hours(value)


class RuleSet(_Strict):
    """The validated rules; build one with :func:`load_rules`."""

    pack: str = "elderly_care"
    #: Button actions of SOS-role devices that are an SOS; the pack's list is the default.
    sos_actions: list[str] = Field(
        default_factory=lambda: list(_pack_table("elderly_care")["sos_actions"])
    )
    sos_collapse_s: float = Field(default=30, ge=0, le=3600)
    escalate_after_s: float = Field(default=60, gt=0, le=86_400)
    escalate_every_s: float = Field(default=60, ge=10, le=86_400)
    confirm_window_s: float = Field(default=120, ge=0, le=86_400)
    battery_low_percent: float = Field(default=15, ge=0, le=100)
    battery_report_every_s: float = Field(default=3600, ge=0)
    inactivity: InactivityRules = InactivityRules()
    flapping: FlappingRules = FlappingRules()
    contacts: ContactRules = ContactRules()
    #: Expected check-in interval by role (``default_s`` for roles not named); 0 = unsupervised.
    supervision: dict[str, float] = Field(default_factory=lambda: {"default_s": 10_800.0})
    delay_on: dict[str, float] = Field(default_factory=dict)
    devices: dict[str, DeviceRules] = Field(default_factory=dict)

    @field_validator("pack")
    @classmethod
    def _known_pack(cls, value: str) -> str:
        if value not in PACKS:
            raise ValueError(f"unknown rule pack {value!r}; known: {', '.join(PACKS)}")
        return value

    @field_validator("sos_actions")
    @classmethod
    def _actions(cls, value: list[str]) -> list[str]:
        # A device reports its action word exactly; one with blanks around it never matches.
        for action in value:
            if not action or action != action.strip():
                raise ValueError(f"{action!r} is not an action (a word like 'single')")
        return value

    @field_validator("supervision")
    @classmethod
    def _roles(cls, value: dict[str, float]) -> dict[str, float]:
        for role, seconds in value.items():
            if role != "default_s" and role not in ROLES:
                raise ValueError(f"unknown role {role!r}; expected default_s or one of {ROLES}")
            if not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError(f"{role}: expected seconds >= 0, got {seconds!r}")
        return value

    @field_validator("delay_on")
    @classmethod
    def _kinds(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, seconds in value.items():
            if kind not in DELAYABLE_KINDS:
                raise ValueError(f"delay_on applies to {', '.join(DELAYABLE_KINDS)}; not {kind!r}")
            if not 0 <= seconds <= 3600:
                raise ValueError(f"{kind}: expected 0 to 3600 seconds, got {seconds!r}")
        return value

    def check_devices(self, devices: Iterable[DeviceSpec], *, source: str = "<config>") -> None:
        """Refuse overrides for devices the home does not have, and bad check-in options."""
        devices = list(devices)
        unknown = sorted(set(self.devices) - {d.id for d in devices})
        problems = [
            f"{source}: rules.devices.{d}: no [[devices]] entry has this id" for d in unknown
        ]
        roles = {d.id: d.role for d in devices}
        for device_id, override in sorted(self.devices.items()):
            role = roles.get(device_id)
            if role is None or role == "door":
                continue
            problems.extend(
                f"{source}: rules.devices.{device_id}.{key}: applies to door and window "
                f"contacts (role door), not to a {role} device"
                for key in CONTACT_KEYS
                if getattr(override, key) is not None
            )
        for d in devices:
            option = d.options.get("checkin_interval_s")
            if option is not None and (
                isinstance(option, bool) or not isinstance(option, int | float) or option < 0
            ):
                problems.append(
                    f"{source}: devices.{d.id}.options.checkin_interval_s: "
                    f"expected seconds >= 0 (got {option!r})"
                )
        if problems:
            raise RuleConfigError(problems)


class _Root(_Strict):
    rules: RuleSet


def _pack_table(name: str) -> dict[str, Any]:
    text = resources.files("rules.packs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """Line of ``rules.<loc>`` in TOML text, through dotted table headers like [rules.x.y]."""
    lines = text.splitlines()
    keys = ["rules", *(str(p) for p in loc if isinstance(p, str))]
    for cut in range(len(keys) - 1, 0, -1):
        table = keys[:cut]
        header = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(rf"\"?{re.escape(k)}\"?" for k in table) + r"\s*\]"
        )
        for n, line in enumerate(lines):
            if header.match(line):
                rest = keys[cut:]
                if not rest:
                    return n + 1
                assign = re.compile(rf"^\s*\"?{re.escape(rest[0])}\"?\s*[=.]")
                for m in range(n + 1, len(lines)):
                    if lines[m].lstrip().startswith("["):
                        break
                    if assign.match(lines[m]):
                        return m + 1
                return n + 1
    return None


def load_rules(
    table: Mapping[str, Any],
    *,
    source: str = "<config>",
    text: str | None = None,
    devices: Sequence[DeviceSpec] | None = None,
) -> RuleSet:
    """Validate the ``[rules]`` table over its pack's defaults; raise :class:`RuleConfigError`.

    ``text`` (the home config's TOML) lets errors name lines; ``devices`` lets per-device
    overrides be checked against the home's devices (the engine checks them again).
    """
    if not isinstance(table, Mapping):
        raise RuleConfigError([f"{source}: rules: expected a table, got {type(table).__name__}"])
    pack = table.get("pack", "elderly_care")
    if pack not in PACKS:
        line = _line_of(text, ("pack",)) if text else None
        where = f"{source}:{line}" if line else source
        raise RuleConfigError(
            [f"{where}: rules.pack: unknown rule pack {pack!r}; known: {', '.join(PACKS)}"]
        )
    merged = _merge(_pack_table(str(pack)), table)
    try:
        rules = _Root.model_validate({"rules": merged}).rules
    except ValidationError as exc:
        problems = describe_validation(source, text or "", exc)
        fixed = []
        for problem, err in zip(problems, exc.errors(), strict=True):
            if text and problem.startswith(f"{source}: "):
                line = _line_of(text, err["loc"][1:])
                if line:
                    problem = f"{source}:{line}: " + problem.removeprefix(f"{source}: ")
            fixed.append(problem)
        raise RuleConfigError(fixed) from exc
    if devices is not None:
        rules.check_devices(devices, source=source)
        _check_front_door(table, rules, devices, source)
    return rules


def _check_front_door(
    table: Mapping[str, Any], rules: RuleSet, devices: Sequence[DeviceSpec], source: str
) -> None:
    """A front door named in the home config must be one of its doors (the pack's default
    name may be absent: that home has no front door rule)."""
    contacts = table.get("contacts")
    front = contacts.get("front_door") if isinstance(contacts, Mapping) else None
    if not isinstance(front, Mapping) or "device" not in front:
        return
    name = rules.contacts.front_door.device
    role = {d.id: d.role for d in devices}.get(name)
    if name and role != "door":
        problem = "no [[devices]] entry has this id" if role is None else f"is a {role} device"
        raise RuleConfigError(
            [f"{source}: rules.contacts.front_door.device: {name!r} {problem}; expected a door"]
        )
