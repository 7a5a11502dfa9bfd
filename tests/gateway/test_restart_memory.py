"""A real `gatewayd run` restarted keeps what its rules knew: the inactivity clock runs on."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from firmware_sim.rflink import RflinkSimulator
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.waiting import await_until

pytestmark = pytest.mark.slow

DOOR = "1a2"
AFTER_S = 5


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


def of_kind(gw: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    return [e for e in gw.buffered() if e["kind"] == kind]


async def _door_opened(gw: GatewayProcess, sim: RflinkSimulator) -> None:
    gw.start()
    await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
    # Ready does not wait for drivers: press only once the driver hears the receiver.
    await await_until(lambda: gw.logged("rflink_link_up"), 30, "the receiver answering")
    await sim.button("NewKaku", DOOR, cmd="ON", switch="1")
    await await_until(lambda: of_kind(gw, "contact"), 30, "the door's contact event")


def _assert_clock_went_on(alarm: dict[str, Any], since: datetime) -> None:
    """The inactivity alarm counts from the door opened before ``since``, not from ``since``."""
    last = alarm["payload"]["last_activity"]
    assert last is not None, "the rules forgot the last activity"
    assert datetime.fromisoformat(last) < since
    due = datetime.fromisoformat(alarm["payload"]["due_at"])
    assert due == datetime.fromisoformat(last) + timedelta(seconds=AFTER_S)


async def test_a_restart_does_not_reset_the_inactivity_clock(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**door_home(sim.port))
        await _door_opened(gw, sim)
        assert gw.stop() == 0
        # Restarted within the inactivity time: the clock must not start again from zero.
        restarted_at = datetime.now(UTC)
        gw.start()
        await await_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready again")
        (alarm,) = await await_until(lambda: of_kind(gw, "inactivity"), 30, "the inactivity alarm")
        assert gw.stop() == 0
    _assert_clock_went_on(alarm, restarted_at)


async def test_a_reload_does_not_reset_the_inactivity_clock(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    """A config reload (SIGHUP, after every `devices pair`) is no restart for the rules either."""
    async with RflinkSimulator() as sim:
        gw = gateway_factory(**door_home(sim.port))
        await _door_opened(gw, sim)
        reloaded_at = datetime.now(UTC)
        gw.signal(signal.SIGHUP)
        await await_until(lambda: gw.logged("reloaded"), 15, "the reload")
        (alarm,) = await await_until(lambda: of_kind(gw, "inactivity"), 30, "the inactivity alarm")
        assert gw.stop() == 0
    _assert_clock_went_on(alarm, reloaded_at)


# -- what the daemon keeps, without a process ----------------------------------------------------


def _engine() -> Any:
    from rules import RuleEngine, load_rules
    from tests.rules.builders import HOME

    return RuleEngine(load_rules({"supervision": {"default_s": 0}}), HOME)


def test_an_unusable_stored_memory_is_logged_and_the_rules_start_afresh(tmp_path: Any) -> None:
    from structlog.testing import capture_logs

    from buffer.store import EventBuffer
    from gatewayd.memory import resume_engine

    with EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw") as buffer:
        buffer.save_memory('{"version": 99}', datetime.now(UTC))
        engine = _engine()
        with capture_logs() as logs:
            assert resume_engine(engine, buffer) is None
    (problem,) = [line for line in logs if line["event"] == "engine_memory_unusable"]
    assert "version" in problem["error"]
    assert engine.tick(datetime.now(UTC)) == []  # the engine runs, with fresh clocks


async def test_the_memory_is_saved_when_it_changed_not_on_every_reading(tmp_path: Any) -> None:
    from buffer.aio import AsyncEventBuffer
    from buffer.store import EventBuffer
    from gatewayd.memory import MemoryKeeper
    from rules.memory import EngineMemory
    from tests.rules.builders import T0, feed, s

    mono = [0.0]
    raw = EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw")
    buffer = AsyncEventBuffer(raw)
    keeper = MemoryKeeper(buffer, every_s=1.0, checkins_every_s=60.0, clock=lambda: mono[0])
    engine = _engine()
    try:
        feed(engine, "pir-1", "motion", True, T0)
        assert await keeper.save_if_changed(engine)  # the first change: at once
        assert not await keeper.save_if_changed(engine)  # unchanged
        feed(engine, "pir-1", "motion", True, T0 + s(1))
        assert not await keeper.save_if_changed(engine)  # changed, but within a second
        mono[0] = 1.0
        assert await keeper.save_if_changed(engine)
        feed(engine, "pir-1", "seen", True, T0 + s(2))
        mono[0] = 30.0
        assert not await keeper.save_if_changed(engine)  # check-ins only: once a minute
        assert await keeper.save_if_changed(engine, now=True)  # at shutdown: at once
        stored = EngineMemory.from_json(raw.load_memory() or "")
        assert stored.last_seen["pir-1"] == T0 + s(2)
        assert stored.last_activity == T0 + s(1)
    finally:
        await buffer.aclose()
