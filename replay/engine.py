"""Replaying a trace through the real parsers and the real rule engine on a virtual clock.

The live gateway and a replay share :class:`rules.decider.Decider` (parsers, then rules), so a
replayed trace decides what the live gateway decided. What replay adds is the clock: time is the
frames' own wall-clock time, and between two frames the engine is ticked at each of its
``next_deadline()`` times, so an inactivity timer, a supervision timeout or an escalation fires
at the very instant it would have fired live, however fast the replay runs. With
``tick_grid`` the engine is also ticked on a regular grid (as the live pipeline does every
second); an engine without ``next_deadline`` is ticked on a 1 s grid.

A trace spans the daemon's restarts: each session header after the first is one. With a
``restart`` (:func:`build_restart`) a replay does there what the restarted daemon did: fresh
parsers and a fresh engine, resumed from the conditions the buffer held open (replay keeps the
same ledger of them, :class:`ConditionLedger`) and from the engine's memory as the daemon stored
it (:mod:`gatewayd.memory`), then a tick at the start. So a trace recorded live across restarts
replays to what the live gateway decided.

Decisions come out in a canonical form (:func:`canonical_decision`, :func:`canonical_line`):
sorted keys, UTC ISO times, no random ids; so replaying the same trace twice gives the same bytes,
and a run can be compared with an expected file (:func:`compare`).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from buffer.store import ActiveConditionRow, condition_of
from contract.wire import EventKind, Lane, RawFrame, Reading
from replay.trace import TraceControl, TraceHeader, TraceItem, iso_utc

if TYPE_CHECKING:
    from contract.home import HomeConfig
    from rules.decider import Decider

__all__ = [
    "Comparison",
    "ConditionLedger",
    "DecidedLike",
    "Replay",
    "ReplayError",
    "ReplaySummary",
    "build_decider",
    "build_restart",
    "canonical_decision",
    "canonical_line",
    "compare",
    "read_expected",
]

log = structlog.get_logger(__name__)


class ReplayError(Exception):
    """A replay cannot run: bad config, rules that do not load, an unusable expected file."""


class DecidedLike(Protocol):
    """What :class:`rules.decider.Decided` is: a decision, its time, the reading behind it."""

    @property
    def decision(self) -> Any: ...
    @property
    def at(self) -> datetime: ...
    @property
    def reading(self) -> Reading | None: ...


class DeciderLike(Protocol):
    """The part of :class:`rules.decider.Decider` a replay drives."""

    @property
    def engine(self) -> Any: ...
    def frame(self, frame: RawFrame) -> Sequence[DecidedLike]: ...
    def tick(self, now: datetime) -> Sequence[DecidedLike]: ...
    def acknowledge(self, condition: str, now: datetime) -> Sequence[DecidedLike]: ...
    def set_mode(self, mode: str, now: datetime) -> Sequence[DecidedLike]: ...


# -- canonical decisions ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready and deterministic: enums by value, UTC ISO times, models as dicts."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value  # the common case first: most payload values are plain
    if kind is dict:
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def canonical_decision(decided: DecidedLike) -> dict[str, Any]:
    """A decision as a plain dict with a fixed shape; see docs/traces.md for the fields."""
    decision = decided.decision
    out: dict[str, Any] = {"at": iso_utc(decided.at)}
    command = getattr(decision, "command", None)
    if command is not None:
        out["decision"] = "action"
        out["command"] = _plain(command)
        out["reason"] = _plain(getattr(decision, "reason", ""))
    else:
        out["decision"] = "event"
        for name in ("kind", "device_id", "condition", "priority", "test", "payload"):
            out[name] = _plain(getattr(decision, name, None))
    reading = decided.reading
    out["reading"] = (
        None
        if reading is None
        else {
            "driver": reading.driver,
            "device": reading.device,
            "property": reading.property,
            "value": _plain(reading.value),
        }
    )
    return out


def canonical_line(record: dict[str, Any]) -> str:
    """One decision as one line of JSON: sorted keys, no trailing newline."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False)


# -- building the pipeline's pure half from a home config ----------------------------------


def build_decider(
    config: HomeConfig, *, rules_text: str | None = None, source: str = "<config>"
) -> Decider:
    """The same parsers and rule engine the live gateway builds from ``config``.

    A fresh engine and fresh parsers each time: nothing carries over between replays.
    """
    from drivers.base import DriverConfigError
    from drivers.registry import build_drivers
    from rules import RuleConfigError, RuleEngine, load_rules
    from rules.decider import Decider

    try:
        rules = load_rules(config.rules, source=source, text=rules_text, devices=config.devices)
    except RuleConfigError as exc:
        raise ReplayError(str(exc)) from exc
    try:
        drivers = build_drivers(config)
    except DriverConfigError as exc:
        raise ReplayError(str(exc)) from exc
    engine = RuleEngine(rules, config.devices, timezone=config.gateway.timezone)
    parsers = {driver_id: driver.create_parser() for driver_id, driver in drivers.items()}
    return Decider(engine, parsers)


