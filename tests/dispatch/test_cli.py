"""The dispatchd command line: help everywhere, clear errors, exit codes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatch.cli import cli
from tests.fixtures.procs import run_module

COMMANDS = [
    (),
    ("serve",),
    ("migrate",),
    ("enroll-code",),
    ("operator",),
    ("operator", "add"),
    ("operator", "list"),
    ("operator", "disable"),
    ("gateway",),
    ("gateway", "list"),
    ("gateway", "revoke"),
    ("household",),
    ("household", "add"),
    ("household", "list"),
    ("rescuer",),
    ("rescuer", "add"),
    ("rescuer", "list"),
    ("rescuer", "disable"),
    ("rescuer", "team"),
    ("rescuer", "team", "add"),
    ("rescuer", "team", "list"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dispatchd")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="dispatchd")
    assert result.exit_code == 0, result.output
    assert "Usage: dispatchd" in result.output
    groups = ((), ("operator",), ("gateway",), ("household",), ("rescuer",), ("rescuer", "team"))
    is_group = command in groups
    assert ("--db" in result.output) is not is_group


def test_python_dash_m_runs_the_cli() -> None:
    result = run_module("dispatch", "--version")
    assert result.returncode == 0, result.stderr
    assert "dispatchd" in result.stdout


def test_administration_round_trip(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state' / 'dispatch.db'}"

    def run(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return run_module("dispatch", *args, input=stdin, DISPATCHD_DB=db)

    first = run("migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 1" in first.stdout
    assert "up to date" in run("migrate").stdout

    assert (
        run("household", "add", "hh-7", "--name", "Herr Braun", "--community", "Süd").returncode
        == 0
    )
    listed = run("household", "list").stdout
    assert "hh-7\tHerr Braun\tSüd" in listed
    # Search reads the text every write keeps: a household added here is found like any other.
    with sqlite3.connect(tmp_path / "state" / "dispatch.db") as conn:
        (text,) = conn.execute("SELECT search_text FROM households WHERE id = 'hh-7'").fetchone()
    assert "herr braun" in text
    duplicate = run("household", "add", "hh-7", "--name", "again")
    assert duplicate.returncode == 6
    assert "exists" in duplicate.stderr

    code = run("enroll-code", "--household", "hh-7", "--ttl", "600")
    assert code.returncode == 0, code.stderr
    assert len(code.stdout.strip()) == 14  # XXXX-XXXX-XXXX, and nothing else on stdout
    missing = run("enroll-code", "--household", "nobody")
    assert missing.returncode == 5
    assert "nobody" in missing.stderr

    added = run(
        "operator",
        "add",
        "maria",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert added.returncode == 0, added.stderr
    # Stored as argon2id at argon2-cffi's recommended cost (the suite's own fixtures hash with
    # the cheapest parameters; the command, a process of its own, does not).
    with sqlite3.connect(tmp_path / "state" / "dispatch.db") as conn:
        (stored,) = conn.execute("SELECT password_hash FROM operators WHERE username = 'maria'")
    assert stored[0].startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored[0][:40]
    weak = run("operator", "add", "weak", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1
    assert "password" in weak.stderr
    assert "maria\tsupervisor\tactive" in run("operator", "list").stdout
    assert run("operator", "disable", "maria").returncode == 0
    assert "maria\tsupervisor\tdisabled" in run("operator", "list").stdout
    assert run("operator", "disable", "ghost").returncode == 5

    assert run("gateway", "list").stdout == ""
    assert run("gateway", "revoke", "gw-none").returncode == 5


def test_bad_database_urls_are_named(tmp_path: Path) -> None:
    result = run_module("dispatch", "migrate", "--db", "mysql://x/y")
    assert result.returncode == 3
    assert "unsupported database" in result.stderr
    result = run_module("dispatch", "migrate", "--db", "sqlite://")
    assert result.returncode == 3
    assert "file path" in result.stderr
    result = run_module(
        "dispatch", "household", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert result.returncode == 4
    assert "does not answer" in result.stderr
    result = run_module(
        "dispatch", "serve", "--db", "postgresql://nobody@127.0.0.1:1/x", "--port", "0"
    )
    assert result.returncode == 4
    assert "does not answer" in result.stderr
    bad_zone = run_module("dispatch", "serve", "--timezone", "Mars/Olympus_Mons", "--port", "0")
    assert bad_zone.returncode == 3
    assert "time zone" in bad_zone.stderr
    bad_port = run_module("dispatch", "serve", "--port", "99999")
    assert bad_port.returncode == 2
