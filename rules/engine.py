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
  needs the engine to have watched since ``night_end``. While dispatch says the household is
  away or in hospital (:meth:`RuleEngine.set_absence`, until an end instant) it rests too: it
  counts afresh from the end instant, and an open inactivity alarm is restored when it begins.
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

:class:`RuleEngine` routes readings and fires timers; each rule lives in its own module with
its own state, and gets the shared state (:mod:`rules.state`: time, mode, devices, the open
conditions) passed in: :mod:`rules.alarms` (SOS, detectors, debounce, confirmation,
escalation), :mod:`rules.flapping`, :mod:`rules.contacts` (intrusion, left open, a contact's
flapping), :mod:`rules.inactivity` (the activity clock, inactivity, not up by),
:mod:`rules.supervision`, :mod:`rules.troubles` (tamper, battery, driver link),
:mod:`rules.walktest`; :mod:`rules.recall` exports and takes back their memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract.devices import DeviceSpec
from contract.wire import EventKind, Reading
from rules.alarms import RANK_DELAY_ON, RANK_ESCALATION, Alarms
from rules.config import RuleConfigError, RuleSet
from rules.contacts import RANK_ENTRY, RANK_LEFT_OPEN, Contacts
from rules.decisions import ActiveCondition, ActiveConditionLike, Decision, EmitEvent
from rules.flapping import RANK_FLAPPING, Flapping
from rules.inactivity import RANK_AFTER, RANK_MORNING, Inactivity
from rules.memory import EngineMemory
from rules.recall import Rules, export_memory, take_back
from rules.state import (
    ALARM_PROPERTIES,
    INACTIVITY_KEY,
    MODES,
    Condition,
    EngineState,
    Mode,
    Pending,
    Timer,
    iso,
    payload,
)
from rules.supervision import RANK_CHECKIN, Supervision
from rules.troubles import Troubles
from rules.walktest import WalkTest

__all__ = ["Mode", "RuleEngine"]

K = EventKind