Restart = Callable[[DeciderLike, Sequence[ActiveConditionRow]], DeciderLike]


def build_restart(
    config: HomeConfig, *, rules_text: str | None = None, source: str = "<config>"
) -> Restart:
    """What the daemon does when it starts again: a decider built afresh from ``config``, its
    engine resumed from the open conditions and from the old engine's memory, read back from
    the JSON the daemon stores (so replay resumes from exactly what a restart would read)."""
    from rules.memory import EngineMemory

    def restart(old: DeciderLike, active: Sequence[ActiveConditionRow]) -> DeciderLike:
        memory = EngineMemory.from_json(old.engine.memory().to_json())
        new = build_decider(config, rules_text=rules_text, source=source)
        new.engine.resume(active, memory)
        return new

    return restart


class ConditionLedger:
    """The open conditions, kept from the decisions as the buffer keeps them from events."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[bool, ActiveConditionRow]] = {}

    def note(self, decided: DecidedLike) -> None:
        decision = decided.decision
        kind = getattr(decision, "kind", None)
        if not isinstance(kind, EventKind) or kind.lane is Lane.TELEMETRY:
            return
        payload = {"condition": decision.condition, **decision.payload}
        condition = condition_of(kind, payload)
        if condition is None:
            return
        row = ActiveConditionRow(condition, kind.condition, decision.device_id, decided.at)
        self._rows.pop(condition, None)  # kept in the order of their latest event, as seq
        self._rows[condition] = (not kind.is_restore and not decision.test, row)

    def active(self) -> list[ActiveConditionRow]:
        return [row for is_open, row in self._rows.values() if is_open]


# -- the replay -----------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    frames: int = 0
    frames_after_until: int = 0
    #: acknowledgements and mode changes replayed
    controls: int = 0
    #: session headers after the first: restarts of the daemon
    restarts: int = 0
    ticks: int = 0
    decisions: int = 0
    events: int = 0
    alarms: int = 0
    actions: int = 0
    stuck_deadlines: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    elapsed_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = _plain(dataclasses.asdict(self))
        out["frames_per_s"] = round(self.frames_per_s, 1)
        return dict(out)


Pacer = Callable[[datetime], None]
DecisionSink = Callable[[DecidedLike], None]
ProgressHook = Callable[["Replay"], None]


class RealTimePacer:
    """Waits so that virtual time runs ``speed`` times as fast as real time."""

    def __init__(
        self,
        speed: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._sleep = sleep
        self._clock = clock
        self._origin: tuple[datetime, float] | None = None

    def __call__(self, virtual: datetime) -> None:
        if self._origin is None:
            self._origin = (virtual, self._clock())
            return
        start_virtual, start_real = self._origin
        due = start_real + (virtual - start_virtual).total_seconds() / self.speed
        delay = due - self._clock()
        if delay > 0:
            self._sleep(delay)


class Replay:
    """Feeds frames to a decider on a virtual clock. One object per replay run.

    ``on_decided`` hears of every decision as it is made (the canonical output, a forwarder);
    ``pace`` is called with the virtual time before each step (``None``: as fast as possible);
    ``on_progress`` is called every ``progress_every`` frames; ``restart`` rebuilds the decider
    at a new session's header as the daemon did (``None``: headers change nothing).
    """

    def __init__(
        self,
        decider: DeciderLike,
        *,
        until: datetime | None = None,
        tick_grid: float | None = None,
        on_decided: DecisionSink | None = None,
        pace: Pacer | None = None,
        on_progress: ProgressHook | None = None,
        progress_every: int = 5000,
        restart: Restart | None = None,
    ) -> None:
        self.decider = decider
        self._restart = restart
        self._ledger = ConditionLedger() if restart is not None else None
        self._session: str | None = None
        self.until = until
        self._next_deadline: Callable[[], datetime | None] | None = getattr(
            decider.engine, "next_deadline", None
        )
        if tick_grid is None and self._next_deadline is None:
            tick_grid = 1.0
        if tick_grid is not None and not tick_grid > 0:
            raise ValueError(f"tick_grid must be positive, got {tick_grid}")
        self._grid = timedelta(seconds=tick_grid) if tick_grid is not None else None
        self._next_grid: datetime | None = None
        self._on_decided = on_decided
        self._pace = pace
        self._on_progress = on_progress
        self._progress_every = max(1, progress_every)
        self.summary = ReplaySummary()
        self.now: datetime | None = None
        self._last_tick: datetime | None = None
        self._stuck_logged = False
        self._cached_deadline: datetime | None = None
        self._readings_seen: int | None = None
        self._deadline_stale = True

    def run(self, frames: Iterable[TraceItem]) -> ReplaySummary:
        """Replay every frame (up to ``until``), then keep ticking up to ``until``.

        Acknowledgements and mode changes recorded in the trace are given to the decider at
        their time, as the live pipeline gave them.
        """
        started = time.perf_counter()
        summary = self.summary
        try:
            for frame in frames:
                if isinstance(frame, TraceControl):
                    self._control(frame)
                    continue
                if isinstance(frame, TraceHeader):
                    self._header(frame)
                    continue
                at = frame.wall_time
                if self.until is not None and at > self.until:
                    summary.frames_after_until += 1
                    continue
                due = self._due()
                if due is not None and due <= at:  # _advance's own first test, without a call
                    self._advance(at)
                if self._pace is not None:
                    self._pace(at)
                if summary.first_at is None:
                    summary.first_at = at
                    if self._grid is not None:
                        self._next_grid = at + self._grid
                if self.now is None or at > self.now:
                    self.now = at
                summary.frames += 1
                self._emit(self.decider.frame(frame))
                if self._on_progress is not None and summary.frames % self._progress_every == 0:
                    self._on_progress(self)
            if self.until is not None:
                self._advance(self.until)
                if self.now is None or self.until > self.now:
                    self.now = self.until
        finally:
            summary.last_at = self.now
            summary.elapsed_s = time.perf_counter() - started
        return summary

    def _control(self, control: TraceControl) -> None:
        at = control.at
        if self.until is not None and at > self.until:
            return
        self._advance(at)
        if self._pace is not None:
            self._pace(at)
        if self.now is None or at > self.now:
            self.now = at
        self.summary.controls += 1
        self._deadline_stale = True
        if control.what == "ack":
            self._emit(self.decider.acknowledge(control.value, at))
        elif control.what == "mode":
            self._emit(self.decider.set_mode(control.value, at))

    def _header(self, header: TraceHeader) -> None:
        """A session's header: the daemon (re)started then, so the decider does too."""
        session, first = header.session_key, self._session is None
        if session == self._session or self._restart is None:
            return  # the same run, rotated into another file
        self._session = session
        at = header.started
        if self.until is not None and at > self.until:
            return
        if not first:
            # The old daemon ran up to here; the new one takes over what it stored.
            self._advance(at)
            assert self._ledger is not None
            self.decider = self._restart(self.decider, self._ledger.active())
            self._next_deadline = getattr(self.decider.engine, "next_deadline", None)
            self._readings_seen = None
            self.summary.restarts += 1
        if self._pace is not None:
            self._pace(at)
        if self.now is None or at > self.now:
            self.now = at
        # The daemon's first act is a tick: the engine's clocks start (or resume) there.
        self._deadline_stale = True
        self._last_tick = self.now
        self.summary.ticks += 1
        self._emit(self.decider.tick(self.now))

    def _deadline(self) -> datetime | None:
        """The engine's next deadline, asked again only when its state may have changed.

        The engine changes only when it is fed a reading or ticked; a frame that gave no
        reading (a repeated state) leaves its deadline as it was. Asking can cost the engine a
        walk over its timers, once per frame otherwise.
        """
        if self._next_deadline is None:
            return None
        readings = getattr(self.decider, "readings", None)
        if self._deadline_stale or readings is None or readings != self._readings_seen:
            self._cached_deadline = self._next_deadline()
            self._readings_seen = readings
            self._deadline_stale = False
        return self._cached_deadline

    def _due(self) -> datetime | None:
        due = self._deadline()
        grid = self._next_grid
        if grid is not None and (due is None or grid < due):
            return grid
        return due

    def _advance(self, to: datetime) -> None:
        """Tick the engine at every deadline (and grid point) up to and including ``to``."""
        while True:
            due = self._due()
            if due is None or due > to:
                return
            if self._last_tick is not None and due <= self._last_tick and due != self._next_grid:
                # The engine asks again for a time it was already ticked at: ticking again would
                # loop forever. It is then ticked at the next frame or grid point instead.
                self.summary.stuck_deadlines += 1
                if not self._stuck_logged:
                    self._stuck_logged = True
                    log.warning("engine_deadline_not_advancing", deadline=iso_utc(due))
                return
            if self.now is not None and due < self.now:
                due = self.now  # a deadline in the past is due now, not back then
            if self._pace is not None:
                self._pace(due)
            if self._next_grid is not None and self._grid is not None:
                while self._next_grid <= due:
                    self._next_grid += self._grid
            self._last_tick = due
            self.now = due
            self.summary.ticks += 1
            self._deadline_stale = True
            self._emit(self.decider.tick(due))

    def _emit(self, decided: Sequence[DecidedLike]) -> None:
        summary = self.summary
        ledger = self._ledger
        for d in decided:
            summary.decisions += 1
            if ledger is not None:
                ledger.note(d)
            if getattr(d.decision, "command", None) is not None:
                summary.actions += 1
                key = f"action:{getattr(d.decision.command, 'action', '?')}"
            else:
                summary.events += 1
                kind = getattr(d.decision, "kind", None)
                kind_value = getattr(kind, "value", kind)
                key = str(kind_value)
                if getattr(kind, "is_alarm", False) and not getattr(d.decision, "test", False):
                    summary.alarms += 1
            summary.by_kind[key] = summary.by_kind.get(key, 0) + 1
            if self._on_decided is not None:
                self._on_decided(d)


