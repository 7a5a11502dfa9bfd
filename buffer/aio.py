"""An asyncio front for :class:`~buffer.store.EventBuffer` with group commit.

Every ``append`` call waits until its events are committed. Calls that arrive while a commit is
in progress are gathered and committed together in the next transaction, in one worker thread,
so slow storage costs one fsync per group rather than one per call, and throughput grows with
load instead of collapsing. Nothing is acknowledged early: the queue in front holds only callers
that are still waiting, so its size is bounded by the number of concurrent callers.

Lanes: a call that holds an alarm or a trouble is committed before telemetry queued with it,
in a transaction of its own, so a telemetry commit that fails (a full disk) never holds an alarm
back. :meth:`AsyncEventBuffer.hold` keeps what could not be committed in memory (see
:meth:`~buffer.store.EventBuffer.hold`).

Signals: :attr:`AsyncEventBuffer.new_events` is set after every commit;
:attr:`AsyncEventBuffer.alarm_appended` is set when a commit held an alarm-lane event (an alarm
or its restore), so the forwarder can leave a back-off at once. Consumers clear them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import structlog

from buffer.store import (
    ActiveConditionRow,
    BufferStats,
    EventBuffer,
    EventBufferError,
    EventDraft,
)
from contract.wire import Event, EventAck, Lane

__all__ = ["AsyncEventBuffer"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_Request = tuple[Sequence[EventDraft], "asyncio.Future[list[Event]]"]


class AsyncEventBuffer:
    """Group-committing async wrapper; all database work runs in one worker thread."""

    def __init__(self, buffer: EventBuffer, *, max_group_events: int = 20_000) -> None:
        self.buffer = buffer
        self.max_group_events = max_group_events
        self.new_events = asyncio.Event()
        self.alarm_appended = asyncio.Event()
        #: Calls holding an alarm or a trouble; committed before ``_telemetry``.
        self._urgent: deque[_Request] = deque()
        self._telemetry: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        #: Groups committed (one transaction each), for tests and metrics.
        self.groups_committed = 0
        #: Each further consumer's own (new_events, alarm_appended) pair: a consumer clears
        #: its own signals, never another's.
        self._listeners: list[tuple[asyncio.Event, asyncio.Event]] = []

    def listen(self) -> tuple[asyncio.Event, asyncio.Event]:
        """Signals of one's own, set like :attr:`new_events` and :attr:`alarm_appended`."""
        pair = (asyncio.Event(), asyncio.Event())
        self._listeners.append(pair)
        return pair

    async def start(self) -> None:
        if self._committer is not None:
            return
        if self._closing:
            raise EventBufferError("buffer is closed")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-buffer")
        self._committer = asyncio.create_task(self._commit_loop(), name="buffer-committer")

    async def append(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Append events; returns once they are committed (durable), with ids and seqs."""
        if self._closing:
            raise EventBufferError("buffer is closing; nothing was appended")
        if not drafts:
            return []
        await self.start()
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        urgent = any(d.kind.lane is not Lane.TELEMETRY for d in drafts)
        (self._urgent if urgent else self._telemetry).append((list(drafts), future))
        self._wakeup.set()
        # A cancelled caller does not un-append: the group may already be committing.
        return await asyncio.shield(future)

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._urgent or self._telemetry:
                # Alarms first, and never in one transaction with telemetry.
                queue = self._urgent or self._telemetry
                group: list[_Request] = []
                count = 0
                while queue and (not group or count < self.max_group_events):
                    request = queue.popleft()
                    group.append(request)
                    count += len(request[0])
                await self._commit(group)
            if self._closing:
                return

    async def _commit(self, group: list[_Request]) -> None:
        try:
            results = await self._run(self.buffer.append_groups, [drafts for drafts, _ in group])
        except Exception as exc:
            log.error("buffer_group_commit_failed", error=repr(exc), callers=len(group))
            error = exc if isinstance(exc, EventBufferError) else EventBufferError(repr(exc))
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        self.groups_committed += 1
        alarm = False
        committed = False
        for (_, future), result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                if not future.done():
                    future.set_exception(result)
                continue
            committed = True
            alarm = alarm or any(e.lane is Lane.ALARM for e in result)
            if not future.done():
                future.set_result(result)
        if committed:
            self.new_events.set()
            for new_events, _ in self._listeners:
                new_events.set()
        if alarm:
            self.alarm_appended.set()
            for _, alarm_appended in self._listeners:
                alarm_appended.set()

    async def _run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if self._executor is None:
            await self.start()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(*args, **kwargs))

    async def hold(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Keep events that could not be committed in memory, forwarded from there."""
        result: list[Event] = await self._run(self.buffer.hold, drafts)
        if result:
            self.new_events.set()
            self.alarm_appended.set()
            for new_events, alarm_appended in self._listeners:
                new_events.set()
                alarm_appended.set()
        return result

    async def persist_held(self) -> int:
        """Try to write the held events now (and to make the reserve again); how many were."""
        written: int = await self._run(self.buffer.persist_held)
        return written

    async def pending(
        self,
        *,
        max_events: int = 500,
        max_bytes: int = 512 * 1024,
        telemetry_after: int | None = None,
        channel: str | None = None,
    ) -> list[Event]:
        result: list[Event] = await self._run(
            self.buffer.pending,
            max_events=max_events,
            max_bytes=max_bytes,
            telemetry_after=telemetry_after,
            channel=channel,
        )
        return result

    async def acknowledge(
        self, acks: Sequence[EventAck] | Sequence[str], *, channel: str | None = None
    ) -> int:
        result: int = await self._run(self.buffer.acknowledge, acks, channel=channel)
        return result

    async def quarantine(
        self, event_ids: Sequence[str], *, reason: str, channel: str | None = None
    ) -> int:
        result: int = await self._run(
            self.buffer.quarantine, event_ids, reason=reason, channel=channel
        )
        return result

    async def release_quarantined(self, *, channel: str | None = None) -> int:
        result: int = await self._run(self.buffer.release_quarantined, channel=channel)
        if result:
            self.new_events.set()
            for new_events, _ in self._listeners:
                new_events.set()
        return result

    async def active_conditions(self) -> list[ActiveConditionRow]:
        result: list[ActiveConditionRow] = await self._run(self.buffer.active_conditions)
        return result

    async def save_memory(self, memory: str, saved_at: datetime) -> None:
        await self._run(self.buffer.save_memory, memory, saved_at)

    def stats(self, now: datetime) -> BufferStats:
        return self.buffer.stats(now)

    async def aclose(self) -> None:
        """Commit every append already waiting, then close the buffer."""
        if self._closed:
            return
        self._closing = True
        if self._committer is not None:
            # The committer drains the queue (its callers are waiting), then returns.
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.buffer.close)
            self._executor.shutdown(wait=True)
        else:
            self.buffer.close()
        self._closed = True
