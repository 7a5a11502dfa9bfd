"""Module-scoped servers for this area's tests: one dispatchd per module and backend.

Tests sharing a server keep apart by unique household and gateway ids; tests that need a pristine
or specially configured server use the function-scoped fixtures of tests.fixtures.dispatch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.broker import port_open
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.postgres import PG_ADMIN_URL

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[DispatchServer]:
    """A dispatchd with default settings, shared by the tests of a module."""
    yield from module_server(request.param)


def module_server(backend: str, args: tuple[str, ...] = ()) -> Iterator[DispatchServer]:
    workdir = Path(tempfile.mkdtemp(prefix="dispatchd-mod-"))
    dbname = None
    if backend == "postgres":
        if not port_open("127.0.0.1", 5432):
            pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432")
        import psycopg

        dbname = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        db_url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    else:
        db_url = f"sqlite:///{workdir / 'dispatch.db'}"
    instance = DispatchServer(db_url=db_url, workdir=workdir, args=args)
    instance.start()
    try:
        yield instance
    finally:
        instance.close()
        if not os.environ.get("KEEP_DISPATCH_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)
        if dbname is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
