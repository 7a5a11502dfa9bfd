"""Forward-only schema migrations, numbered, recorded in ``schema_version``.

A short list of functions is enough for one service that owns its database; alembic would add a
second configuration and an autogenerate step that nobody here needs. Migrations run in one
transaction under a lock (PostgreSQL advisory lock, SQLite's write lock), so several processes
starting at once migrate exactly once. Migration 1 is the first release's schema; later changes
append a migration and never edit an earlier one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.db import Database
from dispatch.errors import MigrationError

__all__ = ["MIGRATIONS", "Migration", "current_version", "migrate"]

log = structlog.get_logger(__name__)

#: An arbitrary constant naming this program's migration lock on PostgreSQL.
_PG_MIGRATION_LOCK = 0x64697370


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[AsyncConnection, str], Awaitable[None]]


async def _initial_schema(conn: AsyncConnection, dialect: str) -> None:
    tables = [t for t in schema.metadata.sorted_tables if t.name != "schema_version"]
    await conn.run_sync(lambda sync: schema.metadata.create_all(sync, tables=tables))
    # The audit log is append-only: the database itself refuses updates and deletes.
    if dialect == "postgresql":
        await conn.execute(
            text(
                "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
            )
        )
    else:
        for op in ("UPDATE", "DELETE"):
            await conn.execute(
                text(
                    f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
                )
            )


async def _add_missing(conn: AsyncConnection, dialect: str) -> None:
    """Create the tables, columns and indexes of :mod:`dispatch.schema` the database lacks.

    Additive only: a database that migration 1 made from the current schema already has them.
    """

    def add(sync: Any) -> None:
        found = inspect(sync)
        for table in schema.metadata.sorted_tables:
            if not found.has_table(table.name):
                table.create(sync)
                continue
            have = {c["name"] for c in found.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                ddl += column.type.compile(dialect=sync.dialect)
                if column.server_default is not None:
                    ddl += f" DEFAULT '{column.server_default.arg}'"  # type: ignore[attr-defined]
                if not column.nullable:
                    ddl += " NOT NULL"
                sync.exec_driver_sql(ddl)
            indexes = {i["name"] for i in found.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(sync)

    await conn.run_sync(add)


async def _household_admin(conn: AsyncConnection, dialect: str) -> None:
    """Archive, away, operators' notes and search: the new columns, then search text for the
    households that exist."""
    from dispatch.households import backfill_search_text

    await _add_missing(conn, dialect)
    await backfill_search_text(conn)


async def _gateway_identity(conn: AsyncConnection, dialect: str) -> None:
    """Enrollment failures and re-enroll permissions (new tables), and event ids unique per
    gateway: the events table's primary key becomes (gateway_id, id)."""
    await _add_missing(conn, dialect)
    if dialect == "postgresql":  # room for a sealed secret (SQLite does not enforce lengths)
        await conn.execute(text("ALTER TABLE gateways ALTER COLUMN secret TYPE VARCHAR(256)"))
    pk = await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("events"))
    if list(pk["constrained_columns"]) == ["gateway_id", "id"]:
        return  # made by migration 1 from the current schema
    if dialect == "postgresql":
        name = pk.get("name") or "events_pkey"
        await conn.execute(text(f'ALTER TABLE events DROP CONSTRAINT "{name}"'))
        await conn.execute(
            text(f'ALTER TABLE events ADD CONSTRAINT "{name}" PRIMARY KEY (gateway_id, id)')
        )
        return

    # SQLite cannot alter a primary key: rebuild the table under its name, rows kept.
    def rebuild(sync: Any) -> None:
        for index in inspect(sync).get_indexes("events"):
            sync.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
        sync.exec_driver_sql("ALTER TABLE events RENAME TO events_before_identity")
        schema.events.create(sync)
        columns = ", ".join(c.name for c in schema.events.columns)
        sync.exec_driver_sql(
            f"INSERT INTO events ({columns}) SELECT {columns} FROM events_before_identity"
        )
        sync.exec_driver_sql("DROP TABLE events_before_identity")

    await conn.run_sync(rebuild)


async def _partial_event_indexes(conn: AsyncConnection, dialect: str) -> None:
    """The events' incident and acknowledgement indexes without the rows that have neither
    (telemetry): rebuilt from the schema."""

    def rebuild(sync: Any) -> None:
        for index in schema.events.indexes:
            if index.name in ("ix_events_incident", "ix_events_acknowledged"):
                sync.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
                index.create(sync)

    await conn.run_sync(rebuild)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial_schema),
    Migration(2, "presence, true alarm times, per-event acknowledgement", _add_missing),
    Migration(3, "household administration: archive, away, notes, search", _household_admin),
    Migration(4, "SIA DC-09 receiver: accounts and replay protection", _add_missing),
    Migration(5, "wristbands: JT/T 808 terminals, their fixes, incident positions", _add_missing),
    Migration(6, "rescuers: roster, assignments, presses", _add_missing),
    Migration(7, "gateway identity: per-gateway event ids, enrollment limits", _gateway_identity),
    Migration(
        8,
        "events: incident and acknowledgement indexes leave telemetry out",
        _partial_event_indexes,
    ),
)


async def _version_table_exists(conn: AsyncConnection) -> bool:
    return await conn.run_sync(lambda sync: inspect(sync).has_table("schema_version"))


async def current_version(db: Database) -> int:
    """The schema version of the database (0 if it is empty)."""
    async with db.read() as conn:
        if not await _version_table_exists(conn):
            return 0
        rows = (await conn.execute(select(schema.schema_version.c.version))).scalars().all()
        return max(rows, default=0)


async def migrate(db: Database) -> list[int]:
    """Apply every pending migration; return the versions applied (empty if up to date)."""
    latest = MIGRATIONS[-1].version
    try:
        async with db.write() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            if not await _version_table_exists(conn):
                await conn.run_sync(
                    lambda sync: schema.schema_version.create(sync, checkfirst=True)
                )
            done = set(
                (await conn.execute(select(schema.schema_version.c.version))).scalars().all()
            )
            if done and max(done) > latest:
                raise MigrationError(
                    f"the database is at schema version {max(done)}, newer than this program's "
                    f"{latest}: upgrade dispatchd"
                )
            applied: list[int] = []
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                await migration.apply(conn, db.dialect)
                await conn.execute(
                    insert(schema.schema_version).values(
                        version=migration.version,
                        name=migration.name,
                        applied_at=datetime.now(UTC),
                    )
                )
                applied.append(migration.version)
                log.info("migration applied", version=migration.version, name=migration.name)
            return applied
    except SQLAlchemyError as exc:
        raise MigrationError(f"migrating {db.safe_url} failed: {exc}") from exc
