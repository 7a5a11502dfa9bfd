"""``dispatchd rescuer`` through the command line, on SQLite and PostgreSQL: the roster and its
teams from a script, clear errors with their exit codes, and a disabled rescuer's login refused.
The commands run in-process (tests.fixtures.cli); tests/dispatch/test_cli.py runs them as
processes."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatch.cli import cli
from tests.dispatch.conftest import BACKENDS, database
from tests.dispatch.test_rescue_resolve import sent_rescuer
from tests.fixtures.cli import run_cli
from tests.fixtures.dispatch_app import DispatchApp

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(params=BACKENDS)
def dispatchd(request: pytest.FixtureRequest) -> Iterator[Cli]:
    """``dispatchd ARGS`` on a fresh, migrated database of the backend."""
    workdir = Path(tempfile.mkdtemp(prefix="dispatchd-cli-"))
    with database(request.param, workdir) as db_url:

        def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli(cli, args, env={"DISPATCHD_DB": db_url}, input=stdin)

        migrated = run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield run


def test_rescuers_and_teams_are_added_listed_and_disabled(dispatchd: Cli) -> None:
    run = dispatchd
    assert run("rescuer", "team", "add", "North Gate").stdout == "team 1 North Gate added\n"
    again = run("rescuer", "team", "add", "North Gate")
    assert again.returncode == 6
    assert "team exists" in again.stderr

    added = run(
        "rescuer", "add", "Wang Wei", "--phone", "+86 139 0000 1111", "--team", "North Gate",
        "--status", "available", "--shift", "day 07:00-19:00",
        "--login", "wang.wei", "--password-stdin", stdin="pw-wang-wei-2026\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == "rescuer 1 Wang Wei added (available, login wang.wei)\n"
    plain = run("rescuer", "add", "Li Na", "--phone", "+86 139 0000 2222", "--status", "off_duty")
    assert plain.returncode == 0, plain.stderr
    assert run("rescuer", "list").stdout.splitlines() == [
        "1\tWang Wei\tNorth Gate\tavailable\t+86 139 0000 1111\twang.wei\tday 07:00-19:00\t-",
        "2\tLi Na\t-\toff_duty\t+86 139 0000 2222\t-\t-\t-",
    ]
    assert run("rescuer", "team", "list").stdout == "1\tNorth Gate\t1\n"
    assert "wang.wei\trescuer\tactive\tWang Wei" in run("operator", "list").stdout

    disabled = run("rescuer", "disable", "1")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout == "rescuer 1 Wang Wei off duty, login wang.wei disabled\n"
    assert run("rescuer", "list").stdout.splitlines()[0].split("\t")[3] == "off_duty"
    assert "wang.wei\trescuer\tdisabled\tWang Wei" in run("operator", "list").stdout
    assert run("rescuer", "disable", "2").stdout == "rescuer 2 Li Na off duty\n"


def test_mistakes_are_named_with_their_exit_codes(dispatchd: Cli) -> None:
    run = dispatchd
    no_team = run(
        "rescuer", "add", "Zhao", "--phone", "+86 139", "--team", "South", "--status", "available"
    )
    assert no_team.returncode == 5
    assert "no team is called 'South'" in no_team.stderr
    assert "dispatchd rescuer team add" in no_team.stderr
    unchosen = run("rescuer", "add", "Zhao", "--phone", "+86 139")
    assert unchosen.returncode == 2  # where they start is chosen, never assumed
    assert "--status" in unchosen.stderr
    bad_phone = run("rescuer", "add", "Zhao", "--phone", "x", "--status", "off_duty")
    assert bad_phone.returncode == 1
    assert "phone" in bad_phone.stderr
    short = run(
        "rescuer", "add", "Zhao", "--phone", "+86 139", "--status", "off_duty",
        "--login", "zhao", "--password-stdin", stdin="short\n",
    )  # fmt: skip
    assert short.returncode == 1
    assert "password" in short.stderr
    stray = run(
        "rescuer", "add", "Zhao", "--phone", "+86 139", "--status", "off_duty", "--password-stdin"
    )
    assert stray.returncode == 2
    assert "--login" in stray.stderr
    no_terminal = run(
        "rescuer",
        "add",
        "Zhao",
        "--phone",
        "+86 139",
        "--status",
        "off_duty",
        "--login",
        "zhao",
        stdin="",
    )
    assert no_terminal.returncode == 2
    assert "--password-stdin" in no_terminal.stderr
    assert run("rescuer", "list").stdout == ""  # nothing half-made
    assert run("operator", "list").stdout == ""
    ghost = run("rescuer", "disable", "99")
    assert ghost.returncode == 5
    assert "rescuer 99 is not on the roster" in ghost.stderr
    assert run("rescuer", "disable", "zero").returncode == 2


def test_a_rescuer_with_a_task_is_not_disabled(server: DispatchApp) -> None:
    """The roster's own rule holds from the command line: reassign or call off first."""
    rescuer, phone, incident_id, _op, _task = sent_rescuer(server)

    busy = server.cli("rescuer", "disable", str(rescuer["id"]))
    assert busy.returncode == 6
    assert f"is on incident {incident_id}" in busy.stderr
    assert phone.get("/api/v1/rescuer/task").json()["incident"]["id"] == incident_id
    assert phone.get("/api/v1/rescuer/me").status_code == 200  # the login still works
