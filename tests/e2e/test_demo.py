"""`gatewayd demo` end to end: real dispatchd, real simulators, real broker when one answers."""

from __future__ import annotations

import pytest

from tests.fixtures.procs import run_module

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_demo_delivers_every_scripted_alarm() -> None:
    result = run_module("gatewayd", "demo", "--duration", "20", timeout=120)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "every scripted alarm reached dispatch" in out
    assert "console: http://127.0.0.1:" in out
    assert "rescuer's phone: http://127.0.0.1:" in out
    assert "/rescuer/  (log in as rescuer / demo-rescuer)" in out
    # Every driver took part, the Zigbee2MQTT path through the running broker included.
    for label in (
        "SOS wristband (BLE)",
        "smoke, bedroom (RFLink)",
        "water leak, bathroom (Modbus)",
        "SOS button (Zigbee)",
        "inactivity (no movement)",
        "SOS wristband outdoors",
        "wristband battery low",
    ):
        assert label in out
    assert "NO" not in out.split("demo summary", 1)[1]
    assert out.count("dispatch stored") >= 9
    # The outdoor SOS arrives with the wristband's position, as the console shows it.
    assert "position 39.91" in out


def test_demo_rejects_a_bad_duration() -> None:
    result = run_module("gatewayd", "demo", "--duration", "0", timeout=30)
    assert result.returncode == 2
    assert "--duration" in result.stderr
