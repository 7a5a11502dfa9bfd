"""What the rule engine decides: events to record and forward, and local actions to carry out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from contract.devices import LocalCommand
from contract.wire import EventKind, Priority

__all__ = ["ActiveCondition", "ActiveConditionLike", "Decision", "EmitEvent", "LocalAction"]


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """An event for the buffer. ``condition`` is ``"<kind>:<device id, driver id or '-'>"``."""

    kind: EventKind
    device_id: str | None
    condition: str
    payload: dict[str, Any]
    test: bool = False
    #: None means the kind's default priority.
    priority: Priority | None = None


@dataclass(frozen=True, slots=True)
class LocalAction:
    """A local output: sound or silence a siren, acknowledge on a device, notify a 2nd channel."""

    command: LocalCommand
    reason: str


Decision = EmitEvent | LocalAction


@dataclass(frozen=True, slots=True)
class ActiveCondition:
    """An open alarm or trouble condition, as the buffer remembers it across a restart."""

    condition: str
    kind: EventKind
    device_id: str | None


class ActiveConditionLike(Protocol):
    @property
    def condition(self) -> str: ...

    @property
    def kind(self) -> EventKind | str: ...

    @property
    def device_id(self) -> str | None: ...
