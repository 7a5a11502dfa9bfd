"""dispatchd says what is wrong: a database file that is not there, a PostgreSQL role or
database that is missing, a password with no terminal to ask it on; and which database it
serves."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from dispatch.db import Database
from tests.fixtures.broker import free_port
from tests.fixtures.procs import module_cmd, project_env, run_module
from tests.fixtures.waiting import wait_until


def test_serve_refuses_a_database_file_that_is_not_there(tmp_path: Path) -> None:
    typo = tmp_path / "var" / "lib" / "dispatchd" / "dispatch.db"
    result = run_module("dispatch", "serve", "--db", f"sqlite:///{typo}", "--port", "0")
    assert result.returncode == 3, result.stderr
    assert f"no database at {typo}" in result.stderr
    assert "dispatchd migrate" in result.stderr
    assert not (tmp_path / "var").exists()  # neither the file nor its folders were made


def test_admin_commands_refuse_a_database_file_that_is_not_there(tmp_path: Path) -> None:
    typo = tmp_path / "dispath.db"
    result = run_module("dispatch", "household", "list", "--db", f"sqlite:///{typo}")
    assert result.returncode == 3, result.stderr
    assert f"no database at {typo}" in result.stderr
    assert not typo.exists()


def test_migrate_creates_it_and_serve_logs_which_database_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dispatch.db"
    url = f"sqlite:///{path}"
    created = run_module("dispatch", "migrate", "--db", url)
    assert created.returncode == 0, created.stderr
    assert f"created a new database at {path}" in created.stdout
    again = run_module("dispatch", "migrate", "--db", url)
    assert "created" not in again.stdout

    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            module_cmd("dispatch", "serve", "--db", url, "--port", str(free_port())),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=project_env(),
        )
    try:
        opened = wait_until(lambda: _logged(log_path, "database_opened"), 30)
        assert opened["db"] == url
        assert opened["dialect"] == "sqlite"
    finally:
        proc.terminate()
        proc.wait(15)


def _logged(path: Path, event: str) -> dict[str, object] | None:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and json.loads(line).get("event") == event:
            return json.loads(line)  # type: ignore[no-any-return]
    return None


def test_serve_create_makes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    proc = subprocess.Popen(
        module_cmd("dispatch", "serve", "--create", "--db", f"sqlite:///{path}", "--port", "0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=project_env(),
    )
    try:
        wait_until(path.exists, 30)
    finally:
        proc.terminate()
        proc.wait(15)


def test_operator_add_without_a_terminal_points_to_password_stdin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dispatch.db'}"
    assert run_module("dispatch", "migrate", "--db", url).returncode == 0
    result = run_module("dispatch", "operator", "add", "ann", "--db", url, input="")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr
    assert "GetPassWarning" not in result.stderr
    assert "Aborted" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_postgresql_failures_are_named() -> None:
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    no_role = run_module("dispatch", "migrate", "--db", f"postgresql://{role}@127.0.0.1:5432/test")
    assert no_role.returncode == 4
    assert f"PostgreSQL has no role '{role}'" in no_role.stderr
    assert "does not answer" not in no_role.stderr

    name = f"nodb_{uuid.uuid4().hex[:8]}"
    no_db = run_module(
        "dispatch", "migrate", "--db", f"postgresql://postgres@127.0.0.1:5432/{name}"
    )
    assert no_db.returncode == 4
    assert f"PostgreSQL has no database '{name}'" in no_db.stderr

    port = free_port()
    away = run_module("dispatch", "migrate", "--db", f"postgresql://u:secret@127.0.0.1:{port}/x")
    assert away.returncode == 4
    assert f"database postgresql://u:***@127.0.0.1:{port}/x does not answer" in away.stderr
    assert "secret" not in away.stderr


def test_a_refused_password_is_named() -> None:
    db = Database("postgresql://ann:secret@db.example/dispatch")
    refused = psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "ann"'
    )
    text = db.refusal(refused)
    assert text.startswith("database postgresql://ann:***@db.example/dispatch: ")
    assert "refused the password of 'ann'" in text