class RuleEngine:
    """Decides alarms, troubles, telemetry and local actions for one home."""

    def __init__(
        self, rules: RuleSet, devices: Sequence[DeviceSpec], *, timezone: str = "UTC"
    ) -> None:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RuleConfigError([f"gateway.timezone: unknown time zone {timezone!r}"]) from exc
        rules.check_devices(devices)
        self.rules = rules
        state = self._state = EngineState(rules, devices, zone)
        # The rules, each with its own state; those that raise alarms or note activity get
        # the rule they hand over to.
        self._activity = Inactivity(state)
        self._contacts = Contacts(state, devices, self._activity)
        self._flapping = Flapping(state, self._contacts)
        self._alarms = Alarms(state, self._flapping, self._activity)
        self._supervision = Supervision(state, devices)
        self._troubles = Troubles(state)
        self._walk_test = WalkTest(state, self._contacts, self._activity, self._alarms.sos_actions)
        self._parts = Rules(
            state,
            self._alarms,
            self._activity,
            self._contacts,
            self._flapping,
            self._supervision,
            self._troubles,
        )
        self._other_seeded: dict[str, ActiveCondition] = {}
        # Resumed from a memory (see resume): the clocks run on instead of starting afresh.
        self._resumed = False
        self._restart_on_start = False
        self._memory_saved_at: datetime | None = None
        #: Bumped whenever the memory may have changed; ``checkins`` for check-ins alone.
        self.revision = 0
        self.checkins = 0
        self.counts = state.counts
        # The earliest timer is asked for on every call (and by replay after every frame), so
        # it is kept instead of walking every timer each time (see _earliest). Supervision
        # deadlines move on every reading and keep a heap of their own (rules.supervision).
        # The other timers (delay_on, escalations, flapping, contacts, the morning check)
        # change only on rare events, each of which calls state.timers_changed() and so also
        # rebuilds the heap. Inactivity is cheap and is read afresh each time.
        # The rules' own tables, under the names a walk over every timer reads them by.
        self._active: dict[str, Condition] = state.active
        self._pending: dict[str, Pending] = self._alarms.pending
        self._interval: dict[str, float] = self._supervision.interval
        self._last_seen: dict[str, datetime] = self._supervision.last_seen
        self._checkin_every: dict[str, timedelta] = self._supervision.every
        self._flap_window: timedelta = self._flapping.window

    # -- public API ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._state.mode

    def feed(self, reading: Reading, now: datetime) -> list[Decision]:
        out = self._enter(now)
        state = self._state
        at = state.at()
        state.counts["readings"] += 1
        prop, value = reading.property, reading.value
        if prop == "seen":
            self.checkins += 1
        else:
            self.revision += 1
        if prop == "link":
            self._troubles.link(out, reading, at)
            return out
        spec = state.devices.get(reading.device) or state.by_address.get(
            (reading.driver, reading.device)
        )
        if spec is None:
            self._alarms.unconfigured(out, reading, at)
            return out
        dev = spec.id
        state.feeding = dev
        if prop == "available" and value is False:
            self._supervision.unavailable(out, spec, reading, at)  # in walk-test mode too
        else:
            self._supervision.checkin(out, spec, reading, at)
        if prop == "seen":
            return out  # a check-in that changed nothing: no walk-test tick, no telemetry
        if state.mode == "test":
            self._walk_test.reading(out, spec, reading, at)
            return out
        if prop in ALARM_PROPERTIES:
            kind = ALARM_PROPERTIES[prop]
            if kind is K.SOS:
                if value is True:
                    self._alarms.press(out, spec, dev, reading, at)
            else:
                self._alarms.detector(out, kind, spec, dev, reading, at)
        elif prop == "action":
            if isinstance(value, str) and value:
                self._alarms.action(out, spec, reading, at)
        elif prop == "motion":
            self._activity.motion_reading(out, spec, reading, at)
        elif prop == "contact_open":
            self._contacts.reading(out, spec, reading, at)
        elif prop == "tamper":
            self._troubles.tamper(out, spec, reading, at)
        elif prop == "battery_low":
            self._troubles.battery_low(out, spec, reading, at)
        elif prop == "battery":
            self._troubles.battery(out, spec, reading, at)
        elif prop == "available":
            pass  # handled above, with supervision
        elif prop == "test":
            if value is True:
                detail = payload(spec, reading, would_raise=None)
                out.append(EmitEvent(K.TEST, dev, f"test:{dev}", detail, test=True))
        else:
            state.counts["ignored_readings"] += 1
        return out

    def tick(self, now: datetime) -> list[Decision]:
        return self._enter(now)

    def set_mode(self, mode: Mode, now: datetime) -> list[Decision]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        out = self._enter(now)
        state = self._state
        at = state.at()
        if mode == state.mode:
            return out
        before = state.mode
        state.mode = mode
        self.revision += 1
        state.timers_changed()
        if mode == "test":
            self._alarms.pending.clear()
        if before == "away":
            self._contacts.disarm(out, at)
        if mode == "away" and INACTIVITY_KEY in state.active:
            state.restore(out, INACTIVITY_KEY, at, {"reason": "away"})
        if before == "test":
            self._walk_test.ended(out, at)
        if mode == "normal":
            self._activity.restart(at)
        return out

    def set_absence(self, until: datetime | None, now: datetime) -> list[Decision]:
        """Dispatch's word that the household is away or in hospital until ``until`` (None: at
        home): the inactivity rule rests until then (:mod:`rules.inactivity`)."""
        if until is not None and until.tzinfo is None:
            raise ValueError("the rule engine needs aware datetimes (UTC)")
        out = self._enter(now)
        if self._activity.set_absence(out, until, self._state.at()):
            self.revision += 1
        return out

    def acknowledge(self, condition: str, now: datetime) -> list[Decision]:
        out = self._enter(now)
        if self._alarms.acknowledge(out, condition, self._state.at()):
            self.revision += 1
        return out

    def seed_active(self, conditions: Iterable[ActiveConditionLike]) -> None:
        """Take over the conditions that were open before a restart (from the buffer).

        The kind is read from the condition key first: an escalation event carries the
        escalated alarm's key. Keys of no alarm or trouble kind are kept and reported only.
        """
        active = self._state.active
        for c in conditions:
            key = str(c.condition)
            kind = _kind_of(key.partition(":")[0]) or _kind_of(str(getattr(c, "kind", "")))
            device_id = c.device_id if isinstance(c.device_id, str) else None
            if kind is None or kind.restore is None or kind.is_restore:
                self._other_seeded[key] = ActiveCondition(key, kind or K.ESCALATION, device_id)
                continue
            if key not in active:
                since = getattr(c, "at", None)
                since = since if isinstance(since, datetime) and since.tzinfo is not None else None
                active[key] = Condition(key, kind, device_id, since, seeded=True)
        self.revision += 1
        self._state.timers_changed()

    def resume(
        self, conditions: Iterable[ActiveConditionLike], memory: EngineMemory | None
    ) -> None:
        """Take over after a restart: the conditions the buffer holds open, then the memory.

        The buffer says which conditions are open (what dispatch was told); the memory adds
        what they carried (escalation schedule, acknowledgement) and everything else the rules
        keep: clocks, states, timers. Call before the first :meth:`feed` or :meth:`tick`.
        """
        if self._state.started is not None:
            raise RuntimeError("resume() must come before the engine's first call")
        self.seed_active(conditions)
        if memory is None:
            return
        # A walk test ends with a restart; that is a return to normal, counted afresh.
        self._restart_on_start = memory.mode == "test"
        self._memory_saved_at = memory.saved_at
        take_back(self._parts, memory)
        self._resumed = True
        self.revision += 1
        self._state.timers_changed()

    def memory(self) -> EngineMemory:
        """Everything a restarted engine needs to go on where this one is (plain data)."""
        return export_memory(self._parts)

    def next_deadline(self) -> datetime | None:
        """The earliest time at which :meth:`tick` could decide something."""
        if self._state.started is None:
            return None
        best = self._earliest()
        return best[0] if best else None

    def snapshot(self) -> dict[str, Any]:
        state = self._state
        active = [
            {
                "kind": c.kind.value,
                "device_id": c.device_id,
                "condition": c.key,
                "since": iso(c.since) if c.since else None,
                "detail": dict(c.detail),
            }
            for c in state.active.values()
            if not c.suppressed
        ]
        deadline = self.next_deadline()
        last_activity = self._activity.last_activity
        return {
            "mode": state.mode,
            "active": active,
            "suppressed": sorted(c.key for c in state.active.values() if c.suppressed),
            "pending": {k: iso(p.due) for k, p in sorted(self._alarms.pending.items())},
            "seeded_other": sorted(self._other_seeded),
            "last_activity": iso(last_activity) if last_activity else None,
            "inactivity_due": iso(due) if (due := self._activity.watch()) else None,
            "absent_until": iso(absent) if (absent := self._activity.absent_until) else None,
            "next_deadline": iso(deadline) if deadline else None,
            "counts": dict(state.counts),
        }

    # -- time and timers -----------------------------------------------------------------------

    def _enter(self, now: datetime) -> list[Decision]:
        if now.tzinfo is None:
            raise ValueError("the rule engine needs aware datetimes (UTC)")
        if now.tzinfo is not UTC:
            now = now.astimezone(UTC)
        state = self._state
        if state.now is not None and now < state.now:
            now = state.now
        state.now = now
        out: list[Decision] = []
        if state.started is None:
            self._start(out, now)
        while True:
            best = self._earliest()
            if best is None or best[0] > now:
                return out
            self.revision += 1
            self._fire(out, *best)

    def _start(self, out: list[Decision], now: datetime) -> None:
        self._state.started = now
        self._supervision.start(now)
        if not self._resumed:
            self._activity.restart(now)
            return
        # Resumed: the clocks run on from the memory; the morning check is the next one due
        # after the memory was saved, so one that fell due while the gateway was down fires.
        saved = self._memory_saved_at or now
        self._activity.morning_next = self._activity.next_morning(min(saved, now))
        if self._restart_on_start:
            self._walk_test.ended(out, now)
            self._activity.restart(now)
        self._state.timers_changed()

    def _earliest(self) -> Timer | None:
        """The earliest timer as (due, rank, key); ties go by rank, then key."""
        state = self._state
        if state.best_valid:
            return state.best
        if state.timers_stale:
            state.rare_best = self._scan_timers()
            state.timers_stale = False
        best = state.rare_best
        candidate = self._supervision.earliest()
        if candidate is not None and (best is None or candidate < best):
            best = candidate
        due = self._activity.watch()
        if due is not None and (best is None or (due, RANK_AFTER, "after") < best):
            best = (due, RANK_AFTER, "after")
        state.best = best
        state.best_valid = True
        return best

    def _scan_timers(self) -> Timer | None:
        """The earliest of the rare timers: all but supervision's and inactivity's."""
        candidates: list[Timer] = []
        self._alarms.timers(candidates)
        self._flapping.timers(candidates)
        morning = self._activity.morning_timer()
        if morning is not None:
            candidates.append(morning)
        self._contacts.timers(candidates)
        return min(candidates, default=None)

    def _fire(self, out: list[Decision], due: datetime, rank: int, key: str) -> None:
        # Whatever fires, its own timer is gone or moved.
        self._state.timers_changed()
        if rank == RANK_DELAY_ON:
            self._alarms.delay_passed(out, key, due)
        elif rank == RANK_ESCALATION:
            self._alarms.escalate(out, key, due)
        elif rank == RANK_CHECKIN:
            self._supervision.silent(out, key, due)
        elif rank == RANK_FLAPPING:
            self._flapping.end(out, key, due)
        elif rank == RANK_ENTRY:
            self._contacts.entry_passed(out, key, due)
        elif rank == RANK_LEFT_OPEN:
            self._contacts.left_open(out, key, due)
        elif rank == RANK_AFTER:
            self._activity.inactive(out, due)
        elif rank == RANK_MORNING:
            self._activity.morning_check(out, due)

    # -- the rules' own timers, under the names a walk over every timer reads them by ---------

    @property
    def _checkins(self) -> list[tuple[datetime, str]]:
        return self._supervision.heap

    @property
    def _morning_next(self) -> datetime | None:
        return self._activity.morning_next

    def _flapping_devices(self) -> list[str]:
        return self._flapping.devices()

    def _flap_quiet_since(self, device: str) -> datetime:
        return self._flapping.quiet_since(device)

    def _inactivity_watch(self) -> datetime | None:
        return self._activity.watch()


def _kind_of(value: str) -> EventKind | None:
    try:
        return EventKind(value)
    except ValueError:
        return None
