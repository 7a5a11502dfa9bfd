"""`gatewayd run`: the daemon itself (what systemd starts)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from contract.home import ConfigError
from gatewayd.cli import EXIT_CONFIG
from gatewayd.commands.daemon_options import log_level_option
from runtime.logs import configure_logging

DEFAULT_CONFIG = Path("/etc/gatewayd/home.toml")


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="GATEWAYD_CONFIG",
    help="The home's config file.",
)
@log_level_option("INFO", "How much to log.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto: JSON lines unless stdout is a terminal.",
)
def run(config_path: Path, log_level: str, log_format: str) -> None:
    """Run the gateway daemon until SIGTERM (SIGHUP reloads the config)."""
    configure_logging(level=log_level, json=None if log_format == "auto" else log_format == "json")
    from gatewayd.config_check import checked_config

    try:
        config = checked_config(config_path)
    except ConfigError as exc:
        click.echo(f"gatewayd: refusing to start, the config has problems:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    from gatewayd.daemon import Gateway, GatewayError

    try:
        asyncio.run(Gateway(config, config_path=config_path).run())
    except GatewayError as exc:
        click.echo(f"gatewayd: {exc}", err=True)
        sys.exit(1)
