"""Heartbeats with group commit: many gateways' heartbeats stored in one transaction.

Thousands of gateways report every 30 s. One transaction per heartbeat would spend most of its
time beginning and committing; instead each request queues its heartbeat and awaits its result,
and one writer task takes everything queued (up to ``max_batch``) into one transaction: one
gateway lookup, one multi-row nonce insert (a nonce not inserted is a replay), one executemany
update, one query for acknowledged alarms and one for households away. Each request still gets
its own answer or error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from contract.signing import SignedHeaders
from contract.wire import Heartbeat
from dispatch import gateways, households, schema
from dispatch.db import Database
from dispatch.errors import BadRequest, Problem, StorageError
from dispatch.sealing import SecretBox
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, transaction

__all__ = ["HeartbeatAnswer", "HeartbeatBatcher"]

log = structlog.get_logger(__name__)

_UPDATED = (
    "last_heartbeat_at",
    "interval_s",
    "offline_after",
    "online",
    "status_changed_at",
    "version",
    "uptime_s",
    "clock_offset_s",
    "buffer_depth",
    "oldest_unsent_age_s",
    "evicted_total",
    "health",
)


@dataclass(frozen=True)
class HeartbeatAnswer:
    """What the reply tells one gateway: alarms acknowledged, and its household's absence."""

    acknowledged_events: list[str]
    away_until: datetime | None = None
    #: The gateway's opened secret: it signs the reply.
    secret: str = field(default="", repr=False)


@dataclass
class _Pending:
    signed: SignedHeaders
    path: str
    body: bytes
    parsed: Heartbeat | BadRequest
    result: asyncio.Future[HeartbeatAnswer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HeartbeatBatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        feed: ChangeFeed,
        box: SecretBox,
        *,
        max_batch: int = 500,
    ) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.feed = feed
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        g = schema.gateways
        self._update = (
            update(g)
            .where(g.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _UPDATED})
        )

    async def submit(
        self, *, headers: Mapping[str, str], path: str, body: bytes, parsed: Heartbeat | BadRequest
    ) -> HeartbeatAnswer:
        """Queue one heartbeat; its answer, or its error (a Problem)."""
        pending = _Pending(gateways.read_signature(headers), path, body, parsed)
        await self._queue.put(pending)
        return await pending.result

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._process(batch)
            except (SQLAlchemyError, OSError) as exc:
                log.error("heartbeat batch failed", error=str(exc), size=len(batch))
                failure = StorageError(f"storing heartbeats failed: {exc}")
                for item in batch:
                    if not item.result.done():
                        item.result.set_exception(failure)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.result.done():
                        item.result.cancel()
                raise

    async def _process(self, batch: list[_Pending]) -> None:
        results: dict[int, HeartbeatAnswer | Problem | StorageError] = {}
        async with transaction(self.db, feed=self.feed, durable=False) as tx:
            g, n = schema.gateways, schema.gateway_nonces
            ids = sorted({item.signed.gateway_id for item in batch})
            rows = {
                r["id"]: r
                for r in (
                    # Locked in id order, so two processes' batches cannot deadlock.
                    await tx.conn.execute(
                        select(g).where(g.c.id.in_(ids)).order_by(g.c.id).with_for_update()
                    )
                ).mappings()
            }
            valid: list[tuple[int, _Pending, Any, Heartbeat]] = []
            secrets: dict[str, str] = {}
            for index, item in enumerate(batch):
                try:
                    gateway, secrets[item.signed.gateway_id] = gateways.check_signature(
                        rows.get(item.signed.gateway_id),
                        item.signed,
                        box=self.box,
                        now=tx.now,
                        method="POST",
                        path=item.path,
                        body=item.body,
                    )
                    if isinstance(item.parsed, BadRequest):
                        raise item.parsed
                    gateways.heartbeat_problem(gateway, item.parsed)
                except (Problem, StorageError) as problem:  # a secret that does not open
                    results[index] = problem
                    continue
                valid.append((index, item, gateway, item.parsed))
            if valid:
                inserted = {
                    (r[0], r[1])
                    for r in await tx.conn.execute(
                        gateways.insert_ignore(tx.dialect, n)
                        .values([gateways.nonce_row(item.signed) for _, item, _, _ in valid])
                        .returning(n.c.gateway_id, n.c.nonce)
                    )
                }
                fresh = []
                for entry in valid:
                    _, item, _, _ = entry
                    key = (item.signed.gateway_id, item.signed.nonce)
                    if key in inserted:
                        inserted.discard(key)  # a nonce twice in one batch: the second replays
                        fresh.append(entry)
                    else:
                        results[entry[0]] = gateways.replayed(item.signed)
                latest: dict[str, dict[str, Any]] = {}
                for _, _, gateway, heartbeat in fresh:
                    values = gateways.heartbeat_values(self.settings, tx.now, gateway, heartbeat)
                    latest[gateway["id"]] = {"b_id": gateway["id"]} | {
                        f"b_{k}": v for k, v in values.items()
                    }
                if latest:
                    await tx.conn.execute(self._update, list(latest.values()))
                    for gateway_id in latest:
                        if not rows[gateway_id]["online"]:
                            await gateways.gateway_back_online(tx, rows[gateway_id])
                    acked = await gateways.acknowledged_alarms(tx, self.settings, list(latest))
                    away = await households.away_until_for(tx.conn, list(latest), tx.now)
                    for index, _, gateway, _ in fresh:
                        results[index] = HeartbeatAnswer(
                            acked[gateway["id"]], away.get(gateway["id"]), secrets[gateway["id"]]
                        )
        for index, item in enumerate(batch):
            outcome = results[index]
            if item.result.done():
                continue
            if isinstance(outcome, Problem | StorageError):
                item.result.set_exception(outcome)
            else:
                item.result.set_result(outcome)
