"""A driver whose transport runs but whose link is down is `degraded`, with `link_down_since`,
in the status, the metrics and the heartbeat; a trouble's detail is text an installer reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract.wire import RawFrame
from drivers.base import Driver, FrameParser, FrameSink
from gatewayd.supervisor import DriverRunner
from tests.fixtures.broker import free_port
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.procs import run_module
from tests.fixtures.waiting import await_until


def _status(gw: GatewayProcess, *extra: str) -> str:
    done = run_module("gatewayd", "status", "--config", str(gw.config_path), *extra, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
async def test_a_refusing_broker_makes_the_zigbee_driver_degraded(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    port = free_port()  # nothing listens there: every connect is refused
    gw = gateway_factory(
        drivers=f"""[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "mqtt://127.0.0.1:{port}"
reconnect_max = 1
""",
    )
    gw.start()
    await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
    await await_until(lambda: "driver_fault" in gw.kinds(), 20, "driver_fault trouble")

    def zigbee() -> dict[str, Any]:
        drivers = json.loads(_status(gw, "--json"))["drivers"]
        return next(d for d in drivers if d["id"] == "zigbee")

    driver = await await_until(
        lambda: asyncio.to_thread(zigbee), 15, "degraded", check=lambda d: d["state"] != "running"
    )
    assert driver["state"] == "degraded"
    assert driver["detail"].startswith("link down: ")
    down_since = datetime.fromisoformat(driver["link_down_since"])
    assert 0 <= (datetime.now(UTC) - down_since).total_seconds() < 60

    snapshot = json.loads(_status(gw, "--json"))
    fault = next(t for t in snapshot["troubles"] if t["kind"] == "driver_fault")
    assert isinstance(fault["detail"], str)
    assert fault["detail"].startswith("zigbee link down: ")
    assert "{" not in fault["detail"]

    metrics = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(_status(gw, "--metrics"))
        for s in family.samples
    }
    up = {k: v for k, v in metrics.items() if k[0] == "gatewayd_driver_up"}
    assert up == {
        (
            "gatewayd_driver_up",
            (("driver", "zigbee"), ("state", "degraded"), ("type", "zigbee2mqtt")),
        ): 0.0
    }
    link_down = metrics[("gatewayd_driver_link_down_since_seconds", (("driver", "zigbee"),))]
    assert link_down == pytest.approx(down_since.timestamp())
    assert gw.stop() == 0


class LinkDriver(Driver):
    """A transport that stays up and reports its link going down, up and down again."""

    type_name = "linky"

    def __init__(self) -> None:
        super().__init__("rf", {}, [])
        self.go = asyncio.Queue[bool]()

    def create_parser(self) -> FrameParser:
        raise NotImplementedError

    async def run(self, emit: FrameSink) -> None:
        while True:
            up = await self.go.get()
            await emit(self.link_frame(up, "" if up else "port /dev/ttyUSB0 vanished"))


async def test_the_heartbeat_says_degraded_while_the_link_is_down() -> None:
    frames: list[RawFrame] = []

    async def submit(frame: RawFrame) -> None:
        frames.append(frame)

    driver = LinkDriver()
    runner = DriverRunner(driver, submit)
    runner.start()
    try:
        await asyncio.sleep(0)
        assert runner.health().state == "running"
        await driver.go.put(False)
        await await_until(lambda: len(frames) == 1, 5, "link down frame")
        since = frames[0].wall_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        down = f"link down since {since}: port /dev/ttyUSB0 vanished"
        health = runner.health()
        assert (health.state, health.detail) == ("degraded", down)
        assert runner.link_down_since == frames[0].wall_time
        await driver.go.put(False)  # a repeated report is the same outage
        await await_until(lambda: len(frames) == 2, 5, "second down frame")
        assert runner.health().detail == down
        await driver.go.put(True)
        await await_until(lambda: len(frames) == 3, 5, "link up frame")
        health = runner.health()
        assert (health.state, health.detail) == ("running", "")
        assert runner.link_down_since is None
    finally:
        await runner.stop()


def test_a_trouble_detail_reads_as_text() -> None:
    from gatewayd.status import describe_detail

    link = {"driver": "zigbee", "property": "link", "value": False, "reason": "refused"}
    assert describe_detail(link) == "zigbee link down: refused"
    battery = {
        "room": "kitchen",
        "role": "smoke",
        "device_name": "Kitchen smoke",
        "property": "battery",
        "value": 12.0,
        "low": True,
        "threshold": 20,
    }
    assert describe_detail(battery) == "battery 12.0, room kitchen, low yes, threshold 20"