def replay_lines(decider: DeciderLike, frames: Iterable[RawFrame], **options: Any) -> list[str]:
    """Replay and return the canonical decision lines (a convenience for tests and tools)."""
    lines: list[str] = []
    Replay(
        decider, on_decided=lambda d: lines.append(canonical_line(canonical_decision(d))), **options
    ).run(frames)
    return lines


# -- comparing with an expected run --------------------------------------------------------


@dataclass
class Comparison:
    """The outcome of comparing a replay's decisions with an expected file."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)
    diff: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self) -> str:
        if self.ok:
            return "decisions match the expected file"
        return (
            f"decisions differ from the expected file: {len(self.missing)} missing, "
            f"{len(self.extra)} extra, {len(self.changed)} changed"
        )


def read_expected(lines: Iterable[str], *, source: str = "<expected>") -> list[str]:
    """Canonical lines of an expected-decisions file; ``#`` comments and blank lines are skipped.

    Each line is parsed and dumped again, so an expectation edited by hand (keys in another
    order, other spacing) still compares equal. A line that is not a JSON object raises
    :class:`ReplayError` naming it.
    """
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise ReplayError(f"{source}:{number}: not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise ReplayError(f"{source}:{number}: expected a JSON object per line")
        out.append(canonical_line(record))
    return out


def _label(line: str) -> str:
    """A short description of a decision line for the summary."""
    try:
        record = json.loads(line)
    except ValueError:
        return line[:120]
    if record.get("decision") == "action":
        command = record.get("command") or {}
        what = f"action {command.get('action')} {command.get('device')}"
    else:
        what = f"{record.get('kind')} {record.get('device_id')}"
    return f"{record.get('at')} {what}"


def compare(
    expected: Sequence[str],
    actual: Sequence[str],
    *,
    expected_name: str = "expected",
    actual_name: str = "replayed",
) -> Comparison:
    """Compare canonical decision lines; the diff is a unified diff of the lines."""
    result = Comparison()
    matcher = difflib.SequenceMatcher(a=expected, b=actual, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old, new = list(expected[i1:i2]), list(actual[j1:j2])
        paired = min(len(old), len(new)) if tag == "replace" else 0
        result.changed.extend(zip(old[:paired], new[:paired], strict=True))
        result.missing.extend(old[paired:])
        result.extra.extend(new[paired:])
    if not result.ok:
        result.diff = "".join(
            line + ("" if line.endswith("\n") else "\n")
            for line in difflib.unified_diff(
                list(expected), list(actual), expected_name, actual_name, lineterm=""
            )
        )
    return result


def describe(comparison: Comparison, *, limit: int = 20) -> Iterator[str]:
    """Lines for people: the summary, then what is missing, extra and changed."""
    yield comparison.summary()
    for title, items in (("missing", comparison.missing), ("extra", comparison.extra)):
        for line in items[:limit]:
            yield f"  {title}: {_label(line)}"
        if len(items) > limit:
            yield f"  ... and {len(items) - limit} more {title}"
    for old, new in comparison.changed[:limit]:
        yield f"  changed: {_label(old)}  ->  {_label(new)}"
    if len(comparison.changed) > limit:
        yield f"  ... and {len(comparison.changed) - limit} more changed"
