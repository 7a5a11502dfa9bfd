"""Scenarios: a home's life scripted in a few lines of Python, rendered into a real trace.

A scenario says what happens in the home; rendering turns that into the frames the gateway's
drivers would have received, in the real wire formats (Zigbee2MQTT topics and merged-state JSON
payloads, availability messages, the driver's own link frames), plus the home config that reads
them. The trace replays through ``gatewayd replay`` like one recorded in a real home::

    home = Scenario(start="2026-03-02T06:00", tz="Europe/Berlin", kit=default_kit(), days=7)
    home.every_day(resident_routine)                 # a resident's seeded daily pattern
    home.day(2).at("07:12").motion("hall")
    home.day(3).at("10:41").fall_then_still("bedroom")
    home.day(4).at("18:05").smoke("kitchen", for_="3m")
    home.day(0).at("06:00").battery_drain("smoke-kitchen", from_=100, to=10, over="5d")
    home.day(5).at("13:00").device_drops("door-front")
    rendered = home.render()
    rendered.write("out/")                           # trace.jsonl.gz and home.toml

Time: :meth:`Scenario.day` picks a day (0 is the start day), :meth:`Scenario.at` a local time
on it (or an ISO date-time), :meth:`Scenario.after` moves on; each action happens at that cursor.
Rendering is deterministic: all randomness comes from ``seed``, so the same scenario renders to
the same bytes.

Devices behave as the real ones do under Zigbee2MQTT 2.x: every message carries the device's
whole merged state (compact JSON, keys in the order first seen, as Zigbee2MQTT publishes it),
devices check in about hourly, Zigbee2MQTT publishes an Aqara motion sensor's
``occupancy: false`` 90 s after its last detection, an SOS button's ``action`` is not part of
the kept state, and a device that stops talking is marked ``offline`` on its ``availability``
topic after Zigbee2MQTT's timeout. The models are those of :mod:`firmware_sim.catalogue`, which
the Zigbee2MQTT emulator plays too.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contract.wire import RawFrame
from firmware_sim.catalogue import MODELS, DeviceModel
from replay.trace import TraceControl, TraceWriter

__all__ = [
    "KitDevice",
    "Rendered",
    "Scenario",
    "ScenarioError",
    "default_kit",
    "parse_duration",
    "resident_routine",
]


class ScenarioError(ValueError):
    """A scenario asks for something that cannot be: an unknown device, a bad time or duration."""


# -- durations and times ---------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([smhd])\s*)+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float | timedelta) -> timedelta:
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"5d"``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and _DURATION.match(value):
        result = timedelta(
            seconds=sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(value))
        )
    else:
        raise ScenarioError(f"not a duration: {value!r} (use e.g. '90s', '5m', '2h', '5d')")
    if result < timedelta(0):
        raise ScenarioError(f"a duration cannot be negative: {value!r}")
    return result


# -- how the devices report ------------------------------------------------------------------

#: How often a 433 MHz device repeats each packet, and how far apart.
RF_REPEATS = 3
RF_REPEAT_GAP = timedelta(milliseconds=150)

#: Zigbee2MQTT marks a battery device offline after 25 h of silence, a mains one after 10 min.
OFFLINE_AFTER_BATTERY = timedelta(hours=25)
OFFLINE_AFTER_MAINS = timedelta(minutes=10)
#: Aqara motion sensors: occupancy goes back to false this long after the last detection.
OCCUPANCY_TIMEOUT = timedelta(seconds=90)


@dataclass(frozen=True)
class KitDevice:
    """One device of the home's kit."""

    id: str
    model: str
    role: str
    room: str
    name: str = ""
    #: Zigbee2MQTT friendly name (the topic under the base topic); the id when empty.
    friendly_name: str = ""
    #: The RF id of a 433 MHz device (RFLink's ``ID=``).
    rf_id: str = ""

    @property
    def topic_name(self) -> str:
        return self.friendly_name or self.id

    @property
    def is_rf(self) -> bool:
        return self.spec.rflink is not None

    @property
    def address(self) -> str:
        """The device's address in the home config."""
        return f"{self.spec.rflink}:{self.rf_id}" if self.is_rf else self.topic_name

    @property
    def spec(self) -> DeviceModel:
        return MODELS[self.model]


