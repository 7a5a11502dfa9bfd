"""Storage: migrations are idempotent and refuse newer schemas; the audit log is append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatch import schema
from dispatch.db import Database, normalise_url
from dispatch.errors import ConfigError, MigrationError
from dispatch.migrations import MIGRATIONS, current_version, migrate
from dispatch.tx import transaction


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'dispatch.db'}"


async def test_migrate_is_idempotent_and_concurrent_safe(db_url: str) -> None:
    import asyncio

    dbs = [Database(db_url), Database(db_url)]
    try:
        results = await asyncio.gather(*(migrate(db) for db in dbs))
        assert sorted(map(tuple, results)) == [(), tuple(m.version for m in MIGRATIONS)]
        assert await current_version(dbs[0]) == MIGRATIONS[-1].version
        assert await migrate(dbs[0]) == []
    finally:
        for db in dbs:
            await db.dispose()


async def test_processes_opening_a_new_sqlite_database_at_once_all_open_it(
    tmp_path: Path,
) -> None:
    """Two dispatchd processes started together on a new database each turn it to WAL; SQLite
    refuses all but one at once instead of waiting its busy timeout (seen as a failed start,
    about one time in ten). A hundred new databases, four connections each at once."""
    import asyncio

    async def open_one(db: Database) -> None:
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"

    for n in range(100):
        dbs = [Database(f"sqlite:///{tmp_path / f'new-{n}.db'}") for _ in range(4)]
        try:
            await asyncio.gather(*(open_one(db) for db in dbs))
        finally:
            for db in dbs:
                await db.dispose()


async def test_a_newer_schema_is_refused(db_url: str) -> None:
    db = Database(db_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO schema_version (version, name, applied_at) "
                    "VALUES (999, 'future', CURRENT_TIMESTAMP)"
                )
            )
        with pytest.raises(MigrationError, match="newer than this program"):
            await migrate(db)
    finally:
        await db.dispose()


async def test_audit_log_refuses_update_and_delete(db_url: str) -> None:
    db = Database(db_url)
    try:
        await migrate(db)
        async with transaction(db) as tx:
            tx.audit("tester", "test.action", "thing", "1", {"n": 1})
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                async with db.write() as conn:
                    await conn.execute(sa.text(statement))
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT actor FROM audit_log"))).all()
        assert [r[0] for r in rows] == ["tester"]
    finally:
        await db.dispose()


async def _index_definitions(db: Database) -> dict[str, str]:
    query = (
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        if db.is_sqlite
        else "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'"
    )
    async with db.read() as conn:
        return {name: sql or "" for name, sql in (await conn.execute(sa.text(query))).all()}


async def test_event_indexes_leave_telemetry_out_once_migrated(db_url: str) -> None:
    """A database whose incident and acknowledgement indexes cover every event (as releases
    before migration 8 made them) has them rebuilt without the rows of neither, rows kept."""
    partial = next(m.version for m in MIGRATIONS if m.name.startswith("events: incident"))
    db = Database(db_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            for name, column in (
                ("ix_events_incident", "incident_id"),
                ("ix_events_acknowledged", "acknowledged_at"),
            ):
                await conn.execute(sa.text(f"DROP INDEX {name}"))
                await conn.execute(sa.text(f"CREATE INDEX {name} ON events ({column})"))
            await conn.execute(
                schema.schema_version.delete().where(schema.schema_version.c.version == partial)
            )
            now = datetime.now(UTC)
            await conn.execute(
                sa.insert(schema.events),
                [
                    {
                        "gateway_id": "gw-1",
                        "id": f"01EVENT{n:019d}",
                        "household_id": "hh-1",
                        "seq": n,
                        "kind": "sos" if n == 0 else "motion",
                        "priority": 1 if n == 0 else 4,
                        "at": now,
                        "received_at": now,
                        "test": False,
                        "payload": {},
                        "incident_id": "inc-1" if n == 0 else None,
                        "acknowledged_at": now if n == 0 else None,
                    }
                    for n in range(3)
                ],
            )
        before = await _index_definitions(db)
        assert "WHERE" not in before["ix_events_incident"].upper()
        assert await migrate(db) == [partial]
        after = await _index_definitions(db)
        assert "incident_id IS NOT NULL" in after["ix_events_incident"]
        assert "acknowledged_at IS NOT NULL" in after["ix_events_acknowledged"]
        e = schema.events
        async with db.read() as conn:
            on_incident = await conn.execute(sa.select(e.c.id).where(e.c.incident_id == "inc-1"))
            acked = await conn.execute(sa.select(e.c.id).where(e.c.acknowledged_at >= now))
            assert on_incident.scalars().all() == ["01EVENT" + "0" * 19]
            assert acked.scalars().all() == ["01EVENT" + "0" * 19]
            assert len((await conn.execute(sa.select(e.c.id))).all()) == 3
    finally:
        await db.dispose()


def test_urls_map_to_async_drivers() -> None:
    assert normalise_url("sqlite:///a/b.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    for bad in ("sqlite://", "sqlite:///:memory:", "oracle://x", "::nonsense::"):
        with pytest.raises(ConfigError):
            normalise_url(bad)
