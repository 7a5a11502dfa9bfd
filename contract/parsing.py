"""The parser seam every driver implements: a raw frame in, neutral readings out.

A parser says what a device reported and nothing more; whether that is an alarm is the rule
engine's decision alone. Replay, fuzzing and tests drive parsers through this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol

from contract.wire import RawFrame, Reading

__all__ = ["FrameParser", "FrameRejected", "ParseStats"]


class FrameRejected(ValueError):
    """A frame a parser refuses; ``reason`` is short and fixed, counted in :class:`ParseStats`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParseStats:
    """Counts of what a parser accepted and refused, with each refusal reason logged once."""

    def __init__(self) -> None:
        self.frames = 0
        self.readings = 0
        self.rejected = 0
        self.rejected_by_reason: dict[str, int] = {}

    def reject(self, reason: str) -> bool:
        """Count a rejected frame; True the first time this reason is seen (log it then)."""
        self.rejected += 1
        first = reason not in self.rejected_by_reason
        # Bound the table: reasons are short literal strings, but be safe against variety.
        if first and len(self.rejected_by_reason) >= 256:
            reason = "other"
            first = reason not in self.rejected_by_reason
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        return first

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "readings": self.readings,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
        }


class FrameParser(Protocol):
    """Frame in, readings out. Never raises on bad input: it counts and skips it."""

    stats: ParseStats

    def parse(self, frame: RawFrame) -> list[Reading]: ...
