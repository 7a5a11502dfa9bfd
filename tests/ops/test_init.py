"""`gatewayd init`: by flags, interactively, and its refusals."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from contract.home import load_config, parse_config
from gatewayd.cli import cli
from gatewayd.commands.init import HomeAnswers, render_config

FLAGS = [
    "--no-input",
    "--gateway-id", "gw-0042",
    "--household", "Musterstrasse 12, Flat 3",
    "--dispatch-url", "https://dispatch.example.org/",
    "--timezone", "Europe/Berlin",
    "--state-dir", "/var/lib/gatewayd",
    "--rule-pack", "elderly_care",
    "--zigbee-url", "mqtts://broker.local:8883",
]  # fmt: skip


def run_init(*args: str, stdin: str | None = None) -> Result:
    runner = CliRunner(env={"GATEWAYD_CONFIG": None, "COLUMNS": "200"})
    return runner.invoke(cli, ["init", *args], input=stdin, catch_exceptions=False)


def test_by_flags_writes_a_config_load_config_accepts(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "gatewayd" / "home.toml"
    result = run_init("--config", str(path), *FLAGS)
    assert result.exit_code == 0, result.output
    assert f"Wrote {path}" in result.stdout
    config = load_config(path)
    assert config.gateway.id == "gw-0042"
    assert config.gateway.household == "Musterstrasse 12, Flat 3"
    assert config.gateway.timezone == "Europe/Berlin"
    assert str(config.gateway.state_dir) == "/var/lib/gatewayd"
    assert config.dispatch.url == "https://dispatch.example.org"
    assert str(config.status_socket) == "/run/gatewayd/control.sock"
    assert config.rules == {"pack": "elderly_care"}
    [zigbee] = config.drivers
    assert (zigbee.id, zigbee.type) == ("zigbee", "zigbee2mqtt")
    assert zigbee.options == {
        "url": "mqtts://broker.local:8883",
        "base_topic": "zigbee2mqtt",
        # A persistent session: the broker keeps alarms for the gateway while it restarts.
        "client_id": "gatewayd-gw-0042-zigbee",
    }
    assert config.devices == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    text = path.read_text()
    assert "# This gateway's id at dispatch." in text
    assert "# [[devices]]" in text  # an example, commented out
    assert not list(path.parent.glob(".home.toml.*"))  # no temp file left behind


def test_without_zigbee(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    result = run_init("--config", str(path), *FLAGS[:-1], "")
    assert result.exit_code == 0, result.output
    assert load_config(path).drivers == []
    assert "# [[drivers]]" in path.read_text()


def test_defaults_with_no_input(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    result = run_init(
        "--config", str(path), "--no-input", "--gateway-id", "gw-1",
        "--dispatch-url", "https://d.example.org", "--timezone", "UTC",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = load_config(path)
    assert config.gateway.household == ""
    assert config.rules == {"pack": "elderly_care"}
    assert config.drivers[0].options["url"] == "mqtt://127.0.0.1:1883"


def test_interactively_with_re_asking(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    answers = [
        "",  # gateway id is required: asked again
        "gw 42",  # a space: refused, asked again
        "gw-42",
        "Flat 3",
        "ftp://dispatch.example.org",  # refused
        "https://dispatch.example.org",
        "Mars/Olympus_Mons",  # refused
        "America/New_York",
        "",  # state dir: default
        "",  # rule pack: default
        "mqtt://127.0.0.1:1884",
    ]
    result = run_init("--config", str(path), stdin="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "Gateway id (as registered at dispatch) is required." in result.stderr
    assert "gateway id 'gw 42' must be 1-128 characters" in result.stderr
    assert "dispatch url must start with https://" in result.stderr
    assert "unknown time zone 'Mars/Olympus_Mons'" in result.stderr
    config = load_config(path)
    assert config.gateway.id == "gw-42"
    assert config.gateway.household == "Flat 3"
    assert config.gateway.timezone == "America/New_York"
    assert config.dispatch.url == "https://dispatch.example.org"
    assert config.drivers[0].options["url"] == "mqtt://127.0.0.1:1884"


def test_flags_given_are_not_asked(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    # Only the household and the Zigbee URL are left to ask; defaults for the rest.
    answers = ["Flat 9", ""]
    result = run_init(
        "--config", str(path), "--gateway-id", "gw-9", "--dispatch-url", "https://d.example.org",
        "--timezone", "UTC", "--state-dir", "/srv/gw", "--rule-pack", "elderly_care",
        stdin="\n".join(answers) + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Gateway id" not in result.stderr
    config = load_config(path)
    assert config.gateway.household == "Flat 9"
    assert str(config.gateway.state_dir) == "/srv/gw"


def test_input_ending_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    result = run_init("--config", str(path), stdin="")
    assert result.exit_code == 2
    assert "no answer for --gateway-id" in result.stderr
    assert not path.exists()


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    path.write_text("# the installer's careful work\n")
    result = run_init("--config", str(path), *FLAGS)
    assert result.exit_code == 3
    assert "exists; use --force to replace it" in result.stderr
    assert path.read_text() == "# the installer's careful work\n"
    result = run_init("--config", str(path), *FLAGS, "--force")
    assert result.exit_code == 0, result.output
    assert load_config(path).gateway.id == "gw-0042"
    assert (tmp_path / "home.toml.bak").read_text() == "# the installer's careful work\n"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--gateway-id", "gw/42", "--gateway-id: gateway id 'gw/42' must be 1-128 characters"),
        ("--gateway-id", "x" * 129, "must be 1-128 characters"),
        ("--dispatch-url", "ftp://dispatch.example.org", "--dispatch-url: dispatch url must start"),
        ("--dispatch-url", "http://dispatch.example.org", "--dispatch-url: dispatch url"),
        ("--dispatch-url", "https://", "names no host"),
        ("--dispatch-url", "https://u:p@d.example.org", "must not carry credentials"),
        ("--dispatch-url", "https://d.example.org:0x50", "has a bad port"),
        ("--dispatch-url", "https://d.example.org/?a=1", "must not have a query"),
        ("--timezone", "Europe/Atlantis", "--timezone: unknown time zone 'Europe/Atlantis'"),
        ("--timezone", "../etc/passwd", "unknown time zone"),
        ("--state-dir", "var/lib/gatewayd", "--state-dir: state dir must be an absolute path"),
        ("--rule-pack", "Elderly Care", "--rule-pack: rule pack 'Elderly Care' must be"),
        ("--rule-pack", "nope", "--rule-pack: rule pack 'nope' must be one of the packs: elderly"),
        ("--zigbee-url", "http://127.0.0.1:1883", "--zigbee-url: zigbee url must start with mqtt"),
        ("--zigbee-url", "mqtt://:1883", "names no host"),
        ("--zigbee-url", "mqtt://127.0.0.1:70000", "has a bad port"),
        ("--household", "two\nlines", "household must be one line"),
        ("--zigbee-base-topic", "z2m/#", "is not a plain MQTT topic"),
        ("--status-socket", "control.sock", "--status-socket must be an absolute path"),
    ],
)
def test_every_flag_is_validated(tmp_path: Path, flag: str, value: str, message: str) -> None:
    path = tmp_path / "home.toml"
    args = list(FLAGS)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    result = run_init("--config", str(path), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not path.exists()


def test_missing_required_flag_with_no_input(tmp_path: Path) -> None:
    result = run_init("--config", str(tmp_path / "h.toml"), "--no-input", "--gateway-id", "g")
    assert result.exit_code == 2
    assert "missing --dispatch-url (required with --no-input)" in result.stderr


def test_unwritable_location_exits_3(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run_init("--config", str(blocker / "home.toml"), *FLAGS)
    assert result.exit_code == 3
    assert f"cannot write {blocker / 'home.toml'}" in result.stderr


def test_rendered_config_is_toml_with_the_values_escaped() -> None:
    answers = HomeAnswers(
        gateway_id="gw-1",
        dispatch_url="https://d.example.org",
        household='Flat "3" \\ back',
        zigbee_url="mqtt://127.0.0.1:1883",
    )
    text = render_config(answers)
    assert tomllib.loads(text)["gateway"]["household"] == 'Flat "3" \\ back'
    assert parse_config(text).gateway.household == 'Flat "3" \\ back'
