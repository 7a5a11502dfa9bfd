"""Storage: migrations are idempotent and refuse newer schemas; the audit log is append-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

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


def test_urls_map_to_async_drivers() -> None:
    assert normalise_url("sqlite:///a/b.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    for bad in ("sqlite://", "sqlite:///:memory:", "oracle://x", "::nonsense::"):
        with pytest.raises(ConfigError):
            normalise_url(bad)
