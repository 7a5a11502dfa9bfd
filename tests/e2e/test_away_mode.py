"""Away / in hospital, end to end: a supervisor marks the household away at dispatch, a real
`gatewayd run` learns it from its heartbeat reply and rests its inactivity alarm; marked back
home, the gateway counts afresh and the inactivity alarm reaches dispatch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from firmware_sim.rflink import RflinkSimulator
from tests.faults.harness import enroll_into
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

AFTER_S = 4
DOOR = "3b4"
HOUSEHOLD = "hh-away-e2e"
GATEWAY = "gw-away-e2e"


def door_home(port: str, dispatch_url: str) -> dict[str, str]:
    return {
        "gateway_id": GATEWAY,
        "dispatch_url": dispatch_url,
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


def inactivity_at_dispatch(dispatch: DispatchServer) -> list[dict[str, Any]]:
    reply = dispatch.operator_client().get(
        "/api/v1/events", params={"gateway_id": GATEWAY, "kind": "inactivity"}
    )
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def last_heartbeat(dispatch: DispatchServer) -> datetime | None:
    gateway = dispatch.operator_client().get(f"/api/v1/gateways/{GATEWAY}").json()
    seen = gateway.get("last_heartbeat_at")
    return datetime.fromisoformat(seen) if seen else None


async def test_away_rests_the_inactivity_alarm_and_back_home_restores_it(
    gateway_factory: Callable[..., GatewayProcess], dispatch_server: DispatchServer
) -> None:
    supervisor = dispatch_server.operator_client()
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**door_home(sim.port, dispatch_server.url))
        enroll_into(dispatch_server, gw, gateway_id=GATEWAY, household_id=HOUSEHOLD)
        until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
        away = supervisor.put(
            f"/api/v1/households/{HOUSEHOLD}/away",
            json={"until": until.isoformat(), "reason": "hospital", "note": "ward 7"},
        )
        assert away.status_code == 200, away.text

        gw.start()
        await await_until(lambda: gw.logged("household_absence"), 30, "the gateway learns it")
        started = datetime.now(UTC)
        (told,) = gw.logged("household_absence")
        assert datetime.fromisoformat(told["until"]) == until
        # A neighbour watering the plants: activity, but not the resident's.
        await sim.button("NewKaku", DOOR, cmd="ON", switch="1")
        # Well past the inactivity time, seen through a heartbeat sent after it.
        await await_until(
            lambda: (
                (seen := last_heartbeat(dispatch_server)) is not None
                and seen > started + timedelta(seconds=AFTER_S + 3)
            ),
            60,
            "a heartbeat after the inactivity time",
        )
        assert [e for e in gw.buffered() if e["kind"] == "inactivity"] == []
        assert inactivity_at_dispatch(dispatch_server) == []

        back = datetime.now(UTC)
        assert supervisor.delete(f"/api/v1/households/{HOUSEHOLD}/away").status_code == 200
        await await_until(
            lambda: len(gw.logged("household_absence")) == 2, 30, "the gateway learns it is over"
        )
        assert gw.logged("household_absence")[1]["until"] is None
        (alarm,) = await await_until(
            lambda: inactivity_at_dispatch(dispatch_server), 60, "the inactivity alarm at dispatch"
        )
        assert gw.stop() == 0
    # Counted afresh from the return, not from the gateway's start or the neighbour's visit.
    assert datetime.fromisoformat(alarm["payload"]["due_at"]) >= back + timedelta(seconds=AFTER_S)
