"""The pure half of the pipeline: frames in, decisions out, through the parsers and the rules.

The live pipeline and trace replay both use this, so a replayed trace decides exactly what the
live gateway decided. No I/O and no clock of its own: time comes from the frames and callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from contract.parsing import FrameParser
from contract.wire import EventDraft, RawFrame, Reading
from rules import EmitEvent, LocalAction, RuleEngine

__all__ = ["Decided", "Decider", "ReadingObserver", "draft_of"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decided:
    """One decision of the rule engine, with when it was taken and the reading behind it."""

    decision: EmitEvent | LocalAction
    at: datetime
    reading: Reading | None = None


def draft_of(decision: EmitEvent, at: datetime) -> EventDraft:
    return EventDraft(
        kind=decision.kind,
        at=at,
        device_id=decision.device_id,
        payload={"condition": decision.condition, **decision.payload},
        test=decision.test,
        priority=decision.priority,
    )


class ReadingObserver(Protocol):
    """Whatever keeps track of devices from their readings (the gateway's device states)."""

    def observe(self, reading: Reading) -> Any: ...


class Decider:
    def __init__(
        self,
        engine: RuleEngine,
        parsers: dict[str, FrameParser],
        devices: ReadingObserver | None = None,
    ) -> None:
        self.engine = engine
        self.parsers = parsers
        self.devices = devices
        self.readings = 0
        self.unknown_driver_frames = 0
        self.engine_errors = 0
        self._now: datetime | None = None

    def _time(self, now: datetime) -> datetime:
        # The engine needs time that never runs backwards; the wall clock can (NTP, RTC resets).
        if self._now is not None and now < self._now:
            return self._now
        self._now = now
        return now

    def frame(self, frame: RawFrame) -> list[Decided]:
        parser = self.parsers.get(frame.driver)
        if parser is None:
            self.unknown_driver_frames += 1
            return []
        try:
            readings = parser.parse(frame)
        except Exception:
            # A parser must never raise; if one does, that frame is lost but nothing else is.
            log.exception("parser_raised", driver=frame.driver, source=frame.source)
            return []
        now = self._time(frame.wall_time)
        out: list[Decided] = []
        devices = self.devices
        for reading in readings:
            self.readings += 1
            if devices is not None:
                devices.observe(reading)
            # What _step does, inline: this runs for every reading of a replay.
            try:
                decisions = self.engine.feed(reading, now)
            except Exception:
                self._engine_raised(reading)
                continue
            for decision in decisions:
                out.append(Decided(decision, now, reading))
        return out

    def tick(self, now: datetime) -> list[Decided]:
        return self._step(self.engine.tick, self._time(now))

    def acknowledge(self, condition: str, now: datetime) -> list[Decided]:
        return self._step(lambda t: self.engine.acknowledge(condition, t), self._time(now))

    def set_absence(self, until: datetime | None, now: datetime) -> list[Decided]:
        return self._step(lambda t: self.engine.set_absence(until, t), self._time(now))

    def set_mode(self, mode: str, now: datetime) -> list[Decided]:
        return self._step(lambda t: self.engine.set_mode(mode, t), self._time(now))  # type: ignore[arg-type]

    def _step(
        self,
        step: Callable[[datetime], list[EmitEvent | LocalAction]],
        now: datetime,
        reading: Reading | None = None,
    ) -> list[Decided]:
        try:
            decisions = step(now)
        except Exception:
            self._engine_raised(reading)
            return []
        return [Decided(d, now, reading) for d in decisions]

    def _engine_raised(self, reading: Reading | None) -> None:
        """Count and log an exception of the engine (called from an ``except`` block)."""
        self.engine_errors += 1
        log.exception(
            "rule_engine_raised",
            reading=reading.model_dump(mode="json") if reading else None,
        )
