"""An installer sets a home up from the command line, every step a real process: `gatewayd
init`, `devices pair` for a device of each driver (Zigbee by permit-join, BLE from a scan,
RFLink and Modbus by address), `gatewayd run`, the walk test (once with a device left out, once
complete), `dispatchd household add` + `enroll-code`, `gatewayd enroll` into the running daemon,
`gatewayd status`; then the walk test's events are at dispatch as tests and a real alarm opens
an incident. Simulators: Zigbee2MQTT on the real broker, an RFLink receiver on a pty, a Modbus
TCP gas detector, BTHome advertisements over loopback UDP."""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.ble import BleBroadcaster, BthomeDevice
from firmware_sim.modbus import GAS, ModbusSimulator
from firmware_sim.rflink import RflinkSimulator
from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from runtime.timeouts import within
from tests.fixtures.broker import Broker
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.procs import module_cmd, project_env
from tests.fixtures.waiting import await_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

SMOKE_IEEE = "0x00124b00000000b1"
RF_SMOKE = "5a17c3"
PENDANT = "A4:C1:38:8D:18:B2"


async def gatewayd(*args: str, stdin: str = "", limit_s: float = 90) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *module_cmd("gatewayd", *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=project_env(COLUMNS="160"),
    )
    out, _ = await within(proc.communicate(stdin.encode()), limit_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Home:
    """The simulated devices of the home, and a way to see each signal reach the gateway."""

    def __init__(
        self,
        gw: GatewayProcess,
        bridge: Zigbee2MqttBridge,
        rflink: RflinkSimulator,
        modbus: ModbusSimulator,
        radio: BleBroadcaster,
        pendant: BthomeDevice,
    ) -> None:
        self.gw = gw
        self.bridge = bridge
        self.rflink = rflink
        self.modbus = modbus
        self.radio = radio
        self.pendant = pendant

    def test_events(self, device_id: str) -> int:
        return sum(1 for e in self.gw.buffered() if e["device_id"] == device_id and e["test"])

    async def trigger(self, device_id: str, press: Callable[[], Awaitable[None]]) -> None:
        """Trigger a device as the installer would and wait until its test event is buffered."""
        before = self.test_events(device_id)
        await press()
        await await_until(
            lambda: self.test_events(device_id) > before, 20, f"{device_id} signalled"
        )

    async def smoke_zigbee(self) -> None:
        await self.bridge.set_state(SMOKE_IEEE, smoke=True)

    async def clear_zigbee(self) -> None:
        await self.bridge.set_state(SMOKE_IEEE, smoke=False)

    async def smoke_rflink(self) -> None:
        await self.rflink.smoke(RF_SMOKE, on=True)

    async def clear_rflink(self) -> None:
        await self.rflink.smoke(RF_SMOKE, on=False)

    async def gas(self) -> None:
        self.modbus.set_gas(3, alarm1=True, lel=22)

    async def clear_gas(self) -> None:
        self.modbus.set_gas(3, alarm1=False, lel=0)

    async def press_pendant(self) -> None:
        self.radio.send(self.pendant.press(), repeats=3)

    async def walk(self, *, skip: str = "", seconds: int = 60) -> tuple[int, str]:
        """`gatewayd test` as a process while every device (but ``skip``) is triggered."""
        config = str(self.gw.config_path)
        started = len(self.gw.logged("mode_changed"))
        walk = asyncio.create_task(gatewayd("test", "--config", config, "--timeout", str(seconds)))
        await await_until(lambda: len(self.gw.logged("mode_changed")) > started, 20, "test mode on")
        steps = [
            ("smoke-kitchen", self.smoke_zigbee, self.clear_zigbee),
            ("smoke-hall", self.smoke_rflink, self.clear_rflink),
            ("gas-kitchen", self.gas, self.clear_gas),
            ("pendant", self.press_pendant, None),  # last: a press leaves nothing to clear
        ]
        for device_id, press, clear in steps:
            if device_id == skip:
                continue
            await self.trigger(device_id, press)
            if clear is not None:
                await clear()
        return await walk


async def test_an_installer_sets_a_home_up_from_the_cli(
    tmp_path: Path, mqtt_broker: Broker, base_topic: str, dispatch_server: DispatchServer
) -> None:
    tag = base_topic[-6:]
    household, gateway_id = f"hh-{tag}", f"gw-{tag}"
    config = tmp_path / "home.toml"
    sock = Path(tempfile.mkdtemp(prefix="gw-")) / "control.sock"
    ble_port = free_udp_port()

    async with (
        Zigbee2MqttBridge(
            host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=[]
        ) as bridge,
        RflinkSimulator() as rflink,
        ModbusSimulator({3: GAS}) as modbus,
    ):
        await bridge.wait_connected()
        # 1. The config, entirely by flags.
        code, out = await gatewayd(
            "init", "--config", str(config), "--no-input", "--gateway-id", gateway_id,
            "--household", household, "--dispatch-url", dispatch_server.url, "--insecure-http",
            "--timezone", "UTC", "--state-dir", str(tmp_path / "state"),
            "--zigbee-url", mqtt_broker.url, "--zigbee-base-topic", base_topic,
            "--status-socket", str(sock),
        )  # fmt: skip
        assert code == 0, out
        # The home's other receivers, as [[drivers]] tables (the RFLink stick, the Modbus line,
        # the Bluetooth adapter: here their simulators).
        with config.open("a") as toml:
            toml.write(
                f'\n[[drivers]]\nid = "rf"\ntype = "rflink"\nport = "{rflink.port}"\n'
                f'startup_delay = 0\n\n[[drivers]]\nid = "mb"\ntype = "modbus"\ninterval = 0.5\n'
                f'\n[[drivers]]\nid = "bt"\ntype = "ble"\nscanner = "udp://127.0.0.1:{ble_port}"\n'
            )

        # 2. One device of each driver.
        pairing = asyncio.create_task(
            gatewayd(
                "devices", "pair", "--config", str(config), "--driver", "zigbee2mqtt",
                "--timeout", "30", "--room", "kitchen", "--role", "smoke",
                "--id", "smoke-kitchen", "--no-input",
            )
        )  # fmt: skip
        await await_until(lambda: bridge.permit_join, 30, "joining opened by the CLI")
        assert await bridge.pair_device(SimDevice(SMOKE_IEEE, "HS1SA", SMOKE_IEEE))
        code, out = await pairing
        assert code == 0, out

        code, out = await gatewayd(
            "devices", "pair", "--config", str(config), "--driver", "rflink",
            "--address", f"SmokeAlert:{RF_SMOKE}", "--role", "smoke", "--room", "hall",
            "--id", "smoke-hall", "--no-input",
        )  # fmt: skip
        assert code == 0, out
        code, out = await gatewayd(
            "devices", "pair", "--config", str(config), "--driver", "modbus",
            "--address", modbus.address(3), "--option", "profile=combustible_gas",
            "--role", "gas", "--room", "kitchen", "--id", "gas-kitchen", "--no-input",
        )  # fmt: skip
        assert code == 0, out

        with BleBroadcaster(ble_port) as radio:
            home_pendant = BthomeDevice(PENDANT, name="pendant", rssi=-45)
            scan = asyncio.create_task(
                gatewayd(
                    "devices", "pair", "--config", str(config), "--driver", "ble",
                    "--scan-seconds", "2", "--room", "bedroom", "--id", "pendant",
                    "--role", "pendant", stdin="1\n",
                )
            )  # fmt: skip
            while not scan.done():
                radio.send(home_pendant.press())
                await asyncio.wait([scan], timeout=0.2)
            code, out = await scan
            assert code == 0, out
            assert PENDANT in out

            code, out = await gatewayd("devices", "list", "--config", str(config), "--json")
            assert code == 0, out
            listed = {d["id"]: d for d in json.loads(out)["devices"]}
            assert set(listed) == {"smoke-kitchen", "smoke-hall", "gas-kitchen", "pendant"}

            # 3. The daemon.
            gw = GatewayProcess(tmp_path, config.read_text())
            gw.start()
            try:
                await await_until(lambda: gw.logged("gateway_ready"), 30, "daemon ready")
                home = Home(gw, bridge, rflink, modbus, radio, home_pendant)

                # 4. A walk test with the hall's smoke detector never triggered fails, naming it.
                code, out = await home.walk(skip="smoke-hall", seconds=12)
                assert code == 1, out
                assert "1 of 4 devices did not signal" in out
                assert "smoke-hall" in out.rpartition("did not signal")[2]
                assert "back in normal mode" in out

                # 5. The complete walk test passes.
                code, out = await home.walk()
                assert code == 0, out
                assert "All 4 devices passed." in out
                for device_id in ("smoke-kitchen", "smoke-hall", "gas-kitchen", "pendant"):
                    assert device_id in out.rpartition("Walk test")[2]
                assert out.count("✔ passed") >= 4

                # 6. Before enrolment everything waits in the buffer, and status says so.
                code, out = await gatewayd("status", "--config", str(config))
                assert code == 0, out
                assert "dispatch reachable" in out

                # 7. Enrolled while running: dispatch's own CLI makes the household and code.
                added = dispatch_server.cli("household", "add", household, "--name", "Flat 3")
                assert added.returncode == 0, added.stderr
                issued = dispatch_server.cli("enroll-code", "--household", household)
                assert issued.returncode == 0, issued.stderr
                code, out = await gatewayd(
                    "enroll", "--config", str(config), "--code", issued.stdout.strip()
                )
                assert code == 0, out

                async def status() -> dict[str, Any]:
                    code, out = await gatewayd("status", "--config", str(config), "--json")
                    assert code == 0, out
                    return dict(json.loads(out))

                data = await await_until(
                    status,
                    30,
                    "dispatch reachable",
                    check=lambda d: d["forwarder"].get("reachable"),
                    interval=0.5,  # each probe runs a command
                )
                assert {d["id"] for d in data["devices"]} >= set(listed)
                assert data["mode"] == "normal"
                assert "depth" in data["buffer"]

                client = dispatch_server.operator_client()

                def at_dispatch() -> list[dict[str, Any]]:
                    reply = client.get(
                        "/api/v1/events", params={"household_id": household, "limit": 500}
                    )
                    return list(reply.json()["items"]) if reply.status_code == 200 else []

                def walked() -> set[str]:
                    return {str(e.get("device_id")) for e in at_dispatch() if e.get("test")}

                await await_until(
                    lambda: walked() >= set(listed), 30, "every device's test at dispatch"
                )

                def incidents() -> list[dict[str, Any]]:
                    reply = client.get("/api/v1/incidents", params={"household_id": household})
                    return list(reply.json()["items"])

                assert incidents() == [], "a walk test opens no incident"
                code, out = await gatewayd("status", "--config", str(config))
                assert code == 0, out
                for device_id in listed:
                    assert device_id in out
                assert "unsent alarm" in out
                reachable = next(line for line in out.splitlines() if "dispatch reachable" in line)
                assert "yes" in reachable

                # 8. A real alarm now opens an incident.
                radio.send(home_pendant.press(), repeats=3)
                opened = await await_until(incidents, 30, "the pendant's incident at dispatch")
                assert any(i["kind"] == "sos" for i in opened), opened
            finally:
                gw.stop()
