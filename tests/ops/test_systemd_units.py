"""The systemd units: what they must say, and `systemd-analyze verify` where it exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
#: Keys newer than some supported hosts' systemd (254+); older versions warn and ignore them.
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


def settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (units may repeat a key)."""
    result: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        result.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return result


@pytest.mark.parametrize(
    ("unit", "exec_start"),
    [
        ("gatewayd.service", "/usr/bin/gatewayd run --config /etc/gatewayd/home.toml"),
        ("dispatchd.service", "/usr/bin/dispatchd serve --host 127.0.0.1 --port 8080"),
    ],
)
def test_unit_runs_unattended(unit: str, exec_start: str) -> None:
    s = settings(UNITS / unit)
    one = {key: values[-1] for key, values in s.items()}
    assert one["Service.ExecStart"] == exec_start
    assert one["Service.Type"] == "notify"
    assert one["Service.NotifyAccess"] == "main"
    assert one["Service.WatchdogSec"] == "30s"
    assert one["Service.Restart"] == "always"
    assert one["Service.RestartSec"] == "2s"
    assert one["Unit.StartLimitIntervalSec"] == "0"  # never stop restarting
    assert one["Service.TimeoutStopSec"] == "15"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one[f"Service.{key}"] == "yes", key
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.CapabilityBoundingSet"] == ""
    assert one["Install.WantedBy"] == "multi-user.target"


def test_gateway_unit_reaches_its_devices_and_socket() -> None:
    s = settings(UNITS / "gatewayd.service")
    one = {key: values[-1] for key, values in s.items()}
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"  # re-read the home config
    assert one["Service.User"] == "gatewayd"
    assert one["Service.SupplementaryGroups"] == "dialout"
    assert one["Service.StateDirectory"] == "gatewayd"
    assert one["Service.RuntimeDirectory"] == "gatewayd"  # /run/gatewayd/control.sock
    assert "Service.PrivateNetwork" not in s  # MQTT, dispatch and D-Bus (BLE) need it
    assert "Service.PrivateDevices" not in s  # serial receivers are devices
    assert "AF_UNIX" in one["Service.RestrictAddressFamilies"]
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(s["Service.DeviceAllow"])
    sysusers = (UNITS / "gatewayd.sysusers").read_text()
    assert re.search(r"^u gatewayd ", sysusers, re.M)
    assert re.search(r"^m gatewayd bluetooth$", sysusers, re.M)


def test_init_default_socket_is_in_the_runtime_directory() -> None:
    from gatewayd.commands.init import DEFAULT_SOCKET

    runtime = settings(UNITS / "gatewayd.service")["Service.RuntimeDirectory"][-1]
    assert DEFAULT_SOCKET.parent == Path("/run") / runtime


def systemd_version(analyze: str) -> int:
    out = subprocess.run([analyze, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"systemd (\d+)", out.stdout)
    assert match, out.stdout
    return int(match.group(1))


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    version = systemd_version(analyze)
    # verify insists ExecStart= names an existing executable: point it at stand-ins.
    units = []
    for name, binary in (("gatewayd.service", "gatewayd"), ("dispatchd.service", "dispatchd")):
        stand_in = tmp_path / binary
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
        text = (UNITS / name).read_text().replace(f"/usr/bin/{binary} ", f"{stand_in} ")
        # verify also wants an EnvironmentFile= to exist.
        env_file = tmp_path / f"{binary}.env"
        env_file.write_text("")
        text = text.replace(f"/etc/{binary}/{binary}.env", str(env_file))
        unit = tmp_path / name
        unit.write_text(text)
        units.append(str(unit))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip()
        and not (version < 254 and any(f"Unknown key '{key}'" in line for key in NEWER_KEYS))
    ]
    assert result.returncode == 0, result.stderr
    assert problems == []
