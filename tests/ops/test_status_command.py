"""`gatewayd status` and `gatewayd mode` against a real control socket."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from gatewayd.cli import cli
from gatewayd.commands.status import format_age, metrics_text, render_status
from gatewayd.control import ControlServer
from gatewayd.status import one_line_summary
from tests.ops.fakes import FakeDaemon, realistic_status

NOW = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)


@pytest.fixture
async def served(sock_dir: Path) -> AsyncIterator[tuple[FakeDaemon, Path]]:
    daemon = FakeDaemon()
    server = ControlServer(sock_dir / "control.sock", daemon)
    await server.start()
    try:
        yield daemon, server.path
    finally:
        await server.aclose()


async def invoke(*args: str) -> Result:
    """Run the CLI in a thread: it runs its own event loop, the server runs in the test's."""
    runner = CliRunner(env={"COLUMNS": "200", "GATEWAYD_CONFIG": None})
    return await asyncio.to_thread(runner.invoke, cli, list(args), catch_exceptions=False)


def rendered(status: dict[str, object]) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_status(status, now=NOW))
    return console.export_text()


def test_render_shows_what_an_installer_needs() -> None:
    text = rendered(realistic_status())
    lines = text.splitlines()
    assert "gateway gw-0042" in lines[0]
    assert "mode NORMAL" in lines[0]
    assert "up 1 d 2 h" in lines[0]
    rflink = next(line for line in lines if line.startswith("│ rflink"))
    assert "degraded" in rflink
    assert "20 min ago" in rflink  # link down since 08:10
    assert "port /dev/ttyUSB0 vanished" in rflink
    smoke = next(line for line in lines if line.startswith("│ kitchen_smoke"))
    assert "5 min ago" in smoke
    assert "14 %" in smoke
    assert "45" in smoke
    door = next(line for line in lines if line.startswith("│ hall_door"))
    assert "12 h 30 min ago" in door
    assert "NO" in door
    assert any("unsent alarm" in line and "│ 1 " in line for line in lines)
    assert any("unsent telemetry" in line and "250" in line for line in lines)
    assert any("oldest unsent" in line and "10 min" in line for line in lines)
    assert any("dispatch reachable" in line and "NO" in line for line in lines)
    assert any("last successful forward" in line and "10 min ago" in line for line in lines)
    assert any("failures in a row" in line and "21" in line for line in lines)
    trouble = next(line for line in lines if line.startswith("│ device_offline"))
    assert "hall_door" in trouble
    assert "12 h ago" in trouble


def test_render_survives_a_partial_or_odd_status() -> None:
    text = rendered({"gateway_id": "gw-1", "drivers": "nonsense", "buffer": None, "mode": "test"})
    assert "gateway gw-1" in text
    assert "TEST" in text
    assert "no incident at dispatch" in text
    assert "(none)" in text
    assert "No troubles." in text


def test_render_test_mode_and_a_clean_home() -> None:
    status = realistic_status()
    status["troubles"] = []
    status["forwarder"]["reachable"] = True
    text = rendered(status)
    assert "No troubles." in text
    assert any("dispatch reachable" in line and "yes" in line for line in text.splitlines())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29T08:29:18Z", "42 s ago"),
        ("2026-11-29T06:00:00+00:00", "2 h 30 min ago"),
        ("2026-11-27T07:30:00Z", "2 d 1 h ago"),
        ("2026-11-29T09:30:00Z", "in 1 h (clock skew?)"),
        (None, "never"),
        ("not a time", "not a time"),
    ],
)
def test_format_age(value: str | None, expected: str) -> None:
    assert format_age(value, NOW) == expected


def test_metrics_exposition_parses_and_carries_the_numbers() -> None:
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(realistic_status()))}
    assert families["gatewayd_up"].samples[0].value == 1
    depth = {s.labels["lane"]: s.value for s in families["gatewayd_buffer_unsent"].samples}
    assert depth == {"alarm": 1, "trouble": 4, "telemetry": 250}
    battery = {
        s.labels["device"]: s.value for s in families["gatewayd_device_battery_percent"].samples
    }
    assert battery == {"sos_button": 87, "kitchen_smoke": 14}  # hall_door's is unknown: absent
    online = {s.labels["device"]: s.value for s in families["gatewayd_device_online"].samples}
    assert online["hall_door"] == 0
    assert families["gatewayd_dispatch_reachable"].samples[0].value == 0
    restarts = {s.labels["driver"]: s.value for s in families["gatewayd_driver_restarts"].samples}
    assert restarts == {"zigbee": 0, "rflink": 3}
    troubles = {s.labels["kind"]: s.value for s in families["gatewayd_troubles"].samples}
    assert troubles == {"device_offline": 1, "low_battery": 1}
    last = families["gatewayd_forward_last_success_seconds"].samples[0].value
    assert last == datetime(2026, 11, 29, 8, 19, 30, tzinfo=UTC).timestamp()


def test_metrics_escape_label_values() -> None:
    status = realistic_status()
    status["household"] = 'a "quoted"\nname'
    status["gateway_id"] = 'gw"\\'
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(status))}
    assert families["gatewayd_info"].samples[0].labels["gateway_id"] == 'gw"\\'


def test_metrics_when_unreachable() -> None:
    families = list(text_string_to_metric_families(metrics_text(None)))
    assert [(f.name, f.samples[0].value) for f in families] == [("gatewayd_up", 0)]


async def test_status_command_table(served: tuple[FakeDaemon, Path]) -> None:
    _, path = served
    result = await invoke("status", "--socket", str(path))
    assert result.exit_code == 0, result.output
    assert "gw-0042" in result.stdout
    assert "kitchen_smoke" in result.stdout
    assert "connect timeout to https://dispatch.example.org" in result.stdout


