"""The daemon as systemd runs it: a real `gatewayd run` process, a real notify socket, a real
RFLink receiver on a pty, and signals."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from firmware_sim.rflink import RflinkSimulator
from tests.fixtures.gateway import GatewayProcess, NotifyListener
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

SMOKE_ID = "123456"


def rflink_home(port: str, *, doors: int = 0) -> dict[str, str]:
    devices = f"""
[[devices]]
id = "smoke-bedroom"
driver = "rflink"
address = "SmokeAlert:{SMOKE_ID}"
role = "smoke"
room = "bedroom"
"""
    for i in range(doors):
        devices += f"""
[[devices]]
id = "door-{i}"
driver = "rflink"
address = "NewKaku:{0x100 + i:x}"
role = "door"
room = "room {i}"
"""
    drivers = f"""
[[drivers]]
id = "rflink"
type = "rflink"
port = "{port}"
"""
    return {"drivers": drivers, "devices": devices}


async def receiver_answering(gw: GatewayProcess) -> None:
    """Ready, and the RFLink receiver answering: ready does not wait for drivers, and what the
    receiver sends before the gateway opens its port is not heard."""
    await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
    await await_until(lambda: gw.logged("rflink_link_up"), 30, "the receiver answering")


async def test_ready_watchdog_and_a_wedged_pipeline(
    gateway_factory: Callable[..., GatewayProcess], notify_listener: NotifyListener
) -> None:
    async with RflinkSimulator() as sim:
        gw = gateway_factory(
            **rflink_home(sim.port),
            stall_after_s=1.0,
            env={"NOTIFY_SOCKET": notify_listener.path, "WATCHDOG_USEC": "1000000"},
        )
        gw.start()
        await await_until(lambda: notify_listener.seen("READY", "1"), 30, "READY=1")
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        notify_listener.poll()
        pings = [t for t, f in notify_listener.messages if f.get("WATCHDOG") == "1" and t >= t0]
        assert len(pings) >= 3, "a healthy daemon pings every half watchdog interval"

        # Wedge the pipeline: another process holds the buffer's write lock, so the commit of
        # the next alarm cannot finish. The daemon must stop feeding the watchdog.
        lock = sqlite3.connect(gw.state_dir / "buffer.db", timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            await sim.smoke(SMOKE_ID, on=True)
            await asyncio.sleep(2.5)  # past stall_after_s
            notify_listener.poll()
            wedged_since = time.monotonic()
            await asyncio.sleep(2.0)
            assert not notify_listener.seen("WATCHDOG", "1", since=wedged_since), (
                "watchdog pings must stop while the pipeline is wedged"
            )
            assert gw.running
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # Released: the alarm that was waiting is committed (nothing lost) and pings resume.
        await await_until(
            lambda: "smoke" in gw.kinds("smoke-bedroom"), 15, "the smoke alarm committed"
        )
        resumed = time.monotonic()
        await await_until(
            lambda: notify_listener.seen("WATCHDOG", "1", since=resumed), 10, "pings resume"
        )
        assert gw.stop() == 0
        assert notify_listener.seen("STOPPING", "1")


async def test_sigterm_drains_everything_accepted_within_10_s(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    doors = 20
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**rflink_home(sim.port, doors=doors))
        gw.start()
        await receiver_answering(gw)
        for i in range(doors):
            await sim.button("NewKaku", f"{0x100 + i:x}", cmd="ON", switch="1")
        await asyncio.sleep(0.5)  # received by the driver; some may still be in flight
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.process is not None
        code = await asyncio.to_thread(gw.process.wait, 12)
        assert time.monotonic() - t0 < 10, "SIGTERM must be done within 10 s"
        assert code == 0
    opened = [e for e in gw.buffered() if e["kind"] == "contact"]
    assert sorted(e["device_id"] for e in opened) == sorted(f"door-{i}" for i in range(doors))


async def test_sighup_with_a_bad_config_keeps_the_running_one(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**rflink_home(sim.port))
        gw.start()
        await receiver_answering(gw)
        good = gw.config_path.read_text()
        gw.config_path.write_text(good.replace('role = "smoke"', 'role = "smok"'))
        gw.signal(signal.SIGHUP)
        refused = await await_until(lambda: gw.logged("reload_refused"), 15, "reload refused")
        assert "smok" in refused[0]["problems"]
        assert gw.running
        # Still deciding with the old config: the smoke detector still raises alarms.
        await sim.smoke(SMOKE_ID, on=True)
        await await_until(
            lambda: "smoke" in gw.kinds("smoke-bedroom"), 15, "alarm after refused reload"
        )
        # A good config is taken.
        gw.config_path.write_text(good)
        gw.signal(signal.SIGHUP)
        await await_until(lambda: gw.logged("reloaded"), 15, "reloaded")
        assert gw.stop() == 0


async def test_a_vanishing_serial_receiver_is_a_trouble_and_recovers(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**rflink_home(sim.port))
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        sim.unplug()
        await await_until(lambda: "driver_fault" in gw.kinds(), 20, "driver_fault trouble")
        sim.replug()
        await await_until(lambda: "driver_fault_restore" in gw.kinds(), 30, "driver_fault restore")
        await sim.smoke(SMOKE_ID, on=True)
        await await_until(lambda: "smoke" in gw.kinds("smoke-bedroom"), 15, "alarms flow again")
        assert gw.running
        assert gw.stop() == 0


async def test_a_silent_modbus_device_is_offline_then_back(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    from firmware_sim.modbus import GAS, ModbusSimulator

    async with ModbusSimulator({1: GAS}) as sim:
        gw = gateway_factory(
            drivers='[[drivers]]\nid = "modbus"\ntype = "modbus"\ninterval = 0.2\ntimeout = 0.3\n'
            "offline_after = 2\n",
            devices=f"""[[devices]]
