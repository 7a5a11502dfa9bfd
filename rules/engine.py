"""The local alarm rule engine: readings and time in, decisions out.

Pure and deterministic: no I/O, no clock of its own. Time comes only from the ``now`` given to
each call (aware datetimes; a ``now`` earlier than one already seen counts as the later one).
Every call first runs the timers that fell due up to ``now``, each at its own due instant and in
time order, so the decisions do not depend on how time was split into calls: ``tick(t1);
tick(t2)`` decides exactly what ``tick(t2)`` alone does, and timer-fired events carry their own
threshold time as ``due_at``.

What it decides (the elderly-care pack; settings in :mod:`rules.config`):

- **Alarms** ``sos``, ``smoke``, ``gas``, ``carbon_monoxide``, ``fall`` (LIFE_SAFETY) and
  ``water_leak`` (HIGH) from the reading property of the same name; for sos_button, wristband
  and pendant devices also an ``action`` in ``sos_actions``. A detector alarm is restored when
  its property reads False; ``None`` is unknown and changes nothing. Per condition, alarms and
  restores alternate, whatever readings arrive (retained state syncs included: an active state
  of an active condition raises nothing, an inactive state of an active one restores it).
- **SOS** has no natural restore: acknowledgement by dispatch restores it. Presses within
  ``sos_collapse_s`` of an unacknowledged SOS alarm of the same device are one alarm; a later
  press restores the old alarm and raises a new one that keeps the old one's escalation
  schedule (pressing again never delays escalation). A retained press is raised only if the
  engine has seen no press from that device.
- **Troubles** ``tamper``, ``low_battery`` (``battery_low`` or ``battery`` below
  ``battery_low_percent``), ``device_offline`` (``available`` False, or silence beyond the
  device's check-in interval, fired at exactly last reading + interval; any other reading
  restores it), ``driver_fault:<driver>`` (``link`` False/True).
- **Telemetry** ``motion`` when motion goes True, ``contact`` when ``contact_open`` changes,
  ``battery`` at most every ``battery_report_every_s`` per device and when crossing the threshold.
- **Door and window contacts** (role ``door``; ``[rules.contacts]``): in ``away`` mode an opening
  is an ``intrusion:<device>`` alarm once ``entry_delay_s`` has passed with the mode still away
  (leaving away in time disarms; leaving away later restores it, ``reason: disarmed``; closing
  the contact restores it). A contact open for ``left_open_after_s`` (counted from the opening,
  raised only inside ``left_open_hours``) is a ``left_open:<device>`` alarm, restored when it
  closes; off by default, on for the pack's front door at night. More than ``flapping_changes``
  (0: off, the default) changes within ``flapping_window_s`` raise ``flapping:<device>``: its
  ``contact`` telemetry is held back until a quiet window has passed, then the current state
  is reported.
- **Local actions** ``siren_on`` for every siren on smoke, gas and CO alarms, ``siren_off``
  once all of them are restored. A LIFE_SAFETY alarm not acknowledged within
  ``escalate_after_s`` is escalated (``escalation`` event with the alarm's condition, sirens,
  ``notify`` to the secondary channel), again every ``escalate_every_s``.
- **Walk test** (mode ``test``): every reading of a configured device gives one ``test`` event
  (``test=True``) naming what it would raise; no alarms and no local actions from readings
  (driver link faults, supervision and ``available``, and escalation of alarms raised before
  go on). What the engine knows stays current (contact and motion states, the last activity):
  test mode only changes what is reported. On leaving it, a door closed meanwhile restores its
  ``left_open`` alarm and activity meanwhile restores an open inactivity alarm.
- **Inactivity** (``inactivity:-``): no activity (motion, a contact change, a button press) for
  ``inactivity.after_s`` counted inside the active hours only, or none between ``night_end``
  and ``not_up_by`` local time. Suspended in ``away`` and ``test`` modes (going away restores
  an open inactivity alarm); the count starts afresh on return to ``normal``. The morning check
  needs the engine to have watched since ``night_end``.
- **Memory**: :meth:`RuleEngine.memory` exports everything above that a restart would otherwise
  forget (clocks, states, open conditions, timers; :mod:`rules.memory`) and
  :meth:`RuleEngine.resume` takes it back with the conditions the buffer holds open, so the
  clocks of a restarted gateway run on. Away mode survives a restart; a walk test does not (a
  restart ends it, as a return to ``normal``).
- **Debounce** (``delay_on``) and **confirmation** (two detectors of a kind within
  ``confirm_window_s``: ``confirmed: true`` and LIFE_SAFETY priority).
- **Flapping**: beyond ``flapping.max_alarms`` alarms of a detector condition within
  ``flapping.window_s``, further alarms and their restores are held back and one
  ``flapping:<device>`` trouble is raised; after a quiet window it is restored, and a condition
  still active then is raised at that moment, so a held-back alarm is never lost.
- **Unconfigured devices**: ``sos``, ``smoke``, ``gas``, ``carbon_monoxide``, ``fall`` and
  ``water_leak`` still raise alarms (device_id None, condition ``<kind>:<address>``, payload
  ``address``); their other readings are counted in :meth:`RuleEngine.snapshot` and ignored.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract.devices import SOS_ROLES, DeviceSpec, LocalCommand
from contract.wire import EventKind, Priority, Reading
from rules.config import RuleConfigError, RuleSet, hours_window
from rules.decisions import ActiveCondition, ActiveConditionLike, Decision, EmitEvent, LocalAction
from rules.localtime import local_instant, seconds_due, windows_from
from rules.memory import ConditionMemory, EngineMemory, PendingMemory

__all__ = ["Mode", "RuleEngine"]

Mode = Literal["normal", "away", "test"]
MODES: Final = ("normal", "away", "test")

K = EventKind
_ALARM_PROPERTIES: Final = {
    "sos": K.SOS,
    "smoke": K.SMOKE,
    "gas": K.GAS,
    "carbon_monoxide": K.CARBON_MONOXIDE,
    "water_leak": K.WATER_LEAK,
    "fall": K.FALL,
}
_DETECTOR_KINDS: Final = frozenset({K.SMOKE, K.GAS, K.CARBON_MONOXIDE, K.WATER_LEAK, K.FALL})
_SIREN_KINDS: Final = frozenset({K.SMOKE, K.GAS, K.CARBON_MONOXIDE})
INACTIVITY_KEY: Final = "inactivity:-"
_INACTIVITY_SOURCES: Final = ("motion", "contact_open", "sos", "action")
#: Timer ranks (ties between timers due at one instant go by rank, then key).
_RANK_ENTRY: Final = 6
_RANK_LEFT_OPEN: Final = 7


def _iso(at: datetime) -> str:
    return at.isoformat()


@dataclass(slots=True)
class _Condition:
    key: str
    kind: EventKind
    device_id: str | None
    since: datetime | None
    detail: dict[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    acked: bool = False
    escalate_at: datetime | None = None
    attempt: int = 0
    #: Active but held back by the flapping rule: neither it nor its restore was sent.
    suppressed: bool = False
    seeded: bool = False


@dataclass(slots=True)
class _Pending:
    """A detector condition waiting out its ``delay_on``."""

    due: datetime
    kind: EventKind
    spec: DeviceSpec | None
    device: str
    payload: dict[str, Any]


class RuleEngine:
    """Decides alarms, troubles, telemetry and local actions for one home."""

    def __init__(
        self, rules: RuleSet, devices: Sequence[DeviceSpec], *, timezone: str = "UTC"
    ) -> None:
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RuleConfigError([f"gateway.timezone: unknown time zone {timezone!r}"]) from exc
        rules.check_devices(devices)
        self.rules = rules
        self._devices = {d.id: d for d in devices}
        self._by_address = {(d.driver, d.address): d for d in devices}
        self._sirens = sorted(d.id for d in devices if d.role == "siren")
        self._interval = {d.id: self._checkin_interval(d) for d in devices}
        self._delay_on = {d: r.delay_on_s for d, r in rules.devices.items()}
        self._sos_actions = frozenset(rules.sos_actions)
        self._collapse = timedelta(seconds=rules.sos_collapse_s)
        self._escalate_after = timedelta(seconds=rules.escalate_after_s)
        self._escalate_every = timedelta(seconds=rules.escalate_every_s)
        self._confirm = timedelta(seconds=rules.confirm_window_s)
        self._flap_window = timedelta(seconds=rules.flapping.window_s)
        self._battery_every = timedelta(seconds=rules.battery_report_every_s)
        self._window = rules.inactivity.window()
        self._morning = rules.inactivity.morning()

        self._mode: Mode = "normal"
        self._now: datetime | None = None
        self._started: datetime | None = None
        self._active: dict[str, _Condition] = {}
        self._other_seeded: dict[str, ActiveCondition] = {}
        self._pending: dict[str, _Pending] = {}
        self._last_seen: dict[str, datetime] = {}
        self._pressed: set[str] = set()
        self._motion: dict[str, bool] = {}
        self._contact: dict[str, bool] = {}
        self._battery_flag: dict[str, bool] = {}
        self._battery_pct: dict[str, float] = {}
        self._battery_sent: dict[str, datetime] = {}
        self._flap_alarms: dict[str, deque[datetime]] = {}
        self._flap_last: dict[str, datetime] = {}
        self._flapping_sources: dict[str, set[str]] = {}
        # Contacts: when each open one opened, recent changes (flapping), entry delays running.
        self._contact_rules = {d.id: self._contact_rule(d) for d in devices if d.role == "door"}
        self._opened_at: dict[str, datetime] = {}
        self._contact_changes: dict[str, deque[datetime]] = {}
        self._entry_due: dict[str, datetime] = {}
        self._device_activity: dict[str, datetime] = {}
        self._feeding: str | None = None
        # Resumed from a memory (see resume): the clocks run on instead of starting afresh.
        self._resumed = False
        self._restart_on_start = False
        #: Bumped whenever the memory may have changed; ``checkins`` for check-ins alone.
        self.revision = 0
        self.checkins = 0
        # Inactivity: when the count (re)started, the last activity, when watching began.
        self._anchor: datetime | None = None
        self._due_cache: tuple[datetime, datetime | None] | None = None
        self._last_activity: datetime | None = None
        self._watch_since: datetime | None = None
        self._morning_next: datetime | None = None
        # The earliest timer is asked for on every call (and by replay after every frame), so
        # it is kept instead of walking every timer each time (see _earliest). Supervision
        # timers (rank 2) move on every reading: a heap of (due, device) with stale entries
        # dropped lazily. The other timers (delay_on, escalations, flapping, the morning
        # check) change only on rare events, each of which calls _timers_changed() and so also
        # rebuilds the heap. Inactivity (rank 4) is cheap and is read afresh each time.
        self._timers_stale = True
        self._timers_best: tuple[datetime, int, str] | None = None
        self._supervision_stale = True
        self._checkin_every = {
            dev: timedelta(seconds=interval)
            for dev, interval in self._interval.items()
            if interval > 0
        }
        self._checkins: list[tuple[datetime, str]] = []
        # The earliest of all, kept until a timer changes (see _timers_changed, _activity and
        # the check-in in feed): replay asks for it after every frame.
        self._best: tuple[datetime, int, str] | None = None
        self._best_valid = False
        self._memory_saved_at: datetime | None = None
        self.counts: dict[str, int] = {
            "readings": 0,
            "unconfigured_readings": 0,
            "ignored_readings": 0,
            "collapsed_presses": 0,
            "suppressed_alarms": 0,
        }

    # -- configuration -------------------------------------------------------------------------

    def _checkin_interval(self, spec: DeviceSpec) -> float:
        override = self.rules.devices.get(spec.id)
        if override is not None and override.checkin_interval_s is not None:
            return override.checkin_interval_s
        option = spec.options.get("checkin_interval_s")
        if isinstance(option, int | float):  # checked by RuleSet.check_devices
            return float(option)
        sup = self.rules.supervision
        return float(sup.get(spec.role, sup.get("default_s", 10_800)))

    def _contact_rule(self, spec: DeviceSpec) -> tuple[float, float, tuple[Any, Any]]:
        """(entry delay, left-open seconds (0 off), left-open hours) of a door contact."""
        contacts = self.rules.contacts
        entry, after, hours = (
            contacts.entry_delay_s,
            contacts.left_open_after_s,
            contacts.left_open_hours,
        )
        front = contacts.front_door
        if spec.id == front.device:
            after, hours = front.left_open_after_s, front.left_open_hours
        override = self.rules.devices.get(spec.id)
        if override is not None:
            entry = override.entry_delay_s if override.entry_delay_s is not None else entry
            after = override.left_open_after_s if override.left_open_after_s is not None else after
            hours = override.left_open_hours or hours
        return entry, after, hours_window(hours)

    def _delay_for(self, kind: EventKind, device: str | None) -> float:
        per_device = self._delay_on.get(device) if device is not None else None
        if per_device is not None:
            return per_device
        return self.rules.delay_on.get(kind.value, 0.0)

    # -- public API ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    def feed(self, reading: Reading, now: datetime) -> list[Decision]:
        out = self._enter(now)
        at = self._at()
        self.counts["readings"] += 1
        prop, value = reading.property, reading.value
        if prop == "seen":
            self.checkins += 1
        else:
            self.revision += 1
        if prop == "link":
            self._link(out, reading, at)
            return out
        spec = self._devices.get(reading.device) or self._by_address.get(
            (reading.driver, reading.device)
        )
        if spec is None:
            self._unconfigured(out, reading, at)
            return out
        dev = spec.id
        self._feeding = dev
        if prop == "available" and value is False:
            # Supervision, so in walk-test mode too.
            payload = self._payload(spec, reading, reason="unavailable")
            self._open(out, K.DEVICE_OFFLINE, dev, f"device_offline:{dev}", payload, at)
        else:
            # Any other word from the device is a check-in.
            self._last_seen[dev] = at
            every = self._checkin_every.get(dev)
            if every is not None:
                # The device's new deadline; its old heap entry is now stale.
                heapq.heappush(self._checkins, (at + every, dev))
                if len(self._checkins) > 2 * len(self._checkin_every) + 64:
                    self._supervision_stale = True  # compact: rebuild without stale entries
                # Its deadline only moved later (time never runs backwards), so the earliest
                # of all changes only if it was this device's.
                best = self._best
                if best is not None and best[1] == 2 and best[2] == dev:
                    self._best_valid = False
            if f"device_offline:{dev}" in self._active:
                self._restore(out, f"device_offline:{dev}", at, self._payload(spec, reading))
        if prop == "seen":
            return out  # a check-in that changed nothing: no walk-test tick, no telemetry
        if self._mode == "test":
            self._walk_test(out, spec, reading)
            self._keep_state(spec, reading, at)
            return out
        if prop in _ALARM_PROPERTIES:
            kind = _ALARM_PROPERTIES[prop]
            if kind is K.SOS:
                if value is True:
                    self._press(out, spec, dev, reading, at)
            else:
                self._detector(out, kind, spec, dev, reading, at)
        elif prop == "action":
            if isinstance(value, str) and value:
                self._action(out, spec, reading, at)
        elif prop == "motion":
            self._motion_reading(out, spec, reading, at)
        elif prop == "contact_open":
            self._contact_reading(out, spec, reading, at)
        elif prop == "tamper":
            if value is True:
                self._open(out, K.TAMPER, dev, f"tamper:{dev}", self._payload(spec, reading), at)
            elif value is False:
                self._restore(out, f"tamper:{dev}", at, self._payload(spec, reading))
        elif prop == "battery_low":
            if isinstance(value, bool):
                self._battery_flag[dev] = value
                self._battery_state(out, spec, reading, at)
        elif prop == "battery":
            self._battery_reading(out, spec, reading, at)
        elif prop == "available":
            pass  # handled above, with supervision
        elif prop == "test":
            if value is True:
                payload = self._payload(spec, reading, would_raise=None)
                out.append(EmitEvent(K.TEST, dev, f"test:{dev}", payload, test=True))
        else:
            self.counts["ignored_readings"] += 1
        return out

    def tick(self, now: datetime) -> list[Decision]:
        return self._enter(now)

    def set_mode(self, mode: Mode, now: datetime) -> list[Decision]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        out = self._enter(now)
        at = self._at()
        if mode == self._mode:
            return out
        before = self._mode
        self._mode = mode
        self.revision += 1
        self._timers_changed()
        if mode == "test":
            self._pending.clear()
        if before == "away":
            self._disarm(out, at)
        if mode == "away" and INACTIVITY_KEY in self._active:
            self._restore(out, INACTIVITY_KEY, at, {"reason": "away"})
        if before == "test":
            self._after_walk_test(out, at)
        if mode == "normal":
            self._restart_inactivity(at)
        return out

    def acknowledge(self, condition: str, now: datetime) -> list[Decision]:
        out = self._enter(now)
        at = self._at()
        cond = self._active.get(condition)
        if cond is None or cond.suppressed or cond.acked:
            return out
        self.revision += 1
        cond.acked = True
        cond.escalate_at = None
        self._timers_changed()
        spec = self._devices.get(cond.device_id) if cond.device_id else None
        if spec is not None and spec.role in SOS_ROLES:
            command = LocalCommand(device=spec.id, action="ack", params={"condition": condition})
            out.append(LocalAction(command, reason=f"acknowledged:{condition}"))
        if cond.kind is K.SOS:
            self._restore(out, condition, at, {"reason": "acknowledged"})
        return out

    def seed_active(self, conditions: Iterable[ActiveConditionLike]) -> None:
        """Take over the conditions that were open before a restart (from the buffer).

        The kind is read from the condition key first: an escalation event carries the
        escalated alarm's key. Keys of no alarm or trouble kind are kept and reported only.
        """
        for c in conditions:
            key = str(c.condition)
            kind = _kind_of(key.partition(":")[0]) or _kind_of(str(getattr(c, "kind", "")))
            device_id = c.device_id if isinstance(c.device_id, str) else None
            if kind is None or kind.restore is None or kind.is_restore:
                self._other_seeded[key] = ActiveCondition(key, kind or K.ESCALATION, device_id)
                continue
            if key not in self._active:
                since = getattr(c, "at", None)
                since = since if isinstance(since, datetime) and since.tzinfo is not None else None
                self._active[key] = _Condition(key, kind, device_id, since, seeded=True)
        self.revision += 1
        self._timers_changed()

    # -- memory across restarts ----------------------------------------------------------------

    def resume(
        self, conditions: Iterable[ActiveConditionLike], memory: EngineMemory | None
    ) -> None:
        """Take over after a restart: the conditions the buffer holds open, then the memory.

        The buffer says which conditions are open (what dispatch was told); the memory adds
        what they carried (escalation schedule, acknowledgement) and everything else the rules
        keep: clocks, states, timers. Call before the first :meth:`feed` or :meth:`tick`.
        """
        if self._started is not None:
            raise RuntimeError("resume() must come before the engine's first call")
        self.seed_active(conditions)
        if memory is not None:
            self._seed_memory(memory)

    def _seed_memory(self, memory: EngineMemory) -> None:
        known = self._devices
        if memory.mode == "away":
            self._mode = "away"
        # A walk test ends with a restart; that is a return to normal, counted afresh.
        self._restart_on_start = memory.mode == "test"
        self._last_activity = memory.last_activity
        self._anchor = memory.inactivity_anchor
        self._watch_since = memory.watch_since
        self._memory_saved_at = memory.saved_at
        self._last_seen.update({d: t for d, t in memory.last_seen.items() if d in known})
        self._device_activity.update(
            {d: t for d, t in memory.device_activity.items() if d in known}
        )
        self._motion.update({d: v for d, v in memory.motion.items() if d in known})
        self._contact.update({d: v for d, v in memory.contact.items() if d in known})
        self._opened_at.update(
            {d: t for d, t in memory.opened_at.items() if self._contact.get(d) is True}
        )
        self._contact_changes.update(
            {d: deque(ts) for d, ts in memory.contact_changes.items() if d in known}
        )
        if self._mode == "away":
            self._entry_due.update(
                {d: t for d, t in memory.entry_due.items() if d in self._contact_rules}
            )
        self._pressed.update(memory.pressed)
        self._battery_flag.update({d: v for d, v in memory.battery_flag.items() if d in known})
        self._battery_pct.update({d: v for d, v in memory.battery_pct.items() if d in known})
        self._battery_sent.update({d: t for d, t in memory.battery_sent.items() if d in known})
        self._flap_alarms.update({k: deque(ts) for k, ts in memory.flap_alarms.items()})
        self._flap_last.update(memory.flap_last)
        self._flapping_sources.update({d: set(k) for d, k in memory.flapping_sources.items()})
        for c in memory.conditions:
            if c.key not in self._active and not c.suppressed:
                continue  # closed since the memory was saved: the buffer knows best
            self._active[c.key] = _Condition(
                c.key,
                c.kind,
                c.device_id,
                c.since,
                detail=dict(c.detail),
                priority=c.priority,
                acked=c.acked,
                escalate_at=c.escalate_at,
                attempt=c.attempt,
                suppressed=c.suppressed,
            )
        for p in memory.pending:
            spec = known.get(p.device)
            self._pending.setdefault(p.key, _Pending(p.due, p.kind, spec, p.device, p.payload))
        self._resumed = True
        self.revision += 1
        self._timers_changed()

    def memory(self) -> EngineMemory:
        """Everything a restarted engine needs to go on where this one is (plain data)."""

        def times(values: dict[str, deque[datetime]]) -> dict[str, list[datetime]]:
            return {k: list(v) for k, v in values.items() if v}

        return EngineMemory(
            saved_at=self._now,
            mode=self._mode,
            last_activity=self._last_activity,
            inactivity_anchor=self._anchor,
            watch_since=self._watch_since,
            last_seen=dict(self._last_seen),
            device_activity=dict(self._device_activity),
            motion=dict(self._motion),
            contact=dict(self._contact),
            opened_at=dict(self._opened_at),
            contact_changes=times(self._contact_changes),
            entry_due=dict(self._entry_due),
            pressed=sorted(self._pressed),
            battery_flag=dict(self._battery_flag),
            battery_pct=dict(self._battery_pct),
            battery_sent=dict(self._battery_sent),
            flap_alarms=times(self._flap_alarms),
            flap_last=dict(self._flap_last),
            flapping_sources={d: sorted(k) for d, k in self._flapping_sources.items()},
            conditions=[
                ConditionMemory(
                    key=c.key,
                    kind=c.kind,
                    device_id=c.device_id,
                    since=c.since,
                    detail=dict(c.detail),
                    priority=c.priority,
                    acked=c.acked,
                    escalate_at=c.escalate_at,
                    attempt=c.attempt,
                    suppressed=c.suppressed,
                )
                for c in self._active.values()
            ],
            pending=[
                PendingMemory(key=k, due=p.due, kind=p.kind, device=p.device, payload=p.payload)
                for k, p in self._pending.items()
            ],
        )

    def next_deadline(self) -> datetime | None:
        """The earliest time at which :meth:`tick` could decide something."""
        if self._started is None:
            return None
        best = self._earliest()
        return best[0] if best else None

    def snapshot(self) -> dict[str, Any]:
        active = [
            {
                "kind": c.kind.value,
                "device_id": c.device_id,
                "condition": c.key,
                "since": _iso(c.since) if c.since else None,
                "detail": dict(c.detail),
            }
            for c in self._active.values()
            if not c.suppressed
        ]
        deadline = self.next_deadline()
        return {
            "mode": self._mode,
            "active": active,
            "suppressed": sorted(c.key for c in self._active.values() if c.suppressed),
            "pending": {k: _iso(p.due) for k, p in sorted(self._pending.items())},
            "seeded_other": sorted(self._other_seeded),
            "last_activity": _iso(self._last_activity) if self._last_activity else None,
            "inactivity_due": _iso(due) if (due := self._inactivity_watch()) else None,
            "next_deadline": _iso(deadline) if deadline else None,
            "counts": dict(self.counts),
        }

    # -- time and timers -----------------------------------------------------------------------

    def _at(self) -> datetime:
        assert self._now is not None
        return self._now

    def _enter(self, now: datetime) -> list[Decision]:
        if now.tzinfo is None:
            raise ValueError("the rule engine needs aware datetimes (UTC)")
        if now.tzinfo is not UTC:
            now = now.astimezone(UTC)
        if self._now is not None and now < self._now:
            now = self._now
        self._now = now
        out: list[Decision] = []
        if self._started is None:
            self._start(out, now)
        while True:
            best = self._earliest()
            if best is None or best[0] > now:
                return out
            self.revision += 1
            self._fire(out, *best)

    def _start(self, out: list[Decision], now: datetime) -> None:
        self._started = now
        for dev in self._devices:
            self._last_seen.setdefault(dev, now)
        if not self._resumed:
            self._restart_inactivity(now)
            return
        # Resumed: the clocks run on from the memory; the morning check is the next one due
        # after the memory was saved, so one that fell due while the gateway was down fires.
        saved = self._memory_saved_at or now
        self._morning_next = self._next_morning(min(saved, now))
        if self._restart_on_start:
            self._after_walk_test(out, now)
            self._restart_inactivity(now)
        self._timers_changed()

    def _restart_inactivity(self, at: datetime) -> None:
        self._anchor = at
        self._watch_since = at
        self._morning_next = self._next_morning(at)
        self._timers_changed()

    def _next_morning(self, after: datetime) -> datetime | None:
        if self._morning is None:
            return None
        day = after.astimezone(self._zone).date() - timedelta(days=1)
        for _ in range(4):
            instant = local_instant(day, self._morning[1], self._zone)
            if instant > after:
                return instant
            day += timedelta(days=1)
        return None  # pragma: no cover - a local date always has a later not_up_by

    def _inactivity_due(self) -> datetime | None:
        anchor = self._anchor
        if anchor is None:
            return None
        if self._due_cache is None or self._due_cache[0] != anchor:
            due = seconds_due(anchor, self.rules.inactivity.after_s, self._window, self._zone)
            self._due_cache = (anchor, due)
        return self._due_cache[1]

    def _inactivity_watch(self) -> datetime | None:
        """When the inactivity alarm is due, if it is being watched for at all."""
        if (
            not self.rules.inactivity.enabled
            or self._mode != "normal"
            or INACTIVITY_KEY in self._active
        ):
            return None
        return self._inactivity_due()

    def _timers_changed(self) -> None:
        """Something other than a check-in or an activity changed a timer: rescan lazily."""
        self._timers_stale = True
        self._supervision_stale = True
        self._best_valid = False

    def _earliest(self) -> tuple[datetime, int, str] | None:
        """The earliest timer as (due, rank, key); ties go by rank, then key."""
        if self._best_valid:
            return self._best
        if self._timers_stale:
            self._timers_best = self._scan_timers()
            self._timers_stale = False
        best = self._timers_best
        candidate = self._supervision_earliest()
        if candidate is not None and (best is None or candidate < best):
            best = candidate
        due = self._inactivity_watch()
        if due is not None and (best is None or (due, 4, "after") < best):
            best = (due, 4, "after")
        self._best = best
        self._best_valid = True
        return best

    def _scan_timers(self) -> tuple[datetime, int, str] | None:
        """The earliest of the rare timers: delay_on (0), escalation (1), flapping (3), morning
        check (5)."""
        candidates: list[tuple[datetime, int, str]] = []
        for key, pending in self._pending.items():
            candidates.append((pending.due, 0, key))
        for key, cond in self._active.items():
            if cond.escalate_at is not None:
                candidates.append((cond.escalate_at, 1, key))
        for dev in self._flapping_devices():
            candidates.append((self._flap_quiet_since(dev) + self._quiet_window(dev), 3, dev))
        if self.rules.inactivity.enabled and self._morning_next is not None:
            candidates.append((self._morning_next, 5, "morning"))
        for dev, due in self._entry_due.items():
            candidates.append((due, _RANK_ENTRY, dev))
        if self._mode != "test":
            for dev, since in self._opened_at.items():
                left_open = self._left_open_due(dev, since)
                if left_open is not None:
                    candidates.append((left_open, _RANK_LEFT_OPEN, dev))
        return min(candidates, default=None)

    def _supervision_earliest(self) -> tuple[datetime, int, str] | None:
        """The earliest check-in deadline (2) of a device not already offline."""
        if self._supervision_stale:
            self._checkins = [
                (self._last_seen[dev] + every, dev)
                for dev, every in self._checkin_every.items()
                if f"device_offline:{dev}" not in self._active
            ]
            heapq.heapify(self._checkins)
            self._supervision_stale = False
        heap = self._checkins
        while heap:
            due, dev = heap[0]
            # An entry is live while it is still the device's deadline. A device gone offline
            # between two rebuilds (there is none: every change of _active rebuilds) is
            # dropped too; its check-in that restores it pushes a new entry.
            if (
                self._last_seen[dev] + self._checkin_every[dev] == due
                and f"device_offline:{dev}" not in self._active
            ):
                return (due, 2, dev)
            heapq.heappop(heap)
        return None

    def _fire(self, out: list[Decision], due: datetime, rank: int, key: str) -> None:
        # Whatever fires, its own timer is gone or moved.
        self._timers_changed()
        if rank == 0:
            pending = self._pending.pop(key)
            payload = dict(pending.payload, due_at=_iso(due))
            self._alarm(out, pending.kind, pending.spec, pending.device, key, payload, due)
        elif rank == 1:
            self._escalate(out, self._active[key], due)
        elif rank == 2:
            spec = self._devices[key]
            payload = self._payload(
                spec,
                None,
                reason="silent",
                last_seen=_iso(self._last_seen[key]),
                checkin_interval_s=self._interval[key],
                due_at=_iso(due),
            )
            self._open(out, K.DEVICE_OFFLINE, key, f"device_offline:{key}", payload, due)
        elif rank == 3:
            self._end_flapping(out, key, due)
        elif rank == _RANK_ENTRY:
            del self._entry_due[key]
            self._intrusion(out, key, due, delayed=True)
        elif rank == _RANK_LEFT_OPEN:
            self._left_open(out, key, due)
        elif rank == 4:
            payload = {
                "rule": "inactive_for",
                "after_s": self.rules.inactivity.after_s,
                "active_hours": self.rules.inactivity.active_hours,
                "last_activity": _iso(self._last_activity) if self._last_activity else None,
                "due_at": _iso(due),
            }
            self._open(out, K.INACTIVITY, None, INACTIVITY_KEY, payload, due)
        elif rank == 5:
            self._morning_check(out, due)
            self._morning_next = self._next_morning(due)

    def _morning_check(self, out: list[Decision], due: datetime) -> None:
        assert self._morning is not None
        night_end = local_instant(due.astimezone(self._zone).date(), self._morning[0], self._zone)
        watched = self._watch_since is not None and self._watch_since <= night_end
        moved = self._last_activity is not None and self._last_activity >= night_end
        if self._mode == "normal" and watched and not moved and INACTIVITY_KEY not in self._active:
            payload = {
                "rule": "not_up_by",
                "night_end": self.rules.inactivity.night_end,
                "not_up_by": self.rules.inactivity.not_up_by,
                "last_activity": _iso(self._last_activity) if self._last_activity else None,
                "due_at": _iso(due),
            }
            self._open(out, K.INACTIVITY, None, INACTIVITY_KEY, payload, due)

    # -- conditions ----------------------------------------------------------------------------

    def _payload(
        self, spec: DeviceSpec | None, reading: Reading | None, **extra: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if spec is not None:
            payload["room"] = spec.room
            payload["role"] = spec.role
            payload["device_name"] = spec.name or spec.id
        if reading is not None:
            payload["property"] = reading.property
            payload["value"] = reading.value
        payload.update(extra)
        return payload

    def _open(
        self,
        out: list[Decision],
        kind: EventKind,
        device_id: str | None,
        key: str,
        payload: dict[str, Any],
        at: datetime,
        *,
        priority: Priority | None = None,
    ) -> _Condition | None:
        """Open a condition and emit its event; None if it was already open."""
        if key in self._active:
            return None
        cond = _Condition(key, kind, device_id, at, detail=payload, priority=priority)
        self._active[key] = cond
        self._timers_changed()
        out.append(EmitEvent(kind, device_id, key, payload, priority=priority))
        return cond

    def _restore(
        self, out: list[Decision], key: str, at: datetime, payload: dict[str, Any]
    ) -> None:
        cond = self._active.pop(key, None)
        if cond is None:
            return
        self._timers_changed()
        if cond.kind in _DETECTOR_KINDS:
            self._flap_last[key] = at
        if cond.suppressed:
            return
        restore = cond.kind.restore
        assert restore is not None  # only kinds with a restore twin are ever opened
        since = {"since": _iso(cond.since)} if cond.since else {}
        out.append(EmitEvent(restore, cond.device_id, key, {**payload, **since}))
        if cond.kind in _SIREN_KINDS and not self._siren_conditions():
            self._sirens_command(out, "siren_off", f"restored:{key}")

    def _siren_conditions(self) -> bool:
        return any(c.kind in _SIREN_KINDS and not c.suppressed for c in self._active.values())

    def _sirens_command(
        self, out: list[Decision], action: Literal["siren_on", "siren_off"], reason: str
    ) -> None:
        for siren in self._sirens:
            out.append(LocalAction(LocalCommand(device=siren, action=action), reason=reason))

    def _alarm(
        self,
        out: list[Decision],
        kind: EventKind,
        spec: DeviceSpec | None,
        device: str,
        key: str,
        payload: dict[str, Any],
        at: datetime,
    ) -> _Condition | None:
        """Raise an alarm through the flapping, confirmation, siren and escalation rules."""
        if key in self._active:
            return None
        device_id = spec.id if spec is not None else None
        if kind in _DETECTOR_KINDS:
            alarms = self._flap_alarms.setdefault(key, deque())
            while alarms and at - alarms[0] > self._flap_window:
                alarms.popleft()
            self._flap_last[key] = at
            self._timers_changed()  # a flapping device's quiet time restarts
            if len(alarms) >= self.rules.flapping.max_alarms:
                held = _Condition(key, kind, device_id, at, detail=payload, suppressed=True)
                self._active[key] = held
                self.counts["suppressed_alarms"] += 1
                self._start_flapping(out, spec, device, key, at)
                return None
            alarms.append(at)
        priority: Priority | None = None
        if kind in _DETECTOR_KINDS and self._confirm.total_seconds() > 0:
            other = self._confirming(kind, key, at)
            if other is not None:
                payload = {**payload, "confirmed": True, "confirmed_by": other}
                priority = Priority.LIFE_SAFETY
        cond = self._open(out, kind, device_id, key, payload, at, priority=priority)
        if cond is None:
            return None
        self._after_alarm(out, cond, at)
        return cond

    def _after_alarm(self, out: list[Decision], cond: _Condition, at: datetime) -> None:
        if cond.kind in _SIREN_KINDS:
            self._sirens_command(out, "siren_on", f"alarm:{cond.key}")
        if (cond.priority or cond.kind.priority) is Priority.LIFE_SAFETY:
            cond.escalate_at = at + self._escalate_after
            self._timers_changed()

    def _confirming(self, kind: EventKind, key: str, at: datetime) -> str | None:
        for other in self._active.values():
            if (
                other.kind is kind
                and other.key != key
                and not other.suppressed
                and other.since is not None
                and at - other.since <= self._confirm
            ):
                return other.device_id or other.key.partition(":")[2]
        return None

    def _escalate(self, out: list[Decision], cond: _Condition, due: datetime) -> None:
        cond.attempt += 1
        cond.escalate_at = due + self._escalate_every
        self._timers_changed()
        spec = self._devices.get(cond.device_id) if cond.device_id else None
        payload = self._payload(
            spec,
            None,
            escalates=cond.key,
            alarm_kind=cond.kind.value,
            attempt=cond.attempt,
            since=_iso(cond.since) if cond.since else None,
            due_at=_iso(due),
        )
        out.append(EmitEvent(K.ESCALATION, cond.device_id, cond.key, payload))
        self._sirens_command(out, "siren_on", f"escalation:{cond.key}")
        params = {
            "condition": cond.key,
            "kind": cond.kind.value,
            "device_id": cond.device_id,
            "room": spec.room if spec else "",
            "device_name": (spec.name or spec.id) if spec else "",
            "attempt": cond.attempt,
            "since": _iso(cond.since) if cond.since else None,
        }
        command = LocalCommand(device="secondary", action="notify", params=params)
        out.append(LocalAction(command, reason=f"escalation:{cond.key}"))

    # -- flapping ------------------------------------------------------------------------------

    def _start_flapping(
        self, out: list[Decision], spec: DeviceSpec | None, device: str, key: str, at: datetime
    ) -> None:
        self._flapping_sources.setdefault(device, set()).add(key)
        self._timers_changed()
        payload = self._payload(
            spec,
            None,
            condition_flapping=key,
            max_alarms=self.rules.flapping.max_alarms,
            window_s=self.rules.flapping.window_s,
        )
        if spec is None:
            payload["address"] = device
        self._open(out, K.FLAPPING, spec.id if spec else None, f"flapping:{device}", payload, at)

    def _flapping_devices(self) -> list[str]:
        return [
            key.partition(":")[2]
            for key, cond in self._active.items()
            if cond.kind is K.FLAPPING and not cond.suppressed
        ]

    def _flap_quiet_since(self, device: str) -> datetime:
        times = [
            self._flap_last[k]
            for k in self._flapping_sources.get(device, ())
            if k in self._flap_last
        ]
        cond = self._active.get(f"flapping:{device}")
        if cond is not None and cond.since is not None:
            times.append(cond.since)
        changes = self._contact_changes.get(device)
        if changes:
            times.append(changes[-1])
        return max(times) if times else (self._started or self._at())

    def _quiet_window(self, device: str) -> timedelta:
        """How long a flapping device must be quiet: a contact's own window, else detectors'."""
        if device in self._contact_rules and not self._flapping_sources.get(device):
            return timedelta(seconds=self.rules.contacts.flapping_window_s)
        return self._flap_window

    def _end_flapping(self, out: list[Decision], device: str, at: datetime) -> None:
        sources = sorted(self._flapping_sources.pop(device, set()))
        self._timers_changed()
        quiet = self._quiet_window(device).total_seconds()
        self._restore(out, f"flapping:{device}", at, {"quiet_s": quiet})
        spec = self._devices.get(device)
        if self._contact_changes.pop(device, None) is not None and spec is not None:
            # Its telemetry was held back: report where the contact is now.
            state = self._contact.get(device)
            payload = self._payload(spec, None, open=state, after_flapping=True)
            out.append(EmitEvent(K.CONTACT, device, f"contact:{device}", payload))
        for key in sources:
            self._flap_alarms.pop(key, None)
            cond = self._active.get(key)
            if cond is not None and cond.suppressed:
                # Still active after the flapping ended: now it is an alarm, never lost.
                cond.suppressed = False
                cond.since = at
                cond.detail = {**cond.detail, "after_flapping": True}
                out.append(EmitEvent(cond.kind, cond.device_id, key, cond.detail))
                self._after_alarm(out, cond, at)

    # -- readings ------------------------------------------------------------------------------

    def _press(
        self,
        out: list[Decision],
        spec: DeviceSpec | None,
        device: str,
        reading: Reading,
        at: datetime,
    ) -> None:
        key = f"sos:{device}"
        cond = self._active.get(key)
        if reading.retained and (cond is not None or device in self._pressed):
            return
        self._pressed.add(device)
        if spec is not None and not reading.retained:
            self._activity(out, at)
        if cond is not None and cond.since is not None and at - cond.since < self._collapse:
            self.counts["collapsed_presses"] += 1
            return
        carry: tuple[datetime | None, int] | None = None
        if cond is not None:
            if not cond.seeded:
                carry = (cond.escalate_at, cond.attempt)
            self._restore(out, key, at, {"reason": "pressed_again"})
        payload = self._payload(spec, reading)
        if spec is None:
            payload["address"] = device
        new = self._alarm(out, K.SOS, spec, device, key, payload, at)
        if new is not None and carry is not None and carry[0] is not None:
            new.escalate_at, new.attempt = carry
            self._timers_changed()  # the new alarm keeps the old one's (earlier) escalation

    def _action(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        if spec.role in SOS_ROLES and reading.value in self._sos_actions:
            self._press(out, spec, spec.id, reading, at)
        elif not reading.retained:
            self._activity(out, at)

    def _detector(
        self,
        out: list[Decision],
        kind: EventKind,
        spec: DeviceSpec | None,
        device: str,
        reading: Reading,
        at: datetime,
    ) -> None:
        key = f"{kind.value}:{device}"
        value = reading.value
        if value is True:
            if key in self._active or key in self._pending:
                return
            payload = self._payload(spec, reading)
            if spec is None:
                payload["address"] = device
            delay = self._delay_for(kind, spec.id if spec else None)
            if delay > 0:
                payload["delay_on_s"] = delay
                self._pending[key] = _Pending(
                    at + timedelta(seconds=delay), kind, spec, device, payload
                )
                self._timers_changed()
                return
            self._alarm(out, kind, spec, device, key, payload, at)
        elif value is False:
            if self._pending.pop(key, None) is not None:
                self._timers_changed()
            self._restore(out, key, at, self._payload(spec, reading))
        elif value is not None:
            self.counts["ignored_readings"] += 1

    def _unconfigured(self, out: list[Decision], reading: Reading, at: datetime) -> None:
        self.counts["unconfigured_readings"] += 1
        kind = _ALARM_PROPERTIES.get(reading.property)
        if kind is None or self._mode == "test":
            return
        if kind is K.SOS:
            if reading.value is True:
                self._press(out, None, reading.device, reading, at)
        else:
            self._detector(out, kind, None, reading.device, reading, at)

    def _link(self, out: list[Decision], reading: Reading, at: datetime) -> None:
        key = f"driver_fault:{reading.device}"
        payload = {"driver": reading.device, "property": "link", "value": reading.value}
        payload.update({k: v for k, v in reading.extra.items() if k == "reason"})
        if reading.value is False:
            self._open(out, K.DRIVER_FAULT, None, key, payload, at)
        elif reading.value is True:
            self._restore(out, key, at, payload)

    def _activity(self, out: list[Decision], at: datetime) -> None:
        # Away mode: movement is not the resident's (intrusion is the contacts' rule). A walk
        # test keeps it, so none is lost; only in normal mode does it move the inactivity clock
        # and restore its alarm.
        if self._mode == "away":
            return
        self._last_activity = at
        if self._feeding is not None:
            self._device_activity[self._feeding] = at
        if self._mode != "normal":
            return
        self._anchor = at
        self._best_valid = False  # the inactivity deadline moved
        if INACTIVITY_KEY in self._active:
            self._restore(out, INACTIVITY_KEY, at, {"reason": "activity"})

    def _motion_reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if not isinstance(value, bool):
            return
        before = self._motion.get(spec.id)
        self._motion[spec.id] = value
        if value and not reading.retained:
            self._activity(out, at)
        if value and before is not True:
            out.append(
                EmitEvent(K.MOTION, spec.id, f"motion:{spec.id}", self._payload(spec, reading))
            )

    def _contact_reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if not isinstance(value, bool):
            return
        dev = spec.id
        before = self._contact.get(dev)
        if not self._contact_state(dev, value, at):
            return
        if not reading.retained:
            self._activity(out, at)
        if before is None and reading.retained:
            return  # the first state sync after a start: nothing happened
        key = f"contact:{dev}"
        if spec.role != "door" or not self._contact_flapping(out, spec, dev, at):
            out.append(EmitEvent(K.CONTACT, dev, key, self._payload(spec, reading, open=value)))
        if spec.role != "door":
            return
        if value:
            if self._mode == "away":
                self._arm_entry(out, dev, at)
        else:
            payload = self._payload(spec, reading)
            self._restore(out, f"left_open:{dev}", at, payload)
            if self._mode == "away":
                self._restore(out, f"intrusion:{dev}", at, payload)

    def _contact_state(self, dev: str, value: bool, at: datetime) -> bool:
        """Keep a contact's state and when it opened; True if it changed."""
        before = self._contact.get(dev)
        self._contact[dev] = value
        if value == before:
            return False
        if dev not in self._contact_rules:
            return True
        if value:
            self._opened_at[dev] = at
        else:
            self._opened_at.pop(dev, None)
        self._timers_changed()  # its left-open timer started or ended
        return True

    def _contact_flapping(
        self, out: list[Decision], spec: DeviceSpec, dev: str, at: datetime
    ) -> bool:
        """Count a change; True while the contact flaps (its telemetry is held back)."""
        rules = self.rules.contacts
        changes = self._contact_changes.setdefault(dev, deque())
        changes.append(at)
        while changes and (at - changes[0]).total_seconds() > rules.flapping_window_s:
            changes.popleft()
        key = f"flapping:{dev}"
        if key in self._active:
            self._timers_changed()  # its quiet time starts again
            return True
        if not 0 < rules.flapping_changes < len(changes):
            return False
        payload = self._payload(
            spec,
            None,
            changes=len(changes),
            window_s=rules.flapping_window_s,
            changes_per_min=round(len(changes) * 60 / rules.flapping_window_s, 1),
        )
        self._open(out, K.FLAPPING, dev, key, payload, at)
        return True

    def _arm_entry(self, out: list[Decision], dev: str, at: datetime) -> None:
        """Away mode: an opened contact is an intrusion once its entry delay has passed."""
        if f"intrusion:{dev}" in self._active or dev in self._entry_due:
            return
        delay = self._contact_rules[dev][0]
        if delay > 0:
            self._entry_due[dev] = at + timedelta(seconds=delay)
            self._timers_changed()
        else:
            self._intrusion(out, dev, at, delayed=False)

    def _intrusion(self, out: list[Decision], dev: str, at: datetime, *, delayed: bool) -> None:
        if self._mode != "away":
            return
        spec = self._devices[dev]
        delay = self._contact_rules[dev][0]
        payload = self._payload(
            spec, None, property="contact_open", value=True, entry_delay_s=delay
        )
        if delayed:
            payload["due_at"] = _iso(at)
        self._open(out, K.INTRUSION, dev, f"intrusion:{dev}", payload, at)

    def _disarm(self, out: list[Decision], at: datetime) -> None:
        """Away mode ended: entry delays stop, and intrusions are restored."""
        if self._entry_due:
            self._entry_due.clear()
            self._timers_changed()
        for key in [k for k, c in self._active.items() if c.kind is K.INTRUSION]:
            self._restore(out, key, at, {"reason": "disarmed"})

    def _left_open_due(self, dev: str, since: datetime) -> datetime | None:
        """When a contact open since ``since`` is left open: after its time, inside its hours."""
        _, after, hours = self._contact_rules[dev]
        if after <= 0 or f"left_open:{dev}" in self._active:
            return None
        start = since + timedelta(seconds=after)
        for window_start, window_end in windows_from(start, hours, self._zone):
            earliest = max(window_start, start)
            if window_end > earliest:
                return earliest
        return None

    def _left_open(self, out: list[Decision], dev: str, due: datetime) -> None:
        spec = self._devices[dev]
        since = self._opened_at[dev]
        payload = self._payload(
            spec,
            None,
            property="contact_open",
            value=True,
            open_since=_iso(since),
            left_open_after_s=self._contact_rules[dev][1],
            due_at=_iso(due),
        )
        self._open(out, K.LEFT_OPEN, dev, f"left_open:{dev}", payload, due)

    def _keep_state(self, spec: DeviceSpec, reading: Reading, at: datetime) -> None:
        """Walk test: what a reading tells of the home is kept, though nothing is reported."""
        prop, value = reading.property, reading.value
        changed = True
        if prop == "contact_open" and isinstance(value, bool):
            changed = self._contact_state(spec.id, value, at)
        elif prop == "motion" and isinstance(value, bool):
            self._motion[spec.id] = value
            changed = value
        elif prop not in _INACTIVITY_SOURCES or not (value is True or prop == "action"):
            return
        if changed and not reading.retained:
            self._activity([], at)

    def _after_walk_test(self, out: list[Decision], at: datetime) -> None:
        """Report what changed during a walk test that closes an alarm."""
        for key, cond in list(self._active.items()):
            if cond.kind is K.LEFT_OPEN and self._contact.get(str(cond.device_id)) is not True:
                self._restore(out, key, at, {"reason": "closed"})
        inactivity = self._active.get(INACTIVITY_KEY)
        last = self._last_activity
        if (
            inactivity is not None
            and last is not None
            and (inactivity.since is None or last > inactivity.since)
        ):
            self._restore(out, INACTIVITY_KEY, at, {"reason": "activity"})

    def _battery_reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return
        dev = spec.id
        threshold = self.rules.battery_low_percent
        before = self._battery_pct.get(dev)
        self._battery_pct[dev] = float(value)
        crossed = before is not None and (before < threshold) != (value < threshold)
        last = self._battery_sent.get(dev)
        if crossed or last is None or at - last >= self._battery_every:
            self._battery_sent[dev] = at
            payload = self._payload(spec, reading, low=value < threshold)
            out.append(EmitEvent(K.BATTERY, dev, f"battery:{dev}", payload))
        self._battery_state(out, spec, reading, at)

    def _battery_state(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        dev = spec.id
        flag = self._battery_flag.get(dev)
        pct = self._battery_pct.get(dev)
        low = flag is True or (pct is not None and pct < self.rules.battery_low_percent)
        payload = self._payload(spec, reading, threshold=self.rules.battery_low_percent)
        if low:
            self._open(out, K.LOW_BATTERY, dev, f"low_battery:{dev}", payload, at)
        elif f"low_battery:{dev}" in self._active:
            self._restore(out, f"low_battery:{dev}", at, payload)

    def _walk_test(self, out: list[Decision], spec: DeviceSpec, reading: Reading) -> None:
        payload = {
            **self._payload(spec, reading),
            "would_raise": self._would_raise(spec, reading),
        }
        out.append(EmitEvent(K.TEST, spec.id, f"test:{spec.id}", payload, test=True))

    def _would_raise(self, spec: DeviceSpec, reading: Reading) -> str | None:
        prop, value = reading.property, reading.value
        kind: EventKind | None = None
        if prop in _ALARM_PROPERTIES and value is True:
            kind = _ALARM_PROPERTIES[prop]
        elif prop == "action" and spec.role in SOS_ROLES and value in self._sos_actions:
            kind = K.SOS
        elif prop == "tamper" and value is True:
            kind = K.TAMPER
        elif (prop == "battery_low" and value is True) or (
            prop == "battery"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value < self.rules.battery_low_percent
        ):
            kind = K.LOW_BATTERY
        elif prop == "available" and value is False:
            kind = K.DEVICE_OFFLINE
        return kind.value if kind is not None else None


def _kind_of(value: str) -> EventKind | None:
    try:
        return EventKind(value)
    except ValueError:
        return None