async def test_status_command_json(served: tuple[FakeDaemon, Path]) -> None:
    daemon, path = served
    result = await invoke("status", "--socket", str(path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == daemon.status()


async def test_status_command_metrics(served: tuple[FakeDaemon, Path]) -> None:
    _, path = served
    result = await invoke("status", "--socket", str(path), "--metrics")
    assert result.exit_code == 0
    names = {f.name for f in text_string_to_metric_families(result.stdout)}
    assert {"gatewayd_up", "gatewayd_buffer_unsent", "gatewayd_device_online"} <= names


async def test_status_finds_the_socket_through_the_config(
    served: tuple[FakeDaemon, Path], sock_dir: Path
) -> None:
    _, path = served
    config = sock_dir / "home.toml"
    config.write_text(f'[gateway]\nid = "gw-0042"\n[status]\nsocket = "{path}"\n')
    result = await invoke("status", "--config", str(config), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["gateway_id"] == "gw-0042"


async def test_status_unreachable_exits_4(sock_dir: Path) -> None:
    result = await invoke("status", "--socket", str(sock_dir / "none.sock"))
    assert result.exit_code == 4
    assert "gatewayd is not running (no socket at" in result.stderr
    assert "systemctl start gatewayd" in result.stderr
    result = await invoke("status", "--socket", str(sock_dir / "none.sock"), "--metrics")
    assert result.exit_code == 4
    assert result.stdout.strip().splitlines()[-1] == "gatewayd_up 0.0"


async def test_status_bad_config_exits_3(sock_dir: Path) -> None:
    config = sock_dir / "home.toml"
    config.write_text('[gateway]\nid = "gw 42"\n')
    result = await invoke("status", "--config", str(config))
    assert result.exit_code == 3
    assert "home.toml:2: gateway.id" in result.stderr
    result = await invoke("status", "--config", str(sock_dir / "missing.toml"))
    assert result.exit_code == 3
    assert "create one with `gatewayd init`" in result.stderr


async def test_json_and_metrics_are_exclusive(served: tuple[FakeDaemon, Path]) -> None:
    _, path = served
    result = await invoke("status", "--socket", str(path), "--json", "--metrics")
    assert result.exit_code == 2


async def test_mode_command(served: tuple[FakeDaemon, Path]) -> None:
    daemon, path = served
    result = await invoke("mode", "away", "--socket", str(path))
    assert result.exit_code == 0
    assert result.stdout.strip() == "gatewayd is now in away mode"
    result = await invoke("mode", "test", "--socket", str(path))
    assert result.exit_code == 0
    assert "gatewayd mode normal" in result.stderr
    assert daemon.mode_changes == ["away", "test"]


async def test_mode_command_refusals(served: tuple[FakeDaemon, Path], sock_dir: Path) -> None:
    daemon, path = served
    result = await invoke("mode", "party", "--socket", str(path))
    assert result.exit_code == 2
    assert daemon.mode_changes == []

    async def refuse(mode: str) -> None:
        raise ValueError("an alarm is active")

    daemon.set_mode = refuse  # type: ignore[method-assign]
    result = await invoke("mode", "away", "--socket", str(path))
    assert result.exit_code == 1
    assert "gatewayd refused mode away: an alarm is active" in result.stderr
    result = await invoke("mode", "normal", "--socket", str(sock_dir / "gone.sock"))
    assert result.exit_code == 4


def test_one_line_summary_for_systemd() -> None:
    assert one_line_summary(realistic_status()) == (
        "mode normal, drivers 1/2 up, devices 2/3 online, unsent 1 alarm 255 total, "
        "dispatch down, 2 troubles"
    )
    assert one_line_summary({}) == (
        "mode ?, drivers 0/0 up, devices 0/0 online, unsent 0 alarm 0 total, dispatch down"
    )


async def test_a_value_it_cannot_read_is_named_and_the_rest_is_shown(
    served: tuple[FakeDaemon, Path],
) -> None:
    daemon, path = served
    daemon.snapshot["devices"][1]["battery"] = "low"
    daemon.snapshot["buffer"]["depth"]["alarm"] = -1
    result = await invoke("status", "--socket", str(path))
    assert result.exit_code == 0, result.output
    assert (
        "warning: status from gatewayd: devices.battery: Input should be a valid number "
        "(got 'low'); shown as unknown"
    ) in result.stderr
    assert "buffer.depth.alarm: Input should be greater than or equal to 0" in result.stderr
    smoke = next(line for line in result.stdout.splitlines() if line.startswith("│ kitchen_smoke"))
    # The battery is unknown; the signal, which could be read, is shown.
    assert re.search(r"│\s+—\s+│\s+45\s+│", smoke), smoke
    result = await invoke("status", "--socket", str(path), "--json")
    assert json.loads(result.stdout)["devices"][1]["battery"] is None


async def test_an_older_daemon_without_newer_fields_still_renders(
    served: tuple[FakeDaemon, Path],
) -> None:
    daemon, path = served
    for key in ("household", "uptime_s", "troubles", "forwarder"):
        del daemon.snapshot[key]
    for device in daemon.snapshot["devices"]:
        del device["signal"]
    result = await invoke("status", "--socket", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "gateway gw-0042" in result.stdout
    assert "No troubles." in result.stdout
    result = await invoke("status", "--socket", str(path), "--json")
    assert "troubles" not in json.loads(result.stdout)  # only what the daemon said
