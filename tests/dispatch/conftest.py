"""Shared dispatch centres for this area's tests, one per backend for the package.

``server`` is the application in this process (tests.fixtures.dispatch_app): what most API tests
need. ``live_server`` is a ``dispatchd serve`` process, for what needs a real socket (the live
stream, the gateway's own client). Tests sharing one keep apart by unique household and gateway
ids; tests that need a pristine or specially configured process use the function-scoped fixtures
of tests.fixtures.dispatch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dispatch.settings import Settings
from tests.fixtures.broker import port_open
from tests.fixtures.dispatch import SHARED_ADDRESS_FAILURES, DispatchHarness, DispatchServer
from tests.fixtures.dispatch_app import DispatchApp
from tests.fixtures.postgres import PG_ADMIN_URL

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="package", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    """The application with default settings, in-process, shared by this package's tests."""
    yield from app_server(request.param)


@pytest.fixture(scope="package", params=BACKENDS)
def live_server(request: pytest.FixtureRequest) -> Iterator[DispatchServer]:
    """A dispatchd process with default settings, shared by this package's tests."""
    yield from module_server(request.param)


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A database URL for a shared server: a fresh PostgreSQL database or an SQLite file."""
    if backend != "postgres":
        yield f"sqlite:///{workdir / 'dispatch.db'}"
        return
    if not port_open("127.0.0.1", 5432):
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432")
    import psycopg

    dbname = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def app_server(backend: str, settings: Settings | None = None) -> Iterator[DispatchApp]:
    """The application in this process over a fresh database of the backend."""
    workdir = Path(tempfile.mkdtemp(prefix="dispatch-app-"))
    with database(backend, workdir) as db_url:
        # Every test reaches it from one address: see SHARED_ADDRESS_FAILURES.
        settings = settings or Settings(enroll_failures_per_address=SHARED_ADDRESS_FAILURES)
        app = DispatchApp(db_url=db_url, workdir=workdir, settings=settings)
        try:
            app.start()
            yield app
        finally:
            app.close()
            shutil.rmtree(workdir, ignore_errors=True)


def module_server(backend: str, args: tuple[str, ...] = ()) -> Iterator[DispatchServer]:
    yield from shared_servers(backend, args, count=1)  # type: ignore[misc]


def shared_servers(
    backend: str, args: tuple[str, ...] = (), *, count: int
) -> Iterator[DispatchServer | list[DispatchServer]]:
    """``count`` dispatchd processes on one database (one server itself when count is 1)."""
    workdir = Path(tempfile.mkdtemp(prefix="dispatchd-mod-"))
    with database(backend, workdir) as db_url:
        servers = [DispatchServer(db_url=db_url, workdir=workdir, args=args) for _ in range(count)]
        try:
            for instance in servers:
                instance.start()
            yield servers[0] if count == 1 else servers
        finally:
            for instance in servers:
                instance.close()
            if not os.environ.get("KEEP_DISPATCH_LOGS"):
                shutil.rmtree(workdir, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_operator(server: DispatchHarness, role: str = "operator") -> tuple[str, httpx.Client]:
    """A fresh operator made by the admin through the API, and its session."""
    name = unique(role)
    reply = server.operator_client().post(
        "/api/v1/operators", json={"username": name, "password": "password-" + name, "role": role}
    )
    assert reply.status_code == 201, reply.text
    return name, server.login(name, "password-" + name)
