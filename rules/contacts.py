"""Door and window contacts (role ``door``, ``[rules.contacts]``): intrusion, left open, flapping.

In ``away`` mode an opening is an ``intrusion:<device>`` alarm once its entry delay has passed
with the mode still away. A contact open for ``left_open_after_s`` (inside ``left_open_hours``)
is a ``left_open:<device>`` alarm. More than ``flapping_changes`` changes within
``flapping_window_s`` open ``flapping:<device>`` and hold its ``contact`` telemetry back; the
end of the flapping is :mod:`rules.flapping`'s, which asks here for the contact's side of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from contract.devices import DeviceSpec
from contract.wire import EventKind, Reading
from rules.config import hours_window
from rules.decisions import Decision, EmitEvent
from rules.inactivity import Inactivity
from rules.localtime import windows_from
from rules.state import EngineState, Timer, iso, payload

__all__ = ["RANK_ENTRY", "RANK_FLAPPING", "RANK_LEFT_OPEN", "Contacts"]

#: Timer rank of a flapping device's quiet window (:mod:`rules.flapping`'s; a contact's
#: flapping moves it).
RANK_FLAPPING = 3
#: Timer ranks of the entry delay and the left-open alarm.
RANK_ENTRY = 6
RANK_LEFT_OPEN = 7

K = EventKind


class Contacts:
    def __init__(
        self, state: EngineState, devices: Sequence[DeviceSpec], activity: Inactivity
    ) -> None:
        self.state = state
        self.activity = activity
        self.settings = state.rules.contacts
        self.flapping_window = timedelta(seconds=self.settings.flapping_window_s)
        self.rules = {d.id: self.rule_for(d) for d in devices if d.role == "door"}
        # Every contact's state; for doors, when each open one opened, recent changes
        # (flapping) and the entry delays running.
        self.contact: dict[str, bool] = {}
        self.opened_at: dict[str, datetime] = {}
        self.changes: dict[str, deque[datetime]] = {}
        self.entry_due: dict[str, datetime] = {}

    def rule_for(self, spec: DeviceSpec) -> tuple[float, float, tuple[Any, Any]]:
        """(entry delay, left-open seconds (0 off), left-open hours) of a door contact."""
        contacts = self.settings
        entry, after, hours = (
            contacts.entry_delay_s,
            contacts.left_open_after_s,
            contacts.left_open_hours,
        )
        front = contacts.front_door
        if spec.id == front.device:
            after, hours = front.left_open_after_s, front.left_open_hours
        override = self.state.rules.devices.get(spec.id)
        if override is not None:
            entry = override.entry_delay_s if override.entry_delay_s is not None else entry
            after = override.left_open_after_s if override.left_open_after_s is not None else after
            hours = override.left_open_hours or hours
        return entry, after, hours_window(hours)

    def timers(self, candidates: list[Timer]) -> None:
        """Add the entry delays and left-open alarms due."""
        for dev, due in self.entry_due.items():
            candidates.append((due, RANK_ENTRY, dev))
        if self.state.mode != "test":
            for dev, since in self.opened_at.items():
                left_open = self.left_open_due(dev, since)
                if left_open is not None:
                    candidates.append((left_open, RANK_LEFT_OPEN, dev))

    def reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if not isinstance(value, bool):
            return
        dev = spec.id
        before = self.contact.get(dev)
        if not self.change(dev, value, at):
            return
        if not reading.retained:
            self.activity.activity(out, at)
        if before is None and reading.retained:
            return  # the first state sync after a start: nothing happened
        key = f"contact:{dev}"
        if spec.role != "door" or not self.flapping(out, spec, dev, at):
            out.append(EmitEvent(K.CONTACT, dev, key, payload(spec, reading, open=value)))
        if spec.role != "door":
            return
        state = self.state
        if value:
            if state.mode == "away":
                self.arm_entry(out, dev, at)
        else:
            detail = payload(spec, reading)
            state.restore(out, f"left_open:{dev}", at, detail)
            if state.mode == "away":
                state.restore(out, f"intrusion:{dev}", at, detail)

    def change(self, dev: str, value: bool, at: datetime) -> bool:
        """Keep a contact's state and when it opened; True if it changed."""
        before = self.contact.get(dev)
        self.contact[dev] = value
        if value == before:
            return False
        if dev not in self.rules:
            return True
        old = self.left_open_timer(dev)
        if value:
            self.opened_at[dev] = at
        else:
            self.opened_at.pop(dev, None)
        self.state.rare_timer_replaced(old, self.left_open_timer(dev))
        return True

    def left_open_timer(self, dev: str) -> Timer | None:
        """The contact's left-open timer as :meth:`timers` lists it, if it has one."""
        since = self.opened_at.get(dev)
        if since is None or self.state.mode == "test":
            return None
        due = self.left_open_due(dev, since)
        return None if due is None else (due, RANK_LEFT_OPEN, dev)

    def flapping(self, out: list[Decision], spec: DeviceSpec, dev: str, at: datetime) -> bool:
        """Count a change; True while the contact flaps (its telemetry is held back)."""
        settings = self.settings
        changes = self.changes.setdefault(dev, deque())
        changes.append(at)
        while changes and (at - changes[0]).total_seconds() > settings.flapping_window_s:
            changes.popleft()
        key = f"flapping:{dev}"
        if key in self.state.active:
            # Its quiet time starts again: the end of its flapping moves later.
            self.state.rare_timer_later(RANK_FLAPPING, dev)
            return True
        if not 0 < settings.flapping_changes < len(changes):
            return False
        detail = payload(
            spec,
            None,
            changes=len(changes),
            window_s=settings.flapping_window_s,
            changes_per_min=round(len(changes) * 60 / settings.flapping_window_s, 1),
        )
        self.state.open(out, K.FLAPPING, dev, key, detail, at)
        return True

    def last_change(self, dev: str) -> datetime | None:
        """The contact's last change counted for flapping, if any."""
        changes = self.changes.get(dev)
        return changes[-1] if changes else None

    def end_flapping(self, out: list[Decision], dev: str) -> None:
        """Its flapping ended: if its telemetry was held back, report where the contact is now."""
        spec = self.state.devices.get(dev)
        if self.changes.pop(dev, None) is not None and spec is not None:
            detail = payload(spec, None, open=self.contact.get(dev), after_flapping=True)
            out.append(EmitEvent(K.CONTACT, dev, f"contact:{dev}", detail))

    def arm_entry(self, out: list[Decision], dev: str, at: datetime) -> None:
        """Away mode: an opened contact is an intrusion once its entry delay has passed."""
        if f"intrusion:{dev}" in self.state.active or dev in self.entry_due:
            return
        delay = self.rules[dev][0]
        if delay > 0:
            self.entry_due[dev] = at + timedelta(seconds=delay)
            self.state.rare_timers_changed()
        else:
            self.intrusion(out, dev, at, delayed=False)

    def entry_passed(self, out: list[Decision], dev: str, due: datetime) -> None:
        """An entry delay ran out."""
        del self.entry_due[dev]
        self.intrusion(out, dev, due, delayed=True)

    def intrusion(self, out: list[Decision], dev: str, at: datetime, *, delayed: bool) -> None:
        state = self.state
        if state.mode != "away":
            return
        spec = state.devices[dev]
        delay = self.rules[dev][0]
        detail = payload(spec, None, property="contact_open", value=True, entry_delay_s=delay)
        if delayed:
            detail["due_at"] = iso(at)
        state.open(out, K.INTRUSION, dev, f"intrusion:{dev}", detail, at)

    def disarm(self, out: list[Decision], at: datetime) -> None:
        """Away mode ended: entry delays stop, and intrusions are restored."""
        state = self.state
        if self.entry_due:
            self.entry_due.clear()
            state.rare_timers_changed()
        for key in [k for k, c in state.active.items() if c.kind is K.INTRUSION]:
            state.restore(out, key, at, {"reason": "disarmed"})

    def left_open_due(self, dev: str, since: datetime) -> datetime | None:
        """When a contact open since ``since`` is left open: after its time, inside its hours."""
        _, after, hours = self.rules[dev]
        if after <= 0 or f"left_open:{dev}" in self.state.active:
            return None
        start = since + timedelta(seconds=after)
        for window_start, window_end in windows_from(start, hours, self.state.zone):
            earliest = max(window_start, start)
            if window_end > earliest:
                return earliest
        return None

    def left_open(self, out: list[Decision], dev: str, due: datetime) -> None:
        spec = self.state.devices[dev]
        since = self.opened_at[dev]
        detail = payload(
            spec,
            None,
            property="contact_open",
            value=True,
            open_since=iso(since),
            left_open_after_s=self.rules[dev][1],
            due_at=iso(due),
        )
        self.state.open(out, K.LEFT_OPEN, dev, f"left_open:{dev}", detail, due)

    def after_walk_test(self, out: list[Decision], at: datetime) -> None:
        """A door closed during a walk test restores its ``left_open`` alarm."""
        state = self.state
        for key, cond in list(state.active.items()):
            if cond.kind is K.LEFT_OPEN and self.contact.get(str(cond.device_id)) is not True:
                state.restore(out, key, at, {"reason": "closed"})
