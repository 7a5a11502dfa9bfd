"""The buffer's file: opening, locking, integrity, quarantine of a corrupt file, migrations.

Schema changes are forward-only: ``MIGRATIONS[n]`` takes a file from ``PRAGMA user_version`` n to
n + 1 in one transaction. A file newer than this program is refused, never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from runtime.files import fsync_folder

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BufferLocked",
    "BufferSchemaTooNew",
    "BufferStorageError",
    "EventBufferError",
    "check_integrity",
    "connect",
    "glob_escape",
    "is_corruption",
    "is_disk_full",
    "migrate",
    "quarantine_file",
    "salvage_events",
    "take_lock",
]

log = structlog.get_logger(__name__)

# Forward-only migrations: MIGRATIONS[n] brings a file from user_version n to n + 1. Never edit
# a released entry; append a new one.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        lane INTEGER NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        device_id TEXT,
        at TEXT NOT NULL,
        test INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL DEFAULT '{}',
        size INTEGER NOT NULL,
        appended_at TEXT NOT NULL
    );
    CREATE INDEX events_lane_seq ON events (lane, seq);
    CREATE TABLE conditions (
        condition TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        device_id TEXT,
        test INTEGER NOT NULL DEFAULT 0,
        open INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        lane INTEGER NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        device_id TEXT,
        at TEXT NOT NULL,
        test INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL DEFAULT '{}',
        size INTEGER NOT NULL,
        appended_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        quarantined_at TEXT NOT NULL
    );
    CREATE TABLE evictions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        telemetry INTEGER NOT NULL,
        trouble INTEGER NOT NULL,
        used_bytes INTEGER NOT NULL,
        budget_bytes INTEGER NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # The rule engine's memory (clocks, states, timers) for a restart: one row, replaced.
    """
    CREATE TABLE engine_memory (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        saved_at TEXT NOT NULL,
        memory TEXT NOT NULL
    );
    """,
    # Delivery per channel, when more than one channel (dispatchd, a DC-09 receiver) must have an
    # event before it leaves the buffer: 'delivered', or 'refused' (set aside for that channel).
    """
    CREATE TABLE deliveries (
        channel TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (channel, id)
    );
    CREATE INDEX deliveries_id ON deliveries (id);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class EventBufferError(Exception):
    """The buffer cannot do what was asked."""


class BufferLocked(EventBufferError):
    """Another process has this buffer open."""


class BufferSchemaTooNew(EventBufferError):
    """The file's schema is newer than this program understands."""


class BufferStorageError(EventBufferError):
    """SQLite could not write: nothing of the failed call was appended or acknowledged."""


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) == sqlite3.SQLITE_FULL
    return "disk is full" in str(exc)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def take_lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EventBufferError(f"cannot create lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise BufferLocked(
            f"buffer {path} is in use by another process (lock {lock_path} is held)"
        ) from exc
    return fd


def connect(path: Path) -> sqlite3.Connection:
    fresh = not path.exists() or path.stat().st_size == 0
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        if fresh:
            # Must precede the first table: lets acknowledged space go back to the disk.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Keep the WAL small after checkpoints; it counts against the disk too.
        conn.execute("PRAGMA journal_size_limit=8388608")
    except BaseException:
        conn.close()
        raise
    return conn


def check_integrity(conn: sqlite3.Connection) -> None:
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        problems = "; ".join(str(r[0]) for r in rows[:5])
        err = sqlite3.DatabaseError(f"database disk image is malformed: {problems}")
        err.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise err


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        conn.close()
        raise BufferSchemaTooNew(
            f"buffer {path} has schema version {version}; this gatewayd knows up to "
            f"{SCHEMA_VERSION}. Run the newer gatewayd, or move the file aside."
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # One script, one transaction: a migration is applied whole or not at all.
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{MIGRATIONS[target - 1]}\nPRAGMA user_version = {target};\nCOMMIT;"
        )
        log.info("buffer_migrated", path=str(path), schema_version=target)


def quarantine_file(path: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        # Never overwrite an earlier quarantined file.
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{target}{suffix}"))
    fsync_folder(path.parent)
    return target


#: The columns of an event row, in the order :func:`salvage_events` returns them.
SALVAGE_COLUMNS: Final = "seq, id, lane, kind, priority, device_id, at, test, payload, size"
#: Seqs read per query while the table reads cleanly; a failing range is read row by row.
_SALVAGE_RANGE: Final = 512
#: Probing row by row stops after this many seqs in a row that could not be read.
_SALVAGE_MAX_GAP: Final = 100_000


def salvage_events(path: Path) -> tuple[list[tuple[object, ...]], int]:
    """Every row of ``events`` that can still be read from a corrupt buffer file, by seq; and
    how many seqs in its range could not be read (rows lost, or never written).

    Ranges of seqs are read whole while that works; a range that fails is read row by row, so
    a damaged page costs only the rows on it. Nothing is written to the file.
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return [], 0
    try:
        low, high = _seq_bounds(conn)
        if high < low:
            return [], 0
        rows: list[tuple[object, ...]] = []
        unreadable = 0
        for start in range(low, high + 1, _SALVAGE_RANGE):
            end = min(start + _SALVAGE_RANGE - 1, high)
            try:
                rows += conn.execute(
                    f"SELECT {SALVAGE_COLUMNS} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                    (start, end),
                ).fetchall()
                continue
            except sqlite3.DatabaseError:
                pass
            for seq in range(start, end + 1):
                try:
                    row = conn.execute(
                        f"SELECT {SALVAGE_COLUMNS} FROM events WHERE seq = ?", (seq,)
                    ).fetchone()
                except sqlite3.DatabaseError:
                    unreadable += 1
                    continue
                if row is not None:
                    rows.append(row)
        return rows, unreadable
    finally:
        conn.close()


def _seq_bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """The first and last seq of ``events``, from the table, else the counter in ``meta``."""
    with contextlib.suppress(sqlite3.DatabaseError):
        low, high = conn.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
        if low is not None and high is not None:
            return int(low), int(high)
        return 0, -1
    with contextlib.suppress(sqlite3.DatabaseError, TypeError, ValueError):
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return 0, min(int(row[0]) - 1, _SALVAGE_MAX_GAP)
    return 0, -1
