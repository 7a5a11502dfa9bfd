"""Flapping: a device whose alarms (or, for a door contact, changes) come too fast.

Beyond ``flapping.max_alarms`` alarms of a detector condition within ``flapping.window_s``,
further alarms and their restores are held back and one ``flapping:<device>`` trouble is raised
(a contact's own count is :mod:`rules.contacts`'). After a quiet window it is restored, and a
condition still active then is raised at that moment, so a held-back alarm is never lost.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

from contract.devices import DeviceSpec
from contract.wire import EventKind
from rules.contacts import RANK_FLAPPING, Contacts
from rules.decisions import Decision, EmitEvent
from rules.state import Condition, EngineState, Timer, payload

__all__ = ["RANK_FLAPPING", "Flapping"]


class Flapping:
    def __init__(self, state: EngineState, contacts: Contacts) -> None:
        self.state = state
        self.contacts = contacts
        self.window = timedelta(seconds=state.rules.flapping.window_s)
        self.max_alarms = state.rules.flapping.max_alarms
        #: Recent alarms of each detector condition, and the conditions each device flaps with.
        self.alarms: dict[str, deque[datetime]] = {}
        self.sources: dict[str, set[str]] = {}

    def hold(
        self,
        out: list[Decision],
        kind: EventKind,
        spec: DeviceSpec | None,
        device: str,
        key: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> bool:
        """Count a detector alarm; True if it is held back (the device flaps)."""
        state = self.state
        alarms = self.alarms.setdefault(key, deque())
        while alarms and at - alarms[0] > self.window:
            alarms.popleft()
        state.flap_last[key] = at
        state.rare_timers_changed()  # a flapping device's quiet time restarts
        if len(alarms) >= self.max_alarms:
            device_id = spec.id if spec is not None else None
            held = Condition(key, kind, device_id, at, detail=detail, suppressed=True)
            state.active[key] = held
            state.counts["suppressed_alarms"] += 1
            self.start(out, spec, device, key, at)
            return True
        alarms.append(at)
        return False

    def start(
        self, out: list[Decision], spec: DeviceSpec | None, device: str, key: str, at: datetime
    ) -> None:
        self.sources.setdefault(device, set()).add(key)
        self.state.rare_timers_changed()
        detail = payload(
            spec,
            None,
            condition_flapping=key,
            max_alarms=self.max_alarms,
            window_s=self.state.rules.flapping.window_s,
        )
        if spec is None:
            detail["address"] = device
        device_id = spec.id if spec else None
        self.state.open(out, EventKind.FLAPPING, device_id, f"flapping:{device}", detail, at)

    def devices(self) -> list[str]:
        return [
            key.partition(":")[2]
            for key, cond in self.state.active.items()
            if cond.kind is EventKind.FLAPPING and not cond.suppressed
        ]

    def timers(self, candidates: list[Timer]) -> None:
        """Add the end of each flapping device's quiet window."""
        for dev in self.devices():
            candidates.append((self.quiet_since(dev) + self.quiet_window(dev), RANK_FLAPPING, dev))

    def quiet_since(self, device: str) -> datetime:
        state = self.state
        times = [state.flap_last[k] for k in self.sources.get(device, ()) if k in state.flap_last]
        cond = state.active.get(f"flapping:{device}")
        if cond is not None and cond.since is not None:
            times.append(cond.since)
        changed = self.contacts.last_change(device)
        if changed is not None:
            times.append(changed)
        return max(times) if times else (state.started or state.at())

    def quiet_window(self, device: str) -> timedelta:
        """How long a flapping device must be quiet: a contact's own window, else detectors'."""
        if device in self.contacts.rules and not self.sources.get(device):
            return self.contacts.flapping_window
        return self.window

    def end(self, out: list[Decision], device: str, at: datetime) -> None:
        state = self.state
        sources = sorted(self.sources.pop(device, set()))
        state.rare_timers_changed()
        quiet = self.quiet_window(device).total_seconds()
        state.restore(out, f"flapping:{device}", at, {"quiet_s": quiet})
        self.contacts.end_flapping(out, device)
        for key in sources:
            self.alarms.pop(key, None)
            cond = state.active.get(key)
            if cond is not None and cond.suppressed:
                # Still active after the flapping ended: now it is an alarm, never lost.
                cond.suppressed = False
                cond.since = at
                cond.detail = {**cond.detail, "after_flapping": True}
                out.append(EmitEvent(cond.kind, cond.device_id, key, cond.detail))
                state.after_alarm(out, cond, at)