def default_kit() -> list[KitDevice]:
    """A kit for one person living alone: the elderly-care package, all Zigbee."""
    return [
        KitDevice("sos-button", "HS1EB/HS1EB-E", "sos_button", "bedroom", "SOS button by the bed"),
        KitDevice("smoke-kitchen", "HS1SA", "smoke", "kitchen", "Smoke detector, kitchen"),
        KitDevice("gas-kitchen", "HS1CG", "gas", "kitchen", "Gas detector, kitchen"),
        KitDevice("leak-bathroom", "SJCGQ11LM", "water_leak", "bathroom", "Leak sensor, bathroom"),
        KitDevice("motion-hall", "RTCGQ11LM", "motion", "hall", "Motion, hall"),
        KitDevice("motion-bedroom", "RTCGQ11LM", "motion", "bedroom", "Motion, bedroom"),
        KitDevice("motion-kitchen", "RTCGQ11LM", "motion", "kitchen", "Motion, kitchen"),
        KitDevice("motion-bathroom", "RTCGQ11LM", "motion", "bathroom", "Motion, bathroom"),
        KitDevice("motion-living", "RTCGQ11LM", "motion", "living", "Motion, living room"),
        KitDevice("door-front", "MCCGQ11LM", "door", "hall", "Front door"),
    ]


# -- the script ------------------------------------------------------------------------------


@dataclass(order=True)
class _Change:
    at: datetime
    seq: int
    device: str = field(compare=False)
    #: merged into the kept state
    state: dict[str, Any] = field(compare=False, default_factory=dict)
    #: published with this message only (an ``action``)
    once: dict[str, Any] = field(compare=False, default_factory=dict)
    #: "state", "checkin", "offline", "online"
    what: str = field(compare=False, default="state")
    #: a resident's movement: suppressed while the resident cannot move
    movement: bool = field(compare=False, default=False)


@dataclass(frozen=True)
class _Drain:
    start: datetime
    end: datetime
    start_pct: float
    end_pct: float

    def at(self, when: datetime) -> float | None:
        if when < self.start:
            return None
        if when >= self.end or self.end == self.start:
            return self.end_pct
        share = (when - self.start) / (self.end - self.start)
        return self.start_pct + (self.end_pct - self.start_pct) * share


