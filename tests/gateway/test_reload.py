"""Reloads of a real `gatewayd run` with a Zigbee2MQTT driver on the real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest

from contract.home import load_config
from gatewayd.control import ControlClient
from gatewayd.status import GatewayStatus, parse_status
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import GatewayProcess, zigbee_home
from tests.fixtures.waiting import await_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]


class Watched:
    """The running gateway as `gatewayd status` sees it."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.client = ControlClient(load_config(gw.config_path).status_socket, timeout=5)

    async def status(self) -> GatewayStatus:
        parsed = parse_status(await self.client.status())
        assert parsed.problems == []
        return parsed.status

    async def frames(self) -> int:
        pipeline = (await self.status()).pipeline
        assert pipeline is not None
        return pipeline.frames

    async def connected(self) -> bool:
        drivers = (await self.status()).drivers
        return bool(drivers) and all(
            d.state == "running" and (d.driver_status or {}).get("connected") for d in drivers
        )

    async def settled(self, quiet: float = 1.0) -> int:
        """Wait until no frame has arrived for ``quiet`` seconds (reconnects send link
        frames); the frame count then."""
        await await_until(self.connected, 20, "the driver connected")
        count, since = await self.frames(), time.monotonic()
        while time.monotonic() - since < quiet:
            await asyncio.sleep(0.1)
            now = await self.frames()
            if now != count:
                count, since = now, time.monotonic()
        return count


async def publish(broker: Broker, topic: str, message: dict[str, Any]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, json.dumps(message), qos=1)


async def test_a_burst_of_sighups_leaves_one_transport_per_driver(
    gateway_factory: Callable[..., GatewayProcess], mqtt_broker: Broker, base_topic: str
) -> None:
    gw = gateway_factory(**zigbee_home(mqtt_broker.url, base_topic))
    gw.start()
    await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
    watched = Watched(gw)
    await watched.settled()

    for _ in range(20):
        gw.signal(signal.SIGHUP)
        await asyncio.sleep(0.005)
    await await_until(lambda: gw.logged("reloaded"), 20, "reloaded")
    before = await watched.settled(quiet=1.5)

    await publish(mqtt_broker, f"{base_topic}/kitchen_smoke", {"smoke": False, "battery": 91})

    async def counted() -> bool:
        return await watched.frames() > before

    await await_until(counted, 10, "the message counted")
    await asyncio.sleep(1.0)  # a second transport would have delivered its copy by now
    assert await watched.frames() == before + 1, "one message must count once"
    status = await watched.status()
    assert [(d.id, d.state) for d in status.drivers] == [("zigbee", "running")]
    assert gw.stop() == 0
