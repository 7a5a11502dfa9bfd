"""What the commands that talk to a running daemon share: ``--config``/``--socket`` and how the
control socket is found from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from contract.home import ConfigError, HomeConfig, load_config
from gatewayd.cli import EXIT_CONFIG, EXIT_UNREACHABLE
from runtime.cli import fail
from runtime.logs import LOG_LEVELS

__all__ = [
    "DEFAULT_CONFIG",
    "config_option",
    "fail",
    "load_home_config",
    "log_level_option",
    "resolve_socket",
    "socket_option",
]

DEFAULT_CONFIG = Path("/etc/gatewayd/home.toml")

F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_CONFIG,
        show_default=True,
        envvar="GATEWAYD_CONFIG",
        help="The home config (also $GATEWAYD_CONFIG).",
    )(func)


def socket_option(func: F) -> F:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="The daemon's control socket (default: [status] socket of the config).",
    )(func)


def log_level_option(default: str, help: str) -> Callable[[F], F]:
    """``--log-level``: one of the known levels (any case), so a typo is a usage error."""
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
        help=help,
    )


def load_home_config(config_path: Path) -> HomeConfig:
    """Load the home config or exit 3 naming every problem."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        fail("\n".join(exc.problems), EXIT_CONFIG)


def resolve_socket(config_path: Path, socket_path: Path | None) -> Path:
    """``--socket`` if given, else the config's status socket (exit 3 if it cannot be read)."""
    if socket_path is not None:
        return socket_path
    return load_home_config(config_path).status_socket


def unreachable(message: str) -> NoReturn:
    fail(message, EXIT_UNREACHABLE)
