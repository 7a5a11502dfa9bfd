"""What the rule engine remembers across a restart, as plain data.

The engine stays pure: :meth:`rules.RuleEngine.memory` exports its memory as an
:class:`EngineMemory` and :meth:`rules.RuleEngine.resume` takes one back; whoever runs the
engine keeps it (the daemon in its buffer's SQLite, replay in memory at a session header).
Without it a restarted gateway would start every clock again from zero: a gateway restarted
every few hours would never raise its "no activity" alarm.

It holds what any rule still needs: the last activity and the inactivity clock, the morning
check, each device's last check-in (supervision), contact and motion states, battery reports,
open conditions with their escalation schedules, waiting ``delay_on`` and entry delays, and the
flapping counts. Times are aware UTC datetimes; the JSON form (:meth:`EngineMemory.to_json`)
is what the daemon stores. A memory that does not read back raises :class:`EngineMemoryError`
naming the problem, and the caller starts without it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contract.wire import EventKind, Priority

__all__ = [
    "MEMORY_VERSION",
    "ConditionMemory",
    "EngineMemory",
    "EngineMemoryError",
    "PendingMemory",
]

MEMORY_VERSION: Final = 1


class EngineMemoryError(ValueError):
    """A stored engine memory cannot be used (not JSON, another version, a bad field)."""


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConditionMemory(_Plain):
    """An open alarm or trouble condition, with what its escalation and flapping need."""

    key: str = Field(min_length=1, max_length=256)
    kind: EventKind
    device_id: str | None = None
    since: AwareDatetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    priority: Priority | None = None
    acked: bool = False
    escalate_at: AwareDatetime | None = None
    attempt: int = Field(default=0, ge=0)
    suppressed: bool = False


class PendingMemory(_Plain):
    """A detector condition waiting out its ``delay_on``."""

    key: str = Field(min_length=1, max_length=256)
    due: AwareDatetime
    kind: EventKind
    device: str
    payload: dict[str, Any] = Field(default_factory=dict)


class EngineMemory(_Plain):
    """The engine's memory at ``saved_at`` (the engine's own time when it was exported)."""

    version: Literal[1] = MEMORY_VERSION
    saved_at: AwareDatetime | None = None
    mode: Literal["normal", "away", "test"] = "normal"
    last_activity: AwareDatetime | None = None
    #: When the inactivity count last (re)started, and since when the engine has watched.
    inactivity_anchor: AwareDatetime | None = None
    watch_since: AwareDatetime | None = None
    #: Dispatch said the household is away or in hospital until then (inactivity rests).
    absent_until: AwareDatetime | None = None
    last_seen: dict[str, AwareDatetime] = Field(default_factory=dict)
    device_activity: dict[str, AwareDatetime] = Field(default_factory=dict)
    motion: dict[str, bool] = Field(default_factory=dict)
    contact: dict[str, bool] = Field(default_factory=dict)
    opened_at: dict[str, AwareDatetime] = Field(default_factory=dict)
    contact_changes: dict[str, list[AwareDatetime]] = Field(default_factory=dict)
    entry_due: dict[str, AwareDatetime] = Field(default_factory=dict)
    pressed: list[str] = Field(default_factory=list)
    battery_flag: dict[str, bool] = Field(default_factory=dict)
    battery_pct: dict[str, float] = Field(default_factory=dict)
    battery_sent: dict[str, AwareDatetime] = Field(default_factory=dict)
    flap_alarms: dict[str, list[AwareDatetime]] = Field(default_factory=dict)
    flap_last: dict[str, AwareDatetime] = Field(default_factory=dict)
    flapping_sources: dict[str, list[str]] = Field(default_factory=dict)
    conditions: list[ConditionMemory] = Field(default_factory=list)
    pending: list[PendingMemory] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> EngineMemory:
        """Read a stored memory back; raises :class:`EngineMemoryError` naming the problem."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'memory'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise EngineMemoryError(f"stored engine memory is unusable: {problems}") from exc
