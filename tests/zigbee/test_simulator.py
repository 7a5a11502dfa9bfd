"""The simulator as Zigbee2MQTT's clients see it: standalone, and answering requests."""

from __future__ import annotations

import asyncio
import json
import sys

import aiomqtt
import pytest

from drivers.zigbee2mqtt.bridge import parse_devices, parse_online
from firmware_sim.zigbee2mqtt import DEFAULT_KIT, SimDevice, SimError, Zigbee2MqttBridge
from runtime.timeouts import within
from tests.fixtures.broker import Broker
from tests.fixtures.procs import REPO_ROOT, project_env

pytestmark = pytest.mark.broker


async def retained(broker: Broker, topic: str) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                return bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


async def test_standalone_with_the_default_kit(mqtt_broker: Broker, base_topic: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim.zigbee2mqtt",
        "--broker",
        mqtt_broker.url,
        "--base-topic",
        base_topic,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=project_env(),
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            while b"Ctrl-C stops it" not in await process.stdout.readline():
                pass
        devices, problems = parse_devices(
            json.loads(await retained(mqtt_broker, f"{base_topic}/bridge/devices"))
        )
        assert problems == []
        assert sorted(d.friendly_name for d in devices) == sorted(n for n, _, _ in DEFAULT_KIT)
        assert parse_online(await retained(mqtt_broker, f"{base_topic}/bridge/state"))
        assert parse_online(await retained(mqtt_broker, f"{base_topic}/smoke_kitchen/availability"))
    finally:
        process.terminate()
        assert await within(process.wait(), 10) == 0
    # Stopped: its will says the bridge is offline.
    assert not parse_online(await retained(mqtt_broker, f"{base_topic}/bridge/state"))


async def test_joining_only_while_permitted(mqtt_broker: Broker, base_topic: str) -> None:
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic
    ) as bridge:
        device = SimDevice(friendly_name="x", model="HS1SA", ieee="0x00158D0001A2B3FF")
        assert not await bridge.pair_device(device)
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as client:
            await client.subscribe(f"{base_topic}/bridge/response/#", qos=1)
            await client.publish(
                f"{base_topic}/bridge/request/permit_join", '{"value": true}', qos=1
            )
            await client.publish(
                f"{base_topic}/bridge/request/permit_join", '{"time": 60, "transaction": 7}', qos=1
            )
            responses = []
            async with asyncio.timeout(5):
                async for message in client.messages:
                    responses.append(json.loads(message.payload))  # type: ignore[arg-type]
                    if len(responses) == 2:
                        break
        assert responses == [
            {"data": {}, "error": "Invalid payload", "status": "error"},
            {"data": {"time": 60}, "status": "ok", "transaction": 7},
        ]
        assert await bridge.pair_device(device)
        assert bridge.device("0x00158d0001a2b3ff").model == "HS1SA"  # named by its IEEE address
        with pytest.raises(SimError):
            SimDevice(friendly_name="y", model="NOPE", ieee="0x0000000000000001")
