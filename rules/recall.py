"""The engine's memory out and back in: each rule's state to an :class:`EngineMemory` and back.

:mod:`rules.memory` is the data model; this is where each field comes from and goes to, so the
rules keep their state private to the engine and the memory stays plain data. Taking a memory
back keeps only what still fits the home: devices that are still configured, conditions the
buffer still holds open (or held back by the flapping rule, which the buffer never saw), entry
delays only in away mode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from rules.alarms import Alarms
from rules.contacts import Contacts
from rules.flapping import Flapping
from rules.inactivity import Inactivity
from rules.memory import ConditionMemory, EngineMemory, PendingMemory
from rules.state import Condition, EngineState, Pending
from rules.supervision import Supervision
from rules.troubles import Troubles

__all__ = ["Rules", "export_memory", "take_back"]


@dataclass(frozen=True, slots=True)
class Rules:
    """The engine's shared state and the rules that keep state of their own."""

    state: EngineState
    alarms: Alarms
    activity: Inactivity
    contacts: Contacts
    flapping: Flapping
    supervision: Supervision
    troubles: Troubles


def _times(values: dict[str, deque[datetime]]) -> dict[str, list[datetime]]:
    return {k: list(v) for k, v in values.items() if v}


def export_memory(rules: Rules) -> EngineMemory:
    """Everything a restarted engine needs to go on where this one is (plain data)."""
    state, activity, contacts = rules.state, rules.activity, rules.contacts
    troubles = rules.troubles
    return EngineMemory(
        saved_at=state.now,
        mode=state.mode,
        last_activity=activity.last_activity,
        inactivity_anchor=activity.anchor,
        watch_since=activity.watch_since,
        absent_until=activity.absent_until,
        last_seen=dict(rules.supervision.last_seen),
        device_activity=dict(activity.device_activity),
        motion=dict(activity.motion),
        contact=dict(contacts.contact),
        opened_at=dict(contacts.opened_at),
        contact_changes=_times(contacts.changes),
        entry_due=dict(contacts.entry_due),
        pressed=sorted(rules.alarms.pressed),
        battery_flag=dict(troubles.battery_flag),
        battery_pct=dict(troubles.battery_pct),
        battery_sent=dict(troubles.battery_sent),
        flap_alarms=_times(rules.flapping.alarms),
        flap_last=dict(state.flap_last),
        flapping_sources={d: sorted(k) for d, k in rules.flapping.sources.items()},
        conditions=[
            ConditionMemory.model_validate(c, from_attributes=True) for c in state.active.values()
        ],
        pending=[
            PendingMemory(key=k, due=p.due, kind=p.kind, device=p.device, payload=p.payload)
            for k, p in rules.alarms.pending.items()
        ],
    )


def take_back(rules: Rules, memory: EngineMemory) -> None:
    """Put a memory's state back into the rules (after the buffer's open conditions)."""
    state, activity, contacts = rules.state, rules.activity, rules.contacts
    troubles = rules.troubles
    known = state.devices
    if memory.mode == "away":
        state.mode = "away"
    activity.last_activity = memory.last_activity
    activity.anchor = memory.inactivity_anchor
    activity.watch_since = memory.watch_since
    activity.absent_until = memory.absent_until
    rules.supervision.last_seen.update({d: t for d, t in memory.last_seen.items() if d in known})
    activity.device_activity.update({d: t for d, t in memory.device_activity.items() if d in known})
    activity.motion.update({d: v for d, v in memory.motion.items() if d in known})
    contacts.contact.update({d: v for d, v in memory.contact.items() if d in known})
    contacts.opened_at.update(
        {d: t for d, t in memory.opened_at.items() if contacts.contact.get(d) is True}
    )
    contacts.changes.update(
        {d: deque(ts) for d, ts in memory.contact_changes.items() if d in known}
    )
    if state.mode == "away":
        contacts.entry_due.update(
            {d: t for d, t in memory.entry_due.items() if d in contacts.rules}
        )
    rules.alarms.pressed.update(memory.pressed)
    troubles.battery_flag.update({d: v for d, v in memory.battery_flag.items() if d in known})
    troubles.battery_pct.update({d: v for d, v in memory.battery_pct.items() if d in known})
    troubles.battery_sent.update({d: t for d, t in memory.battery_sent.items() if d in known})
    rules.flapping.alarms.update({k: deque(ts) for k, ts in memory.flap_alarms.items()})
    state.flap_last.update(memory.flap_last)
    rules.flapping.sources.update({d: set(k) for d, k in memory.flapping_sources.items()})
    for c in memory.conditions:
        if c.key not in state.active and not c.suppressed:
            continue  # closed since the memory was saved: the buffer knows best
        state.active[c.key] = Condition(**c.model_dump())
    for p in memory.pending:
        spec = known.get(p.device)
        rules.alarms.pending.setdefault(p.key, Pending(p.due, p.kind, spec, p.device, p.payload))
