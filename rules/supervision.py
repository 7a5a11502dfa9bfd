"""Supervision: every configured device checks in, or it is ``device_offline``.

Any word from a device but ``available: false`` is a check-in. A device silent beyond its
check-in interval is offline at exactly its last reading plus the interval; ``available: false``
makes it offline at once; its next check-in restores it. A device's interval is
``rules.devices.<id>.checkin_interval_s``, else its ``options.checkin_interval_s``, else
``rules.supervision.<role>``, else ``rules.supervision.default_s``; 0 is unsupervised.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime, timedelta

from contract.devices import DeviceSpec
from contract.wire import EventKind, Reading
from rules.config import RuleSet
from rules.decisions import Decision
from rules.state import EngineState, Timer, iso, payload

__all__ = ["RANK_CHECKIN", "Supervision", "checkin_interval"]

#: Timer rank of a check-in deadline.
RANK_CHECKIN = 2


def checkin_interval(rules: RuleSet, spec: DeviceSpec) -> float:
    """A device's expected check-in interval in seconds (0: unsupervised)."""
    override = rules.devices.get(spec.id)
    if override is not None and override.checkin_interval_s is not None:
        return override.checkin_interval_s
    option = spec.options.get("checkin_interval_s")
    if isinstance(option, int | float):  # checked by RuleSet.check_devices
        return float(option)
    sup = rules.supervision
    return float(sup.get(spec.role, sup.get("default_s", 10_800)))


class Supervision:
    def __init__(self, state: EngineState, devices: Sequence[DeviceSpec]) -> None:
        self.state = state
        self.interval = {d.id: checkin_interval(state.rules, d) for d in devices}
        self.every = {
            dev: timedelta(seconds=interval)
            for dev, interval in self.interval.items()
            if interval > 0
        }
        self.last_seen: dict[str, datetime] = {}
        # Deadlines move on every reading: a heap of (due, device) with stale entries dropped
        # lazily, rebuilt whenever the state says it is stale (see EngineState.timers_changed).
        self.heap: list[tuple[datetime, str]] = []

    def start(self, now: datetime) -> None:
        """The engine's first call: a device not heard from yet counts from now."""
        for dev in self.state.devices:
            self.last_seen.setdefault(dev, now)

    def unavailable(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        """``available: false``: offline at once (in walk-test mode too)."""
        dev = spec.id
        detail = payload(spec, reading, reason="unavailable")
        self.state.open(out, EventKind.DEVICE_OFFLINE, dev, f"device_offline:{dev}", detail, at)

    def checkin(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        """Any other word from the device: its deadline moves, and it is no longer offline."""
        state = self.state
        dev = spec.id
        self.last_seen[dev] = at
        every = self.every.get(dev)
        if every is not None:
            # The device's new deadline; its old heap entry is now stale.
            heapq.heappush(self.heap, (at + every, dev))
            if len(self.heap) > 2 * len(self.every) + 64:
                state.supervision_stale = True  # compact: rebuild without stale entries
            # Its deadline only moved later (time never runs backwards), so the earliest of
            # all changes only if it was this device's.
            best = state.best
            if best is not None and best[1] == RANK_CHECKIN and best[2] == dev:
                state.best_valid = False
        if f"device_offline:{dev}" in state.active:
            state.restore(out, f"device_offline:{dev}", at, payload(spec, reading))

    def earliest(self) -> Timer | None:
        """The earliest check-in deadline of a device not already offline."""
        state = self.state
        active = state.active
        if state.supervision_stale:
            self.heap = [
                (self.last_seen[dev] + every, dev)
                for dev, every in self.every.items()
                if f"device_offline:{dev}" not in active
            ]
            heapq.heapify(self.heap)
            state.supervision_stale = False
        heap = self.heap
        while heap:
            due, dev = heap[0]
            # An entry is live while it is still the device's deadline. A device gone offline
            # between two rebuilds (there is none: every change of the conditions rebuilds) is
            # dropped too; its check-in that restores it pushes a new entry.
            if (
                self.last_seen[dev] + self.every[dev] == due
                and f"device_offline:{dev}" not in active
            ):
                return (due, RANK_CHECKIN, dev)
            heapq.heappop(heap)
        return None

    def silent(self, out: list[Decision], dev: str, due: datetime) -> None:
        """A device's check-in deadline passed."""
        spec = self.state.devices[dev]
        detail = payload(
            spec,
            None,
            reason="silent",
            last_seen=iso(self.last_seen[dev]),
            checkin_interval_s=self.interval[dev],
            due_at=iso(due),
        )
        self.state.open(out, EventKind.DEVICE_OFFLINE, dev, f"device_offline:{dev}", detail, due)
