"""The walk test (mode ``test``): every reading of a configured device gives one ``test`` event.

The event (``test=True``) names what the reading would raise; nothing is raised and no local
action is taken. What the reading tells of the home is kept all the same (contact and motion
states, the last activity), so a walk test only changes what is reported.
"""

from __future__ import annotations

from datetime import datetime

from contract.devices import SOS_ROLES, DeviceSpec
from contract.wire import EventKind, Reading
from rules.contacts import Contacts
from rules.decisions import Decision, EmitEvent
from rules.inactivity import Inactivity
from rules.state import ALARM_PROPERTIES, EngineState, payload

__all__ = ["WalkTest"]

K = EventKind
#: The readings that are activity (see rules.inactivity).
_INACTIVITY_SOURCES = ("motion", "contact_open", "sos", "action")


class WalkTest:
    def __init__(
        self,
        state: EngineState,
        contacts: Contacts,
        activity: Inactivity,
        sos_actions: frozenset[str],
    ) -> None:
        self.state = state
        self.contacts = contacts
        self.activity = activity
        self.sos_actions = sos_actions

    def reading(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        detail = {**payload(spec, reading), "would_raise": self.would_raise(spec, reading)}
        out.append(EmitEvent(K.TEST, spec.id, f"test:{spec.id}", detail, test=True))
        self.keep_state(spec, reading, at)

    def would_raise(self, spec: DeviceSpec, reading: Reading) -> str | None:
        prop, value = reading.property, reading.value
        kind: EventKind | None = None
        if prop in ALARM_PROPERTIES and value is True:
            kind = ALARM_PROPERTIES[prop]
        elif prop == "action" and spec.role in SOS_ROLES and value in self.sos_actions:
            kind = K.SOS
        elif prop == "tamper" and value is True:
            kind = K.TAMPER
        elif (prop == "battery_low" and value is True) or (
            prop == "battery"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value < self.state.rules.battery_low_percent
        ):
            kind = K.LOW_BATTERY
        elif prop == "available" and value is False:
            kind = K.DEVICE_OFFLINE
        return kind.value if kind is not None else None

    def keep_state(self, spec: DeviceSpec, reading: Reading, at: datetime) -> None:
        """What a reading tells of the home is kept, though nothing is reported."""
        prop, value = reading.property, reading.value
        changed = True
        if prop == "contact_open" and isinstance(value, bool):
            changed = self.contacts.change(spec.id, value, at)
        elif prop == "motion" and isinstance(value, bool):
            self.activity.motion[spec.id] = value
            changed = value
        elif prop not in _INACTIVITY_SOURCES or not (value is True or prop == "action"):
            return
        if changed and not reading.retained:
            self.activity.activity([], at)

    def ended(self, out: list[Decision], at: datetime) -> None:
        """Report what changed during a walk test that closes an alarm."""
        self.contacts.after_walk_test(out, at)
        self.activity.after_walk_test(out, at)
