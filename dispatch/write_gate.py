"""One writer at a time, in order of urgency: an alarm never queues behind telemetry.

SQLite takes one writer at a time, so :class:`~dispatch.db.Database` serialises this process's
writes. A plain FIFO lock made an SOS wait for every batch of wristband positions queued before
it. Here a writer waits in the queue of its priority and the gate, when freed, goes to the oldest
writer of the most urgent queue: alarms first, then other durable writes (operators' actions, a
gateway's events), then telemetry and housekeeping (heartbeats, positions). Within a priority it
is first come, first served. A write already running is never interrupted: telemetry keeps its
transactions short (see :class:`~dispatch.jt808.tracker.Tracker`) so that the wait is short.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["Priority", "WriteGate"]


class Priority(enum.IntEnum):
    ALARM = 0
    DURABLE = 1
    TELEMETRY = 2


class WriteGate:
    def __init__(self) -> None:
        self._busy = False
        self._queues: tuple[deque[asyncio.Future[None]], ...] = tuple(deque() for _ in Priority)

    @property
    def waiting(self) -> int:
        return sum(1 for q in self._queues for f in q if not f.done())

    @asynccontextmanager
    async def hold(self, priority: Priority) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority) -> None:
        if not self._busy and not self.waiting:
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues[priority].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the gate as it was cancelled: pass it on
            raise

    def _release(self) -> None:
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():  # a cancelled waiter's turn is skipped
                    turn.set_result(None)  # handed over: the gate stays busy
                    return
        self._busy = False