id = "gas-kitchen"
driver = "modbus"
address = "{sim.address(1)}"
role = "gas"
room = "kitchen"
options = {{ profile = "combustible_gas" }}
""",
        )
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        await sim.stop()
        await await_until(lambda: "device_offline" in gw.kinds("gas-kitchen"), 20, "device_offline")
        await sim.start()
        await await_until(
            lambda: "device_offline_restore" in gw.kinds("gas-kitchen"), 20, "device back online"
        )
        sim.set_gas(1, alarm1=True, lel=30.0)
        await await_until(lambda: "gas" in gw.kinds("gas-kitchen"), 15, "gas alarm after recovery")
        assert gw.running
        assert gw.stop() == 0


@pytest.mark.broker
async def test_a_broker_restart_is_a_trouble_and_the_zigbee_driver_recovers(
    gateway_factory: Callable[..., GatewayProcess], spawned_broker: Any, base_topic: str
) -> None:
    from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge

    gw = gateway_factory(
        drivers=f"""[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "{spawned_broker.url}"
base_topic = "{base_topic}"
reconnect_max = 1
""",
        devices="""[[devices]]
id = "smoke-kitchen"
driver = "zigbee"
address = "kitchen_smoke"
role = "smoke"
room = "kitchen"
""",
    )
    device = SimDevice("kitchen_smoke", "HS1SA", "0x00124b0000000002")
    gw.start()
    await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
    await asyncio.to_thread(spawned_broker.restart, 1.0)
    await await_until(
        lambda: "driver_fault" in gw.kinds(), 20, "driver_fault while the broker is away"
    )
    await await_until(lambda: "driver_fault_restore" in gw.kinds(), 20, "driver back after restart")
    async with Zigbee2MqttBridge(
        host=spawned_broker.host,
        port=spawned_broker.port,
        base_topic=base_topic,
        devices=[device],
    ) as bridge:
        await bridge.wait_connected()
        await bridge.set_state("kitchen_smoke", smoke=True)
        await await_until(
            lambda: "smoke" in gw.kinds("smoke-kitchen"), 15, "alarm after the restart"
        )
    assert gw.running
    assert gw.stop() == 0
