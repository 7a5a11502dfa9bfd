"""The rule engine's shared state, and what every rule does with a condition.

Each rule keeps its own state in its own object (:mod:`rules.alarms`, :mod:`rules.contacts`,
:mod:`rules.flapping`, :mod:`rules.inactivity`, :mod:`rules.supervision`,
:mod:`rules.troubles`) and gets this one passed in: the time and the mode, the configured
devices, the open conditions, and the flags of the engine's kept earliest timer
(:mod:`rules.engine`). Opening and restoring a condition, the sirens and the escalation
schedule of a raised alarm are the same for every rule, so they are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from contract.devices import DeviceSpec, LocalCommand
from contract.wire import EventKind, Priority, Reading
from rules.config import RuleSet
from rules.decisions import Decision, EmitEvent, LocalAction

__all__ = [
    "ALARM_PROPERTIES",
    "DETECTOR_KINDS",
    "INACTIVITY_KEY",
    "MODES",
    "SIREN_KINDS",
    "Condition",
    "EngineState",
    "Mode",
    "Pending",
    "Timer",
    "iso",
    "payload",
]

Mode = Literal["normal", "away", "test"]
MODES: Final = ("normal", "away", "test")

K = EventKind
ALARM_PROPERTIES: Final = {
    "sos": K.SOS,
    "smoke": K.SMOKE,
    "gas": K.GAS,
    "carbon_monoxide": K.CARBON_MONOXIDE,
    "water_leak": K.WATER_LEAK,
    "fall": K.FALL,
}
DETECTOR_KINDS: Final = frozenset({K.SMOKE, K.GAS, K.CARBON_MONOXIDE, K.WATER_LEAK, K.FALL})
SIREN_KINDS: Final = frozenset({K.SMOKE, K.GAS, K.CARBON_MONOXIDE})
INACTIVITY_KEY: Final = "inactivity:-"

#: A timer as (due, rank, key): ties between timers due at one instant go by rank, then key.
Timer = tuple[datetime, int, str]


def iso(at: datetime) -> str:
    return at.isoformat()


def payload(spec: DeviceSpec | None, reading: Reading | None, **extra: Any) -> dict[str, Any]:
    """An event's payload: the device's room, role and name, the reading, then ``extra``."""
    out: dict[str, Any] = {}
    if spec is not None:
        out["room"] = spec.room
        out["role"] = spec.role
        out["device_name"] = spec.name or spec.id
    if reading is not None:
        out["property"] = reading.property
        out["value"] = reading.value
    out.update(extra)
    return out


@dataclass(slots=True)
class Condition:
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
class Pending:
    """A detector condition waiting out its ``delay_on``."""

    due: datetime
    kind: EventKind
    spec: DeviceSpec | None
    device: str
    payload: dict[str, Any]


class EngineState:
    """What the rules share: time, mode, devices, open conditions, the timer cache's flags."""

    def __init__(self, rules: RuleSet, devices: Sequence[DeviceSpec], zone: ZoneInfo) -> None:
        self.rules = rules
        self.zone = zone
        self.devices = {d.id: d for d in devices}
        self.by_address = {(d.driver, d.address): d for d in devices}
        self.sirens = sorted(d.id for d in devices if d.role == "siren")
        self.escalate_after = timedelta(seconds=rules.escalate_after_s)
        self.mode: Mode = "normal"
        self.now: datetime | None = None
        self.started: datetime | None = None
        self.active: dict[str, Condition] = {}
        #: The configured device whose reading is being fed, if any (its activity is kept).
        self.feeding: str | None = None
        #: When each detector condition last raised or restored: the flapping rule's quiet time.
        self.flap_last: dict[str, datetime] = {}
        self.counts: dict[str, int] = {
            "readings": 0,
            "unconfigured_readings": 0,
            "ignored_readings": 0,
            "collapsed_presses": 0,
            "suppressed_alarms": 0,
        }
        # The engine keeps its earliest timer (rules.engine): the rare timers are rescanned when
        # stale, supervision's heap is rebuilt when stale, and the kept earliest of all is
        # valid until a timer changes.
        self.timers_stale = True
        self.supervision_stale = True
        #: The earliest rare timer as last scanned (valid while not ``timers_stale``).
        self.rare_best: Timer | None = None
        self.best: Timer | None = None
        self.best_valid = False

    def at(self) -> datetime:
        assert self.now is not None
        return self.now

    def timers_changed(self) -> None:
        """Something other than a check-in or an activity changed a timer: rescan lazily."""
        self.timers_stale = True
        self.supervision_stale = True
        self.best_valid = False

    def rare_timers_changed(self) -> None:
        """Only a rare timer changed (an alarm's delay or escalation, a contact's, flapping):
        supervision's heap stays as it is. A reading that moves a contact timer must not cost
        a rebuild over every supervised device."""
        self.timers_stale = True
        self.best_valid = False

    def rare_timer_replaced(self, old: Timer | None, new: Timer | None) -> None:
        """One rare timer went (``old``) and another came (``new``), nothing else changed.

        A contact flips thousands of times a second in a busy home: rather than rescan every
        rare timer, the kept earliest is updated, unless the one that went was the earliest.
        """
        self.best_valid = False
        if self.timers_stale:
            return
        if old is not None and old == self.rare_best:
            self.timers_stale = True
            return
        if new is not None and (self.rare_best is None or new < self.rare_best):
            self.rare_best = new

    def rare_timer_later(self, rank: int, key: str) -> None:
        """One rare timer moved later (a flapping device's quiet time restarting): the kept
        earliest stays, unless it was that one."""
        self.best_valid = False
        best = self.rare_best
        if not self.timers_stale and best is not None and best[1:] == (rank, key):
            self.timers_stale = True

    def _condition_changed(self, key: str) -> None:
        # Supervision skips offline devices: only a device_offline condition changes its heap.
        if key.startswith("device_offline:"):
            self.timers_changed()
        else:
            self.rare_timers_changed()

    def open(
        self,
        out: list[Decision],
        kind: EventKind,
        device_id: str | None,
        key: str,
        detail: dict[str, Any],
        at: datetime,
        *,
        priority: Priority | None = None,
    ) -> Condition | None:
        """Open a condition and emit its event; None if it was already open."""
        if key in self.active:
            return None
        cond = Condition(key, kind, device_id, at, detail=detail, priority=priority)
        self.active[key] = cond
        self._condition_changed(key)
        out.append(EmitEvent(kind, device_id, key, detail, priority=priority))
        return cond

    def restore(self, out: list[Decision], key: str, at: datetime, detail: dict[str, Any]) -> None:
        cond = self.active.pop(key, None)
        if cond is None:
            return
        self._condition_changed(key)
        if cond.kind in DETECTOR_KINDS:
            self.flap_last[key] = at
        if cond.suppressed:
            return
        restore = cond.kind.restore
        assert restore is not None  # only kinds with a restore twin are ever opened
        since = {"since": iso(cond.since)} if cond.since else {}
        out.append(EmitEvent(restore, cond.device_id, key, {**detail, **since}))
        if cond.kind in SIREN_KINDS and not self.siren_conditions():
            self.sirens_command(out, "siren_off", f"restored:{key}")

    def siren_conditions(self) -> bool:
        return any(c.kind in SIREN_KINDS and not c.suppressed for c in self.active.values())

    def sirens_command(
        self, out: list[Decision], action: Literal["siren_on", "siren_off"], reason: str
    ) -> None:
        for siren in self.sirens:
            out.append(LocalAction(LocalCommand(device=siren, action=action), reason=reason))

    def after_alarm(self, out: list[Decision], cond: Condition, at: datetime) -> None:
        """What follows a raised alarm: the sirens, and its escalation schedule."""
        if cond.kind in SIREN_KINDS:
            self.sirens_command(out, "siren_on", f"alarm:{cond.key}")
        if (cond.priority or cond.kind.priority) is Priority.LIFE_SAFETY:
            cond.escalate_at = at + self.escalate_after
            self.rare_timers_changed()
