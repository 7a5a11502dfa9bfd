"""The gateway's one direction of data flow: frames → parsers → rules → durable buffer → actions.

Drivers hand raw frames to :meth:`Pipeline.submit`, which only queues them (bounded, so a stalled
disk pushes back on the drivers instead of growing memory). One worker takes whatever has arrived,
parses it, feeds the rule engine, and appends every resulting event to the buffer in a single
group commit. Only once that commit has returned do local actions run and watchers hear of the
events: nothing happens to an event that is not yet on disk.

:meth:`Pipeline.submit` returns a future per frame that resolves once the frame's outcome is
durable: its events committed, or it decided nothing. A transport whose wire acknowledges (an
MQTT PUBACK) waits for it, so a gateway killed before the commit is sent the frame again.

Except on a disk that refuses them: alarms and troubles are committed first, apart from the
telemetry decided with them, and if they still cannot be committed after a few quick tries they
are held in memory by the buffer (forwarded from there, written as soon as the disk allows, the
buffer reporting ``disk_full``), and the local actions run anyway. Telemetry that cannot be
stored is dropped and counted. The worker keeps moving, so the watchdog is fed: a restart would
lose what is held, and would not make the disk any emptier.

The rule engine is pure and single-threaded; only the worker calls it. Acknowledgements from
dispatch and mode changes travel through the same queue so that they are ordered with the frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import EventDraft
from contract.wire import Event, EventKind, Lane, RawFrame, Reading
from drivers.base import Durable, FrameParser, LocalCommand
from gatewayd.devicestate import DeviceStates
from gatewayd.memory import MemoryKeeper
from gatewayd.status import PipelineStatus
from rules import LocalAction, RuleEngine
from rules.decider import Decided, Decider, draft_of
from runtime.backoff import NO_JITTER, Backoff
from runtime.timeouts import within

__all__ = ["Pipeline", "PipelineStats"]

log = structlog.get_logger(__name__)

Mode = Literal["normal", "away", "test"]
CommandSink = Callable[[LocalCommand], Awaitable[None]]


class TraceSink(Protocol):
    """Where the pipeline's inputs are recorded for replay (see :mod:`replay.recorder`)."""

    def tap(self, frame: RawFrame) -> None: ...
    def note_ack(self, condition: str, at: datetime | None = None) -> None: ...
    def note_mode(self, mode: str, at: datetime | None = None) -> None: ...


EventListener = Callable[[Event], None]
#: An event and the reading that caused it (None for one of a timer, a mode change, an ack).
CausedEventListener = Callable[[Event, Reading | None], None]


@dataclass(frozen=True, slots=True)
class _Frame:
    frame: RawFrame
    durable: Durable


@dataclass(frozen=True, slots=True)
class _Ack:
    condition: str


@dataclass(frozen=True, slots=True)
class _ModeChange:
    mode: Mode
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _Absence:
    until: datetime | None


_Item = RawFrame | _Frame | _Ack | _ModeChange | _Absence


@dataclass
class PipelineStats:
    frames: int = 0
    events: int = 0
    alarms: int = 0
    #: Telemetry events that could not be stored and were dropped.
    telemetry_dropped: int = 0
    last_progress_mono: float = field(default_factory=time.monotonic)
    commit_started_mono: float | None = None


