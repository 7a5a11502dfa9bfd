"""`gatewayd devices` as a real process against the simulated bridge on a real broker."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from gatewayd.commands.init import HomeAnswers, render_config
from runtime.timeouts import within
from tests.fixtures.broker import Broker, free_port
from tests.fixtures.procs import REPO_ROOT, project_env
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.broker

BUTTON_IEEE = "0x00158d0001c0ffee"


def write_config(path: Path, url: str, base_topic: str, devices: str = "") -> Path:
    answers = HomeAnswers(
        gateway_id="gw-test",
        dispatch_url="https://dispatch.example.org",
        zigbee_url=url,
        zigbee_base_topic=base_topic,
        state_dir="/var/lib/gatewayd",
    )
    path.write_text(render_config(answers) + devices)
    return path


async def gatewayd(*args: str, stdin: str = "") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gatewayd",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=project_env(COLUMNS="200"),
        cwd=REPO_ROOT,
    )
    out, _ = await within(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def join_when_open(bridge: Zigbee2MqttBridge, device: SimDevice, **kwargs: Any) -> None:
    await await_until(lambda: bridge.permit_join, 20, "joining opened by the CLI")
    assert await bridge.pair_device(device, **kwargs)


def devices_of(path: Path) -> list[dict[str, Any]]:
    return list(tomllib.loads(path.read_text()).get("devices", []))


@pytest.fixture
async def bridge(mqtt_broker: Broker, base_topic: str) -> AsyncIterator[Zigbee2MqttBridge]:
    kit = [SimDevice(friendly_name="kitchen_smoke", model="HS1SA", ieee="0x00158d0001a2b302")]
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        base_topic=base_topic,
        devices=kit,
        interview_delay=0.1,
    ) as sim:
        yield sim


async def test_pair_end_to_end_and_again_without_duplicating(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    pair = (
        "devices",
        "pair",
        "--config",
        str(config),
        "--driver",
        "zigbee2mqtt",
        "--timeout",
        "30",
    )
    button = SimDevice(friendly_name="x", model="HS1EB/HS1EB-E", ieee=BUTTON_IEEE)
    (code, out), _ = await asyncio.gather(
        gatewayd(*pair, "--room", "bedroom", "--role", "sos_button"),
        join_when_open(bridge, button),
    )
    assert code == 0, out
    assert "HS1EB/HS1EB-E" in out
    assert "action" in out  # what it exposes is shown
    assert devices_of(config) == [
        {
            "id": "sos_button_bedroom",
            "driver": "zigbee",
            "address": BUTTON_IEEE,
            "role": "sos_button",
            "room": "bedroom",
            "model": "HS1EB/HS1EB-E",
        }
    ]
    text = config.read_text()
    assert "# The rule pack that decides alarms locally." in text  # comments kept
    # Joining was opened for the asked time and closed again.
    assert [r["time"] for r in bridge.permit_join_requests] == [30, 0]
    assert not bridge.permit_join

    # The same device again, answering the prompts: updated in place, never duplicated.
    (code, out), _ = await asyncio.gather(
        gatewayd(*pair, stdin="\nliving room\n\n"),
        join_when_open(
            bridge, SimDevice(friendly_name="x", model="HS1EB/HS1EB-E", ieee=BUTTON_IEEE)
        ),
    )
    assert code == 0, out
    assert "Updated" in out
    [entry] = devices_of(config)
    assert (entry["id"], entry["room"], entry["role"]) == (
        "sos_button_bedroom",
        "living room",
        "sos_button",
    )
    assert "# The rule pack that decides alarms locally." in config.read_text()


async def test_pair_by_prompts_guesses_the_role(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    leak = SimDevice(friendly_name="x", model="SJCGQ11LM", ieee="0x00158d0001a2b399")
    (code, out), _ = await asyncio.gather(
        gatewayd(
            "devices",
            "pair",
            "--config",
            str(config),
            "--driver",
            "zigbee",
            "--timeout",
            "30",
            stdin="\nbathroom\nleak_bath\n",
        ),
        join_when_open(bridge, leak),
    )
    assert code == 0, out
    [entry] = devices_of(config)
    assert (entry["id"], entry["role"], entry["room"]) == ("leak_bath", "water_leak", "bathroom")


async def test_pair_timeout_fails_cleanly(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    before = config.read_bytes()
    code, out = await gatewayd(
        "devices",
        "pair",
        "--config",
        str(config),
        "--driver",
        "zigbee2mqtt",
        "--timeout",
        "2",
        "--role",
        "smoke",
        "--room",
        "hall",
    )
    assert code == 5, out
    assert "no device joined within 2 s" in out
    assert config.read_bytes() == before
    assert not (tmp_path / "home.toml.bak").exists()
    assert [r["time"] for r in bridge.permit_join_requests] == [2, 0]


async def test_pair_failed_interview_fails_cleanly(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    before = config.read_bytes()
    door = SimDevice(friendly_name="x", model="MCCGQ11LM", ieee="0x00158d0001a2b3aa")
    (code, out), _ = await asyncio.gather(
        gatewayd(
            "devices",
            "pair",
            "--config",
            str(config),
            "--driver",
            "zigbee2mqtt",
            "--timeout",
            "30",
            "--role",
            "door",
            "--room",
            "hall",
        ),
        join_when_open(bridge, door, interview_ok=False),
    )
    assert code == 1, out
    assert "interview failed" in out
    assert config.read_bytes() == before
    assert bridge.permit_join_requests[-1]["time"] == 0


async def test_pair_refused_by_the_bridge(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    bridge.refuse_permit_join = "Failed to connect to adapter"
    code, out = await gatewayd(
        "devices",
        "pair",
        "--config",
        str(config),
        "--driver",
        "zigbee2mqtt",
        "--role",
        "smoke",
    )
    assert code == 1, out
    assert "Failed to connect to adapter" in out


async def test_pair_without_a_broker(tmp_path: Path) -> None:
    config = write_config(tmp_path / "home.toml", f"mqtt://127.0.0.1:{free_port()}", "z2m")
    code, out = await gatewayd(
        "devices",
        "pair",
        "--config",
        str(config),
        "--driver",
        "zigbee2mqtt",
        "--role",
        "smoke",
    )
    assert code == 4, out
    assert "cannot reach the broker" in out


async def test_bad_config_and_bad_flags(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "gw"\n[[devices]]\nid = "x"\n')
    code, out = await gatewayd("devices", "list", "--config", str(bad))
    assert code == 3, out
    assert "devices[0]" in out
    config = write_config(tmp_path / "home.toml", "mqtt://127.0.0.1:1883", "z2m")
    code, out = await gatewayd("devices", "pair", "--config", str(config), "--driver", "rflink")
    assert code == 2, out
    assert "no [[drivers]] entry" in out
    code, out = await gatewayd(
        "devices", "pair", "--config", str(config), "--driver", "zigbee", "--no-input"
    )
    assert code == 2, out
    assert "--role is required" in out


SMOKE_ENTRY = """
[[devices]]
# The kitchen smoke detector, by its IEEE address.
id = "smoke"
driver = "zigbee"
address = "0x00158d0001a2b302"
role = "smoke"
room = "kitchen"
"""


async def test_list_live_remove_and_rename(
    bridge: Zigbee2MqttBridge, mqtt_broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "home.toml", mqtt_broker.url, base_topic, SMOKE_ENTRY)
    code, out = await gatewayd("devices", "list", "--config", str(config), "--live", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [d["id"] for d in listed["devices"]] == ["smoke"]
    [paired] = listed["bridges"]["zigbee"]
    assert (paired["friendly_name"], paired["model"], paired["configured_as"]) == (
        "kitchen_smoke",
        "HS1SA",
        "smoke",
    )

    code, out = await gatewayd(
        "devices", "rename", "--config", str(config), "smoke", "smoke_kitchen"
    )
    assert code == 0, out
    assert bridge.device("smoke_kitchen").ieee == "0x00158d0001a2b302"
    [entry] = devices_of(config)
    assert (entry["id"], entry["address"]) == ("smoke_kitchen", "0x00158d0001a2b302")
    assert "# The kitchen smoke detector, by its IEEE address." in config.read_text()

    bridge.refuse_remove = "Error: AREQ - ZDO - mgmtLeaveRsp after 10000ms"
    before = config.read_bytes()
    code, out = await gatewayd(
        "devices", "remove", "--config", str(config), "smoke_kitchen", "--yes"
    )
    assert code == 1, out
    assert "mgmtLeaveRsp" in out
    assert config.read_bytes() == before
    code, out = await gatewayd(
        "devices", "remove", "--config", str(config), "smoke_kitchen", "--yes", "--force"
    )
    assert code == 0, out
    assert devices_of(config) == []
    with pytest.raises(Exception, match="no device"):
        bridge.device("smoke_kitchen")
    code, out = await gatewayd(
        "devices", "remove", "--config", str(config), "smoke_kitchen", "--yes"
    )
    assert code == 2, out
