"""An installer sets a home up from the CLI: init → pair → run → walk test → enroll → status,
against the Zigbee2MQTT simulator on the real broker and a real dispatch server."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
from runtime.timeouts import within
from tests.fixtures.broker import Broker
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.procs import module_cmd, project_env, run_module
from tests.fixtures.waiting import await_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]


async def gatewayd(*args: str, limit_s: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *module_cmd("gatewayd", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=project_env(COLUMNS="160"),
    )
    out, _ = await within(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_init_pair_run_walk_test_enroll_status(
    tmp_path: Path,
    mqtt_broker: Broker,
    base_topic: str,
    dispatch_server: DispatchServer,
) -> None:
    household = f"hh-{base_topic[-6:]}"
    config = tmp_path / "home.toml"
    state = tmp_path / "state"

    sock = Path(tempfile.mkdtemp(prefix="gw-")) / "control.sock"
    code, out = await gatewayd(
        "init",
        "--config",
        str(config),
        "--no-input",
        "--gateway-id",
        f"gw-{base_topic[-6:]}",
        "--household",
        household,
        "--dispatch-url",
        dispatch_server.url,
        "--insecure-http",  # the test's dispatch listens on loopback
        "--timezone",
        "UTC",
        "--state-dir",
        str(state),
        "--zigbee-url",
        mqtt_broker.url,
        "--zigbee-base-topic",
        base_topic,
        "--status-socket",
        str(sock),
    )
    assert code == 0, out

    smoke = SimDevice("0x00124b00000000aa", "HS1SA", "0x00124b00000000aa")
    async with Zigbee2MqttBridge(
        host=mqtt_broker.host, port=mqtt_broker.port, base_topic=base_topic, devices=[]
    ) as bridge:
        await bridge.wait_connected()
        pairing = asyncio.create_task(
            gatewayd(
                "devices",
                "pair",
                "--config",
                str(config),
                "--driver",
                "zigbee2mqtt",
                "--timeout",
                "30",
                "--room",
                "kitchen",
                "--role",
                "smoke",
                "--id",
                "smoke-kitchen",
                "--no-input",
            )
        )
        await await_until(lambda: bridge.permit_join, 30, "joining opened by the CLI")
        assert await bridge.pair_device(smoke)
        code, out = await pairing
        assert code == 0, out
        assert "smoke-kitchen" in config.read_text()
        assert not bridge.permit_join, "the CLI closes joining"

        gw = GatewayProcess(tmp_path, config.read_text())
        gw.start()
        try:
            await await_until(lambda: gw.logged("gateway_ready"), 30, "daemon ready")
            walk = asyncio.create_task(gatewayd("test", "--config", str(config), "--timeout", "30"))
            await await_until(
                lambda: gw.logged("mode_changed"), 15, "walk test switched test mode on"
            )
            await bridge.set_state("0x00124b00000000aa", smoke=True)
            await bridge.set_state("0x00124b00000000aa", smoke=False)
            code, out = await walk
            assert code == 0, out
            assert "smoke-kitchen" in out

            # Enrolled while running: the daemon picks the credential up by itself and
            # delivers what it buffered during the walk test.
            enroll_code = dispatch_server.enroll_code(household)
            code, out = await gatewayd(
                "enroll",
                "--config",
                str(config),
                "--dispatch",
                dispatch_server.url,
                "--code",
                enroll_code,
            )
            assert code == 0, out
            client = dispatch_server.operator_client()

            def test_events() -> list[dict[str, Any]]:
                reply = client.get(
                    "/api/v1/events", params={"household_id": household, "test": True}
                )
                return list(reply.json()["items"]) if reply.status_code == 200 else []

            stored = await await_until(test_events, 30, "walk-test events at dispatch")
            assert all(e["test"] or e["kind"] == "test" for e in stored)
            incidents = client.get("/api/v1/incidents", params={"household_id": household})
            assert incidents.json()["items"] == [], "a walk test opens no incident"

            status = run_module("gatewayd", "status", "--config", str(config), "--json")
            assert status.returncode == 0, status.stderr
            data = json.loads(status.stdout)
            assert "smoke-kitchen" in [d["id"] for d in data["devices"]]
            assert data["forwarder"]["enrolled"] is True
            assert data["mode"] == "normal"

            # A real alarm now opens an incident.
            await bridge.set_state("0x00124b00000000aa", smoke=True)

            def smoke_incident() -> bool:
                reply = client.get("/api/v1/incidents", params={"household_id": household})
                return any(i["kind"] == "smoke" for i in reply.json()["items"])

            await await_until(smoke_incident, 30, "the smoke incident at dispatch")
        finally:
            gw.stop()
