"""Every command and subcommand an installer or operator can type answers ``--help`` with a
description of what it does and of each of its options."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from dispatch.cli import cli as dispatchd_cli
from gatewayd.cli import cli as gatewayd_cli
from tests.fixtures.procs import run_module


def _walk(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command under ``group`` (groups included), depth first."""
    ctx = click.Context(group)
    found: list[tuple[str, ...]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*path, name))} is listed but does not load"
        found.append((*path, name))
        if isinstance(command, click.Group):
            found.extend(_walk(command, (*path, name)))
    return found


def _command(group: click.Group, path: tuple[str, ...]) -> click.Command:
    command: click.Command = group
    for name in path:
        assert isinstance(command, click.Group)
        loaded = command.get_command(click.Context(command), name)
        assert loaded is not None
        command = loaded
    return command


GATEWAYD = _walk(gatewayd_cli)
DISPATCHD = _walk(dispatchd_cli)


def test_the_walk_finds_the_commands_an_installer_uses() -> None:
    for path in [("init",), ("devices", "pair"), ("run",), ("test",), ("enroll",), ("status",)]:
        assert path in GATEWAYD
    for path in [("serve",), ("migrate",), ("enroll-code",), ("household", "add")]:
        assert path in DISPATCHD


@pytest.mark.parametrize(
    ("cli", "prog", "path"),
    [(gatewayd_cli, "gatewayd", p) for p in [(), *GATEWAYD]]
    + [(dispatchd_cli, "dispatchd", p) for p in [(), *DISPATCHD]],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v),
)
def test_help_describes_the_command_and_every_option(
    cli: click.Group, prog: str, path: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name=prog, terminal_width=120)
    assert result.exit_code == 0, result.output
    name = " ".join((prog, *path))
    assert result.output.startswith(f"Usage: {name}"), result.output
    command = _command(cli, path)
    summary = (command.help or "").strip()
    assert len(summary) >= 20, f"`{name}` has no description"
    # The first line of the description is what the parent's command list shows.
    assert summary.splitlines()[0][:30] in result.output
    bare = [
        p.opts[0]
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not p.help
    ]
    assert not bare, f"`{name}` options without help text: {', '.join(bare)}"


@pytest.mark.parametrize(("module", "prog"), [("gatewayd", "gatewayd"), ("dispatch", "dispatchd")])
def test_help_of_the_installed_entry_point(module: str, prog: str) -> None:
    """The real process: the lazy command loading works outside the test runner too."""
    done = run_module(module, "--help", COLUMNS="120")
    assert done.returncode == 0, done.stderr
    assert f"Usage: {prog}" in done.stdout
    assert "Commands:" in done.stdout
