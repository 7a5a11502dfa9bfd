"""A trace recorded from a live gateway replays to the alarms the live gateway raised.

The Zigbee2MQTT bridge simulator publishes on a real broker; the daemon runs with the recorder as
its frame tap; then the trace is replayed through a fresh decider built from the same config.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import firmware_sim.zigbee2mqtt as z2m
from contract.home import parse_config
from contract.wire import Event, Lane
from drivers.zigbee2mqtt import Zigbee2MqttDriver
from gatewayd import daemon
from replay.engine import Replay, build_decider, canonical_decision
from replay.recorder import Recorder
from replay.trace import TraceReader
from runtime.timeouts import within
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.broker

DEVICES = (
    ("sos-button", "sos_button", "HS1EB/HS1EB-E", "sos_button", "0x00158d0001a2b301"),
    ("smoke-kitchen", "smoke_kitchen", "HS1SA", "smoke", "0x00158d0001a2b302"),
    ("leak-bathroom", "leak_bathroom", "SJCGQ11LM", "water_leak", "0x00158d0001a2b304"),
    ("motion-hall", "motion_hall", "RTCGQ11LM", "motion", "0x00158d0001a2b305"),
)


def home_toml(state_dir: Path, url: str, base_topic: str) -> str:
    devices = "\n".join(
        f'[[devices]]\nid = "{i}"\ndriver = "zigbee"\naddress = "{name}"\nrole = "{role}"\n'
        f'model = "{model}"\n'
        for i, name, model, role, _ in DEVICES
    )
    return f"""
[gateway]
id = "gw-live-trace"
timezone = "Europe/Berlin"
state_dir = "{state_dir}"

[rules]
pack = "elderly_care"

[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "{url}"
base_topic = "{base_topic}"

{devices}
"""


def alarm_lane(kind: Any, device: Any, at: str, condition: Any) -> tuple[str, str, str, str]:
    return (str(kind), str(device), at, str(condition))


async def test_a_trace_recorded_live_replays_to_the_same_alarms(
    mqtt_broker: Any, base_topic: str, tmp_path: Path
) -> None:
    config = parse_config(home_toml(tmp_path / "state", mqtt_broker.url, base_topic))
    trace = tmp_path / "live.jsonl.gz"
    recorder = Recorder.open(trace, gateway_id=config.gateway.id, flush_interval=0.2)
    sims = [
        z2m.SimDevice(friendly_name=name, model=model, ieee=ieee)
        for _, name, model, _, ieee in DEVICES
    ]
    live: list[Event] = []
    async with z2m.Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=sims
    ) as bridge:
        await bridge.wait_connected()
        gateway = daemon.Gateway(config, recorder=recorder, tick_interval=0.2)
        running = asyncio.create_task(gateway.run())
        try:
            await within(gateway.wait_ready(), 15)
            gateway.pipeline.add_listener(live.append)
            # The driver has subscribed (after the bridge's inventory) and taken the retained state.
            driver = gateway.runners["zigbee"].driver
            assert isinstance(driver, Zigbee2MqttDriver)
            await within(driver.wait_connected(), 15)
            await bridge.set_state("motion_hall", occupancy=True)
            await bridge.set_state("smoke_kitchen", smoke=True)
            await bridge.press("sos_button", "single")
            await bridge.set_state("leak_bathroom", water_leak=True)
            await asyncio.sleep(0.3)
            await bridge.set_state("smoke_kitchen", smoke=False)
            await bridge.set_state("leak_bathroom", water_leak=False)
            wanted = {"smoke", "sos", "water_leak", "smoke_restore", "water_leak_restore"}
            await await_until(
                lambda: {e.kind.value for e in live},
                10,
                "every alarm and restore decided live",
                check=lambda kinds: wanted <= kinds,
            )
            await asyncio.sleep(0.5)
        finally:
            gateway.request_stop()
            await within(running, 15)
    recorder.close()
    assert recorder.stats.dropped == 0

    live_alarms = [
        alarm_lane(e.kind.value, e.device_id, canonical_time(e), e.payload.get("condition"))
        for e in live
        if e.kind.lane is Lane.ALARM
    ]
    replayed: list[dict[str, Any]] = []
    reader = TraceReader(trace)
    Replay(build_decider(config), on_decided=lambda d: replayed.append(canonical_decision(d))).run(
        reader.frames()
    )
    assert reader.stats.skipped == 0
    from contract.wire import EventKind

    replayed_alarms = [
        alarm_lane(d["kind"], d["device_id"], d["at"], d["condition"])
        for d in replayed
        if d["decision"] == "event" and EventKind(d["kind"]).lane is Lane.ALARM
    ]
    assert live_alarms, "the live run raised no alarm"
    assert replayed_alarms == live_alarms


def canonical_time(event: Event) -> str:
    from replay.trace import iso_utc

    return iso_utc(event.at)
