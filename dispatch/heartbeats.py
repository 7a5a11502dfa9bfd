"""Heartbeats: answered from memory at once, written to the database in groups.

Thousands of gateways report every 30 s, and a heartbeat's only durable effect is the gateway's
row (last seen, next deadline, health). So a heartbeat is checked and answered without waiting on
the database: the gateway from :class:`~dispatch.gateway_cache.GatewayCache`, its nonce against
the ones this process saw, its answer (alarms acknowledged, household away) from a snapshot read
again after every committed change. Every ``heartbeat_flush_s`` one transaction writes what was
answered: the rows re-read and locked, the nonces inserted (one another process saw already is a
replay: not applied), one executemany update, a gateway back online handled.

What an alarm needs is never behind this: a heartbeat of a gateway marked offline is written,
and its offline incident resolved, before it is answered; the supervisor of this process writes
what is pending before each look; other processes declare a gateway lost only twice the flush
interval after its deadline (:func:`dispatch.gateways.offline_grace`). A crash loses at most the
last interval's last-seen times, and the supervisor waits a whole offline window after a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from contract.signing import MAX_SKEW_S, SignedHeaders
from contract.wire import Heartbeat
from dispatch import gateways, households, schema
from dispatch.db import Database
from dispatch.errors import BadRequest, Problem, StorageError
from dispatch.gateway_cache import CachedGateway, GatewayCache
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, transaction
from runtime.timeouts import within

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
#: Heartbeats written per transaction (bounded statement parameters on both backends).
_MAX_WRITE = 4000
#: Pending heartbeats kept while the database does not answer (the latest per gateway matter).
_MAX_PENDING = 100_000
#: The answers' snapshot is read again at least this often, changes or not.
_ANSWERS_MAX_AGE_S = 5.0


@dataclass(frozen=True)
class HeartbeatAnswer:
    """What the reply tells one gateway: alarms acknowledged, and its household's absence."""

    acknowledged_events: list[str]
    away_until: datetime | None = None
    #: The gateway's opened secret: it signs the reply.
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class _Beat:
    gateway_id: str
    nonce: dict[str, Any]
    #: The sealed secret it was checked against: a re-key since means it is not applied.
    sealed: str
    at: datetime
    values: dict[str, Any]


@dataclass(frozen=True)
class _Answers:
    acknowledged: dict[str, list[str]]
    away: dict[str, datetime]
    generation: int
    read_at: float


class HeartbeatBatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        feed: ChangeFeed,
        cache: GatewayCache,
    ) -> None:
        self.db = db
        self.settings = settings
        self.feed = feed
        self.cache = cache
        self._pending: list[_Beat] = []
        #: Nonces this process accepted, until their timestamps can no longer pass.
        self._nonces: set[tuple[str, str]] = set()
        self._nonce_expiry: deque[tuple[float, tuple[str, str]]] = deque()
        self._answers: _Answers | None = None
        self._answers_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._due = asyncio.Event()
        g = schema.gateways
        self._update = (
            update(g)
            .where(g.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _UPDATED})
        )

    # -- answering ------------------------------------------------------------------------

    async def submit(
        self, *, headers: Mapping[str, str], path: str, body: bytes, parsed: Heartbeat | BadRequest
    ) -> HeartbeatAnswer:
        """Check one heartbeat and answer it; its error (a Problem) if it is refused."""
        signed = gateways.read_signature(headers)
        now = datetime.now(UTC)
        entry = await self._gateway(signed, now, path, body)
        if isinstance(parsed, BadRequest):
            raise parsed
        gateways.heartbeat_problem(entry.row, parsed)
        key = (signed.gateway_id, signed.nonce)
        if key in self._nonces:
            raise gateways.replayed(signed)
        self._remember(key, signed.timestamp)
        values = gateways.heartbeat_values(self.settings, now, entry.row, parsed)
        # The in-memory truth at once: an alarm arriving before the write takes its clock offset
        # from here (online and its time change only when written, with the offline incident).
        entry.row.update(
            {k: v for k, v in values.items() if k not in ("online", "status_changed_at")}
        )
        self._pending.append(
            _Beat(signed.gateway_id, gateways.nonce_row(signed), entry.sealed, now, values)
        )
        if not entry.row["online"]:
            # Back from offline: its incident is resolved before the gateway hears back.
            await self.flush()
        elif len(self._pending) >= _MAX_WRITE:
            self._due.set()
        answers = await self._current_answers()
        away = answers.away.get(signed.gateway_id)
        return HeartbeatAnswer(
            list(answers.acknowledged.get(signed.gateway_id, ())),
            away if away is not None and away > now else None,
            entry.secret,
        )

    async def _gateway(
        self, signed: SignedHeaders, now: datetime, path: str, body: bytes
    ) -> CachedGateway:
        entry = self.cache.get(signed.gateway_id)
        if entry is not None:
            try:
                gateways.check_cached(entry, signed, now=now, method="POST", path=path, body=body)
                return entry
            except Problem:
                self.cache.evict(signed.gateway_id)  # perhaps stale: decide on the stored row
        g = schema.gateways
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(g).where(g.c.id == signed.gateway_id)))
                .mappings()
                .first()
            )
        gateway, secret = gateways.check_signature(
            row, signed, box=self.cache.box, now=now, method="POST", path=path, body=body
        )
        return self.cache.put(gateway, secret)

    def _remember(self, key: tuple[str, str], timestamp: float) -> None:
        clock = time.time()
        expiry = self._nonce_expiry
        while expiry and expiry[0][0] < clock:
            self._nonces.discard(expiry.popleft()[1])
        self._nonces.add(key)
        # After this the timestamp check refuses the request anyway.
        expiry.append((timestamp + MAX_SKEW_S + 60, key))

    async def _current_answers(self) -> _Answers:
        """The snapshot, read again if anything was committed since it was read."""
        wanted = self.feed.generation
        async with self._answers_lock:
            answers = self._answers
            if (
                answers is None
                or answers.generation < wanted
                or time.monotonic() - answers.read_at > _ANSWERS_MAX_AGE_S
            ):
                generation = self.feed.generation
                now = datetime.now(UTC)
                try:
                    async with self.db.read() as conn:
                        acked = await gateways.acknowledged_alarms(conn, self.settings, now)
                        away = await households.away_until_for(conn, None, now)
                except (SQLAlchemyError, OSError) as exc:
                    raise StorageError(f"reading heartbeat answers failed: {exc}") from exc
                answers = self._answers = _Answers(acked, away, generation, time.monotonic())
            return answers

    # -- writing --------------------------------------------------------------------------

    async def run(self) -> None:
        """Write what was answered every ``heartbeat_flush_s`` (or sooner, when much is)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await within(self._due.wait(), self.settings.heartbeat_flush_s)
            self._due.clear()
            with contextlib.suppress(StorageError):
                await self.flush()

    async def flush(self) -> None:
        """Write every heartbeat answered so far (kept for the next try if it fails)."""
        async with self._flush_lock:
            while self._pending:
                beats = self._pending[:_MAX_WRITE]
                del self._pending[:_MAX_WRITE]
                try:
                    await self._write(beats)
                except (SQLAlchemyError, OSError) as exc:
                    log.error("heartbeat write failed", error=str(exc), size=len(beats))
                    self._pending[:0] = beats
                    del self._pending[:-_MAX_PENDING]
                    raise StorageError(f"storing heartbeats failed: {exc}") from exc

    async def _write(self, beats: list[_Beat]) -> None:
        g, n = schema.gateways, schema.gateway_nonces
        async with transaction(self.db, feed=self.feed, durable=False) as tx:
            ids = sorted({beat.gateway_id for beat in beats})
            rows = {
                r["id"]: r
                for r in (
                    # Locked in id order, so two processes' writes cannot deadlock.
                    await tx.conn.execute(
                        select(g).where(g.c.id.in_(ids)).order_by(g.c.id).with_for_update()
                    )
                ).mappings()
            }
            # One statement compiled once (executemany), not a VALUES list compiled per write.
            inserted = {
                (r[0], r[1])
                for r in await tx.conn.execute(
                    gateways.insert_ignore(tx.dialect, n).returning(n.c.gateway_id, n.c.nonce),
                    [beat.nonce for beat in beats],
                )
            }
            latest: dict[str, _Beat] = {}
            for beat in beats:
                row = rows.get(beat.gateway_id)
                if (beat.gateway_id, beat.nonce["nonce"]) not in inserted:
                    log.warning(
                        "heartbeat replayed to another process: not applied",
                        gateway=beat.gateway_id,
                        nonce=beat.nonce["nonce"],
                    )
                elif row is None or row["revoked_at"] is not None or row["secret"] != beat.sealed:
                    # Revoked or re-enrolled since it was answered: its next request is refused.
                    self.cache.evict(beat.gateway_id)
                else:
                    latest[beat.gateway_id] = beat
            written: dict[str, dict[str, Any]] = {}
            for gateway_id, beat in latest.items():
                row = rows[gateway_id]
                written[gateway_id] = beat.values | {
                    "status_changed_at": beat.at if not row["online"] else row["status_changed_at"]
                }
            if written:
                await tx.conn.execute(
                    self._update,
                    [
                        {"b_id": gateway_id} | {f"b_{k}": v for k, v in values.items()}
                        for gateway_id, values in written.items()
                    ],
                )
                for gateway_id in written:
                    if not rows[gateway_id]["online"]:
                        await gateways.gateway_back_online(tx, rows[gateway_id])
        for gateway_id, values in written.items():
            self.cache.put(dict(rows[gateway_id]) | values)
