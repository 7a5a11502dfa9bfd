"""`gatewayd mode normal|away|test`: switch the running gateway's mode.

``test`` is for an installer's walk test: alarms are raised as tests and open no incident at
dispatch. Prefer `gatewayd test`, which always switches back.

Exit codes: 0 switched; 1 the daemon refused; 3 config unreadable; 4 daemon unreachable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from gatewayd.cli import EXIT_FAILURE
from gatewayd.commands.daemon_options import (
    config_option,
    fail,
    resolve_socket,
    socket_option,
    unreachable,
)
from gatewayd.control import MODES, ControlClient, ControlError, ControlRequestError

__all__ = ["mode"]


@click.command("mode")
@click.argument("new_mode", metavar="MODE", type=click.Choice(MODES))
@config_option
@socket_option
def mode(new_mode: str, config_path: Path, socket_path: Path | None) -> None:
    """Switch the running gateway to MODE (normal, away or test)."""
    path = resolve_socket(config_path, socket_path)
    try:
        now_in = asyncio.run(ControlClient(path).set_mode(new_mode))
    except ControlRequestError as exc:
        fail(f"gatewayd refused mode {new_mode}: {exc}", EXIT_FAILURE)
    except ControlError as exc:
        unreachable(str(exc))
    click.echo(f"gatewayd is now in {now_in} mode")
    if now_in == "test":
        click.echo(
            "Alarms are raised as tests and open no incident at dispatch. "
            "Switch back with: gatewayd mode normal",
            err=True,
        )
