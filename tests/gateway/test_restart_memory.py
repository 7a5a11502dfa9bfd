"""A real `gatewayd run` restarted keeps what its rules knew: the inactivity clock runs on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from firmware_sim.rflink import RflinkSimulator
from tests.fixtures.gateway import GatewayProcess

pytestmark = pytest.mark.slow

DOOR = "1a2"
AFTER_S = 8


def door_home(port: str) -> dict[str, str]:
    return {
        "drivers": f'[[drivers]]\nid = "rflink"\ntype = "rflink"\nport = "{port}"\n',
        "devices": f"""[[devices]]
id = "door-front"
driver = "rflink"
address = "NewKaku:{DOOR}"
role = "door"
room = "hall"
""",
        "rules": f"""[rules.inactivity]
after_s = {AFTER_S}
active_hours = "00:00-24:00"
not_up_by = ""

[rules.supervision]
default_s = 0
""",
    }


async def until(predicate: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)
    return value


def of_kind(gw: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    return [e for e in gw.buffered() if e["kind"] == kind]


async def test_a_restart_does_not_reset_the_inactivity_clock(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**door_home(sim.port))
        gw.start()
        await until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        await sim.button("NewKaku", DOOR, cmd="ON", switch="1")
        await until(lambda: of_kind(gw, "contact"), 15, "the door's contact event")
        assert gw.stop() == 0
        # Restarted within the inactivity time: the clock must not start again from zero.
        restarted_at = datetime.now(UTC)
        gw.start()
        await until(lambda: gw.logged("gateway_ready"), 30, "gateway ready again")
        (alarm,) = await until(lambda: of_kind(gw, "inactivity"), 30, "the inactivity alarm")
        assert gw.stop() == 0
    last = alarm["payload"]["last_activity"]
    assert last is not None, "the restarted gateway forgot the last activity"
    assert datetime.fromisoformat(last) < restarted_at
    due = datetime.fromisoformat(alarm["payload"]["due_at"])
    assert due == datetime.fromisoformat(last) + timedelta(seconds=AFTER_S)
