"""Gateway secrets sealed with a key outside the database: the key file made on first start,
clear refusals when the key is missing or wrong, plaintext rows sealed by ``dispatchd migrate``,
and the events table's new primary key migrated on both backends with its rows."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, insert, inspect, select, text

from contract.signing import new_secret
from dispatch import schema
from dispatch.db import Database
from dispatch.migrations import MIGRATIONS, migrate
from dispatch.sealing import is_sealed
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.procs import run_module

pytestmark = pytest.mark.slow  # dispatchd processes, started and refused

#: The migration that made event ids unique per gateway.
IDENTITY = next(m.version for m in MIGRATIONS if m.name.startswith("gateway identity"))

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_url")
    else:
        yield f"sqlite:///{tmp_path / 'dispatch.db'}"


def _serve(db_url: str, **env: str) -> tuple[int, str]:
    """``dispatchd serve`` that must refuse to start (a short timeout: it never listens)."""
    done = run_module(
        "dispatch", "serve", "--db", db_url, "--port", "0", "--create", timeout=60, **env
    )
    return done.returncode, done.stdout + done.stderr


def _migrate(db_url: str, **env: str) -> tuple[int, str]:
    done = run_module("dispatch", "migrate", "--db", db_url, timeout=60, **env)
    return done.returncode, done.stdout + done.stderr


async def _add_plaintext_gateway(db_url: str, gateway_id: str, secret: str) -> None:
    """A gateway as a release before sealing stored it."""
    db = Database(db_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            now = datetime.now(UTC)
            await conn.execute(
                insert(schema.households).values(
                    id="hh-old",
                    name="old home",
                    residents=[],
                    emergency_contacts=[],
                    devices=[],
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                insert(schema.gateways).values(
                    id=gateway_id,
                    household_id="hh-old",
                    secret=secret,
                    version="old",
                    enrolled_at=now,
                    online=True,
                    offline_after=now,
                    status_changed_at=now,
                    interval_s=30.0,
                )
            )
    finally:
        await db.dispose()


async def _stored_secret(db_url: str, gateway_id: str) -> str:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            g = schema.gateways
            return str(
                (await conn.execute(select(g.c.secret).where(g.c.id == gateway_id))).scalar()
            )
    finally:
        await db.dispose()


async def test_migrate_seals_plaintext_secrets_and_the_gateway_still_signs_in(
    db_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "secrets.key"
    env = {"DISPATCHD_SECRETS_KEY_FILE": str(key_file)}
    # The longest plaintext there is (a DC-09 account's row): its sealed form fits the column.
    secret = secrets.token_hex(32)
    await _add_plaintext_gateway(db_url, "gw-old", secret)
    code, out = _migrate(db_url, **env)
    assert code == 0, out
    assert "sealed 1 gateway secret(s)" in out
    stored = await _stored_secret(db_url, "gw-old")
    assert is_sealed(stored)
    assert secret not in stored
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, out = _migrate(db_url, **env)
    assert code == 0, out
    assert "sealed" not in out  # nothing left in plaintext

    server = DispatchServer(db_url=db_url, workdir=tmp_path)
    server.secrets_key_file.parent.mkdir(parents=True, exist_ok=True)
    if server.secrets_key_file != key_file:
        server.secrets_key_file.write_bytes(key_file.read_bytes())
    try:
        server.start()
        gw = server.gateway("gw-old", "hh-old", secret)
        from tests.dispatch.wire import heartbeat

        assert gw.heartbeat(heartbeat("gw-old")).status_code == 200
    finally:
        server.close()


async def test_a_wrong_or_missing_key_is_refused_by_name(db_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "secrets.key"
    env = {"DISPATCHD_SECRETS_KEY_FILE": str(key_file)}
    await _add_plaintext_gateway(db_url, "gw-k", new_secret())
    code, out = _migrate(db_url, **env)
    assert code == 0, out

    other = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    code, out = _serve(db_url, DISPATCHD_SECRETS_KEY=other)
    assert code == 3, out
    assert "does not open with the secrets key from DISPATCHD_SECRETS_KEY" in out
    assert "Traceback" not in out

    code, out = _serve(db_url, DISPATCHD_SECRETS_KEY="not-a-key")
    assert code == 3, out
    assert "DISPATCHD_SECRETS_KEY" in out
    assert "32 bytes" in out

    key_file.unlink()
    code, out = _serve(db_url, **env)
    assert code == 3, out
    assert f"the secrets key file {key_file} is missing" in out
    assert not key_file.exists(), "a new key was made although sealed secrets exist"


@pytest.mark.postgres
def test_postgresql_without_a_key_is_refused(postgres_url: str) -> None:
    code, out = _serve(postgres_url)
    assert code == 3, out
    assert "DISPATCHD_SECRETS_KEY_FILE" in out
    code, out = _migrate(postgres_url)
    assert code == 0, out
    assert "gateway secrets not sealed: no key" in out


async def test_events_primary_key_becomes_per_gateway_with_rows_kept(db_url: str) -> None:
    """A database from before (events keyed by id alone) is migrated; its events stay."""
    db = Database(db_url)
    try:
        await migrate(db)
        old = MetaData()
        columns = [c._copy() for c in schema.events.columns]
        for column in columns:
            column.primary_key = column.name == "id"
        old_events = Table("events", old, *columns)
        async with db.write() as conn:
            await conn.execute(text("DROP TABLE events"))
            await conn.run_sync(old_events.create)
            await conn.execute(
                schema.schema_version.delete().where(schema.schema_version.c.version == IDENTITY)
            )
            now = datetime.now(UTC)
            await conn.execute(
                insert(old_events),
                [
                    {
                        "id": f"01EVENT{n:019d}",
                        "gateway_id": "gw-1",
                        "household_id": "hh-1",
                        "seq": n,
                        "kind": "sos",
                        "priority": 1,
                        "at": now,
                        "received_at": now,
                        "test": False,
                        "payload": {},
                    }
                    for n in range(3)
                ],
            )
        applied = await migrate(db)
        assert applied == [IDENTITY]
        async with db.read() as conn:
            pk = await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("events"))
            indexes = await conn.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("events")}
            )
            count = (await conn.execute(select(schema.events.c.id))).all()
        assert sorted(pk["constrained_columns"]) == ["gateway_id", "id"]
        assert {i.name for i in schema.events.indexes} <= indexes
        assert len(count) == 3
        # The same id from another gateway is now a row of its own.
        async with db.write() as conn:
            row = {
                "id": "01EVENT" + "0" * 19,
                "gateway_id": "gw-2",
                "household_id": "hh-2",
                "seq": 1,
                "kind": "sos",
                "priority": 1,
                "at": datetime.now(UTC),
                "received_at": datetime.now(UTC),
                "test": False,
                "payload": {},
            }
            await conn.execute(insert(schema.events).values(row))
        assert await migrate(db) == []
    finally:
        await db.dispose()
