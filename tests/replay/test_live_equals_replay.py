"""Live with restarts equals replay: the daemon's pipeline, buffer and memory keeping, stopped and
started at each session header, decide what a replay of the same trace decides.

- the week alone, restarted every 3 hours: the inactivity alarm after Thursday's fall is raised
  on time, live and in replay (the command too), identically;
- for any readings, restarts and mode changes (hypothesis), the two decide the same events.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.home import load_config, parse_config
from contract.wire import RawFrame
from firmware_sim.scenarios import folder
from replay.trace import TraceHeader, TraceItem, TraceReader, TraceWriter, encode_header, iso_utc
from tests.replay.live_sessions import (
    ZIGBEE_DRIVER,
    header,
    live_events,
    mode,
    replay_command,
    replayed_events,
)

WEEK = folder("week_alone")


def with_restarts(items: list[TraceItem], every: timedelta) -> list[TraceItem]:
    """The trace as a daemon restarted every ``every`` would have recorded it."""
    first = items[0]
    assert isinstance(first, TraceHeader)
    out: list[TraceItem] = [first]
    next_restart = first.started + every
    for item in items[1:]:
        at = item.wall_time if isinstance(item, RawFrame) else getattr(item, "at", None)
        while at is not None and at >= next_restart:
            out.append(header(first.gateway_id, next_restart, f"run-{iso_utc(next_restart)}"))
            next_restart += every
        out.append(item)
    return out


def expected_inactivity() -> list[dict[str, Any]]:
    lines = (WEEK / "expected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and '"inactivity' in line]


def test_the_week_alone_restarted_every_3_hours_raises_inactivity_on_time(
    tmp_path: Path,
) -> None:
    config = load_config(WEEK / "home.toml")
    recorded = list(TraceReader(WEEK / "trace.jsonl.gz").inputs(sessions=True))
    items = with_restarts(recorded, timedelta(hours=3))
    assert sum(1 for i in items if isinstance(i, TraceHeader)) > 50  # restarts all week
    live = live_events(config, items, tmp_path / "state")
    replayed = replayed_events(config, items)
    assert live == replayed
    inactivity = [(kind, at) for kind, _, at, _ in live if kind.startswith("inactivity")]
    assert inactivity == [(d["kind"], d["at"]) for d in expected_inactivity()]
    assert inactivity[0] == ("inactivity", "2026-03-05T13:41:00Z")  # 4 h after the fall

    # The command replays the trace so recorded to the same inactivity alarm.
    trace = tmp_path / "restarted.jsonl.gz"
    first = items[0]
    assert isinstance(first, TraceHeader)
    with TraceWriter.open(trace, gateway_id=first.gateway_id, started=first.started) as w:
        for item in items[1:]:
            if isinstance(item, TraceHeader):
                w.write_raw(encode_header(item.gateway_id, item.started, None, item.session))
            else:
                w.write(item)
    decided, summary = replay_command(trace, WEEK / "home.toml", tmp_path / "out.jsonl")
    assert summary["restarts"] > 50
    assert [
        (d["kind"], d["at"]) for d in decided if str(d.get("kind")).startswith("inactivity")
    ] == inactivity


# -- any sequence of readings, restarts and mode changes ------------------------------------------

HOME = (
    """
[gateway]
id = "gw-prop"
household = "hh-prop"
timezone = "Europe/Berlin"
state_dir = "state"

[rules]
escalate_after_s = 120
escalate_every_s = 600

[rules.inactivity]
after_s = 3600
active_hours = "06:00-23:00"
night_end = "05:00"
not_up_by = "09:00"

[rules.supervision]
default_s = 5400

[rules.contacts]
entry_delay_s = 60
left_open_after_s = 1800
flapping_changes = 4
flapping_window_s = 120

"""
    + ZIGBEE_DRIVER
    + """
[[devices]]
id = "motion-hall"
driver = "zigbee"
address = "motion_hall"
role = "motion"

[[devices]]
id = "door-front"
driver = "zigbee"
address = "door_front"
role = "door"

[[devices]]
id = "smoke-kitchen"
driver = "zigbee"
address = "smoke_kitchen"
role = "smoke"

[[devices]]
id = "sos-button"
driver = "zigbee"
address = "sos_button"
role = "sos_button"
"""
)

START = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)

STATES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "motion_hall": st.builds(lambda v: {"occupancy": v}, st.booleans()),
    "door_front": st.builds(lambda v: {"contact": v}, st.booleans()),
    "smoke_kitchen": st.builds(lambda v: {"smoke": v}, st.booleans()),
    "sos_button": st.just({"action": "single"}),
}

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3 * 3600, allow_nan=False),
        st.one_of(
            st.sampled_from(sorted(STATES)).flatmap(
                lambda name: STATES[name].map(lambda state: ("frame", name, state))
            ),
            st.sampled_from(["normal", "away", "test"]).map(lambda m: ("mode", m, {})),
            st.just(("restart", "", {})),
        ),
    ),
    max_size=30,
)


def inputs_of(plan: list[tuple[float, tuple[str, str, dict[str, Any]]]]) -> list[TraceItem]:
    items: list[TraceItem] = [header("gw-prop", START, "run-0")]
    at = START
    for n, (dt, (what, name, state)) in enumerate(plan, 1):
        at += timedelta(seconds=round(dt))
        if what == "frame":
            items.append(
                RawFrame(
                    driver="zigbee",
                    source=f"zigbee2mqtt/{name}",
                    payload=json.dumps(state).encode(),
                    wall_time=at,
                    mono_time=float(n),
                )
            )
        elif what == "mode":
            items.append(mode(name, at))
        else:
            items.append(header("gw-prop", at, f"run-{n}"))
    return items


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_live_with_restarts_decides_what_replay_decides(
    plan: list[tuple[float, tuple[str, str, dict[str, Any]]]],
) -> None:
    config = parse_config(HOME)
    items = inputs_of(plan)
    with tempfile.TemporaryDirectory(prefix="live-") as state:
        live = live_events(config, items, Path(state))
    assert live == replayed_events(config, items)
