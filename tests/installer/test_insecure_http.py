"""Plain http:// to dispatch only when allowed by name: the config, `gatewayd enroll`, `gatewayd
init`, the client and the daemon each refuse it otherwise, with the URL and the option named."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from contract.home import ConfigError, load_config, parse_config
from forwarder.client import DispatchClient, InsecureDispatchURL
from gatewayd.cli import cli
from tests.buffer.fake_dispatch import CREDENTIAL

URL = "http://dispatch.example.org:8080"


def gatewayd(*args: str) -> Result:
    runner = CliRunner(env={"GATEWAYD_CONFIG": None, "COLUMNS": "200"})
    return runner.invoke(cli, list(args))


def _config(tmp_path: Path, dispatch: str) -> str:
    return f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path / "state"}"\n\n[dispatch]\n{dispatch}\n'


def test_the_config_refuses_plain_http_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(tmp_path, f'url = "{URL}"'), "home.toml")
    [problem] = refused.value.problems
    assert problem.startswith("home.toml:")
    assert repr(URL) in problem
    assert "insecure_http = true in [dispatch]" in problem
    assert "https://" in problem
    allowed = parse_config(_config(tmp_path, f'url = "{URL}"\ninsecure_http = true'))
    assert allowed.dispatch.insecure_http is True
    assert parse_config(_config(tmp_path, 'url = "https://d.example.org"')).dispatch.url


def test_gatewayd_run_refuses_a_plain_http_config(tmp_path: Path) -> None:
    config = tmp_path / "home.toml"
    config.write_text(_config(tmp_path, f'url = "{URL}"'))
    result = gatewayd("run", "--config", str(config))
    assert result.exit_code == 3, result.output
    assert URL in result.output
    assert "insecure_http" in result.output
    assert not (tmp_path / "state").exists()


async def test_the_client_refuses_plain_http_unless_allowed() -> None:
    with pytest.raises(InsecureDispatchURL, match=r"--insecure-http \(or insecure_http = true"):
        DispatchClient(URL, credential=CREDENTIAL)
    with pytest.raises(InsecureDispatchURL, match=r"dispatch\.example\.org"):
        await DispatchClient.enroll(URL, code="K7Q2-9XRT", gateway_id="gw-1")
    allowed = DispatchClient(URL, credential=CREDENTIAL, insecure_http=True)
    await allowed.aclose()


def test_enroll_refuses_plain_http_before_sending_the_code(tmp_path: Path) -> None:
    # A listener that would see the code if anything were sent.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = gatewayd(
            "enroll", "--code", "K7Q2-9XRT", "--dispatch", url, "--gateway-id", "gw-1",
            "--state-dir", str(tmp_path / "state"),
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert url in result.output
        assert "--insecure-http" in result.output
        with pytest.raises(TimeoutError):
            listener.accept()
    assert not (tmp_path / "state" / "credential.json").exists()


def test_init_writes_https_and_allows_http_only_by_flag(tmp_path: Path) -> None:
    base = ["init", "--no-input", "--gateway-id", "gw-1", "--timezone", "UTC"]
    bare = tmp_path / "bare.toml"
    result = gatewayd(*base, "--config", str(bare), "--dispatch-url", "dispatch.example.org")
    assert result.exit_code == 0, result.output
    assert load_config(bare).dispatch.url == "https://dispatch.example.org"
    assert "insecure_http" not in bare.read_text()

    refused = tmp_path / "refused.toml"
    result = gatewayd(*base, "--config", str(refused), "--dispatch-url", URL)
    assert result.exit_code == 2, result.output
    assert "--insecure-http" in result.output
    assert not refused.exists()

    allowed = tmp_path / "allowed.toml"
    result = gatewayd(*base, "--config", str(allowed), "--dispatch-url", URL, "--insecure-http")
    assert result.exit_code == 0, result.output
    config = load_config(allowed)
    assert config.dispatch.url == URL
    assert config.dispatch.insecure_http is True


def test_the_daemon_refuses_a_credential_with_an_http_url(tmp_path: Path) -> None:
    """A config without a URL uses the credential's: plain http there needs the config's word
    too. The gateway runs on (local alarms work) but does not forward."""
    from gatewayd.daemon import Gateway

    config = tmp_path / "home.toml"
    config.write_text(_config(tmp_path, "heartbeat_interval = 5"))
    state = tmp_path / "state"
    state.mkdir()
    CREDENTIAL.__class__(
        gateway_id="gw-1", household_id="hh-1", secret=CREDENTIAL.secret, dispatch_url=URL
    ).save(state / "credential.json")
    gateway = Gateway(load_config(config), config_path=config)

    async def start() -> str:
        from forwarder.client import CredentialError

        with pytest.raises(CredentialError) as refused:
            await gateway._start_forwarding()
        return str(refused.value)

    message = asyncio.run(start())
    assert URL in message
    assert "insecure_http = true in [dispatch]" in message
