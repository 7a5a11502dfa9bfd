"""Pairing sets the device's ``qos`` option to 1, so the bridge publishes its alarms at QoS 1 and
a broker keeps them for the gateway's persistent session while it is away."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from drivers.zigbee2mqtt.options import BrokerAddress
from drivers.zigbee2mqtt.pairing import BridgeRequestFailed, BridgeSession, pair_device
from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from tests.fixtures.broker import Broker

pytestmark = pytest.mark.broker

IEEE = "0x00158d0001a2b3d1"


async def test_a_paired_device_publishes_its_alarms_at_qos_1(
    mqtt_broker: Broker, base_topic: str
) -> None:
    broker = BrokerAddress(host=mqtt_broker.host, port=mqtt_broker.port)
    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            base_topic=base_topic,
            interview_delay=0.05,
        ) as bridge,
        BridgeSession(broker, base_topic, answer_timeout=5) as session,
        aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as watcher,
    ):
        await watcher.subscribe(f"{base_topic}/{IEEE}", qos=1)
        pairing = asyncio.create_task(pair_device(session, seconds=20))
        async with asyncio.timeout(10):
            while not bridge.permit_join:  # noqa: ASYNC110 (the simulator has no event for it)
                await asyncio.sleep(0.02)
        assert await bridge.pair_device(SimDevice("new", "HS1SA", IEEE))
        interview = await pairing
        await bridge.set_state(IEEE, smoke=True)
        async with asyncio.timeout(5):
            async for message in watcher.messages:
                if json.loads(bytes(message.payload)).get("smoke") is True:  # type: ignore[arg-type]
                    break
    assert interview.ieee_address == IEEE
    assert bridge.device(IEEE).qos == 1
    assert message.qos == 1, "the alarm was published at QoS 0: a restart would lose it"


async def test_the_bridge_answers_device_options_as_zigbee2mqtt_does(
    mqtt_broker: Broker, base_topic: str
) -> None:
    broker = BrokerAddress(host=mqtt_broker.host, port=mqtt_broker.port)
    kit = [SimDevice("hall_smoke", "HS1SA", IEEE, qos=0)]
    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=kit
        ) as bridge,
        BridgeSession(broker, base_topic, answer_timeout=5) as session,
    ):
        answer = await session.set_device_options("hall_smoke", {"qos": 1})
        with pytest.raises(BridgeRequestFailed, match="does not exist"):
            await session.set_device_options("nobody", {"qos": 1})
        with pytest.raises(BridgeRequestFailed, match="qos must be 0, 1 or 2"):
            await session.set_device_options(IEEE, {"qos": 7})
    assert answer == {
        "id": "hall_smoke",
        "from": {"qos": 0, "retain": False},
        "to": {"qos": 1, "retain": False},
        "restart_required": False,
    }
    assert bridge.device("hall_smoke").qos == 1
