"""The gateway's durable event buffer: one SQLite file in WAL mode, the single source of truth.

An event exists for the rest of the gateway only once its transaction has committed:
:meth:`EventBuffer.append` returns after ``COMMIT``, never before. A transaction that contains an
alarm or a trouble runs with ``synchronous=FULL`` (the WAL is fsync'd before ``COMMIT`` returns,
so it survives a power cut); a telemetry-only transaction runs with ``synchronous=NORMAL``
(it survives the process being killed, and a power cut loses at most the telemetry committed
since the last fsync of the WAL). Because an fsync covers the whole WAL file, everything
committed before an alarm is as durable as the alarm. See ``docs/buffer.md``.

Ordering: events are forwarded by lane (alarm, trouble, telemetry), then by ``seq``, a
per-gateway sequence that never goes back, even after every event has been delivered.

Errors::

    EventBufferError
    ├── BufferLocked        another process holds this buffer
    ├── BufferSchemaTooNew  the file was written by a newer gatewayd; it is left alone
    └── BufferStorageError  SQLite refused a write (disk full, I/O error): nothing was appended

A full disk: a preallocated reserve file beside the buffer (:mod:`buffer.reserve`) is given
back to the disk when a commit holding an alarm or a trouble finds it full, and the commit is
tried again; until the reserve can be made again, telemetry is refused so that the space is the
alarm lane's. An event that still cannot be committed may be *held* (:meth:`EventBuffer.hold`):
it gets its id and seq, is forwarded from memory like a stored one, and every later commit
tries to write it first. ``BufferStats.disk_full`` and ``not_durable`` say so.

The module is synchronous and thread-safe (one lock); :mod:`buffer.aio` puts an
asyncio group-commit front on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import structlog
from pydantic import ValidationError

from buffer.files import (
    MIGRATIONS,
    SCHEMA_VERSION,
    BufferLocked,
    BufferSchemaTooNew,
    BufferStorageError,
    EventBufferError,
    check_integrity,
    connect,
    glob_escape,
    is_corruption,
    is_disk_full,
    migrate,
    quarantine_file,
    salvage_events,
    take_lock,
)
from buffer.reserve import DEFAULT_RESERVE_BYTES, SpaceReserve
from contract.trusted import make_event
from contract.wire import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    Event,
    EventAck,
    EventDraft,
    EventKind,
    Lane,
    Priority,
    new_event_id,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ActiveConditionRow",
    "BufferLocked",
    "BufferSchemaTooNew",
    "BufferStats",
    "BufferStorageError",
    "EventBuffer",
    "EventBufferError",
    "EventDraft",
    "condition_of",
]

log = structlog.get_logger(__name__)

#: Once the used size passes the budget, evict down to this fraction of it, so that eviction
#: happens in rounds (each reported once) rather than on every append.
EVICT_TO_FRACTION: Final = 0.9
#: Bytes an event costs on the wire besides its payload, kind and device (ids, times, keys).
_EVENT_OVERHEAD: Final = 200
_LANE_CODE: Final = {Lane.ALARM: 0, Lane.TROUBLE: 1, Lane.TELEMETRY: 2}
_CODE_LANE: Final = {v: k for k, v in _LANE_CODE.items()}
_IDENTIFIER_BAD = re.compile(r"[^A-Za-z0-9_.:@\-]")


#: ``json.dumps(payload, separators=(",", ":"), default=str)``, its encoder made once (dumps
#: makes one per call when given options).
_PAYLOAD_JSON: Final = json.JSONEncoder(separators=(",", ":"), default=str).encode
#: Kinds and priorities by their stored values (the enums' own lookup is slower).
_KINDS: Final = {k.value: k for k in EventKind}
_PRIORITIES: Final = {int(p): p for p in Priority}

_EVENT_COLUMNS: Final = "seq, id, lane, kind, priority, device_id, at, test, payload, size"
_INSERT_COLUMNS: Final = f"{_EVENT_COLUMNS}, appended_at"
_INSERT_EVENT: Final = f"INSERT INTO events ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 11)})"
#: The same rows, given as one JSON array of arrays (SQLite's JSON functions, 3.38 and later).
_INSERT_FROM_JSON: Final = (
    f"INSERT INTO events ({_INSERT_COLUMNS}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(11))
    + " FROM json_each(?) ORDER BY key"
)


class ActiveConditionRow(NamedTuple):
    """An alarm or trouble condition whose latest event was not a restore (nor a walk test)."""

    condition: str
    kind: EventKind
    device_id: str | None
    #: When the condition was raised (the gateway's clock), so a restarted engine can tell a
    #: repeat of the same press from a new one.
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BufferStats:
    depth: dict[Lane, int]
    oldest_unsent_age_s: float | None
    evicted: dict[Lane, int]
    size_bytes: int
    used_bytes: int
    budget_bytes: int
    quarantined_files: tuple[Path, ...] = ()
    quarantined_events: int = 0
    #: The disk is full: the alarm lane's reserve is spent (or could not be made) and
    #: telemetry is refused until it is back.
    disk_full: bool = False
    #: Events held in memory because they could not be committed (counted in ``depth`` too).
    not_durable: int = 0

    @property
    def evicted_total(self) -> int:
        return sum(self.evicted.values())

    @property
    def pending_total(self) -> int:
        return sum(self.depth.values())


@dataclass(slots=True)
class _Prepared:
    event: Event
    payload_json: str
    size: int


@dataclass(slots=True)
class _Commit:
    """What one append transaction writes: held events first, then new rows from ``seq``."""

    held: list[_Prepared]
    rows: list[_Prepared]
    seq: int
    now: datetime
    durable: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EventBuffer:
    """The durable, ordered, bounded event store. Open with :meth:`open`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        gateway_id: str,
        disk_budget_bytes: int,
        lock_fd: int | None,
        clock: Callable[[], datetime],
        quarantined_files: tuple[Path, ...],
        reserve: SpaceReserve | None = None,
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.disk_budget_bytes = disk_budget_bytes
        self._conn = conn
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        self._clock = clock
        self._closed = False
        self._quarantined_files = quarantined_files
        self._synchronous: str | None = None
        #: Transactions committed by append (for tests and metrics).
        self.commits = 0
        self._depth = dict.fromkeys(Lane, 0)
        self._oldest: dict[Lane, datetime | None] = dict.fromkeys(Lane)
        self._evicted = dict.fromkeys(Lane, 0)
        self._quarantined_events = 0
        self._next_seq = 0
        self._page_size = 4096
        self._used = 0
        self._reserve = reserve
        #: True from the commit that found the disk full until the reserve is made again.
        self._disk_full = False
        #: Events that could not be committed, by id, oldest first: forwarded from memory.
        self._held: dict[str, _Prepared] = {}
        #: Channels that must each deliver an event before it leaves (see :meth:`set_channels`).
        self._channels: tuple[str, ...] = ()
        #: Channels that delivered (or refused) a held event, by id.
        self._held_done: dict[str, set[str]] = {}
        #: Per channel and lane, a seq below which that channel is done with every event: its
        #: reads start there, not at the lane's head (a long outage of the other channel leaves
        #: many rows it already delivered).
        self._floor: dict[tuple[str, Lane], int] = {}
        #: SQLite has its JSON functions: a group's rows go in as one statement (see _insert).
        self._json_insert = _has_json(conn)
        self._load_state()

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        gateway_id: str,
        disk_budget_bytes: int = 256 * 2**20,
        clock: Callable[[], datetime] = _utcnow,
        lock: bool = True,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> EventBuffer:
        """Open (creating, migrating or, if corrupt, replacing) the buffer at ``path``.

        A corrupt file is moved aside to ``<name>.corrupt-<UTC timestamp>`` with its WAL, a
        fresh buffer is started, and a ``buffer_evicted`` trouble is appended to it so dispatch
        hears of it. ``lock`` takes an exclusive lock on ``<name>.lock`` so that two daemons
        never share one buffer. ``reserve_bytes`` of disk are kept back for the alarm lane in
        ``<name>.reserve`` (0: none).
        """
        path = Path(path)
        if disk_budget_bytes < 64 * 1024:
            raise ValueError(f"disk_budget_bytes must be at least 65536, got {disk_budget_bytes}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventBufferError(f"buffer folder {path.parent} is not usable: {exc}") from exc
        lock_fd = take_lock(path) if lock else None
        try:
            corrupt_reason: str | None = None
            try:
                conn = connect(path)
                check_integrity(conn)
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise EventBufferError(f"cannot open buffer {path}: {exc}") from exc
                corrupt_reason = str(exc)
            quarantined: Path | None = None
            if corrupt_reason is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                quarantined = quarantine_file(path, clock())
                log.error(
                    "buffer_corrupt_quarantined",
                    path=str(path),
                    moved_to=str(quarantined),
                    error=corrupt_reason,
                    detail="a fresh buffer was started; the unsent events that can still be "
                    "read are carried into it",
                )
                try:
                    conn = connect(path)
                except sqlite3.DatabaseError as exc:
                    raise EventBufferError(f"cannot create a fresh buffer {path}: {exc}") from exc
            migrate(conn, path)
            files = tuple(sorted(path.parent.glob(f"{glob_escape(path.name)}.corrupt-*")))
            files = tuple(f for f in files if not f.name.endswith(("-wal", "-shm")))
            buffer = cls(
                conn,
                path=path,
                gateway_id=gateway_id,
                disk_budget_bytes=disk_budget_bytes,
                lock_fd=lock_fd,
                clock=clock,
                quarantined_files=files,
                reserve=SpaceReserve(path.with_name(path.name + ".reserve"), reserve_bytes)
                if reserve_bytes
                else None,
            )
            buffer.keep_reserve()
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        if quarantined is not None:
            buffer._recover_from(quarantined, corrupt_reason or "")
        return buffer

    def _recover_from(self, quarantined: Path, error: str) -> None:
        """Carry every readable unsent event of a quarantined file into this fresh buffer, with
        its id and seq, and report the corruption (a ``buffer_evicted`` trouble, reason
        ``corrupt``) in the same transaction."""
        rows, unreadable = salvage_events(quarantined)
        recovered: list[_Prepared] = []
        for row in rows:
            try:
                recovered.append(_Prepared(self._event_of(row), str(row[8]), int(str(row[9]))))
            except (ValidationError, ValueError, TypeError):
                unreadable += 1
        seq = max([self._next_seq, *(p.event.seq + 1 for p in recovered)])
        report = self._prepare(
            EventDraft(
                kind=EventKind.BUFFER_EVICTED,
                at=self._clock(),
                payload={
                    "reason": "corrupt",
                    "quarantined_file": quarantined.name,
                    "error": error[:200],
                    "recovered": len(recovered),
                    "unreadable": unreadable,
                },
            ),
            seq,
        )
        with self._lock, self._transaction("FULL"):
            self._insert([*recovered, report], self._clock())
            self._set_meta("next_seq", seq + 1)
        self._next_seq = seq + 1
        self._count_appended([*recovered, report])
        self._used = self.used_bytes()
        log.error(
            "buffer_corrupt_recovered",
            path=str(self.path),
            quarantined=str(quarantined),
            recovered=len(recovered),
            unreadable=unreadable,
        )

    def _load_state(self) -> None:
        conn = self._conn
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        stored_gateway = self._meta("gateway_id")
        if stored_gateway is not None and stored_gateway != self.gateway_id:
            log.error(
                "buffer_gateway_changed",
                path=str(self.path),
                was=stored_gateway,
                now=self.gateway_id,
                detail="events still pending are forwarded under the new gateway id",
            )
        with self._transaction("NORMAL"):
            self._set_meta("gateway_id", self.gateway_id)
        self._next_seq = int(self._meta("next_seq") or 0)
        # Never go back: a seq may exist beyond the counter only if someone edited the file.
        top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        if top is not None and top >= self._next_seq:
            self._next_seq = top + 1
        for code, count in conn.execute("SELECT lane, COUNT(*) FROM events GROUP BY lane"):
            self._depth[_CODE_LANE[code]] = count
        for lane in Lane:
            self._evicted[lane] = int(self._meta(f"evicted_{lane.value}") or 0)
        self._quarantined_events = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        with self._transaction("NORMAL"):
            # Bookkeeping of events evicted or quarantined since: nothing left to deliver.
            conn.execute("DELETE FROM deliveries WHERE id NOT IN (SELECT id FROM events)")
        self._quarantined_events += conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'refused'"
        ).fetchone()[0]
        self._refresh_oldest(Lane)
        self._used = self.used_bytes()

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, synchronous: str) -> Iterator[None]:
        conn = self._conn
        if self._synchronous != synchronous:
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: object) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise EventBufferError(f"buffer {self.path} is closed")

    # -- append ---------------------------------------------------------------------------

    def append(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Append events in one transaction; returns them (id and seq assigned) after commit."""
        result = self.append_groups([drafts])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def append_groups(
        self, groups: Sequence[Sequence[EventDraft]]
    ) -> list[list[Event] | EventBufferError]:
        """Append several callers' drafts in ONE transaction (group commit).

        A group whose drafts cannot be made into events gets its own error and the others are
        still appended; if the transaction itself fails, every group gets the error and nothing
        was appended. Held events (:meth:`hold`) are written first, in the same transaction.
        While the disk is full, a telemetry-only group is refused.
        """
        with self._lock:
            self._check_open()
            now = self._clock()
            results: list[list[Event] | EventBufferError] = []
            rows: list[_Prepared] = []
            seq = self._next_seq
            for drafts in groups:
                if self._disk_full and all(d.kind.lane is Lane.TELEMETRY for d in drafts):
                    results.append(self._telemetry_refused())
                    continue
                try:
                    prepared = [self._prepare(d, seq + i) for i, d in enumerate(drafts)]
                except EventBufferError as exc:
                    results.append(exc)
                    continue
                seq += len(prepared)
                rows.extend(prepared)
                results.append([p.event for p in prepared])
            held = list(self._held.values())
            if not rows and not held:
                return results
            durable = bool(held) or any(p.event.lane is not Lane.TELEMETRY for p in rows)
            try:
                rows, seq, evicted = self._commit_rows(_Commit(held, rows, seq, now, durable))
            except sqlite3.Error as exc:
                error = BufferStorageError(f"appending to buffer {self.path} failed: {exc}")
                log.error("buffer_append_failed", path=str(self.path), error=str(exc))
                return [r if isinstance(r, EventBufferError) else error for r in results]
            self.commits += 1
            self._next_seq = seq
            if self._held:
                # Held events are written with the seqs they were given earlier.
                self._floor.clear()
            self._held.clear()
            self._held_done.clear()
            if evicted and not durable:
                # The eviction report is a trouble: make it as durable as one.
                self._fsync_wal()
            self._used = self.used_bytes()
            self._count_appended(rows)
            if evicted:
                for lane, count in evicted.items():
                    self._evicted[lane] += count
                    self._depth[lane] -= count
                self._refresh_oldest(evicted)
                log.error(
                    "buffer_evicted",
                    path=str(self.path),
                    evicted={k.value: v for k, v in evicted.items()},
                    budget_bytes=self.disk_budget_bytes,
                    evicted_total={k.value: v for k, v in self._evicted.items()},
                )
            return results

    def _commit_rows(self, job: _Commit) -> tuple[list[_Prepared], int, dict[Lane, int]]:
        """One transaction; returns the rows appended (reports included). On a full disk the
        reserve is given back and it is tried once more, if it holds an alarm or a trouble."""
        try:
            return self._transaction_rows(job)
        except sqlite3.Error as exc:
            full = is_disk_full(exc)
            self._disk_full = self._disk_full or full
            if not (job.durable and full and self._release_reserve()):
                raise
        report = EventDraft(
            kind=EventKind.BUFFER_EVICTED,
            at=job.now,
            payload={"reason": "disk_full", "detail": "alarm reserve in use"},
        )
        job.rows = [*job.rows, self._prepare(report, job.seq)]
        job.seq += 1
        return self._transaction_rows(job)

    def _transaction_rows(self, job: _Commit) -> tuple[list[_Prepared], int, dict[Lane, int]]:
        held, rows, seq, now, durable = job.held, list(job.rows), job.seq, job.now, job.durable
        with self._transaction("FULL" if durable else "NORMAL"):
            self._insert([*held, *rows], now)
            self._set_meta("next_seq", seq)
            evicted = self._evict_over_budget(now)
            if evicted:
                # The report goes in the same transaction as the eviction it reports.
                report = self._prepare(
                    EventDraft(
                        kind=EventKind.BUFFER_EVICTED,
                        at=now,
                        payload={
                            "reason": "disk_budget",
                            "evicted": {k.value: v for k, v in evicted.items()},
                            "evicted_total": {
                                k.value: self._evicted[k] + evicted.get(k, 0)
                                for k in (Lane.TELEMETRY, Lane.TROUBLE)
                            },
                            "budget_bytes": self.disk_budget_bytes,
                        },
                    ),
                    seq,
                )
                seq += 1
                self._insert([report], now)
                self._set_meta("next_seq", seq)
                rows.append(report)
        return rows, seq, evicted

    def _count_appended(self, rows: Sequence[_Prepared]) -> None:
        for p in rows:
            lane = p.event.lane
            self._depth[lane] += 1
            if self._oldest[lane] is None:
                self._oldest[lane] = p.event.at

    def _telemetry_refused(self) -> BufferStorageError:
        return BufferStorageError(
            f"telemetry refused: the disk is full under buffer {self.path}, and the space "
            "kept for alarms is in use"
        )

    # -- a full disk ----------------------------------------------------------------------

    def _release_reserve(self) -> bool:
        if self._reserve is None or not self._reserve.release():
            return False
        self._disk_full = True
        log.error(
            "buffer_disk_full",
            path=str(self.path),
            detail="the space kept for alarms is in use; telemetry is refused until the disk "
            "has room again",
        )
        return True

    def keep_reserve(self) -> bool:
        """Make the alarm lane's reserve if it is not there; True if the disk has room for it.

        Called at open and after acknowledgements: once it is back, the disk is no longer full.
        """
        if self._reserve is None:
            ok = not self._disk_full or self._has_room()
        else:
            ok = self._reserve.ensure()
        if ok and self._disk_full and not self._held:
            self._disk_full = False
            log.info("buffer_disk_room_again", path=str(self.path))
        elif not ok:
            self._disk_full = True
        return ok

    def _has_room(self) -> bool:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize > DEFAULT_RESERVE_BYTES

    def hold(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Keep events that could not be committed in memory, with their ids and seqs.

        They are forwarded like stored events (:meth:`pending`), acknowledged from memory, and
        written first by every later commit. A ``buffer_evicted`` trouble (reason
        ``disk_full``) is held with the first of them, so dispatch hears of it. Gone if the
        process ends before they could be written: the price of not losing them now.
        """
        with self._lock:
            self._check_open()
            if not self._held:
                drafts = [
                    *drafts,
                    EventDraft(
                        kind=EventKind.BUFFER_EVICTED,
                        at=self._clock(),
                        payload={"reason": "disk_full", "detail": "events held in memory"},
                    ),
                ]
            self._disk_full = True
            held: list[Event] = []
            for d in drafts:
                try:
                    prepared = self._prepare(d, self._next_seq)
                except EventBufferError as exc:
                    log.error("event_not_held", kind=str(d.kind), error=str(exc))
                    continue
                self._next_seq += 1
                self._held[prepared.event.id] = prepared
                self._count_appended([prepared])
                held.append(prepared.event)
            log.error(
                "buffer_events_held_in_memory",
                path=str(self.path),
                held=len(self._held),
                ids=[e.id for e in held][:10],
                detail="not durable: forwarded from memory, written when the disk has room",
            )
            return held

    def persist_held(self) -> int:
        """Try to write the held events now; returns how many were written."""
        with self._lock:
            count = len(self._held)
        if count:
            self.append_groups([])
        if self._disk_full:
            self.keep_reserve()
        return 0 if self._held else count

    def _fsync_wal(self) -> None:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _prepare(self, draft: EventDraft, seq: int) -> _Prepared:
        """Make an event of a draft. Never refuses an alarm for its payload or device name."""
        if not isinstance(draft.kind, EventKind):
            raise EventBufferError(f"not an event kind: {draft.kind!r}")
        if not isinstance(draft.at, datetime):
            raise EventBufferError(f"event time must be a datetime, got {draft.at!r}")
        at = draft.at if draft.at.tzinfo is not None else draft.at.replace(tzinfo=UTC)
        payload = draft.payload
        try:
            payload_json = _PAYLOAD_JSON(payload)
            if len(payload_json) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"payload is {len(payload_json)} bytes")
            payload = json.loads(payload_json) if _needs_roundtrip(payload) else payload
        except (TypeError, ValueError) as exc:
            # Keep the event, shrink the payload: an alarm must not be refused for its details.
            log.error("event_payload_truncated", kind=draft.kind.value, error=str(exc)[:200])
            condition = payload.get("condition") if isinstance(payload, dict) else None
            payload = {"truncated": True, "error": str(exc)[:200]}
            if isinstance(condition, str):
                payload["condition"] = condition[:256]
            payload_json = json.dumps(payload, separators=(",", ":"))
        device_id = draft.device_id
        if device_id is not None and (
            not device_id or len(device_id) > 128 or _IDENTIFIER_BAD.search(device_id)
        ):
            fixed = _IDENTIFIER_BAD.sub("_", device_id)[:128] or "_"
            log.warning("event_device_id_sanitised", device=device_id, used=fixed)
            device_id = fixed
        try:
            event = make_event(
                id=new_event_id(at),
                gateway_id=self.gateway_id,
                seq=seq,
                kind=draft.kind,
                priority=draft.priority if draft.priority is not None else draft.kind.priority,
                device_id=device_id,
                at=at,
                test=draft.test,
                payload=payload,
                payload_size=len(payload_json),
            )
        except ValidationError as exc:
            raise EventBufferError(f"cannot make an event of {draft!r}: {exc}") from exc
        size = _EVENT_OVERHEAD + len(event.kind.value) + len(device_id or "") + len(payload_json)
        return _Prepared(event, payload_json, size)

    def _insert(self, rows: Sequence[_Prepared], now: datetime) -> None:
        conn = self._conn
        appended_at = now.isoformat()
        values = [
            (
                p.event.seq,
                p.event.id,
                _LANE_CODE[p.event.lane],
                p.event.kind.value,
                int(p.event.priority),
                p.event.device_id,
                p.event.at.isoformat(),
                int(p.event.test),
                p.payload_json,
                p.size,
                appended_at,
            )
            for p in rows
        ]
        if self._json_insert:
            # One statement for the whole group: executemany lets go of the GIL for every row,
            # and this thread then waits for the busy event loop to hand it back, each time.
            conn.execute(_INSERT_FROM_JSON, (json.dumps(values),))
        else:
            conn.executemany(_INSERT_EVENT, values)
        conditions = [
            (
                cond,
                p.event.kind.condition.value,
                p.event.device_id,
                int(p.event.test),
                0 if p.event.kind.is_restore else 1,
                p.event.seq,
                p.event.at.isoformat(),
            )
            for p in rows
            if (cond := condition_of(p.event.kind, p.event.payload)) is not None
        ]
        done = [
            (channel, p.event.id, appended_at)
            for p in rows
            for channel in self._held_done.get(p.event.id, ())
        ]
        if done:
            # A held event some channel already delivered keeps that once written.
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (channel, id, state, at) "
                "VALUES (?, ?, 'delivered', ?)",
                done,
            )
        if conditions:
            conn.executemany(
                "INSERT INTO conditions (condition, kind, device_id, test, open, seq, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (condition) DO UPDATE SET "
                "kind = excluded.kind, device_id = excluded.device_id, test = excluded.test, "
                "open = excluded.open, seq = excluded.seq, at = excluded.at "
                "WHERE excluded.seq > conditions.seq",
                conditions,
            )

    # -- disk budget ----------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages excluded), as SQLite sees it now."""
        page_count = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((page_count - free) * self._page_size)

    def _evict_over_budget(self, now: datetime) -> dict[Lane, int]:
        """Inside the append transaction: drop the oldest telemetry, then troubles, never alarms."""
        used = self.used_bytes()
        if used <= self.disk_budget_bytes:
            return {}
        target = int(self.disk_budget_bytes * EVICT_TO_FRACTION)
        conn = self._conn
        evicted: dict[Lane, int] = {}
        for lane in (Lane.TELEMETRY, Lane.TROUBLE):
            for _ in range(64):
                if used <= target:
                    break
                need = used - target
                rows = conn.execute(
                    "SELECT seq, size FROM events WHERE lane = ? AND kind != ? "
                    "ORDER BY seq LIMIT 2000",
                    (_LANE_CODE[lane], EventKind.BUFFER_EVICTED.value),
                ).fetchall()
                if not rows:
                    break
                total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0]
                # Disk cost per byte of event, from what the file holds now (indexes, pages).
                ratio = max(1.0, used / total) if total else 1.0
                freed, last_seq = 0.0, rows[0][0]
                for seq, size in rows:
                    last_seq = seq
                    freed += size * ratio
                    if freed >= need:
                        break
                deleted = conn.execute(
                    "DELETE FROM events WHERE lane = ? AND kind != ? AND seq <= ?",
                    (_LANE_CODE[lane], EventKind.BUFFER_EVICTED.value, last_seq),
                ).rowcount
                evicted[lane] = evicted.get(lane, 0) + deleted
                used = self.used_bytes()
        if used > self.disk_budget_bytes:
            log.error(
                "buffer_over_budget",
                path=str(self.path),
                used_bytes=used,
                budget_bytes=self.disk_budget_bytes,
                detail="only alarms and eviction reports are left; alarms are never evicted",
            )
        evicted = {k: v for k, v in evicted.items() if v}
        if evicted:
            conn.execute(
                "INSERT INTO evictions (at, telemetry, trouble, used_bytes, budget_bytes) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    now.isoformat(),
                    evicted.get(Lane.TELEMETRY, 0),
                    evicted.get(Lane.TROUBLE, 0),
                    used,
                    self.disk_budget_bytes,
                ),
            )
            for lane, count in evicted.items():
                self._set_meta(f"evicted_{lane.value}", self._evicted[lane] + count)
        return evicted

    # -- reading and acknowledging --------------------------------------------------------

    def set_channels(self, channels: Sequence[str]) -> None:
        """Name the channels that must each deliver an event before it leaves the buffer.

        With two or more, :meth:`pending`, :meth:`acknowledge`, :meth:`quarantine` and
        :meth:`release_quarantined` given a ``channel`` keep that channel's own bookkeeping;
        with fewer, an acknowledgement removes the event at once (one channel, as before).
        """
        if len(set(channels)) != len(channels):
            raise ValueError(f"channel names must be unique, got {list(channels)}")
        with self._lock:
            self._channels = tuple(channels)

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    def _per_channel(self, channel: str | None) -> bool:
        return channel is not None and len(self._channels) > 1 and channel in self._channels

    def pending(
        self,
        *,
        max_events: int = 500,
        max_bytes: int = 512 * 1024,
        telemetry_after: int | None = None,
        channel: str | None = None,
    ) -> list[Event]:
        """Unacknowledged events in lane order (alarm, trouble, telemetry), then seq.

        At most ``max_events`` (and never more than a batch may hold) and about ``max_bytes``
        of JSON; the first event is always included, whatever its size. ``telemetry_after``
        skips telemetry up to that seq (batches already on their way: see the forwarder). With
        ``channel`` (see :meth:`set_channels`), those that channel has not delivered yet.
        """
        limit = max(1, min(max_events, MAX_BATCH_EVENTS))
        with self._lock:
            self._check_open()
            own = channel if self._per_channel(channel) else None
            # Held events first: they are alarms and troubles, and only in memory.
            held = sorted(self._held.values(), key=_lane_order)
            events = [
                p.event
                for p in held
                if own is None or own not in self._held_done.get(p.event.id, ())
            ][:limit]
            bad: list[tuple[int, str]] = []
            self._collect_pending(events, bad, limit, max_bytes, telemetry_after, own)
            if bad:
                # A row that no longer reads as an event (edited by hand, or a bug) is set
                # aside where it can be inspected, so it cannot block its lane.
                self._quarantine_rows(bad)
            return events

    def _collect_pending(
        self,
        events: list[Event],
        bad: list[tuple[int, str]],
        limit: int,
        max_bytes: int,
        telemetry_after: int | None = None,
        channel: str | None = None,
    ) -> None:
        total = 0
        for lane in Lane:
            if len(events) >= limit or self._depth[lane] == 0:
                continue
            after = -1 if lane is not Lane.TELEMETRY or telemetry_after is None else telemetry_after
            cursor: Iterable[Any]
            if channel is None:
                cursor = self._conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE lane = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (_LANE_CODE[lane], after, limit - len(events)),
                )
            else:
                rows = self._conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE lane = ? AND seq > ? AND seq >= ? "
                    "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.channel = ? AND "
                    "d.id = events.id) ORDER BY seq LIMIT ?",
                    (
                        _LANE_CODE[lane],
                        after,
                        self._floor.get((channel, lane), 0),
                        channel,
                        limit - len(events),
                    ),
                ).fetchall()
                if after < 0:
                    # Read from the head: everything of this lane below the first row (or all
                    # of it) is done for this channel.
                    self._floor[(channel, lane)] = rows[0][0] if rows else self._next_seq
                cursor = iter(rows)
            for row in cursor:
                size = row[9]
                if events and total + size > max_bytes:
                    return
                try:
                    events.append(self._event_of(row))
                except (ValidationError, ValueError) as exc:
                    bad.append((row[0], f"unreadable row: {exc}"[:500]))
                    continue
                total += size

    def _event_of(self, row: tuple[Any, ...]) -> Event:
        seq, event_id, _lane, kind, priority, device_id, at, test, payload, _size = row
        # Checked as validation would (a row edited by hand is refused the same way), without
        # pydantic when every field is plain: this runs for every event forwarded.
        return make_event(
            id=event_id,
            gateway_id=self.gateway_id,
            seq=seq,
            kind=_KINDS.get(kind) or EventKind(kind),
            priority=_PRIORITIES.get(priority) or Priority(priority),
            device_id=device_id,
            at=datetime.fromisoformat(at),
            test=bool(test),
            payload=json.loads(payload),
        )

    def acknowledge(
        self, acks: Sequence[EventAck] | Sequence[str], *, channel: str | None = None
    ) -> int:
        """Remove the acknowledged events (by id); returns how many were still pending.

        With ``channel`` (see :meth:`set_channels`), the events are delivered for that channel
        and leave the buffer once every channel has them; returns how many left.
        """
        ids = [a if isinstance(a, str) else a.id for a in acks]
        if not ids:
            return 0
        if self._per_channel(channel):
            assert channel is not None
            return self._mark_done(ids, channel, "delivered", None)
        with self._lock:
            self._check_open()
            removed: dict[Lane, int] = {}
            for event_id in ids:
                gone = self._held.pop(event_id, None)
                self._held_done.pop(event_id, None)
                if gone is not None:
                    removed[gone.event.lane] = removed.get(gone.event.lane, 0) + 1
            try:
                with self._transaction("NORMAL"):
                    for start in range(0, len(ids), 500):
                        chunk = ids[start : start + 500]
                        marks = ",".join("?" * len(chunk))
                        for code, count in self._conn.execute(
                            f"SELECT lane, COUNT(*) FROM events WHERE id IN ({marks}) "
                            "GROUP BY lane",
                            chunk,
                        ).fetchall():
                            lane = _CODE_LANE[code]
                            removed[lane] = removed.get(lane, 0) + count
                        self._conn.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk)
            except sqlite3.Error as exc:
                raise BufferStorageError(
                    f"acknowledging in buffer {self.path} failed: {exc}"
                ) from exc
            self._removed(removed)
        if self._disk_full:
            self.keep_reserve()
        return sum(removed.values())

    def _removed(self, removed: dict[Lane, int]) -> None:
        for lane, count in removed.items():
            self._depth[lane] -= count
        self._refresh_oldest(removed)
        self._maybe_vacuum()
        self._used = self.used_bytes()

    def _mark_done(self, ids: Sequence[str], channel: str, state: str, reason: str | None) -> int:
        """Record ``channel``'s delivery (or refusal) of ``ids``; remove those every channel
        is done with. Returns how many left the buffer."""
        with self._lock:
            self._check_open()
            everyone = set(self._channels)
            removed: dict[Lane, int] = {}
            for event_id in ids:
                held = self._held.get(event_id)
                if held is None:
                    continue
                done = self._held_done.setdefault(event_id, set())
                done.add(channel)
                if done >= everyone:
                    del self._held[event_id]
                    del self._held_done[event_id]
                    removed[held.event.lane] = removed.get(held.event.lane, 0) + 1
            now = self._clock().isoformat()
            marks_ch = ",".join("?" * len(self._channels))
            refused = 0
            try:
                with self._transaction("NORMAL"):
                    for start in range(0, len(ids), 500):
                        chunk = list(ids[start : start + 500])
                        marks = ",".join("?" * len(chunk))
                        refused += self._conn.execute(
                            "INSERT OR IGNORE INTO deliveries (channel, id, state, reason, at) "
                            f"SELECT ?, id, ?, ?, ? FROM events WHERE id IN ({marks})",
                            [channel, state, reason, now, *chunk],
                        ).rowcount
                        complete = self._conn.execute(
                            f"SELECT e.id, e.lane FROM events e WHERE e.id IN ({marks}) AND "
                            "(SELECT COUNT(*) FROM deliveries d WHERE d.id = e.id "
                            f"AND d.channel IN ({marks_ch})) >= ?",
                            [*chunk, *self._channels, len(self._channels)],
                        ).fetchall()
                        gone = [row[0] for row in complete]
                        for _, code in complete:
                            lane = _CODE_LANE[code]
                            removed[lane] = removed.get(lane, 0) + 1
                        for begin in range(0, len(gone), 400):
                            part = gone[begin : begin + 400]
                            where = ",".join("?" * len(part))
                            self._conn.execute(f"DELETE FROM events WHERE id IN ({where})", part)
                            self._conn.execute(
                                f"DELETE FROM deliveries WHERE id IN ({where})", part
                            )
            except sqlite3.Error as exc:
                raise BufferStorageError(
                    f"recording {channel}'s delivery in buffer {self.path} failed: {exc}"
                ) from exc
            if state == "refused":
                self._quarantined_events += refused
            self._removed(removed)
        if self._disk_full:
            self.keep_reserve()
        return sum(removed.values())

    def quarantine(
        self, event_ids: Sequence[str], *, reason: str, channel: str | None = None
    ) -> int:
        """Set events aside (dispatch refuses them): kept in ``quarantine``, no longer sent.

        With ``channel`` (see :meth:`set_channels`), set aside for that channel only: the
        others still deliver them, and they leave once every channel is done with them.
        """
        if self._per_channel(channel):
            assert channel is not None
            log.error(
                "events_refused_for_channel",
                path=str(self.path),
                channel=channel,
                ids=list(event_ids)[:20],
                reason=reason,
            )
            self._mark_done(event_ids, channel, "refused", reason)
            return len(event_ids)
        with self._lock:
            self._check_open()
            rows: list[tuple[int, str]] = []
            for event_id in event_ids:
                row = self._conn.execute(
                    "SELECT seq FROM events WHERE id = ?", (event_id,)
                ).fetchone()
                if row is not None:
                    rows.append((row[0], reason))
            return self._quarantine_rows(rows)

    def _quarantine_rows(self, rows: Sequence[tuple[int, str]]) -> int:
        if not rows:
            return 0
        now = self._clock().isoformat()
        moved: dict[Lane, int] = {}
        try:
            with self._transaction("FULL"):
                for seq, reason in rows:
                    lane_row = self._conn.execute(
                        "SELECT lane FROM events WHERE seq = ?", (seq,)
                    ).fetchone()
                    if lane_row is None:
                        continue
                    self._conn.execute(
                        "INSERT OR REPLACE INTO quarantine SELECT seq, id, lane, kind, priority, "
                        "device_id, at, test, payload, size, appended_at, ?, ? "
                        "FROM events WHERE seq = ?",
                        (reason, now, seq),
                    )
                    self._conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
                    lane = _CODE_LANE[lane_row[0]]
                    moved[lane] = moved.get(lane, 0) + 1
        except sqlite3.Error as exc:
            raise BufferStorageError(f"quarantining in buffer {self.path} failed: {exc}") from exc
        for lane, count in moved.items():
            self._depth[lane] -= count
        self._quarantined_events += sum(moved.values())
        self._refresh_oldest(moved)
        log.error(
            "events_quarantined",
            path=str(self.path),
            seqs=[s for s, _ in rows][:20],
            reason=rows[0][1],
            count=sum(moved.values()),
        )
        return sum(moved.values())

    def release_quarantined(self, *, channel: str | None = None) -> int:
        """Put every quarantined event back in line (after dispatch was fixed); with
        ``channel``, also those set aside for that channel only."""
        with self._lock:
            self._check_open()
            with self._transaction("FULL"):
                if self._per_channel(channel):
                    self._conn.execute(
                        "DELETE FROM deliveries WHERE channel = ? AND state = 'refused'",
                        (channel,),
                    )
                count = self._conn.execute(
                    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}, appended_at) "
                    f"SELECT {_EVENT_COLUMNS}, appended_at FROM quarantine"
                ).rowcount
                self._conn.execute("DELETE FROM quarantine")
            self._quarantined_events = self._conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'refused'"
            ).fetchone()[0]
            # Events back in line have the seqs they had: every channel reads from the head.
            self._floor.clear()
            self._refresh_counts()
            return int(count)

    def _refresh_counts(self) -> None:
        self._depth = dict.fromkeys(Lane, 0)
        for code, count in self._conn.execute("SELECT lane, COUNT(*) FROM events GROUP BY lane"):
            self._depth[_CODE_LANE[code]] = count
        self._refresh_oldest(Lane)

    def _refresh_oldest(self, lanes: Any) -> None:
        for lane in lanes:
            row = self._conn.execute(
                "SELECT at FROM events WHERE lane = ? ORDER BY seq LIMIT 1", (_LANE_CODE[lane],)
            ).fetchone()
            stored = None if row is None else datetime.fromisoformat(row[0])
            held = [p.event.at for p in self._held.values() if p.event.lane is lane]
            self._oldest[lane] = min([*held, stored] if stored is not None else held, default=None)

    def _maybe_vacuum(self) -> None:
        """Give freed pages back to the file system once a quarter of the file is free."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if pages > 256 and free * 4 > pages:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA incremental_vacuum")

    # -- state for others -----------------------------------------------------------------

    def stats(self, now: datetime) -> BufferStats:
        """Depth per lane, oldest unsent age, evictions, sizes. Cheap: no table scan."""
        oldest = [at for at in self._oldest.values() if at is not None]
        age = max(0.0, (now - min(oldest)).total_seconds()) if oldest else None
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return BufferStats(
            depth=dict(self._depth),
            oldest_unsent_age_s=age,
            evicted=dict(self._evicted),
            size_bytes=size,
            used_bytes=self._used,
            budget_bytes=self.disk_budget_bytes,
            quarantined_files=self._quarantined_files,
            quarantined_events=self._quarantined_events,
            disk_full=self._disk_full,
            not_durable=len(self._held),
        )

    def active_conditions(self) -> list[ActiveConditionRow]:
        """Open alarm and trouble conditions, oldest first.

        A condition is open when its latest event (by ``payload["condition"]``) is not a restore;
        one whose latest event was a walk test (``test``) opens no incident and is left out.
        """
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT condition, kind, device_id, at FROM conditions WHERE open = 1 AND test = 0 "
                "ORDER BY seq"
            ).fetchall()
        return [ActiveConditionRow(c, EventKind(k), d, _parse_time(at)) for c, k, d, at in rows]

    def save_memory(self, memory: str, saved_at: datetime) -> None:
        """Keep the rule engine's memory (opaque text, JSON) for the next start; replaces it.

        ``synchronous=NORMAL``: it survives the process being killed; a power cut may lose the
        last save (the next alarm's fsync makes it durable too).
        """
        with self._lock:
            self._check_open()
            try:
                with self._transaction("NORMAL"):
                    self._conn.execute(
                        "INSERT INTO engine_memory (id, saved_at, memory) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET saved_at = excluded.saved_at, "
                        "memory = excluded.memory",
                        (saved_at.isoformat(), memory),
                    )
            except sqlite3.Error as exc:
                raise BufferStorageError(
                    f"saving the rule engine's memory in buffer {self.path} failed: {exc}"
                ) from exc

    def load_memory(self) -> str | None:
        """The rule engine's memory as last saved, or None if there is none."""
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT memory FROM engine_memory WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    @property
    def disk_full(self) -> bool:
        """The disk refused a commit, and the alarm lane's reserve is not back yet."""
        return self._disk_full

    @property
    def needs_retry(self) -> bool:
        """Events are held in memory, or the reserve is to be made again: see
        :meth:`persist_held`."""
        return self._disk_full or bool(self._held)

    def still_held(self, event_ids: Iterable[str]) -> set[str]:
        """Those of ``event_ids`` that are held in memory: neither written nor delivered yet."""
        with self._lock:
            return {i for i in event_ids if i in self._held}

    @cached_property
    def db(self) -> Database:
        """The connection as a sqlite-utils ``Database``, for inspection (tests, tools). Imported
        on first use: the daemon never needs it, and it costs about 4 MiB resident."""
        from sqlite_utils import Database

        return Database(self._conn)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def close(self) -> None:
        """Checkpoint and close. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._held:
                log.error(
                    "buffer_closed_with_events_not_durable",
                    path=str(self.path),
                    count=len(self._held),
                    ids=list(self._held)[:20],
                )
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> EventBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lane_order(prepared: _Prepared) -> tuple[int, int]:
    return _LANE_CODE[prepared.event.lane], prepared.event.seq


def condition_of(kind: EventKind, payload: dict[str, Any]) -> str | None:
    """The condition an event opens or closes (its restore closes it), or None: telemetry
    opens none. This is what :meth:`EventBuffer.active_conditions` is made of."""
    if kind.lane is Lane.TELEMETRY:
        return None
    cond = payload.get("condition")
    return cond if isinstance(cond, str) else None


def _has_json(conn: sqlite3.Connection) -> bool:
    try:
        return bool(conn.execute("SELECT json_extract('[7]', '$[0]') = 7").fetchone()[0])
    except sqlite3.Error:
        return False


def _needs_roundtrip(payload: dict[str, Any]) -> bool:
    """True if the payload holds values JSON would change (so the stored event equals the sent)."""
    return any(not isinstance(v, str | int | float | bool | type(None)) for v in payload.values())


def _parse_time(text: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed is not None and parsed.tzinfo is None else parsed
