"""The guard that keeps tests off the host's /etc/gatewayd."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gatewayd.cli import cli
from tests.fixtures.hostconfig import HostConfigTouched, guard


def test_opening_the_hosts_config_is_refused_and_remembered() -> None:
    with pytest.raises(HostConfigTouched, match=r"/etc/gatewayd/home.toml.*pass --config"):
        Path("/etc/gatewayd/home.toml").read_text()
    assert guard.take() == ["open /etc/gatewayd/home.toml"]


def test_a_relative_path_that_leads_there_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/etc")
    with pytest.raises(HostConfigTouched):
        open("gatewayd/../gatewayd/dispatch-ca.pem")  # noqa: SIM115 -- refused before it opens
    assert guard.take() == ["open /etc/gatewayd/dispatch-ca.pem"]


def test_a_cli_that_falls_back_to_the_default_config_is_caught() -> None:
    """`gatewayd status` with neither --config nor $GATEWAYD_CONFIG reads the default path."""
    result = CliRunner(env={"GATEWAYD_CONFIG": None}).invoke(cli, ["status"])
    assert result.exit_code != 0
    assert guard.take() == ["open /etc/gatewayd/home.toml"]


def test_other_paths_pass(tmp_path: Path) -> None:
    (tmp_path / "etc" / "gatewayd").mkdir(parents=True)
    (tmp_path / "etc" / "gatewayd" / "home.toml").write_text("")
    assert guard.take() == []