class Scenario:
    """A builder for a home's life; see the module docstring."""

    def __init__(
        self,
        *,
        start: str | datetime,
        tz: str = "UTC",
        kit: Sequence[KitDevice] | None = None,
        days: float | None = None,
        seed: int = 1,
        gateway_id: str = "gw-scenario",
        household: str = "hh-scenario",
        driver_id: str = "zigbee",
        base_topic: str = "zigbee2mqtt",
        broker_url: str = "mqtt://127.0.0.1:1883",
        rflink_driver_id: str = "rf",
        rflink_port: str = "/dev/ttyACM0",
        rules: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.tz = ZoneInfo(tz)
        except Exception as exc:
            raise ScenarioError(f"unknown time zone {tz!r}") from exc
        self.tz_name = tz
        self.start = self._parse_when(start, base=None)
        self.kit = list(kit if kit is not None else default_kit())
        ids = [d.id for d in self.kit]
        if len(set(ids)) != len(ids):
            raise ScenarioError("kit device ids must be unique")
        for device in self.kit:
            if device.model not in MODELS:
                raise ScenarioError(
                    f"device {device.id}: unknown model {device.model!r}; "
                    f"known: {', '.join(sorted(MODELS))}"
                )
            if device.is_rf and not device.rf_id:
                raise ScenarioError(f"device {device.id}: a 433 MHz device needs its rf_id")
        self.end: datetime | None = self.start + timedelta(days=days) if days else None
        self.seed = seed
        self.gateway_id = gateway_id
        self.household = household
        self.driver_id = driver_id
        self.base_topic = base_topic.rstrip("/")
        self.broker_url = broker_url
        self.rflink_driver_id = rflink_driver_id
        self.rflink_port = rflink_port
        self.rules: dict[str, Any] = dict(rules) if rules is not None else {"pack": "elderly_care"}
        self.cursor = self.start
        self._day = self.start.astimezone(self.tz).date()
        self._changes: list[_Change] = []
        self._seq = 0
        self._drains: dict[str, _Drain] = {}
        self._dropped: dict[str, datetime] = {}
        self._still: list[tuple[datetime, datetime]] = []
        self._last_motion: dict[str, datetime] = {}
        self._controls: list[TraceControl] = []

    # -- time ----------------------------------------------------------------------------

    def _parse_when(self, value: str | datetime, *, base: date | None) -> datetime:
        if isinstance(value, datetime):
            at = value
        else:
            text = value.strip()
            if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
                if base is None:
                    raise ScenarioError(f"{value!r}: a time of day needs a day")
                parts = [int(p) for p in text.split(":")]
                try:
                    clock = time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)
                except ValueError as exc:
                    raise ScenarioError(f"not a time of day: {value!r}") from exc
                at = datetime.combine(base, clock)
            else:
                try:
                    at = datetime.fromisoformat(text)
                except ValueError as exc:
                    raise ScenarioError(f"not a time: {value!r} (use HH:MM or ISO)") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=self.tz)
        return at.astimezone(UTC)

    def day(self, index: int) -> Scenario:
        """Make day ``index`` (0: the start day) current; the cursor goes to its local midnight,
        or to the start on day 0."""
        if index < 0:
            raise ScenarioError(f"day index must be 0 or more, got {index}")
        self._day = self.start.astimezone(self.tz).date() + timedelta(days=index)
        midnight = datetime.combine(self._day, time(0), tzinfo=self.tz).astimezone(UTC)
        self.cursor = max(midnight, self.start)
        return self

    def at(self, when: str | datetime) -> Scenario:
        """Move the cursor to a local time of the current day (``"07:12"``) or an ISO time."""
        self.cursor = self._parse_when(when, base=self._day)
        if self.cursor < self.start:
            raise ScenarioError(f"{when!r} is before the scenario's start")
        self._day = self.cursor.astimezone(self.tz).date()
        return self

    def after(self, duration: str | float | timedelta) -> Scenario:
        """Move the cursor on by ``duration``."""
        self.cursor += parse_duration(duration)
        self._day = self.cursor.astimezone(self.tz).date()
        return self

    @property
    def days(self) -> int:
        end = self.end or self.cursor
        return max(1, (end.astimezone(self.tz).date() - self.start.astimezone(self.tz).date()).days)

    def every_day(
        self,
        routine: Callable[[Scenario, random.Random], object],
        *,
        skip: Iterable[int] = (),
    ) -> Scenario:
        """Run ``routine(home, rng)`` on each day (current day set, a seeded rng per day)."""
        skipped = set(skip)
        for index in range(self.days):
            if index in skipped:
                continue
            self.day(index)
            routine(self, random.Random(f"{self.seed}:day:{index}"))
        return self

    # -- devices ---------------------------------------------------------------------------

    def device(self, ref: str, *, role: str | tuple[str, ...] | None = None) -> KitDevice:
        """A device by id, by room (with a role), or by a short name (``front`` → door-front)."""
        roles = (role,) if isinstance(role, str) else role
        by_id = {d.id: d for d in self.kit}
        if ref in by_id and (roles is None or by_id[ref].role in roles):
            return by_id[ref]
        candidates = [
            d
            for d in self.kit
            if (roles is None or d.role in roles)
            and (d.room == ref or d.id.endswith(f"-{ref}") or d.id.startswith(f"{ref}-"))
        ]
        if len(candidates) == 1:
            return candidates[0]
        what = f"{'/'.join(roles)} device" if roles else "device"
        if not candidates:
            raise ScenarioError(f"no {what} {ref!r} in the kit; it has {', '.join(sorted(by_id))}")
        raise ScenarioError(f"{ref!r} names several {what}s: {', '.join(d.id for d in candidates)}")

    def _add(self, at: datetime, device: KitDevice, **kwargs: Any) -> None:
        # Whole seconds: traces read better, and nothing a sensor does is finer than that.
        at = at.replace(microsecond=0)
        self._seq += 1
        self._changes.append(_Change(at, self._seq, device.id, **kwargs))

    # -- actions (at the cursor) -----------------------------------------------------------

    def motion(self, room: str) -> Scenario:
        """The resident moves in ``room``: occupancy true, false again 90 s after the last."""
        device = self.device(room, role="motion")
        self._add(self.cursor, device, state={"occupancy": True}, movement=True)
        self._last_motion[device.id] = self.cursor
        return self

    def door_open(self, ref: str, *, for_: str | float | timedelta = "30s") -> Scenario:
        """The door is opened and closed again after ``for_`` (contact true means closed)."""
        device = self.device(ref, role="door")
        self._add(self.cursor, device, state={"contact": False}, movement=True)
        self._add(self.cursor + parse_duration(for_), device, state={"contact": True})
        return self

    def _alarm(self, role: str, prop: str, ref: str, for_: str | float | timedelta) -> Scenario:
        device = self.device(ref, role=role)
        self._add(self.cursor, device, state={prop: True})
        self._add(self.cursor + parse_duration(for_), device, state={prop: False})
        return self

    def smoke(self, room: str, *, for_: str | float | timedelta = "3m") -> Scenario:
        return self._alarm("smoke", "smoke", room, for_)

    def gas(self, room: str, *, for_: str | float | timedelta = "5m") -> Scenario:
        return self._alarm("gas", "gas", room, for_)

    def leak(self, room: str, *, for_: str | float | timedelta = "20m") -> Scenario:
        return self._alarm("water_leak", "water_leak", room, for_)

    def tamper(self, ref: str, *, for_: str | float | timedelta = "1m") -> Scenario:
        device = self.device(ref)
        if "tamper" not in device.spec.initial_state:
            raise ScenarioError(f"{device.id} ({device.model}) reports no tamper")
        self._add(self.cursor, device, state={"tamper": True})
        self._add(self.cursor + parse_duration(for_), device, state={"tamper": False})
        return self

    def sos(self, ref: str = "sos-button", *, action: str = "single") -> Scenario:
        """A press of the emergency button (``single``, ``double`` or ``hold``)."""
        device = self.device(ref, role=("sos_button", "pendant", "wristband"))
        self._add(self.cursor, device, once={"action": action})
        return self

    def fall_then_still(self, room: str, *, for_: str | float | timedelta = "12h") -> Scenario:
        """The resident falls in ``room``: a last movement there, then none for ``for_``."""
        self.motion(room)
        # The fall is the last thing the sensors see: stillness starts just after it.
        self._still.append((self.cursor + timedelta(seconds=1), self.cursor + parse_duration(for_)))
        return self

    def battery_drain(
        self,
        ref: str,
        *,
        from_: float = 100,
        to: float = 10,
        over: str | float | timedelta = "5d",
    ) -> Scenario:
        """The battery of ``ref`` runs down from ``from_`` % to ``to`` % over ``over``."""
        device = self.device(ref)
        if "battery" not in device.spec.initial_state:
            raise ScenarioError(f"{device.id} ({device.model}) reports no battery level")
        if not (0 <= to <= 100 and 0 <= from_ <= 100):
            raise ScenarioError("battery levels are percentages, 0 to 100")
        self._drains[device.id] = _Drain(
            self.cursor, self.cursor + parse_duration(over), float(from_), float(to)
        )
        return self

    def acknowledge(self, condition: str) -> Scenario:
        """Dispatch acknowledges the alarm ``condition`` (e.g. ``sos:sos-button``): an operator
        has taken it, so the gateway stops escalating it."""
        self._controls.append(TraceControl("ack", condition, self.cursor.replace(microsecond=0)))
        return self

    def set_mode(self, mode: str) -> Scenario:
        """The gateway's mode changes (``normal``, ``away``, ``test``)."""
        if mode not in ("normal", "away", "test"):
            raise ScenarioError(f"unknown mode {mode!r}; expected normal, away or test")
        self._controls.append(TraceControl("mode", mode, self.cursor.replace(microsecond=0)))
        return self

    def device_drops(self, ref: str) -> Scenario:
        """``ref`` goes silent (flat battery, out of range) from the cursor on."""
        device = self.device(ref)
        self._dropped[device.id] = self.cursor
        return self

    # -- rendering -------------------------------------------------------------------------

    def render(self, *, until: str | datetime | None = None) -> Rendered:
        """The frames of the scenario, in time order, and the home config that reads them."""
        end = (
            self._parse_when(until, base=self._day)
            if until is not None
            else self.end
            or (max((c.at for c in self._changes), default=self.start) + timedelta(hours=1))
        )
        return _Renderer(self, end).render()

    # -- the home config -------------------------------------------------------------------

    def driver_of(self, device: KitDevice) -> str:
        return self.rflink_driver_id if device.is_rf else self.driver_id

    def home_config(self) -> dict[str, Any]:
        """The home config (as TOML data) of this kit."""
        drivers: list[dict[str, Any]] = []
        if any(not d.is_rf for d in self.kit):
            drivers.append(
                {
                    "id": self.driver_id,
                    "type": "zigbee2mqtt",
                    "url": self.broker_url,
                    "base_topic": self.base_topic,
                }
            )
        if any(d.is_rf for d in self.kit):
            drivers.append(
                {"id": self.rflink_driver_id, "type": "rflink", "port": self.rflink_port}
            )
        return {
            "gateway": {
                "id": self.gateway_id,
                "household": self.household,
                "timezone": self.tz_name,
                "state_dir": "state",
            },
            "rules": self.rules,
            "drivers": drivers,
            "devices": [
                {
                    "id": d.id,
                    "driver": self.driver_of(d),
                    "address": d.address,
                    "role": d.role,
                    "room": d.room,
                    "model": d.model,
                    "name": d.name,
                    # A 433 MHz detector transmits only when it has something to say:
                    # silence is no sign of trouble, so the rules do not supervise it.
                    **({"options": {"checkin_interval_s": 0}} if d.spec.checkin_s is None else {}),
                }
                for d in self.kit
            ],
        }


