"""The database handle: one async SQLAlchemy engine for SQLite or PostgreSQL.

``sqlite:///path`` and ``postgresql://user@host/db`` URLs are accepted as operators write them and
mapped to the async drivers (aiosqlite, psycopg 3). Every write goes through :meth:`Database.write`:
on SQLite it is serialised in-process, alarms first (:mod:`dispatch.write_gate`), and begins
``IMMEDIATE`` (so two writers never deadlock on a lock upgrade), with WAL and a busy timeout for
other processes such as the CLI.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from dispatch.errors import ConfigError, StorageError
from dispatch.write_gate import Priority, WriteGate

__all__ = ["DEFAULT_DB_URL", "Database", "missing_sqlite_file", "normalise_url"]

DEFAULT_DB_URL = "sqlite:///dispatch.db"


def normalise_url(url: str) -> URL:
    """Map an operator's URL to the async driver's; refuse anything else by name."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"not a database URL: {url!r} (use sqlite:///path/dispatch.db or "
            "postgresql://user@host/db)"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(
                "an SQLite database needs a file path (sqlite:///path/dispatch.db); an in-memory "
                "database would lose every alarm on restart"
            )
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def missing_sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL if it does not exist yet (None for PostgreSQL or a file that
    exists). Opening it would create a new, empty database: for a mistyped path, operators
    would look at an empty queue while the alarms sit in the real one."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database is None:
        return None
    path = Path(parsed.database).expanduser().resolve()
    return None if path.exists() else path


#: How long a connection to a new database waits for another to finish turning it to WAL.
WAL_SWITCH_WAIT_S = 30.0


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode. Two processes opening a new database at once both try to
    switch it, which needs the file to themselves; SQLite refuses the second at once ("database
    is locked") rather than waiting its busy timeout, so this waits and tries again."""
    deadline = time.monotonic() + WAL_SWITCH_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        # Inside the async engine's connect: its greenlet lets the event loop run meanwhile.
        await_(asyncio.sleep(0.02))


class Database:
    """The engine plus the write discipline both backends share."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect = "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            assert self.url.database is not None
            Path(self.url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_gate = WriteGate() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            self._install_sqlite_hooks()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _install_sqlite_hooks(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN IMMEDIATE is ours to issue.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            # FULL fsyncs the WAL at every commit: an acknowledged alarm survives a power loss.
            # NORMAL (for heartbeats and housekeeping) survives a process crash, not a power loss.
            sync = "FULL" if options.get("durable", True) else "NORMAL"
            # The setting stays with the connection: said again only when it changes (each
            # statement is a trip to the driver's thread, on every alarm's path).
            if conn.info.get("synchronous") != sync:
                conn.exec_driver_sql(f"PRAGMA synchronous={sync}")
                conn.info["synchronous"] = sync
            conn.exec_driver_sql(f"BEGIN {options.get('sqlite_begin', 'DEFERRED')}")

    @asynccontextmanager
    async def write(
        self, *, durable: bool = True, urgent: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on exit, rolled back on error.

        ``durable=False`` lets SQLite skip the fsync at commit (heartbeats, housekeeping); such
        writes wait behind durable ones, and ``urgent`` ones (alarms) go before all others
        (:mod:`dispatch.write_gate`).
        """
        if self._write_gate is not None:
            if urgent:
                priority = Priority.ALARM
            else:
                priority = Priority.DURABLE if durable else Priority.TELEMETRY
            async with self._write_gate.hold(priority), self.engine.connect() as conn:
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE", durable=durable)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (rolled back on exit)."""
        async with self.engine.connect() as conn:
            yield conn

    async def check(self) -> None:
        """Fail with :class:`StorageError` unless the database answers."""
        try:
            async with self.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(self.refusal(exc)) from exc

    def refusal(self, exc: Exception) -> str:
        """What went wrong in words: a missing role or database and a refused password are
        not a server that does not answer, and each has its own fix."""
        cause = str(getattr(exc, "orig", None) or exc)
        user, name = self.url.username or "", self.url.database or ""
        if self.dialect == "postgresql":
            if "role" in cause and "does not exist" in cause:
                return (
                    f"database {self.safe_url}: PostgreSQL has no role {user!r}: create it "
                    "(createuser) or fix the user in the URL"
                )
            if "database" in cause and "does not exist" in cause:
                return (
                    f"database {self.safe_url}: PostgreSQL has no database {name!r}: create it "
                    "(createdb) or fix the name in the URL"
                )
            if "password authentication failed" in cause or "no password supplied" in cause:
                return (
                    f"database {self.safe_url}: PostgreSQL refused the password of {user!r}: "
                    "check the password in the URL (or ~/.pgpass)"
                )
        first_line = cause.strip().splitlines()[0] if cause.strip() else type(exc).__name__
        return f"database {self.safe_url} does not answer: {first_line}"

    @property
    def safe_url(self) -> str:
        """The URL as the operator wrote it (without the async driver), password hidden."""
        return self.url.set(drivername=self.dialect).render_as_string(hide_password=True)

    @property
    def where(self) -> str:
        """The database as the log names it: :attr:`safe_url`, an SQLite file by full path."""
        if self.dialect == "sqlite" and self.url.database:
            return f"sqlite:///{Path(self.url.database).expanduser().resolve()}"
        return self.safe_url

    async def dispose(self) -> None:
        await self.engine.dispose()
