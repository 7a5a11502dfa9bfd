"""`gatewayd devices pair` for devices that join no network: RFLink and Modbus by address, BLE
picked from a scan of the simulator's advertisements (loopback UDP), as real processes."""

from __future__ import annotations

import asyncio
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.ble import BleBroadcaster, BthomeDevice
from gatewayd.commands.pair import OptionError, parse_option
from runtime.timeouts import within
from tests.fixtures.gateway import home_toml
from tests.fixtures.procs import module_cmd, project_env, run_module


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, *, ble_port: int = 0) -> Path:
    drivers = f"""
[[drivers]]
id = "rf"
type = "rflink"
port = "socket://127.0.0.1:9"

[[drivers]]
id = "mb"
type = "modbus"

[[drivers]]
id = "bt"
type = "ble"
scanner = "udp://127.0.0.1:{ble_port or 9}"
"""
    path = tmp_path / "home.toml"
    path.write_text(home_toml(tmp_path / "state", drivers=drivers))
    return path


def devices_of(path: Path) -> list[dict[str, Any]]:
    return list(tomllib.loads(path.read_text()).get("devices", []))


def pair(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    done = run_module(
        "gatewayd", "devices", "pair", "--config", str(config), *args, input=input, COLUMNS="160"
    )
    return done.returncode, done.stdout + done.stderr


def test_options_are_read_as_toml_values_or_kept_as_text() -> None:
    assert parse_option("profile=combustible_gas") == ("profile", "combustible_gas")
    assert parse_option("lel_step = 10") == ("lel_step", 10)
    assert parse_option('press_values=["01", "02"]') == ("press_values", ["01", "02"])
    for bad in ("profile", "=x", "a b=1"):
        with pytest.raises(OptionError, match="KEY=VALUE"):
            parse_option(bad)


@given(st.text(max_size=40))
def test_any_option_text_is_read_or_refused_by_name(text: str) -> None:
    key = text.partition("=")[0].strip()
    if "=" in text and key.replace("_", "").isalnum():
        assert parse_option(text)[0] == key
    else:
        with pytest.raises(OptionError, match="KEY=VALUE"):
            parse_option(text)


def test_rflink_device_by_address(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out = pair(
        config,
        "--driver",
        "rflink",
        "--address",
        "SmokeAlert:123456",
        "--role",
        "smoke",
        "--room",
        "hall",
        "--no-input",
    )
    assert code == 0, out
    assert devices_of(config) == [
        {
            "id": "smoke_hall",
            "driver": "rf",
            "address": "SmokeAlert:123456",
            "role": "smoke",
            "room": "hall",
        }
    ]
    # The same address again updates the entry instead of adding a second one.
    code, out = pair(
        config, "--driver", "rf", "--address", "SmokeAlert:123456", "--role", "smoke",
        "--room", "kitchen", "--no-input",
    )  # fmt: skip
    assert code == 0, out
    assert [d["room"] for d in devices_of(config)] == ["kitchen"]


def test_a_bad_rflink_address_is_named_and_nothing_written(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = config.read_text()
    code, out = pair(
        config, "--driver", "rf", "--address", "123456", "--role", "smoke", "--no-input"
    )
    assert code == 2, out
    assert "Protocol:ID" in out
    assert "nothing written" in out
    assert config.read_text() == before


def test_modbus_device_needs_its_profile(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = config.read_text()
    args = ("--driver", "modbus", "--address", "tcp://127.0.0.1:5020/3", "--role", "gas")
    code, out = pair(config, *args, "--room", "kitchen", "--no-input")
    assert code == 2, out
    assert "profile" in out
    assert "combustible_gas" in out
    assert config.read_text() == before

    code, out = pair(
        config, *args, "--room", "kitchen", "--option", "profile=combustible_gas",
        "--option", "lel_step=10", "--id", "gas-kitchen", "--no-input",
    )  # fmt: skip
    assert code == 0, out
    [device] = devices_of(config)
    assert device["id"] == "gas-kitchen"
    assert device["address"] == "tcp://127.0.0.1:5020/3"
    assert device["options"] == {"profile": "combustible_gas", "lel_step": 10}


def test_no_input_needs_the_address(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out = pair(config, "--driver", "ble", "--role", "pendant", "--no-input")
    assert code == 2, out
    assert "--address" in out
    assert "MAC" in out


def test_zigbee_is_not_paired_by_address(tmp_path: Path) -> None:
    config = tmp_path / "home.toml"
    drivers = '[[drivers]]\nid = "zb"\ntype = "zigbee2mqtt"\nurl = "mqtt://127.0.0.1:1"\n'
    config.write_text(home_toml(tmp_path / "state", drivers=drivers))
    code, out = pair(config, "--driver", "zb", "--address", "0x1", "--role", "smoke")
    assert code == 2, out
    assert "joining" in out


async def pair_while_advertising(
    config: Path, port: int, devices: list[BthomeDevice], answers: str, *args: str
) -> tuple[int, str]:
    """Run the pairing CLI and advertise ``devices`` (each a button press) until it ends."""
    proc = await asyncio.create_subprocess_exec(
        *module_cmd("gatewayd", "devices", "pair", "--config", str(config), *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=project_env(COLUMNS="160"),
    )
    communicate = asyncio.create_task(proc.communicate(answers.encode()))
    with BleBroadcaster(port) as radio:
        while not communicate.done():
            for device in devices:
                radio.send(device.press() if device.name != "smoke" else device.smoke())
            await asyncio.wait([communicate], timeout=0.2)
    out, _ = await within(communicate, 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.slow
async def test_ble_device_picked_from_a_scan(tmp_path: Path) -> None:
    port = free_udp_port()
    config = write_config(tmp_path, ble_port=port)
    near = BthomeDevice("A4:C1:38:8D:18:B2", name="button", rssi=-42)
    far = BthomeDevice("54:48:E6:8F:80:A5", name="smoke", rssi=-81)
    # Pick the first (strongest) device, accept the guessed role, answer the room, keep the id.
    code, out = await pair_while_advertising(
        config, port, [far, near], "1\n\nbedroom\n\n", "--driver", "ble", "--scan-seconds", "2"
    )
    assert code == 0, out
    assert out.index("A4:C1:38:8D:18:B2") < out.index("54:48:E6:8F:80:A5"), "strongest first"
    assert "-42 dBm" in out
    assert "button" in out
    assert "smoke" in out
    [device] = devices_of(config)
    assert device["address"] == "A4:C1:38:8D:18:B2"
    assert device["role"] == "sos_button", "guessed from the button it reported"
    assert device["room"] == "bedroom"
    assert device["id"] == "sos_button_bedroom"

    # The second: picked by number, its role and id given as flags.
    code, out = await pair_while_advertising(
        config, port, [far, near], "2\n", "--driver", "bt", "--scan-seconds", "2",
        "--role", "smoke", "--room", "hall", "--id", "smoke-hall",
    )  # fmt: skip
    assert code == 0, out
    assert "sos_button_bedroom" in out, "the scan shows which devices are configured already"
    assert [d["address"] for d in devices_of(config)] == [near.address, far.address]


@pytest.mark.slow
async def test_ble_scan_that_hears_nothing_says_what_to_do(tmp_path: Path) -> None:
    port = free_udp_port()
    config = write_config(tmp_path, ble_port=port)
    code, out = await pair_while_advertising(
        config, port, [], "", "--driver", "ble", "--scan-seconds", "1", "--role", "pendant"
    )
    assert code == 5, out
    assert "no BTHome device heard" in out
    assert "press the device's button" in out
    assert devices_of(config) == []


@pytest.mark.slow
async def test_ble_scan_with_the_scanner_taken_names_the_cause(tmp_path: Path) -> None:
    port = free_udp_port()
    config = write_config(tmp_path, ble_port=port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))  # as a running gatewayd's simulated scanner would
        code, out = await pair_while_advertising(
            config, port, [], "", "--driver", "ble", "--scan-seconds", "1", "--role", "pendant"
        )
    assert code == 4, out
    assert f"udp://127.0.0.1:{port}" in out
    assert "--address" in out


@pytest.mark.slow
async def test_an_encrypted_ble_device_asks_for_its_bind_key(tmp_path: Path) -> None:
    port = free_udp_port()
    config = write_config(tmp_path, ble_port=port)
    key = "231d39c1d7cc1ab1aee224cd096db932"
    sealed = BthomeDevice("54:48:E6:8F:80:A5", name="smoke", bind_key=key)
    code, out = await pair_while_advertising(
        config, port, [sealed], f"1\nnot-a-key\n{key.upper()}\n", "--driver", "ble",
        "--scan-seconds", "1.5", "--role", "smoke", "--room", "hall", "--id", "smoke-hall",
    )  # fmt: skip
    assert code == 0, out
    assert "encrypted" in out
    assert "a bind key is 32 hex digits" in out, "a wrong answer is named and asked again"
    [device] = devices_of(config)
    assert device["options"] == {"bind_key": key}


def test_the_address_is_asked_for_until_one_is_given(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out = pair(
        config, "--driver", "rf", "--role", "sos_button", "--room", "bedroom",
        input="\nEV1527:0a1b2c\n",
    )  # fmt: skip
    assert code == 0, out
    assert "the address is one line" in out
    assert [d["address"] for d in devices_of(config)] == ["EV1527:0a1b2c"]
