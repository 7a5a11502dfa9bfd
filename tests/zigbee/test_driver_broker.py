"""The driver against the simulated bridge through a real Mosquitto: what comes out, and how
often. Every reading is asserted exactly, so a duplicate or a miss fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contract.wire import Reading
from drivers.base import LocalCommand
from drivers.zigbee2mqtt import Zigbee2MqttDriver
from firmware_sim.catalogue import IDENTIFY
from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from runtime.timeouts import within
from tests.fixtures.broker import Broker, SpawnedBroker, free_port
from tests.fixtures.zigbee import DriverHarness, TlsBroker, running_driver, spec

pytestmark = pytest.mark.broker

KIT = [
    # (config id, friendly name, model, IEEE, role, configured by IEEE)
    ("sos", "bedside_button", "HS1EB/HS1EB-E", "0x00158d0001a2b301", "sos_button", True),
    ("pendant", "pendant", "TS0215A_sos", "0xa4c1380000000105", "pendant", False),
    ("smoke", "kitchen_smoke", "HS1SA", "0x00158d0001a2b302", "smoke", True),
    ("gas", "kitchen_gas", "HS1CG", "0x00158d0001a2b303", "gas", False),
    ("leak", "bath_leak", "SJCGQ11LM", "0x00158d0001a2b304", "water_leak", True),
    ("pir", "hall_motion", "RTCGQ11LM", "0x00158d0001a2b305", "motion", False),
    ("door", "front_door", "MCCGQ11LM", "0x00158d0001a2b306", "door", True),
    ("siren", "hall_siren", "HS2WD-E", "0x00158d0001a2b307", "siren", False),
]
SPECS = [spec(i, ieee if by_ieee else name, role) for i, name, _, ieee, role, by_ieee in KIT]


def sim_devices(**overrides: dict[str, Any]) -> list[SimDevice]:
    return [
        SimDevice(friendly_name=name, model=model, ieee=ieee, **overrides.get(name, {}))
        for _, name, model, ieee, _, _ in KIT
    ]


def triples(readings: list[Reading]) -> list[tuple[str, str, Any]]:
    """Changes only: the ``seen`` check-ins of messages that changed nothing are tested apart."""
    return [(r.device, r.property, r.value) for r in readings if r.property != "seen"]


@pytest.fixture
async def kit(
    mqtt_broker: Broker, base_topic: str
) -> AsyncIterator[tuple[Zigbee2MqttBridge, DriverHarness]]:
    bridge = Zigbee2MqttBridge(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        base_topic=base_topic,
        devices=sim_devices(),
        occupancy_timeout=0.6,
        lqi_jitter=3,
    )
    async with bridge, running_driver(mqtt_broker.url, base_topic, SPECS) as harness:
        await harness.settle()
        harness.take()
        yield bridge, harness


async def step(harness: DriverHarness, quiet: float = 0.25) -> list[tuple[str, str, Any]]:
    await harness.settle(quiet)
    return triples(harness.take())


async def test_first_sight_is_the_whole_known_state(mqtt_broker: Broker, base_topic: str) -> None:
    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            base_topic=base_topic,
            devices=sim_devices(),
        ) as bridge,
        running_driver(mqtt_broker.url, base_topic, SPECS) as harness,
    ):
        await harness.settle()
        await bridge.set_state("kitchen_smoke", battery=99)
        got = await step(harness)
    assert ("zigbee", "link", True) in got
    for device_id, *_ in KIT:
        assert got.count((device_id, "available", True)) == 1, device_id
    # Availability came retained: the broker's state sync, flagged as such.
    assert ("smoke", "battery", 99.0) in got
    assert ("smoke", "battery", 100.0) not in got  # the state was never published before
    assert set(harness.driver.inventory) == {k[3] for k in KIT}


async def test_alarms_restores_and_troubles_once_per_change(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.set_state("kitchen_smoke", smoke=True)
    await bridge.set_state("kitchen_smoke", battery=100)  # merged state again: smoke still true
    await bridge.set_state("kitchen_smoke", smoke=True)
    got = await step(harness)
    assert [t for t in got if t[1] != "signal"] == [
        ("smoke", "smoke", True),
        ("smoke", "battery_low", False),
        ("smoke", "battery", 100.0),
        ("smoke", "test", False),
    ]
    await bridge.set_state("kitchen_smoke", smoke=False, battery_low=True, test=True)
    assert [t for t in await step(harness) if t[1] != "signal"] == [
        ("smoke", "smoke", False),
        ("smoke", "battery_low", True),
        ("smoke", "test", True),
    ]
    await bridge.set_state("kitchen_gas", gas=True)
    await bridge.set_state("kitchen_gas", tamper=True)
    await bridge.set_state("kitchen_gas", gas=False, tamper=False)
    gas = [t for t in await step(harness) if t[1] in ("gas", "tamper")]
    assert gas == [
        ("gas", "gas", True),
        ("gas", "tamper", False),
        ("gas", "tamper", True),
        ("gas", "gas", False),
        ("gas", "tamper", False),
    ]
    await bridge.set_state("bath_leak", water_leak=True)
    await bridge.set_state("bath_leak", voltage=3040)  # 15 mV: not a new voltage reading
    await bridge.set_state("bath_leak", water_leak=False, voltage=2900)
    leak = [t for t in await step(harness) if t[1] in ("water_leak", "voltage")]
    assert leak == [
        ("leak", "water_leak", True),
        ("leak", "voltage", 3025.0),
        ("leak", "water_leak", False),
        ("leak", "voltage", 2900.0),
    ]
    await bridge.set_state("front_door", contact=False)
    await bridge.set_state("front_door", contact=False)
    await bridge.set_state("front_door", contact=True)
    door = [t for t in await step(harness) if t[1] == "contact_open"]
    assert door == [("door", "contact_open", True), ("door", "contact_open", False)]


async def test_null_values_are_neither_alarm_nor_restore(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.set_state("bath_leak", water_leak=True)
    await step(harness)
    await bridge.set_state("bath_leak", water_leak=None)
    await bridge.set_state("bath_leak", water_leak=None, battery=None)
    assert [t for t in await step(harness) if t[1] != "signal"] == []
    await bridge.set_state("bath_leak", water_leak=True)
    assert [t for t in await step(harness) if t[1] != "signal"] == []
    await bridge.set_state("bath_leak", water_leak=False)
    assert [t for t in await step(harness) if t[1] != "signal"] == [("leak", "water_leak", False)]


async def test_every_sos_press_is_a_reading(kit: tuple[Zigbee2MqttBridge, DriverHarness]) -> None:
    bridge, harness = kit
    for _ in range(3):
        await bridge.press("bedside_button", "single")
    await bridge.press("bedside_button", "off")
    await bridge.press("pendant", "emergency")
    await bridge.press("pendant", "emergency")
    got = [t for t in await step(harness) if t[1] in ("sos", "action")]
    # What the button said, each time; whether it is an SOS is for the rules to decide.
    assert (
        got
        == [("sos", "action", "single")] * 3
        + [("sos", "action", "off")]
        + [("pendant", "action", "emergency")] * 2
    )


async def test_empty_action_is_no_event(mqtt_broker: Broker, base_topic: str) -> None:
    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            base_topic=base_topic,
            devices=sim_devices(),
            legacy_action_sensor=True,
        ) as bridge,
        running_driver(mqtt_broker.url, base_topic, SPECS) as harness,
    ):
        await harness.settle()
        harness.take()
        await bridge.press("bedside_button", "double")
        got = [t for t in await step(harness) if t[1] in ("sos", "action")]
    assert got == [("sos", "action", "double")]


async def test_motion_clears_after_the_bridges_occupancy_timeout(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.set_state("hall_motion", occupancy=True)
    await asyncio.sleep(0.3)
    await bridge.set_state("hall_motion", occupancy=True)  # re-detection restarts the timer
    first = await harness.wait_for(lambda r: r.property == "motion")
    assert first.value is True
    cleared = await harness.wait_for(lambda r: r.property == "motion" and r.value is False)
    assert (cleared.at - first.at).total_seconds() >= 0.8
    assert [t for t in await step(harness) if t[1] == "motion"] == [
        ("pir", "motion", True),
        ("pir", "motion", False),
    ]


async def test_availability_in_both_forms(kit: tuple[Zigbee2MqttBridge, DriverHarness]) -> None:
    bridge, harness = kit
    await bridge.set_availability("front_door", online=False, legacy=True)
    await bridge.set_availability("front_door", online=False, legacy=False)
    await bridge.set_availability("front_door", online=True, legacy=False)
    await bridge.set_availability("front_door", online=True, legacy=True)
    assert await step(harness) == [
        ("door", "available", False),
        ("door", "available", True),
    ]


async def test_bridge_offline_is_a_gateway_trouble(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.set_bridge_online(False)
    await bridge.set_bridge_online(False, legacy=True)
    await bridge.set_bridge_online(True, legacy=True)
    assert await step(harness) == [("zigbee", "link", False), ("zigbee", "link", True)]


async def test_linkquality_jitter_is_not_telemetry(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.set_state("hall_siren", max_duration=240, linkquality=200)
    assert [t[1] for t in await step(harness)] == ["battery", "signal"]
    for _ in range(10):
        await bridge.set_state("hall_siren", max_duration=240)
    assert await step(harness) == []
    await bridge.set_state("hall_siren", linkquality=180)
    [(device, prop, value)] = await step(harness)
    assert (device, prop) == ("siren", "signal")
    assert 177 <= value <= 183


async def test_siren_and_ack_commands(kit: tuple[Zigbee2MqttBridge, DriverHarness]) -> None:
    bridge, harness = kit
    driver = harness.driver
    assert await driver.send(LocalCommand(device="siren", action="siren_on"))
    command = await within(bridge.next_command(), 5)
    # The HS2WD-E exposes no level, so none is sent.
    assert (command.name, command.payload) == (
        "hall_siren",
        {"warning": {"mode": "emergency", "strobe": True, "duration": 600}},
    )
    assert await driver.send(LocalCommand(device="siren", action="siren_off"))
    command = await within(bridge.next_command(after=1), 5)
    assert command.payload == {"warning": {"mode": "stop", "strobe": False, "duration": 0}}
    assert not await driver.send(LocalCommand(device="sos", action="ack"))  # nothing settable
    assert not await driver.send(LocalCommand(device="nobody", action="siren_on"))
    assert len(bridge.sent_commands) == 2


async def test_ack_where_the_button_can_identify(mqtt_broker: Broker, base_topic: str) -> None:
    devices = sim_devices(bedside_button={"extra_exposes": [IDENTIFY]})
    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=devices
        ) as bridge,
        running_driver(mqtt_broker.url, base_topic, SPECS) as harness,
    ):
        await harness.settle()
        assert await harness.driver.send(LocalCommand(device="sos", action="ack"))
        command = await within(bridge.next_command(), 5)
    assert (command.name, command.payload) == ("bedside_button", {"identify": "identify"})


async def test_devices_configured_by_ieee_follow_a_rename(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    bridge, harness = kit
    await bridge.publish_raw(
        f"{bridge.base}/bridge/request/device/rename",
        '{"from": "kitchen_smoke", "to": "smoke_detector_2"}',
    )
    await step(harness, 0.4)
    await bridge.set_state("smoke_detector_2", smoke=True)
    alarm = await harness.wait_for(lambda r: r.property == "smoke" and r.value is True)
    assert alarm.device == "smoke"
    assert alarm.extra["native"] == "smoke_detector_2"


async def test_broker_restart_is_a_trouble_and_nothing_after_it_is_missed(
    spawned_broker: SpawnedBroker, base_topic: str
) -> None:
    async with (
        Zigbee2MqttBridge(
            host=spawned_broker.host,
            port=spawned_broker.port,
            base_topic=base_topic,
            devices=sim_devices(),
        ) as bridge,
        running_driver(spawned_broker.url, base_topic, SPECS) as harness,
    ):
        await bridge.set_state("bath_leak", water_leak=True)
        await harness.settle()
        harness.take()
        loop = asyncio.get_running_loop()
        restarted_at = loop.time()
        await asyncio.to_thread(spawned_broker.restart, 0.3)
        await harness.wait_for(lambda r: r.property == "link" and r.value is False)
        await harness.wait_for(lambda r: r.property == "link" and r.value is True, within=5)
        assert loop.time() - restarted_at < 5.0
        status = harness.driver.status()
        assert status["connected"] is True
        assert status["outages"] == 1
        assert status["last_outage_s"] is not None
        assert status["last_outage_s"] >= 0.3
        await bridge.wait_connected()
        await bridge.set_state("bath_leak", water_leak=False)
        for _ in range(3):
            await bridge.press("bedside_button", "single")
        got = await step(harness, 0.4)
    assert [t for t in got if t[1] not in ("signal", "voltage", "battery")] == [
        ("zigbee", "link", False),
        ("zigbee", "link", True),
        ("leak", "water_leak", False),
        *[("sos", "action", "single")] * 3,
    ]


async def test_stale_retained_state_at_reconnect(mqtt_broker: Broker, base_topic: str) -> None:
    devices = sim_devices(bath_leak={"retain": True}, kitchen_gas={"retain": True})
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=devices
    ) as bridge:
        await bridge.set_state("bath_leak", water_leak=True)  # in alarm before anyone listened
        await bridge.set_state("kitchen_gas", gas=False)
        async with running_driver(mqtt_broker.url, base_topic, SPECS) as harness:
            leak = await harness.wait_for(lambda r: r.property == "water_leak")
            await harness.settle()
        # Never reported and already in alarm: emitted, flagged as a state sync.
        assert (leak.value, leak.retained) == (True, True)
        harness.take()

        # The same parser reconnecting: what it knows is not news...
        async with running_driver(mqtt_broker.url, base_topic, harness=harness):
            await harness.settle(0.4)
        assert [t for t in triples(harness.take()) if t[1] != "link"] == []

        # ...but what changed while it was away is, once, flagged as retained.
        await bridge.set_state("kitchen_gas", gas=True)
        async with running_driver(mqtt_broker.url, base_topic, harness=harness):
            gas = await harness.wait_for(lambda r: r.property == "gas")
            await harness.settle(0.4)
        assert (gas.value, gas.retained) == (True, True)
        assert [t for t in triples(harness.take()) if t[1] != "link"] == [("gas", "gas", True)]


async def test_a_press_while_the_gateway_restarts_is_kept_by_a_persistent_session(
    mqtt_broker: Broker, base_topic: str
) -> None:
    client_id = f"gatewayd-{base_topic}"
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=sim_devices()
    ) as bridge:
        async with running_driver(
            mqtt_broker.url, base_topic, SPECS, client_id=client_id
        ) as harness:
            await harness.settle()
        harness.take()
        await bridge.press("bedside_button", "hold")  # nobody connected: the broker keeps it
        async with running_driver(mqtt_broker.url, base_topic, harness=harness):
            press = await harness.wait_for(lambda r: r.property == "action")
            await harness.settle()
    assert (press.device, press.value, press.retained) == ("sos", "hold", False)
    assert [t for t in triples(harness.take()) if t[1] in ("sos", "action")] == [
        ("sos", "action", "hold"),
    ]


async def test_no_broker_at_start_is_a_link_trouble(base_topic: str) -> None:
    driver_url = f"mqtt://127.0.0.1:{free_port()}"
    harness = DriverHarness(Zigbee2MqttDriver("zigbee", {"url": driver_url}, SPECS))
    task = asyncio.create_task(harness.driver.run(harness.emit))
    try:
        down = await harness.wait_for(lambda r: r.property == "link")
        await asyncio.sleep(0.6)  # a few retries
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (down.device, down.value) == ("zigbee", False)
    assert [t for t in triples(harness.readings)] == [("zigbee", "link", False)]
    status = harness.driver.status()
    assert status["connected"] is False
    assert "127.0.0.1" in status["broker"]


async def test_mqtts_with_a_private_ca_and_a_password(
    tls_broker: TlsBroker, base_topic: str
) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    options = {
        "username": tls_broker.username,
        "password": tls_broker.password,
        "ca_file": str(tls_broker.ca_file),
    }
    async with running_driver(url, base_topic, SPECS, **options) as harness:
        assert harness.driver.status()["connected"] is True
    wrong = Zigbee2MqttDriver("zigbee", {"url": url, **options, "password": "wrong"}, SPECS)
    harness = DriverHarness(wrong)
    task = asyncio.create_task(wrong.run(harness.emit))
    try:
        refused = await harness.wait_for(lambda r: r.property == "link")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert refused.value is False
    assert "authori" in str(refused.extra["reason"]).lower()
    assert "wrong" not in str(wrong.status())


async def test_a_smoke_alarm_with_an_oversized_field_is_not_dropped(
    kit: tuple[Zigbee2MqttBridge, DriverHarness],
) -> None:
    """A converter's 1.1 MB extra field made the frame too large: the frame was dropped whole,
    and the alarm with it. Only the oversized field is dropped."""
    bridge, harness = kit
    payload = '{"smoke": true, "battery": 90, "debug_dump": "%s"}' % ("x" * 1_100_000)
    await bridge.publish_raw(f"{bridge.base}/kitchen_smoke", payload)
    alarm = await harness.wait_for(lambda r: r.property == "smoke" and r.value is True)
    assert alarm.device == "smoke"
    frame = harness.frames[-1]
    assert b"debug_dump" not in frame.payload
