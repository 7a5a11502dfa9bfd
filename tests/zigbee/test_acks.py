"""Manual acknowledgements on a real broker: a QoS 1 message is PUBACKed only when the gateway
says it is durable, in the order the messages arrived, and only on the connection it came on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Literal

import aiomqtt
import pytest

from drivers.zigbee2mqtt.acks import ManualAcks, Receipt
from drivers.zigbee2mqtt.options import BrokerAddress, make_client
from tests.fixtures.broker import Broker

pytestmark = pytest.mark.broker


async def take(client: aiomqtt.Client, count: int, within: float = 5.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(within):
        async for message in client.messages:
            got.append(message)
            if len(got) == count:
                break
    return got


async def nothing_comes(client: aiomqtt.Client, quiet: float = 0.5) -> bool:
    try:
        async with asyncio.timeout(quiet):
            await anext(client.messages)
    except TimeoutError:
        return True
    return False


async def test_acks_wait_for_durable_go_in_arrival_order_and_stay_on_their_connection(
    mqtt_broker: Broker, base_topic: str
) -> None:
    topic = f"{base_topic}/smoke"
    broker = BrokerAddress(host=mqtt_broker.host, port=mqtt_broker.port)
    client = make_client(broker, identifier=f"acks-{uuid.uuid4().hex[:8]}", persistent=True)
    acks = ManualAcks(client)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as bridge:
        async with client:
            await client.subscribe(topic, qos=1)
            for n in range(3):
                await bridge.publish(topic, f"m{n}", qos=1)
            receipts = [acks.received(m) for m in await take(client, 3)]
            acks.durable(receipts[2])
            acks.durable(receipts[1])
            held_back = (acks.sent, acks.pending)
            acks.durable(receipts[0])
            in_order = (acks.sent, acks.pending)
            acks.durable(receipts[0])  # twice: nothing more
            await bridge.publish(topic, "unacked", qos=1)
            (unacked,) = await take(client, 1)
            stale = acks.received(unacked)
        acks.connection_lost()
        async with client:
            (again,) = await take(client, 1)  # the broker sends it again
            acks.durable(stale)  # a PUBACK for the lost connection is not sent on this one
            stale_sent = acks.sent
            acks.durable(acks.received(again))
        acks.connection_lost()
        async with client:
            redelivered_after_ack = not await nothing_comes(client)
    assert held_back == (0, 3), "a later message was acknowledged before an earlier one"
    assert in_order == (3, 0)
    assert (bytes(again.payload), stale_sent) == (b"unacked", 3)  # type: ignore[arg-type]
    assert acks.sent == 4
    assert not redelivered_after_ack


async def test_qos_0_needs_no_acknowledgement() -> None:
    client = make_client(BrokerAddress(), identifier="acks-unit", persistent=True)
    acks = ManualAcks(client)
    message = aiomqtt.Message("t", b"x", qos=0, retain=False, mid=1, properties=None)
    assert acks.received(message) is None
    acks.durable(None)
    acks.durable(Receipt(connection=5, position=0))  # unknown: ignored
    assert (acks.sent, acks.pending) == (0, 0)


@pytest.mark.parametrize(("version", "window"), [("5", 200), ("3.1.1", 20)])
async def test_the_broker_sends_receive_maximum_messages_ahead_of_their_acknowledgements(
    mqtt_broker: Broker, base_topic: str, version: Literal["5", "3.1.1"], window: int
) -> None:
    """Acknowledging only what is durable must not hold ingest to a few messages per commit:
    under MQTT 5 the client sets the window (Mosquitto's own is 20, what 3.1.1 gets)."""
    topic = f"{base_topic}/door"
    broker = BrokerAddress(host=mqtt_broker.host, port=mqtt_broker.port)
    client = make_client(
        broker,
        identifier=f"window-{uuid.uuid4().hex[:8]}",
        persistent=True,
        mqtt_version=version,
        receive_maximum=200,
    )
    acks = ManualAcks(client)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as bridge, client:
        await client.subscribe(topic, qos=1)
        for n in range(300):
            await bridge.publish(topic, f"m{n}", qos=1)
        receipts = [acks.received(m) for m in await take(client, window)]
        assert await nothing_comes(client), "more than the window arrived unacknowledged"
        for receipt in receipts:
            acks.durable(receipt)
        more = await take(client, min(window, 300 - window))
    assert len(receipts) == window
    assert bytes(more[0].payload) == f"m{window}".encode()  # type: ignore[arg-type]
