"""`gatewayd record` as a process, against the Zigbee2MQTT bridge simulator on a real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from contract.home import load_config
from contract.wire import RawFrame
from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from replay.engine import build_decider, replay_lines
from replay.trace import TraceReader, read_frames
from runtime.timeouts import within
from tests.fixtures.procs import REPO_ROOT, module_cmd, project_env
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.broker

DEVICES = (
    ("sos-button", "sos_button", "HS1EB/HS1EB-E", "sos_button", "0x00158d0001a2b301"),
    ("smoke-kitchen", "smoke_kitchen", "HS1SA", "smoke", "0x00158d0001a2b302"),
)


def write_home(path: Path, url: str, base_topic: str) -> Path:
    devices = "".join(
        f'\n[[devices]]\nid = "{i}"\ndriver = "zigbee"\naddress = "{name}"\nrole = "{role}"\n'
        for i, name, _, role, _ in DEVICES
    )
    path.write_text(
        f'[gateway]\nid = "gw-record"\nstate_dir = "{path.parent / "state"}"\n\n'
        f'[[drivers]]\nid = "zigbee"\ntype = "zigbee2mqtt"\nurl = "{url}"\n'
        f'base_topic = "{base_topic}"\n{devices}'
    )
    return path


def state(frame: RawFrame) -> dict[str, Any]:
    """A device message's JSON object ({} for anything else)."""
    try:
        value = json.loads(frame.payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def wait_for_frames(path: Path, predicate: Any, within: float = 15.0) -> None:
    """Until the trace at ``path`` holds frames that satisfy ``predicate``."""
    await await_until(
        lambda: asyncio.to_thread(lambda: path.exists() and predicate(read_frames(path))),
        within,
        f"such frames in {path}",
    )


async def test_record_writes_what_the_bridge_published_and_stops_cleanly_on_ctrl_c(
    mqtt_broker: Any, base_topic: str, tmp_path: Path
) -> None:
    home = write_home(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    out = tmp_path / "trace.jsonl.gz"
    sims = [
        SimDevice(friendly_name=name, model=model, ieee=ieee) for _, name, model, _, ieee in DEVICES
    ]
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=sims
    ) as bridge:
        await bridge.wait_connected()
        proc = await asyncio.create_subprocess_exec(
            *module_cmd("gatewayd", "record", "--config", str(home), "--out", str(out)),
            env=project_env(),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # Recording while running: the link frame is on disk within a second of arriving.
            await wait_for_frames(out, lambda fs: any(f.kind == "link" for f in fs))
            await asyncio.sleep(1.0)  # the driver has subscribed (it waits for the inventory)
            await bridge.set_state("smoke_kitchen", smoke=True)
            await bridge.press("sos_button", "single")
            await wait_for_frames(out, lambda fs: any(state(f).get("smoke") is True for f in fs))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            _, err = await within(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert b"recorded" in err
    reader = TraceReader(out)
    frames = list(reader.frames())
    assert reader.stats.skipped == 0  # closed cleanly: a complete gzip stream
    assert reader.stats.headers == 1
    smoke = [f for f in frames if state(f).get("smoke") is True]
    assert smoke[0].source == f"{base_topic}/smoke_kitchen"
    assert smoke[0].driver == "zigbee"
    assert any(state(f).get("action") == "single" for f in frames)
    assert any(f.retained for f in frames)  # the bridge's retained state at subscription
    kinds = {
        line.split('"kind": "')[1].split('"')[0]
        for line in replay_lines(build_decider(load_config(home)), frames)
        if '"kind": "' in line
    }
    assert {"smoke", "sos"} <= kinds


async def test_record_stops_by_itself_after_the_duration(
    mqtt_broker: Any, base_topic: str, tmp_path: Path
) -> None:
    home = write_home(tmp_path / "home.toml", mqtt_broker.url, base_topic)
    out = tmp_path / "trace.jsonl"
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *module_cmd(
            "gatewayd", "record", "--config", str(home), "--out", str(out), "--duration", "2"
        ),
        env=project_env(),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await within(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - started >= 2
    assert TraceReader(out).stats.skipped == 0
    assert any(f.kind == "link" and f.payload == b"up" for f in read_frames(out))


async def test_record_refuses_a_bad_config(tmp_path: Path) -> None:
    home = tmp_path / "home.toml"
    home.write_text('[gateway]\nid = "gw"\n\n[[drivers]]\nid = "x"\ntype = "nosuchdriver"\n')
    proc = await asyncio.create_subprocess_exec(
        *module_cmd(
            "gatewayd", "record", "--config", str(home), "--out", str(tmp_path / "t.jsonl")
        ),
        env=project_env(),
        cwd=REPO_ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await within(proc.communicate(), 20)
    assert proc.returncode == 3
    assert b"nosuchdriver" in err
    assert not (tmp_path / "t.jsonl").exists()
