"""Alarms: SOS presses and detectors, with debounce, confirmation and escalation.

A detector alarm (smoke, gas, carbon monoxide, water leak, fall) waits out its ``delay_on``,
goes through the flapping rule (:mod:`rules.flapping`), and is ``confirmed`` by another
detector of its kind within ``confirm_window_s``. An SOS has no natural restore: presses within
``sos_collapse_s`` are one alarm, a later one restores the old alarm and raises a new one that
keeps its escalation schedule. A LIFE_SAFETY alarm not acknowledged in time is escalated, and
again every ``escalate_every_s``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contract.devices import SOS_ROLES, DeviceSpec, LocalCommand
from contract.wire import EventKind, Priority, Reading
from rules.decisions import Decision, EmitEvent, LocalAction
from rules.flapping import Flapping
from rules.inactivity import Inactivity
from rules.state import (
    ALARM_PROPERTIES,
    DETECTOR_KINDS,
    Condition,
    EngineState,
    Pending,
    Timer,
    iso,
    payload,
)

__all__ = ["RANK_DELAY_ON", "RANK_ESCALATION", "Alarms"]

#: Timer ranks of a waiting ``delay_on`` and of an escalation.
RANK_DELAY_ON = 0
RANK_ESCALATION = 1

K = EventKind


class Alarms:
    def __init__(self, state: EngineState, flapping: Flapping, activity: Inactivity) -> None:
        rules = state.rules
        self.state = state
        self.flapping = flapping
        self.activity = activity
        self.delay_on = {d: r.delay_on_s for d, r in rules.devices.items()}
        self.sos_actions = frozenset(rules.sos_actions)
        self.collapse = timedelta(seconds=rules.sos_collapse_s)
        self.confirm = timedelta(seconds=rules.confirm_window_s)
        self.escalate_every = timedelta(seconds=rules.escalate_every_s)
        #: Detector conditions waiting out their delay_on; devices whose press was seen.
        self.pending: dict[str, Pending] = {}
        self.pressed: set[str] = set()

    def delay_for(self, kind: EventKind, device: str | None) -> float:
        per_device = self.delay_on.get(device) if device is not None else None
        if per_device is not None:
            return per_device
        return self.state.rules.delay_on.get(kind.value, 0.0)

    def timers(self, candidates: list[Timer]) -> None:
        """Add the waiting delay_on and the escalations due."""
        for key, pending in self.pending.items():
            candidates.append((pending.due, RANK_DELAY_ON, key))
        for key, cond in self.state.active.items():
            if cond.escalate_at is not None:
                candidates.append((cond.escalate_at, RANK_ESCALATION, key))

    # -- readings ------------------------------------------------------------------------------

    def press(
        self,
        out: list[Decision],
        spec: DeviceSpec | None,
        device: str,
        reading: Reading,
        at: datetime,
    ) -> None:
        state = self.state
        key = f"sos:{device}"
        cond = state.active.get(key)
        if reading.retained and (cond is not None or device in self.pressed):
            return
        self.pressed.add(device)
        if spec is not None and not reading.retained:
            self.activity.activity(out, at)
        if cond is not None and cond.since is not None and at - cond.since < self.collapse:
            state.counts["collapsed_presses"] += 1
            return
        carry: tuple[datetime | None, int] | None = None
        if cond is not None:
            if not cond.seeded:
                carry = (cond.escalate_at, cond.attempt)
            state.restore(out, key, at, {"reason": "pressed_again"})
        detail = payload(spec, reading)
        if spec is None:
            detail["address"] = device
        new = self.alarm(out, K.SOS, spec, device, key, detail, at)
        if new is not None and carry is not None and carry[0] is not None:
            new.escalate_at, new.attempt = carry
            state.rare_timers_changed()  # the new alarm keeps the old one's (earlier) escalation

    def action(self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime) -> None:
        if spec.role in SOS_ROLES and reading.value in self.sos_actions:
            self.press(out, spec, spec.id, reading, at)
        elif not reading.retained:
            self.activity.activity(out, at)

    def detector(
        self,
        out: list[Decision],
        kind: EventKind,
        spec: DeviceSpec | None,
        device: str,
        reading: Reading,
        at: datetime,
    ) -> None:
        state = self.state
        key = f"{kind.value}:{device}"
        value = reading.value
        if value is True:
            if key in state.active or key in self.pending:
                return
            detail = payload(spec, reading)
            if spec is None:
                detail["address"] = device
            delay = self.delay_for(kind, spec.id if spec else None)
            if delay > 0:
                detail["delay_on_s"] = delay
                self.pending[key] = Pending(
                    at + timedelta(seconds=delay), kind, spec, device, detail
                )
                state.rare_timers_changed()
                return
            self.alarm(out, kind, spec, device, key, detail, at)
        elif value is False:
            if self.pending.pop(key, None) is not None:
                state.rare_timers_changed()
            state.restore(out, key, at, payload(spec, reading))
        elif value is not None:
            state.counts["ignored_readings"] += 1

    def unconfigured(self, out: list[Decision], reading: Reading, at: datetime) -> None:
        """A reading of no configured device: only its alarms count."""
        self.state.counts["unconfigured_readings"] += 1
        kind = ALARM_PROPERTIES.get(reading.property)
        if kind is None or self.state.mode == "test":
            return
        if kind is K.SOS:
            if reading.value is True:
                self.press(out, None, reading.device, reading, at)
        else:
            self.detector(out, kind, None, reading.device, reading, at)

    # -- raising, escalating, acknowledging ----------------------------------------------------

    def delay_passed(self, out: list[Decision], key: str, due: datetime) -> None:
        """A detector condition waited out its delay_on."""
        pending = self.pending.pop(key)
        detail = dict(pending.payload, due_at=iso(due))
        self.alarm(out, pending.kind, pending.spec, pending.device, key, detail, due)

    def alarm(
        self,
        out: list[Decision],
        kind: EventKind,
        spec: DeviceSpec | None,
        device: str,
        key: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> Condition | None:
        """Raise an alarm through the flapping, confirmation, siren and escalation rules."""
        state = self.state
        if key in state.active:
            return None
        device_id = spec.id if spec is not None else None
        if kind in DETECTOR_KINDS and self.flapping.hold(out, kind, spec, device, key, detail, at):
            return None
        priority: Priority | None = None
        if kind in DETECTOR_KINDS and self.confirm.total_seconds() > 0:
            other = self.confirming(kind, key, at)
            if other is not None:
                detail = {**detail, "confirmed": True, "confirmed_by": other}
                priority = Priority.LIFE_SAFETY
        cond = state.open(out, kind, device_id, key, detail, at, priority=priority)
        if cond is None:
            return None
        state.after_alarm(out, cond, at)
        return cond

    def confirming(self, kind: EventKind, key: str, at: datetime) -> str | None:
        for other in self.state.active.values():
            if (
                other.kind is kind
                and other.key != key
                and not other.suppressed
                and other.since is not None
                and at - other.since <= self.confirm
            ):
                return other.device_id or other.key.partition(":")[2]
        return None

    def escalate(self, out: list[Decision], key: str, due: datetime) -> None:
        state = self.state
        cond = state.active[key]
        cond.attempt += 1
        cond.escalate_at = due + self.escalate_every
        state.rare_timers_changed()
        spec = state.devices.get(cond.device_id) if cond.device_id else None
        detail = payload(
            spec,
            None,
            escalates=cond.key,
            alarm_kind=cond.kind.value,
            attempt=cond.attempt,
            since=iso(cond.since) if cond.since else None,
            due_at=iso(due),
        )
        out.append(EmitEvent(K.ESCALATION, cond.device_id, cond.key, detail))
        state.sirens_command(out, "siren_on", f"escalation:{cond.key}")
        params = {
            "condition": cond.key,
            "kind": cond.kind.value,
            "device_id": cond.device_id,
            "room": spec.room if spec else "",
            "device_name": (spec.name or spec.id) if spec else "",
            "attempt": cond.attempt,
            "since": iso(cond.since) if cond.since else None,
        }
        command = LocalCommand(device="secondary", action="notify", params=params)
        out.append(LocalAction(command, reason=f"escalation:{cond.key}"))

    def acknowledge(self, out: list[Decision], condition: str, at: datetime) -> bool:
        """Dispatch acknowledged a condition; False if there was nothing to acknowledge."""
        state = self.state
        cond = state.active.get(condition)
        if cond is None or cond.suppressed or cond.acked:
            return False
        cond.acked = True
        cond.escalate_at = None
        state.rare_timers_changed()
        spec = state.devices.get(cond.device_id) if cond.device_id else None
        if spec is not None and spec.role in SOS_ROLES:
            command = LocalCommand(device=spec.id, action="ack", params={"condition": condition})
            out.append(LocalAction(command, reason=f"acknowledged:{condition}"))
        if cond.kind is K.SOS:
            state.restore(out, condition, at, {"reason": "acknowledged"})
        return True