class Pipeline:
    """Runs frames through parsers and rules into the buffer, then carries out local actions."""

    def __init__(
        self,
        *,
        engine: RuleEngine,
        buffer: AsyncEventBuffer,
        parsers: dict[str, FrameParser],
        send_command: CommandSink,
        devices: DeviceStates,
        recorder: TraceSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_size: int = 10_000,
        max_batch: int = 2_000,
        tick_interval: float = 1.0,
        stall_after: float = 10.0,
        memory: MemoryKeeper | None = None,
        commit_attempts: int = 4,
    ) -> None:
        self.decider = Decider(engine, parsers, devices)
        #: Keeps the engine's memory in the buffer for a restart (None: not kept).
        self.memory = memory
        self.buffer = buffer
        self._send_command = send_command
        self._recorder = recorder
        self._clock = clock
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._max_batch = max_batch
        self._tick_interval = tick_interval
        self.stall_after = stall_after
        #: Tries of a commit before its alarms are held in memory (or its telemetry dropped).
        self.commit_attempts = max(1, commit_attempts)
        self._listeners: list[CausedEventListener] = []
        # A resumed engine may come back in away mode.
        self.mode: Mode = engine.mode
        self.stats = PipelineStats()
        #: Frames whose alarms are held in memory: acknowledged once those are safe.
        self._awaiting_durable: list[tuple[list[Durable], set[str]]] = []
        # event id -> condition, for end-to-end acknowledgements of alarms (bounded).
        self._alarm_conditions: dict[str, str] = {}
        #: The household's absence as last queued for the engine (see absence()).
        self._absent_until: datetime | None = None

    # -- inputs ---------------------------------------------------------------------------

    async def submit(self, frame: RawFrame) -> Durable:
        """The drivers' ``emit``: queue a frame, waiting while the queue is full; the future
        resolves once the frame's outcome is durable."""
        durable: Durable = asyncio.get_running_loop().create_future()
        await self._queue.put(_Frame(frame, durable))
        return durable

    def acknowledged(self, event_ids: Iterable[str]) -> None:
        """Dispatch says a person has taken these alarms: stop escalating them."""
        for event_id in event_ids:
            condition = self._alarm_conditions.pop(event_id, None)
            if condition is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(_Ack(condition))

    def absence(self, until: datetime | None) -> None:
        """Dispatch says the household is away or in hospital until ``until`` (None: at home):
        the inactivity rule rests until then. Told with every heartbeat reply; queued only when
        it changes."""
        if until == self._absent_until:
            return
        with contextlib.suppress(asyncio.QueueFull):  # told again with the next reply
            self._queue.put_nowait(_Absence(until))
            self._absent_until = until

    async def set_mode(self, mode: str) -> None:
        if mode not in ("normal", "away", "test"):
            raise ValueError(f"unknown mode {mode!r}; expected normal, away or test")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_ModeChange(mode, done))  # type: ignore[arg-type]
        await done

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event once it is durable; returns a remover."""
        return self.add_caused_listener(lambda event, _reading: listener(event))

    def add_caused_listener(self, listener: CausedEventListener) -> Callable[[], None]:
        """Like :meth:`add_listener`, with the reading behind each event as well."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- health ---------------------------------------------------------------------------

    def healthy(self) -> bool:
        """True while the worker is moving: it finished a round recently and no commit hangs."""
        stall_after = self.stall_after
        now = time.monotonic()
        started = self.stats.commit_started_mono
        if started is not None and now - started > stall_after:
            return False
        return now - self.stats.last_progress_mono <= stall_after + self._tick_interval

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # -- the worker -----------------------------------------------------------------------

    async def run(self) -> None:
        """Process queued items and tick the rules; runs until cancelled."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            timeout = max(0.0, next_tick - loop.time())
            items: list[_Item] = []
            if self._queue.empty():
                # Only when there is nothing to take yet: a timed wait costs more than a get.
                with contextlib.suppress(TimeoutError):
                    items.append(await within(self._queue.get(), timeout))
            while len(items) < self._max_batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            tick = loop.time() >= next_tick
            if tick:
                next_tick = loop.time() + self._tick_interval
            await self.process(items, tick=tick)

    @property
    def engine(self) -> RuleEngine:
        return self.decider.engine

    async def drain(self) -> None:
        """Process everything queued now (used at shutdown, after the drivers stopped)."""
        items: list[_Item] = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        await self.process(items, tick=True)
        if self.memory is not None:
            await self.memory.save_if_changed(self.engine, now=True)

    async def process(self, items: Sequence[_Item], *, tick: bool = False) -> list[Event]:
        """Decide on a group of items and make the outcome durable in one commit."""
        decided: list[Decided] = []
        mode_changes: list[_ModeChange] = []
        durables: list[Durable] = []
        decider = self.decider
        rec = self._recorder
        for item in items:
            if isinstance(item, _Frame):
                durables.append(item.durable)
                item = item.frame
            if isinstance(item, RawFrame):
                self.stats.frames += 1
                if rec is not None:
                    self._record(rec.tap, item)
                decided.extend(decider.frame(item))
            elif isinstance(item, _Ack):
                now = self._clock()
                if rec is not None:
                    self._record(rec.note_ack, item.condition, now)
                decided.extend(decider.acknowledge(item.condition, now))
            elif isinstance(item, _Absence):
                decided.extend(decider.set_absence(item.until, self._clock()))
                log.info(
                    "household_absence",
                    until=item.until.isoformat() if item.until else None,
                    inactivity="resting" if item.until else "watched",
                )
            else:
                now = self._clock()
                if rec is not None:
                    self._record(rec.note_mode, item.mode, now)
                decided.extend(decider.set_mode(item.mode, now))
                self.mode = item.mode
                mode_changes.append(item)
        if tick:
            decided.extend(decider.tick(self._clock()))
        drafts: list[EventDraft] = []
        readings_of: list[Reading | None] = []
        actions: list[LocalAction] = []
        for d in decided:
            if isinstance(d.decision, LocalAction):
                actions.append(d.decision)
            else:
                drafts.append(draft_of(d.decision, d.at))
                readings_of.append(d.reading)
        committed: list[Event | None] = await self._commit(drafts) if drafts else []
        if tick and self.buffer.buffer.needs_retry:
            await self.buffer.persist_held()
        # Every frame of the round is durable now (or decided nothing): its transport may
        # acknowledge it, before the local actions that may take seconds. A round with alarms
        # held in memory (a disk that refuses even the reserve) is acknowledged only once they
        # are written or dispatch has them: until then the broker keeps them for us.
        held = self.buffer.buffer.still_held(e.id for e in committed if e is not None)
        if held:
            self._awaiting_durable.append((durables, held))
        else:
            _resolve(durables)
        if tick and self._awaiting_durable:
            self._resolve_no_longer_held()
        self.stats.last_progress_mono = time.monotonic()
        for change in mode_changes:
            if not change.done.done():
                change.done.set_result(None)
        # Durable now: only from here on does anything else happen.
        events: list[Event] = []
        for event, reading in zip(committed, readings_of, strict=True):
            if event is not None:
                events.append(event)
                self._after_commit(event, reading)
        for action in actions:
            await self._run_action(action)
        if self.memory is not None:
            await self.memory.save_if_changed(self.engine)
        return events

    def _resolve_no_longer_held(self) -> None:
        waiting, self._awaiting_durable = self._awaiting_durable, []
        for durables, held in waiting:
            still = self.buffer.buffer.still_held(held)
            if still:
                self._awaiting_durable.append((durables, still))
            else:
                _resolve(durables)

    @staticmethod
    def _record(method: Callable[..., None], *args: Any) -> None:
        # Recording is for people debugging later; it must never stop the alarm path.
        try:
            method(*args)
        except Exception:
            log.exception("trace_record_failed")

    async def _commit(self, drafts: list[EventDraft]) -> list[Event | None]:
        """Alarms and troubles first, then telemetry; one entry per draft, None if dropped.

        While a commit hangs, :meth:`healthy` turns false, so the systemd watchdog stops being
        fed and systemd restarts the daemon if it does not recover. A commit that fails is
        tried again a few times; then alarms are held in memory and telemetry is dropped.
        """
        self.stats.commit_started_mono = time.monotonic()
        out: list[Event | None] = [None] * len(drafts)
        urgent = [i for i, d in enumerate(drafts) if d.kind.lane is not Lane.TELEMETRY]
        telemetry = [i for i, d in enumerate(drafts) if d.kind.lane is Lane.TELEMETRY]
        try:
            if urgent:
                chosen = [drafts[i] for i in urgent]
                events = await self._append(chosen)
                if events is None:
                    events = await self.buffer.hold(chosen)
                for i, event in zip(urgent, events[: len(urgent)], strict=False):
                    out[i] = event
            if telemetry:
                chosen = [drafts[i] for i in telemetry]
                stored = None if self.buffer.buffer.disk_full else await self._append(chosen)
                if stored is None:
                    self.stats.telemetry_dropped += len(chosen)
                    log.error(
                        "telemetry_not_stored",
                        events=len(chosen),
                        dropped_total=self.stats.telemetry_dropped,
                    )
                else:
                    for i, event in zip(telemetry, stored, strict=True):
                        out[i] = event
        finally:
            self.stats.commit_started_mono = None
        return out

    async def _append(self, drafts: list[EventDraft]) -> list[Event] | None:
        """Append, trying again after a storage hiccup; None once every attempt failed."""
        backoff = Backoff(0.05, 1.0, jitter=NO_JITTER)
        for attempt in range(1, self.commit_attempts + 1):
            try:
                return await self.buffer.append(drafts)
            except Exception as exc:
                last = attempt == self.commit_attempts
                delay = 0.0 if last else backoff.next_delay()
                log.error(
                    "buffer_append_failed",
                    error=repr(exc),
                    events=len(drafts),
                    attempt=attempt,
                    retry_in=None if last else delay,
                )
                if not last:
                    await asyncio.sleep(delay)
        return None

    def _after_commit(self, event: Event, reading: Reading | None) -> None:
        self.stats.events += 1
        if event.kind.is_alarm and not event.test:
            self.stats.alarms += 1
            condition = event.payload.get("condition")
            if isinstance(condition, str):
                self._alarm_conditions[event.id] = condition
                while len(self._alarm_conditions) > 10_000:
                    self._alarm_conditions.pop(next(iter(self._alarm_conditions)))
        if event.kind is not EventKind.HEARTBEAT:
            # Telemetry flows at thousands a second: logging each at INFO costs the pipeline
            # real time and drowns the journal; alarms and troubles are always logged.
            if event.kind.is_alarm:
                emit = log.warning
            elif event.lane is Lane.TELEMETRY and not event.test:
                emit = log.debug
            else:
                emit = log.info
            emit(
                "event",
                event_id=event.id,
                kind=event.kind.value,
                device=event.device_id,
                seq=event.seq,
                test=event.test,
            )
        for listener in list(self._listeners):
            try:
                listener(event, reading)
            except Exception:
                log.exception("event_listener_failed")

    async def _run_action(self, action: LocalAction) -> None:
        try:
            await self._send_command(action.command)
        except Exception:
            log.exception(
                "local_action_failed",
                device=action.command.device,
                action=action.command.action,
                reason=action.reason,
            )


def describe_status(pipeline: Pipeline) -> PipelineStatus:
    s = pipeline.stats
    return PipelineStatus(
        frames=s.frames,
        readings=pipeline.decider.readings,
        events=s.events,
        alarms=s.alarms,
        backlog=pipeline.backlog,
        engine_errors=pipeline.decider.engine_errors,
        mode=pipeline.mode,
    )


def _resolve(durables: Iterable[Durable]) -> None:
    for durable in durables:
        if not durable.done():
            durable.set_result(None)
