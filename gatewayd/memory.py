"""The rule engine's memory across restarts: taken back at start, kept in the buffer as it changes.

A fresh engine at each start would start every clock again from zero (a gateway restarted every
few hours would never raise its inactivity alarm). So the daemon resumes the engine from what the
buffer holds: the conditions still open (what dispatch was told) and the engine's last saved
memory (:class:`rules.memory.EngineMemory`, JSON in the buffer's ``engine_memory`` table).

The memory is saved when it changed, not on every reading: at most once a second, a change that
is only check-ins (supervision) at most once a minute, and always at shutdown. A crash can so lose
at most a second of activity, and a minute of check-ins: a restarted gateway then sees a device as
silent a little early, never late. Replay resumes the same way at a trace's session header, from
the memory the engine had at that moment, which is what a daemon stopped there saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer, EventBufferError
from rules import RuleEngine
from rules.memory import EngineMemory, EngineMemoryError

__all__ = ["MemoryKeeper", "resume_engine"]

log = structlog.get_logger(__name__)

#: Seconds between two saves of a changed memory, and of one changed only by check-ins.
SAVE_EVERY_S = 1.0
CHECKINS_EVERY_S = 60.0


def resume_engine(engine: RuleEngine, buffer: EventBuffer) -> EngineMemory | None:
    """Seed a new engine from the buffer; an unusable memory is logged and left out."""
    memory: EngineMemory | None = None
    try:
        text = buffer.load_memory()
        memory = EngineMemory.from_json(text) if text is not None else None
    except (EngineMemoryError, EventBufferError) as exc:
        log.error(
            "engine_memory_unusable",
            error=str(exc)[:500],
            detail="the rules start afresh: clocks count from now",
        )
    engine.resume(buffer.active_conditions(), memory)
    if memory is not None:
        log.info("engine_memory_resumed", saved_at=memory.saved_at, mode=memory.mode)
    return memory


class MemoryKeeper:
    """Saves the engine's memory into the buffer when it changed (see the module doc)."""

    def __init__(
        self,
        buffer: AsyncEventBuffer,
        *,
        every_s: float = SAVE_EVERY_S,
        checkins_every_s: float = CHECKINS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buffer = buffer
        self._every = every_s
        self._checkins_every = checkins_every_s
        self._clock = clock
        self._saved: tuple[int, int, int] | None = None
        self._saved_mono = float("-inf")
        self.saves = 0
        self.failures = 0

    async def save_if_changed(self, engine: RuleEngine, *, now: bool = False) -> bool:
        """Save if the memory changed and its time has come (``now``: at once, if changed)."""
        state = (id(engine), engine.revision, engine.checkins)
        saved = self._saved
        if saved == state:
            return False
        elapsed = self._clock() - self._saved_mono
        only_checkins = saved is not None and saved[:2] == state[:2]
        due = self._checkins_every if only_checkins else self._every
        if not now and elapsed < due:
            return False
        memory = engine.memory()
        try:
            await self._buffer.save_memory(memory.to_json(), memory.saved_at or datetime.now(UTC))
        except Exception as exc:
            # The alarm path goes on; the next change tries again.
            self.failures += 1
            log.error("engine_memory_save_failed", error=repr(exc)[:300])
            return False
        self._saved = state
        self._saved_mono = self._clock()
        self.saves += 1
        return True

    def status(self) -> dict[str, Any]:
        return {"saves": self.saves, "failures": self.failures}
