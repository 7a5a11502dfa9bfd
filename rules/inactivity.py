"""The activity clock: the inactivity alarm and the morning "not up by" check.

Activity is motion, a contact change or a button press of a configured device. In ``normal``
mode it moves the inactivity clock (counted inside ``active_hours`` only) and restores an open
``inactivity:-`` alarm; a walk test keeps it without moving the clock; in ``away`` mode it is
not the resident's and is ignored. The morning check raises the same alarm when nothing moved
between ``night_end`` and ``not_up_by`` local time, if the engine watched since ``night_end``.

While the household is absent (dispatch marked it away or in hospital, until an end instant) the
count rests: it starts afresh at the end instant, activity meanwhile does not move it (it is not
the resident's), an open inactivity alarm is restored when the absence begins, and the morning
check needs the engine to have watched since the absence ended.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.devices import DeviceSpec
from contract.wire import EventKind, Reading
from rules.decisions import Decision, EmitEvent
from rules.localtime import ActiveClock, local_instant
from rules.state import INACTIVITY_KEY, EngineState, Timer, iso, payload

__all__ = ["RANK_AFTER", "RANK_MORNING", "Inactivity"]

#: Timer ranks of the inactivity alarm and the morning check.
RANK_AFTER = 4
RANK_MORNING = 5


class Inactivity:
    def __init__(self, state: EngineState) -> None:
        self.state = state
        self.settings = state.rules.inactivity
        self.window = self.settings.window()
        self.morning = self.settings.morning()
        self.clock = ActiveClock(self.window, state.zone)
        # When the count (re)started, the last activity, when watching began.
        self.anchor: datetime | None = None
        self.due_cache: tuple[datetime, datetime | None] | None = None
        self.last_activity: datetime | None = None
        self.watch_since: datetime | None = None
        self.morning_next: datetime | None = None
        self.device_activity: dict[str, datetime] = {}
        self.motion: dict[str, bool] = {}
        #: The household is away or in hospital until then (dispatch's word); None: at home.
        self.absent_until: datetime | None = None

    def restart(self, at: datetime) -> None:
        """Count afresh from ``at`` (a start, or a return to ``normal``), or from the end of an
        absence still under way."""
        start = at
        if self.absent_until is not None and self.absent_until > at:
            start = self.absent_until
        self.anchor = start
        self.watch_since = start
        self.morning_next = self.next_morning(at)
        self.state.timers_changed()

    def absent(self, at: datetime) -> bool:
        return self.absent_until is not None and at < self.absent_until

    def set_absence(self, out: list[Decision], until: datetime | None, at: datetime) -> bool:
        """The household is away or in hospital until ``until`` (None: back home). True if that
        changed anything."""
        if until is not None and until <= at:
            until = None  # already over: nothing to suppress
        before = self.absent_until
        if until == before:
            return False
        self.absent_until = until
        state = self.state
        if until is not None:
            # The count starts afresh when the absence ends; nothing watched before counts for
            # the morning check either.
            self.anchor = until
            self.watch_since = until
            if INACTIVITY_KEY in state.active:
                state.restore(out, INACTIVITY_KEY, at, {"reason": "absent"})
        elif before is not None and at < before:
            self.restart(at)  # back early: count from now
        state.best_valid = False
        state.timers_changed()
        return True

    def next_morning(self, after: datetime) -> datetime | None:
        if self.morning is None:
            return None
        zone = self.state.zone
        day = after.astimezone(zone).date() - timedelta(days=1)
        for _ in range(4):
            instant = local_instant(day, self.morning[1], zone)
            if instant > after:
                return instant
            day += timedelta(days=1)
        return None  # pragma: no cover - a local date always has a later not_up_by

    def due(self) -> datetime | None:
        anchor = self.anchor
        if anchor is None:
            return None
        if self.due_cache is None or self.due_cache[0] != anchor:
            due = self.clock.seconds_due(anchor, self.settings.after_s)
            self.due_cache = (anchor, due)
        return self.due_cache[1]

    def watch(self) -> datetime | None:
        """When the inactivity alarm is due, if it is being watched for at all."""
        state = self.state
        if not self.settings.enabled or state.mode != "normal" or INACTIVITY_KEY in state.active:
            return None
        return self.due()

    def morning_timer(self) -> Timer | None:
        if self.settings.enabled and self.morning_next is not None:
            return (self.morning_next, RANK_MORNING, "morning")
        return None

    def activity(self, out: list[Decision], at: datetime) -> None:
        # Away mode: movement is not the resident's (intrusion is the contacts' rule). A walk
        # test keeps it, so none is lost; only in normal mode does it move the inactivity clock
        # and restore its alarm.
        state = self.state
        if state.mode == "away":
            return
        self.last_activity = at
        if state.feeding is not None:
            self.device_activity[state.feeding] = at
        if state.mode != "normal" or self.absent(at):
            return
        self.anchor = at
        state.best_valid = False  # the inactivity deadline moved
        if INACTIVITY_KEY in state.active:
            state.restore(out, INACTIVITY_KEY, at, {"reason": "activity"})

    def motion_reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if not isinstance(value, bool):
            return
        before = self.motion.get(spec.id)
        self.motion[spec.id] = value
        if value and not reading.retained:
            self.activity(out, at)
        if value and before is not True:
            out.append(
                EmitEvent(EventKind.MOTION, spec.id, f"motion:{spec.id}", payload(spec, reading))
            )

    def inactive(self, out: list[Decision], due: datetime) -> None:
        """The inactivity alarm fell due."""
        detail = {
            "rule": "inactive_for",
            "after_s": self.settings.after_s,
            "active_hours": self.settings.active_hours,
            "last_activity": iso(self.last_activity) if self.last_activity else None,
            "due_at": iso(due),
        }
        self.state.open(out, EventKind.INACTIVITY, None, INACTIVITY_KEY, detail, due)

    def morning_check(self, out: list[Decision], due: datetime) -> None:
        """The morning check fell due: raise the alarm if nothing moved since night's end."""
        assert self.morning is not None
        state = self.state
        zone = state.zone
        night_end = local_instant(due.astimezone(zone).date(), self.morning[0], zone)
        watched = self.watch_since is not None and self.watch_since <= night_end
        moved = self.last_activity is not None and self.last_activity >= night_end
        if state.mode == "normal" and watched and not moved and INACTIVITY_KEY not in state.active:
            detail = {
                "rule": "not_up_by",
                "night_end": self.settings.night_end,
                "not_up_by": self.settings.not_up_by,
                "last_activity": iso(self.last_activity) if self.last_activity else None,
                "due_at": iso(due),
            }
            state.open(out, EventKind.INACTIVITY, None, INACTIVITY_KEY, detail, due)
        self.morning_next = self.next_morning(due)

    def after_walk_test(self, out: list[Decision], at: datetime) -> None:
        """Activity during a walk test restores an inactivity alarm raised before it."""
        inactivity = self.state.active.get(INACTIVITY_KEY)
        last = self.last_activity
        if (
            inactivity is not None
            and last is not None
            and (inactivity.since is None or last > inactivity.since)
        ):
            self.state.restore(out, INACTIVITY_KEY, at, {"reason": "activity"})
