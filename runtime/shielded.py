"""``run_to_end``: a piece of work that runs to its end even when its caller is cancelled.

A database statement cut off half-way is worse than one that finishes with nobody waiting:
SQLAlchemy then tears the connection down (its thread and open transaction) instead of handing
it back to the pool; on SQLite a write cut off inside its transaction was seen to keep the file's
write lock, and every write after it (an alarm's too) failed with "database is locked" 30 s
later. Work done for something that may go at any moment (a live stream whose browser tab is
closed, that stream's presence beat) goes through here: the caller is cancelled at once, as
asked, and the work commits or rolls back on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["run_to_end"]

T = TypeVar("T")

# The loop keeps only weak references to tasks: work whose caller has gone is held here.
_running: set[asyncio.Future[Any]] = set()


def _done(task: asyncio.Future[Any]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a caller that went is not told, and nothing is logged


async def run_to_end(work: Awaitable[T]) -> T:
    """Await ``work``; if this is cancelled, ``work`` still runs to its end (its result or
    error then goes nowhere)."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_done)
    return await asyncio.shield(task)