_MOVEMENT_ROOMS = ("hall", "bedroom", "kitchen", "bathroom", "living")


def resident_routine(home: Scenario, rng: random.Random) -> None:
    """One ordinary day of a person living alone, varied by ``rng``.

    Up around seven, bathroom, breakfast in the kitchen, out to the shops on some days, lunch,
    an afternoon in the living room, dinner, bed around half past ten; now and then a night-time
    trip to the bathroom.
    """
    rooms = {d.room for d in home.kit if d.role == "motion"}

    def move(room: str, when: datetime, times: int = 1, spacing: float = 240) -> None:
        if room not in rooms:
            return
        for i in range(times):
            at = when + timedelta(seconds=i * spacing * rng.uniform(0.6, 1.4))
            if at >= home.start:
                home.at(at).motion(room)

    day = home._day

    def clock(h: int, m: int, jitter_min: float = 0) -> datetime:
        base = datetime.combine(day, time(h, m), tzinfo=home.tz)
        return (base + timedelta(minutes=rng.uniform(-jitter_min, jitter_min))).astimezone(UTC)

    if rng.random() < 0.35:
        move("bathroom", clock(3, 10, 40), times=2, spacing=200)
        move("bedroom", clock(3, 25, 40))
    wake = clock(7, 0, 30)
    if wake < home.start:
        wake = home.start + timedelta(minutes=5)
    move("bedroom", wake, times=2, spacing=120)
    move("hall", wake + timedelta(minutes=4))
    move("bathroom", wake + timedelta(minutes=5), times=3, spacing=240)
    move("kitchen", wake + timedelta(minutes=25), times=4, spacing=300)
    move("living", clock(9, 0, 20), times=5, spacing=900)
    out = clock(10, 15, 30)
    if rng.random() < 0.5 and out > home.start and any(d.role == "door" for d in home.kit):
        move("hall", out - timedelta(minutes=2))
        home.at(out).door_open("front", for_=f"{rng.randint(15, 40)}s")
        back = out + timedelta(minutes=rng.randint(45, 100))
        home.at(back).door_open("front", for_=f"{rng.randint(15, 40)}s")
        move("hall", back + timedelta(seconds=50))
    move("kitchen", clock(12, 15, 20), times=4, spacing=360)
    move("living", clock(13, 30, 20), times=8, spacing=1200)
    move("bathroom", clock(15, 0, 60))
    move("kitchen", clock(18, 0, 25), times=4, spacing=360)
    move("living", clock(19, 0, 15), times=6, spacing=900)
    move("bathroom", clock(21, 45, 20), times=2, spacing=300)
    move("bedroom", clock(22, 20, 20), times=2, spacing=300)


