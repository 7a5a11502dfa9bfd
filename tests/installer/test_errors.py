"""What an installer meets when something is missing: the exit code docs/operations.md gives
for it, and a message that says what to do next."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gatewayd.cli import cli
from gatewayd.commands import enroll as enroll_module
from tests.fixtures.gateway import home_toml
from tests.fixtures.procs import run_module

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def gatewayd(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", **env})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "home.toml"
    rf = '[[drivers]]\nid = "rf"\ntype = "rflink"\nport = "/dev/ttyUSB0"\n'
    path.write_text(home_toml(tmp_path / "state", drivers=rf))
    return path


def with_device(config: Path) -> Path:
    with config.open("a") as toml:
        toml.write('\n[[devices]]\nid = "sos"\ndriver = "rf"\naddress = "Ev1527:0a1b"\n')
        toml.write('role = "sos_button"\n')
    return config


def test_documented_exit_codes_are_the_ones_stated() -> None:
    text = DOCS.read_text()
    assert "Exit codes: 0 the daemon answered, 3 the config cannot be read, 4" in text
    assert "Exit codes: 0 every device passed, 1 some did not, 2 bad flags, 3\nconfig, 4" in text
    assert "Exit codes: 0 written, 2 a bad or missing value, 3 the file" in text


def test_status_without_a_daemon_says_how_to_start_it(config: Path) -> None:
    result = gatewayd("status", "--config", str(config))
    assert result.exit_code == 4, result.output
    assert "gatewayd is not running" in result.output
    assert "systemctl start gatewayd" in result.output


def test_status_metrics_without_a_daemon_still_records_the_outage(config: Path) -> None:
    result = gatewayd("status", "--config", str(config), "--metrics")
    assert result.exit_code == 4, result.output
    assert "gatewayd_up 0" in result.output


def test_a_missing_config_points_at_init(tmp_path: Path) -> None:
    for command in (["status"], ["test"], ["devices", "list"], ["mode", "away"]):
        result = gatewayd(*command, "--config", str(tmp_path / "nope.toml"))
        assert result.exit_code == 3, (command, result.output)
        assert "gatewayd init" in result.output, command


def test_walk_test_of_a_home_without_devices_says_how_to_add_them(config: Path) -> None:
    result = gatewayd("test", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "gatewayd devices pair" in result.output


def test_walk_test_of_an_unknown_device_lists_the_known_ones(config: Path) -> None:
    result = gatewayd("test", "--config", str(with_device(config)), "--device", "kitchen")
    assert result.exit_code == 2, result.output
    assert "no device kitchen" in result.output
    assert "devices: sos" in result.output


def test_walk_test_without_a_daemon(config: Path) -> None:
    result = gatewayd("test", "--config", str(with_device(config)), "--timeout", "5")
    assert result.exit_code == 4, result.output
    assert "systemctl start gatewayd" in result.output


def test_init_names_the_bad_value_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    flags = ["init", "--config", str(path), "--no-input", "--gateway-id", "gw-1"]
    flags += ["--household", "hh", "--dispatch-url", "https://dispatch.example"]
    flags += ["--state-dir", str(tmp_path / "state")]
    result = gatewayd(*flags, "--timezone", "Europe/Atlantis")
    assert result.exit_code == 2, result.output
    assert "--timezone: unknown time zone 'Europe/Atlantis'" in result.output
    assert not path.exists()
    assert gatewayd(*flags, "--timezone", "UTC").exit_code == 0
    result = gatewayd(*flags, "--timezone", "UTC")
    assert result.exit_code == 3, result.output
    assert "--force" in result.output


def test_a_message_is_printed_as_it_is_whatever_brackets_it_holds(tmp_path: Path) -> None:
    # Values and paths come from the installer: square brackets in them are text, not
    # terminal markup to interpret (or to crash on, for a closing tag with no opening one).
    flags = ["init", "--config", str(tmp_path / "home.toml"), "--no-input"]
    flags += ["--household", "hh", "--dispatch-url", "https://dispatch.example"]
    result = gatewayd(*flags, "--gateway-id", "gw[/b]", "--timezone", "UTC")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--gateway-id: gateway id 'gw[/b]' must be 1-128 characters" in result.output
    odd = tmp_path / "[bold]x[/bold]" / "home.toml"
    result = gatewayd("status", "--config", str(odd))
    assert result.exit_code == 3, (result.output, result.exception)
    assert f"error: {odd}: no such file" in result.output


def test_pairing_for_a_driver_not_configured_shows_its_table(config: Path) -> None:
    result = gatewayd(
        "devices", "pair", "--config", str(config), "--driver", "ble", "--address",
        "A4:C1:38:8D:18:B2", "--role", "pendant", "--no-input",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no [[drivers]] entry with id or type 'ble'" in result.output
    assert 'type = "ble"' in result.output


def test_enroll_reads_the_config_from_the_environment(config: Path) -> None:
    """As `status` and `test` do: `gatewayd enroll --code C` alone is enough on a set-up host."""
    result = gatewayd(
        "enroll", "--code", "K7Q2-9XRT", "--dispatch", "http://127.0.0.1:9", "--timeout", "2",
        "--insecure-http",
        GATEWAYD_CONFIG=str(config),
    )  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "unreachable" in result.output
    assert "run the same command again" in result.output
    assert not (config.parent / "state" / "credential.json").exists()


def test_enroll_uses_the_default_config_when_it_exists(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enroll_module, "DEFAULT_CONFIG", config)
    result = gatewayd(
        "enroll", "--code", "K7Q2", "--dispatch", "http://127.0.0.1:9", "--insecure-http"
    )
    assert result.exit_code == 4, result.output
    monkeypatch.setattr(enroll_module, "DEFAULT_CONFIG", config.parent / "absent.toml")
    result = gatewayd(
        "enroll", "--code", "K7Q2", "--dispatch", "http://127.0.0.1:9", "--insecure-http"
    )
    assert result.exit_code == 3, result.output
    assert "gatewayd init" in result.output


def test_an_unknown_command_is_a_usage_error() -> None:
    done = run_module("gatewayd", "pari")
    assert done.returncode == 2
    assert "No such command 'pari'" in done.stderr
