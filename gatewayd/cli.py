"""`gatewayd`: the gateway daemon and the installer's command line.

Subcommands live in their own modules and load lazily, so `gatewayd --help` stays fast and a
command's heavy imports cost nothing to the others. Commands that other packages add (the demo,
which lives with the simulators) come from the ``gatewayd.commands`` entry-point group, so the
daemon's own package never imports them.
"""

from __future__ import annotations

import importlib
import sys

import click

from gatewayd import __version__

#: name -> "module:attribute" of a click command.
COMMANDS: dict[str, str] = {
    "run": "gatewayd.commands.run:run",
    "status": "gatewayd.commands.status:status",
    "init": "gatewayd.commands.init:init",
    "test": "gatewayd.commands.walktest:walk_test",
    "mode": "gatewayd.commands.mode:mode",
    "devices": "gatewayd.commands.devices:devices",
    "enroll": "gatewayd.commands.enroll:enroll",
    "record": "gatewayd.commands.record:record",
    "replay": "gatewayd.commands.replay:replay",
}

#: Entry-point group of commands other packages add to ``gatewayd``.
COMMAND_GROUP = "gatewayd.commands"


def _targets() -> dict[str, str]:
    from importlib.metadata import entry_points  # reads every installed package's metadata

    targets = {ep.name: ep.value for ep in entry_points(group=COMMAND_GROUP)}
    targets.update(COMMANDS)  # a plug-in never shadows a built-in command
    return targets


#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_targets())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # A built-in command (the daemon's `run` above all) is found without the plug-ins' scan.
        target = COMMANDS.get(cmd_name) or _targets().get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatewayd")
def cli() -> None:
    """Home alarm gateway: reads the home's sensors, decides alarms locally, keeps every event
    durable and forwards it to the dispatch centre."""


#: Optional libraries that third-party imports pull in when installed and `gatewayd run` never
#: uses, about 8 MiB resident: structlog imports rich for console tracebacks and greenlet for
#: a deprecated context store; httpx imports pygments and rich for its own command line.
DAEMON_SKIPS = ("rich", "pygments", "greenlet")


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        # The daemon lives for months on a small box; its console log falls back to plain
        # tracebacks (see runtime.logs). Only this process's entry point does this, never an import.
        for name in DAEMON_SKIPS:
            if name not in sys.modules:
                sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        cli(prog_name="gatewayd")
    except KeyboardInterrupt:
        sys.exit(130)