@dataclass
class Rendered:
    """A rendered scenario: its frames and its home config."""

    frames: list[RawFrame]
    config: dict[str, Any]
    #: Acknowledgements by dispatch and mode changes, in time order.
    controls: list[TraceControl]
    gateway_id: str
    start: datetime
    end: datetime

    def items(self) -> list[RawFrame | TraceControl]:
        """Frames and controls in time order (a control after the frames of its instant)."""
        keyed: list[tuple[datetime, int, int, RawFrame | TraceControl]] = [
            *((f.wall_time, 0, i, f) for i, f in enumerate(self.frames)),
            *((c.at, 1, i, c) for i, c in enumerate(self.controls)),
        ]
        return [item for *_, item in sorted(keyed, key=lambda k: k[:3])]

    def config_toml(self) -> str:
        import tomlkit

        return tomlkit.dumps(self.config)

    def write_trace(self, path: str | Path) -> Path:
        """Write the trace (``.gz`` for gzip); a file already there is replaced."""
        target = Path(path)
        target.unlink(missing_ok=True)
        with TraceWriter.open(
            target, gateway_id=self.gateway_id, started=self.start, mono=self.frames[0].mono_time
        ) as writer:
            for item in self.items():
                writer.write(item)
        return target

    def write(self, folder: str | Path, *, trace_name: str = "trace.jsonl.gz") -> tuple[Path, Path]:
        """Write ``trace.jsonl.gz`` and ``home.toml`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        trace = self.write_trace(out / trace_name)
        config = out / "home.toml"
        config.write_text(self.config_toml(), encoding="utf-8")
        return trace, config


class _Renderer:
    """Turns the scenario's changes into frames, keeping each device's merged state."""

    MONO_ORIGIN = 1000.0

    def __init__(self, scenario: Scenario, end: datetime) -> None:
        self.s = scenario
        self.end = end
        self.rng = random.Random(f"{scenario.seed}:render")
        self.state = {d.id: dict(d.spec.initial_state) for d in scenario.kit}
        self.devices = {d.id: d for d in scenario.kit}
        self.link_base = {d.id: 60 + (i * 37) % 120 for i, d in enumerate(scenario.kit)}
        self.last_heard: dict[str, datetime] = {}
        self.frames: list[RawFrame] = []
        self.rf_counter = 0

    def _frame(
        self, at: datetime, source: str, payload: bytes, *, driver: str | None = None, **kwargs: Any
    ) -> None:
        mono = self.MONO_ORIGIN + (at - self.s.start).total_seconds()
        self.frames.append(
            RawFrame(
                driver=driver or self.s.driver_id,
                source=source,
                payload=payload,
                wall_time=at,
                mono_time=round(mono, 6),
                **kwargs,
            )
        )

    def _still(self, at: datetime) -> bool:
        return any(a <= at < b for a, b in self.s._still)

    def _changes(self) -> list[_Change]:
        s = self.s
        changes = [c for c in s._changes if c.at <= self.end]
        seq = s._seq
        # Occupancy goes false OCCUPANCY_TIMEOUT after the last detection of a run.
        motions: dict[str, list[datetime]] = {}
        for c in sorted(changes):
            if self.devices[c.device].is_rf:
                continue  # a 433 MHz PIR only ever says ON
            if c.state.get("occupancy") is True and not (c.movement and self._still(c.at)):
                motions.setdefault(c.device, []).append(c.at)
        for device_id, times in motions.items():
            for i, at in enumerate(times):
                clear = at + OCCUPANCY_TIMEOUT
                if i + 1 < len(times) and times[i + 1] <= clear:
                    continue
                seq += 1
                changes.append(_Change(clear, seq, device_id, state={"occupancy": False}))
        # Check-ins: every device, about every checkin_s, with a seeded phase and jitter.
        for device in s.kit:
            rng = random.Random(f"{s.seed}:checkin:{device.id}")
            period = device.spec.checkin_s
            if period is None:
                continue
            at = s.start + timedelta(seconds=30 + rng.uniform(0, period))
            while at <= self.end:
                seq += 1
                changes.append(_Change(at.replace(microsecond=0), seq, device.id, what="checkin"))
                at += timedelta(seconds=period * rng.uniform(0.9, 1.1))
        return sorted(changes)

    def render(self) -> Rendered:
        s = self.s
        topic = s.base_topic
        start = s.start
        # The drivers connect; Zigbee2MQTT's retained state: bridge online, every device online.
        if any(d.is_rf for d in s.kit):
            self._frame(start, s.rflink_port, b"up", kind="link", driver=s.rflink_driver_id)
        if any(not d.is_rf for d in s.kit):
            self._frame(start, "", b"up", kind="link")
            self._frame(start, f"{topic}/bridge/state", b'{"state":"online"}', retained=True)
        for device in s.kit:
            if not device.is_rf:
                self._availability(start, device, online=True)
            self.last_heard[device.id] = start
        offline_sent: set[str] = set()
        for change in self._changes():
            device = self.devices[change.device]
            dropped = s._dropped.get(device.id)
            self._offline_until(change.at, offline_sent)
            if dropped is not None and change.at >= dropped:
                continue
            if change.movement and self._still(change.at):
                continue
            self.state[device.id].update(change.state)
            self._publish(change.at, device, change.once)
        self._offline_until(self.end, offline_sent)
        # A 433 MHz packet's repeats reach into the next second: keep the trace in time order.
        self.frames.sort(key=lambda f: f.wall_time)
        return Rendered(
            frames=self.frames,
            config=s.home_config(),
            controls=sorted((c for c in s._controls if c.at <= self.end), key=lambda c: c.at),
            gateway_id=s.gateway_id,
            start=start,
            end=self.end,
        )

    def _offline_until(self, now: datetime, sent: set[str]) -> None:
        """Zigbee2MQTT's availability check: a silent device is published offline."""
        due: list[tuple[datetime, str]] = []
        for device_id, dropped in self.s._dropped.items():
            if device_id in sent or self.devices[device_id].is_rf:
                continue
            spec = self.devices[device_id].spec
            timeout = OFFLINE_AFTER_BATTERY if spec.battery_powered else OFFLINE_AFTER_MAINS
            at = self.last_heard[device_id] + timeout
            if dropped <= at <= now:
                due.append((at, device_id))
        for at, device_id in sorted(due):
            sent.add(device_id)
            self._availability(at, self.devices[device_id], online=False)

    def _availability(self, at: datetime, device: KitDevice, *, online: bool) -> None:
        payload = b'{"state":"online"}' if online else b'{"state":"offline"}'
        self._frame(
            at, f"{self.s.base_topic}/{device.topic_name}/availability", payload, retained=True
        )

    def _publish(self, at: datetime, device: KitDevice, once: dict[str, Any]) -> None:
        if device.is_rf:
            self._send_rf(at, device, once)
            return
        state = self.state[device.id]
        spec = device.spec
        drain = self.s._drains.get(device.id)
        level = drain.at(at) if drain is not None else None
        if level is not None:
            state["battery"] = round(level) if spec.reports_voltage else round(level, 1)
            if spec.reports_voltage:
                # Aqara: battery % is derived from the CR2032's voltage (2850 mV flat, 3000 full).
                state["voltage"] = int(2850 + 1.9 * level)
            if spec.reports_battery_low:
                state["battery_low"] = level <= 20
        base = self.link_base[device.id]
        message = dict(state)
        message["linkquality"] = max(0, min(255, base + self.rng.randint(-12, 12)))
        message.update(once)
        # Zigbee2MQTT publishes JSON.stringify of its state: insertion order, no spaces.
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
        self._frame(at, f"{self.s.base_topic}/{device.topic_name}", payload)
        self.last_heard[device.id] = at

    def _send_rf(self, at: datetime, device: KitDevice, once: dict[str, Any]) -> None:
        """RFLink lines for a 433 MHz device's change, each packet repeated as the radio does."""
        state = self.state[device.id]
        proto, rf = device.spec.rflink, device.rf_id
        body: str | None = None
        if proto == "SmokeAlert" and "smoke" in state:
            body = f"SmokeAlert;ID={rf};SMOKEALERT={'ON' if state.pop('smoke') else 'OFF'};"
        elif proto == "Pir" and state.pop("occupancy", None) is True:
            body = f"Pir;ID={rf};PIR=ON;"
        elif "contact" in state:
            body = f"{proto};ID={rf};SWITCH=01;CMD={'OFF' if state.pop('contact') else 'ON'};"
        elif "action" in once:
            body = f"{proto};ID={rf};SWITCH=01;CMD=ON;"
        state.clear()
        if body is None:
            return
        for i in range(RF_REPEATS):
            line = f"20;{self.rf_counter:02X};{body}"
            self.rf_counter = (self.rf_counter + 1) % 256
            self._frame(
                at + RF_REPEAT_GAP * i,
                self.s.rflink_port,
                line.encode("ascii"),
                driver=self.s.rflink_driver_id,
            )
        self.last_heard[device.id] = at
