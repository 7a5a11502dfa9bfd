"""`--log-level` is one of the known levels on every command that takes it: a typo is a usage
error naming the flag, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatch.cli import cli as dispatchd
from gatewayd.cli import cli as gatewayd

COMMANDS = {
    "gatewayd run": (gatewayd, ("run",)),
    "gatewayd record": (gatewayd, ("record", "--out", "trace.jsonl")),
    "gatewayd replay": (gatewayd, ("replay", "trace.jsonl")),
    "dispatchd serve": (dispatchd, ("serve",)),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_log_level_is_a_usage_error(name: str, tmp_path: Path) -> None:
    cli, command = COMMANDS[name]
    runner = CliRunner(env={"GATEWAYD_CONFIG": str(tmp_path / "home.toml")})
    result = runner.invoke(cli, [*command, "--log-level", "LOUD"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--log-level'" in result.output
    assert "'LOUD' is not one of" in result.output


def test_a_known_level_in_any_case_is_taken(tmp_path: Path) -> None:
    missing = tmp_path / "home.toml"
    result = CliRunner().invoke(gatewayd, ["run", "--config", str(missing), "--log-level", "debug"])
    assert result.exit_code == 3, result.output  # past the flag: the missing config is refused
