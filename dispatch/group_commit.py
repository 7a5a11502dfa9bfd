"""Group commit: the writes that arrive together share one durable transaction.

Each caller hands over its write (an async function of the transaction) and waits for the
commit: its result comes back only once that transaction is durable, so an acknowledgement sent
on it never precedes its commit. One writer task takes everything queued into one transaction;
what arrives meanwhile goes into the next, so a write waits behind at most one commit besides
its own. If a shared transaction fails, each of its writes is tried again in a transaction of its
own, so one bad write cannot refuse its neighbours; a write that fails alone gets its exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

from dispatch.db import Database
from dispatch.tx import ChangeFeed, Tx, transaction

__all__ = ["GroupCommit"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass
class _Write(Generic[T]):
    apply: Callable[[Tx], Awaitable[T]]
    done: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    def __init__(
        self, db: Database, feed: ChangeFeed | None = None, *, max_batch: int = 200
    ) -> None:
        self.db = db
        self.feed = feed
        self.max_batch = max_batch
        self._queue: list[_Write[Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._in_flight = 0
        #: Transactions committed, and writes in them (a shared one counts once).
        self.commits = 0
        self.writes = 0

    @property
    def waiting(self) -> int:
        """Writes not committed yet: queued, and in the transaction under way."""
        return len(self._queue) + self._in_flight

    async def run(self, apply: Callable[[Tx], Awaitable[T]]) -> T:
        """``apply``'s result once its transaction has committed (or its exception)."""
        write: _Write[T] = _Write(apply)
        self._queue.append(write)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())
        return await write.done

    async def _write_all(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            try:
                results = await self._commit(batch)
            except asyncio.CancelledError:
                for write in batch:
                    write.done.cancel()
                raise
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                log.warning("group commit failed; its writes go one by one", error=repr(exc))
                for write in batch:
                    try:
                        [result] = await self._commit([write])
                    except asyncio.CancelledError:
                        write.done.cancel()
                        raise
                    except Exception as alone:
                        _fail(write, alone)
                    else:
                        _succeed(write, result)
                continue
            for write, result in zip(batch, results, strict=True):
                _succeed(write, result)

    async def _commit(self, batch: list[_Write[Any]]) -> list[Any]:
        self._in_flight = len(batch)
        try:
            async with transaction(self.db, feed=self.feed) as tx:
                results = [await write.apply(tx) for write in batch]
        finally:
            self._in_flight = 0
        self.commits += 1
        self.writes += len(batch)
        return results

    async def aclose(self) -> None:
        """Stop the writer; writes still queued are cancelled (nothing was acknowledged)."""
        for write in self._queue:
            write.done.cancel()
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


def _succeed(write: _Write[Any], result: Any) -> None:
    if not write.done.done():  # its caller may have gone (a closed connection)
        write.done.set_result(result)


def _fail(write: _Write[Any], exc: Exception) -> None:
    if not write.done.done():
        write.done.set_exception(exc)
