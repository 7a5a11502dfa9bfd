"""The walk test against a real `gatewayd run`, its Zigbee2MQTT driver on the real broker: what the
installer sees is what the device reported."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import aiomqtt
import pytest
from click.testing import CliRunner, Result

from contract.home import load_config
from gatewayd.cli import cli
from gatewayd.control import ControlClient
from gatewayd.status import parse_status
from runtime.timeouts import within
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import GatewayProcess, zigbee_home
from tests.fixtures.waiting import await_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]


async def test_the_walk_test_shows_the_signal_and_battery_the_device_reported(
    gateway_factory: Callable[..., GatewayProcess], mqtt_broker: Broker, base_topic: str
) -> None:
    gw = gateway_factory(**zigbee_home(mqtt_broker.url, base_topic))
    gw.start()
    client = ControlClient(load_config(gw.config_path).status_socket, timeout=5)

    async def driver_connected() -> bool:
        if not gw.logged("gateway_ready"):
            return False
        drivers = parse_status(await client.status()).status.drivers
        return bool(drivers) and all((d.driver_status or {}).get("connected") for d in drivers)

    await await_until(driver_connected, 30, "the gateway ready and its driver connected")

    runner = CliRunner(env={"COLUMNS": "200", "GATEWAYD_CONFIG": None})
    walk = asyncio.create_task(
        asyncio.to_thread(
            runner.invoke,
            cli,
            ["test", "--config", str(gw.config_path), "--timeout", "30"],
            catch_exceptions=False,
        )
    )

    async def in_test_mode() -> bool:
        return parse_status(await client.status()).status.mode == "test"

    await await_until(in_test_mode, 20, "test mode")
    # Test spray on the detector: Zigbee2MQTT publishes its state with battery and link quality.
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as mqtt:
        message = {"smoke": True, "battery": 87, "linkquality": 120}
        await mqtt.publish(f"{base_topic}/kitchen_smoke", json.dumps(message), qos=1)
    result: Result = await within(walk, 40)

    assert result.exit_code == 0, result.output
    announced = re.search(
        r"✔ smoke-kitchen \(smoke, kitchen\) passed after \d+ s, (.*)", result.stdout
    )
    assert announced, result.stdout
    assert announced.group(1) == "signal 120, battery 87 %"
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ smoke-kitchen "))
    assert re.search(r"│\s+120\s+│\s+87 %\s+│", row), row
    assert "All 1 devices passed." in result.stdout
    assert parse_status(await client.status()).status.mode == "normal"
    assert gw.stop() == 0
