"""Scenarios: deterministic rendering into Zigbee2MQTT's wire format, and the script's meaning."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.home import parse_config
from contract.wire import RawFrame
from firmware_sim.catalogue import MODELS, ZIGBEE
from firmware_sim.scenario import (
    OCCUPANCY_TIMEOUT,
    KitDevice,
    Scenario,
    ScenarioError,
    default_kit,
    parse_duration,
    resident_routine,
)
from firmware_sim.scenarios import LIBRARY, folder, week_alone
from replay.trace import TraceReader, read_frames


def states(frames: list[RawFrame], device: str) -> list[tuple[datetime, dict[str, object]]]:
    topic = f"zigbee2mqtt/{device}"
    return [(f.wall_time, json.loads(f.payload)) for f in frames if f.source == topic]


def small_home(**kw: object) -> Scenario:
    return Scenario(start="2026-03-02T06:00", tz="Europe/Berlin", days=1, seed=1, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_the_library_renders_to_the_committed_bytes(tmp_path: Path, name: str) -> None:
    first = LIBRARY[name]().render().write(tmp_path / "a")
    second = LIBRARY[name]().render().write(tmp_path / "b")
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_text() == second[1].read_text()
    committed = folder(name)
    assert first[0].read_bytes() == (committed / "trace.jsonl.gz").read_bytes(), (
        f"re-render with `python -m firmware_sim.scenarios render {name}`"
    )
    assert first[1].read_text() == (committed / "home.toml").read_text()
    parse_config((committed / "home.toml").read_text(), "home.toml")
    reader = TraceReader(committed / "trace.jsonl.gz")
    frames = list(reader.frames())
    assert reader.stats.skipped == 0
    assert frames == sorted(frames, key=lambda f: f.wall_time)


def test_payloads_are_zigbee2mqtt_merged_state() -> None:
    home = small_home()
    home.at("07:00").motion("hall")
    home.at("08:00").smoke("kitchen", for_="2m")
    home.at("09:00").sos("sos-button")
    frames = home.render().frames
    hall = states(frames, "motion-hall")
    detected = [(at, s) for at, s in hall if s.get("occupancy") is True]
    [(at, first)] = detected
    assert at == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    assert set(first) == {*MODELS["RTCGQ11LM"].initial_state, "occupancy", "linkquality"}
    # Zigbee2MQTT clears occupancy itself after the timeout.
    cleared = [t for t, s in hall if s.get("occupancy") is False]
    assert cleared[0] == at + OCCUPANCY_TIMEOUT
    smoke = [s["smoke"] for _, s in states(frames, "smoke-kitchen") if "smoke" in s]
    assert smoke.count(True) == 1
    assert smoke[smoke.index(True) + 1] is False
    button = states(frames, "sos-button")
    pressed = [s for _, s in button if "action" in s]
    assert pressed == [
        {"battery": 100, "linkquality": pressed[0]["linkquality"], "action": "single"}
    ]
    # The action is not kept: later check-ins do not repeat it.
    assert all("action" not in s for t, s in button if t > datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    raw = next(f for f in frames if f.source == "zigbee2mqtt/smoke-kitchen")
    assert b" " not in raw.payload  # compact, as JSON.stringify


def test_connect_frames_and_availability() -> None:
    frames = small_home().render().frames
    assert frames[0].kind == "link"
    assert frames[0].payload == b"up"
    assert frames[1].source == "zigbee2mqtt/bridge/state"
    assert frames[1].retained
    online = [f for f in frames if f.source.endswith("/availability")]
    assert len(online) == len(default_kit())
    assert all(json.loads(f.payload) == {"state": "online"} and f.retained for f in online)


def test_every_device_checks_in_about_hourly() -> None:
    frames = small_home().render().frames
    for device in default_kit():
        times = [t for t, _ in states(frames, device.id)]
        assert 20 <= len(times) <= 30, device.id
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= timedelta(minutes=70)


def test_a_fall_is_followed_by_stillness() -> None:
    home = small_home()
    home.every_day(resident_routine)
    home.day(0).at("10:00").fall_then_still("bedroom", for_="6h")
    frames = home.render().frames
    fall = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    moves = [
        f.wall_time
        for f in frames
        if f.source.startswith("zigbee2mqtt/motion-") and b'"occupancy":true' in f.payload
    ]
    assert fall in moves
    assert not [t for t in moves if fall < t < fall + timedelta(hours=6)]
    assert [t for t in moves if t > fall + timedelta(hours=6)]  # up again in the evening
    door = [
        f
        for f in frames
        if f.source == "zigbee2mqtt/door-front" and b'"contact":false' in f.payload
    ]
    assert not [f for f in door if fall < f.wall_time < fall + timedelta(hours=6)]


def test_battery_drain_runs_down_and_sets_battery_low() -> None:
    home = Scenario(start="2026-03-02T06:00", tz="UTC", days=3, seed=2)
    home.battery_drain("smoke-kitchen", from_=100, to=10, over="2d")
    smoke = states(home.render().frames, "smoke-kitchen")
    levels = [float(s["battery"]) for _, s in smoke]  # type: ignore[arg-type]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] > 95
    assert levels[-1] == 10
    low = [s["battery_low"] for _, s in smoke]
    assert low[0] is False
    assert low[-1] is True
    first_low = next(i for i, flag in enumerate(low) if flag)
    assert levels[first_low] <= 20 < levels[first_low - 1]


def test_a_dropped_device_falls_silent_and_zigbee2mqtt_marks_it_offline() -> None:
    home = Scenario(start="2026-03-02T06:00", tz="UTC", days=3, seed=2)
    home.at("12:00").device_drops("door-front")
    frames = home.render().frames
    drop = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    heard = [t for t, _ in states(frames, "door-front")]
    assert heard
    assert max(heard) < drop
    [offline] = [
        f
        for f in frames
        if f.source == "zigbee2mqtt/door-front/availability" and b"offline" in f.payload
    ]
    assert offline.retained
    assert offline.wall_time == max(heard) + timedelta(hours=25)


def test_scripts_name_their_mistakes() -> None:
    home = small_home()
    with pytest.raises(ScenarioError, match="no motion device 'garage'"):
        home.motion("garage")
    with pytest.raises(ScenarioError, match="not a duration"):
        home.door_open("front", for_="soon")
    with pytest.raises(ScenarioError, match="before the scenario's start"):
        home.at("05:00")
    with pytest.raises(ScenarioError, match="reports no battery level"):
        home.battery_drain("gas-kitchen")
    with pytest.raises(ScenarioError, match="unknown time zone"):
        Scenario(start="2026-03-02T06:00", tz="Mars/Olympus")
    with pytest.raises(ScenarioError, match="unknown model"):
        Scenario(start="2026-03-02T06:00", kit=[KitDevice("x", "NOPE", "motion", "hall")])
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(90) == timedelta(seconds=90)


def test_different_seeds_give_different_days_same_seed_the_same() -> None:
    def render(seed: int) -> list[RawFrame]:
        home = Scenario(start="2026-03-02T06:00", tz="Europe/Berlin", days=2, seed=seed)
        home.every_day(resident_routine)
        return home.render().frames

    assert render(1) == render(1)
    assert render(1) != render(2)


def test_week_alone_has_what_its_story_says() -> None:
    frames = read_frames(folder("week_alone") / "trace.jsonl.gz")
    assert frames[0].wall_time == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    assert frames[-1].wall_time <= datetime(2026, 3, 9, 5, 0, tzinfo=UTC)
    smoke = [f for f in frames if b'"smoke":true' in f.payload]
    assert [f.wall_time for f in smoke] == [datetime(2026, 3, 6, 17, 5, tzinfo=UTC)]
    assert any(
        b'"battery_low":true' in f.payload for f in frames if f.source.endswith("smoke-kitchen")
    )
    assert any(
        f.source == "zigbee2mqtt/door-front/availability" and b"offline" in f.payload
        for f in frames
    )
    assert week_alone().days == 7


def test_scenarios_play_the_models_the_zigbee2mqtt_emulator_plays() -> None:
    from firmware_sim.zigbee2mqtt import SimDevice, SimError

    assert ZIGBEE
    assert set(ZIGBEE) == {m for m, spec in MODELS.items() if spec.rflink is None}
    for model, spec in ZIGBEE.items():
        assert KitDevice("x", model, "other", "hall").spec is spec
        assert SimDevice("x", model, "0x00158d0000000001").model == model
    # A 433 MHz model is no Zigbee device: the emulator refuses it, naming what it knows.
    with pytest.raises(SimError, match=r"unknown model 'EV1527'; known: .*HS1SA"):
        SimDevice("x", "EV1527", "0x00158d0000000001")


def test_433_mhz_devices_speak_rflink_lines() -> None:
    kit = [
        *default_kit(),
        KitDevice("rf-smoke-hall", "SmokeAlert", "smoke", "hall", rf_id="0A1B2C"),
        KitDevice("rf-pendant", "EV1527", "pendant", "bedroom", rf_id="5E3F1"),
    ]
    home = Scenario(start="2026-03-02T20:00", tz="UTC", kit=kit, days=0.5, seed=4)
    home.at("21:00").smoke("rf-smoke-hall", for_="2m")
    home.at("21:00").motion("hall")
    home.at("23:30").sos("rf-pendant")
    rendered = home.render()
    rf = [f for f in rendered.frames if f.driver == "rf"]
    assert rf[0].kind == "link"
    assert rf[0].source == "/dev/ttyACM0"
    lines = [f.payload.decode() for f in rf[1:]]
    assert lines == [
        "20;00;SmokeAlert;ID=0A1B2C;SMOKEALERT=ON;",
        "20;01;SmokeAlert;ID=0A1B2C;SMOKEALERT=ON;",
        "20;02;SmokeAlert;ID=0A1B2C;SMOKEALERT=ON;",
        "20;03;SmokeAlert;ID=0A1B2C;SMOKEALERT=OFF;",
        "20;04;SmokeAlert;ID=0A1B2C;SMOKEALERT=OFF;",
        "20;05;SmokeAlert;ID=0A1B2C;SMOKEALERT=OFF;",
        "20;06;EV1527;ID=5E3F1;SWITCH=01;CMD=ON;",
        "20;07;EV1527;ID=5E3F1;SWITCH=01;CMD=ON;",
        "20;08;EV1527;ID=5E3F1;SWITCH=01;CMD=ON;",
    ]
    assert rf[2].wall_time - rf[1].wall_time == timedelta(milliseconds=150)
    walls = [f.wall_time for f in rendered.frames]
    assert walls == sorted(walls)
    config = parse_config(rendered.config_toml())
    assert [(d.id, d.type) for d in config.drivers] == [("zigbee", "zigbee2mqtt"), ("rf", "rflink")]
    smoke = config.device("rf-smoke-hall")
    assert smoke is not None
    assert (smoke.driver, smoke.address) == ("rf", "SmokeAlert:0A1B2C")
    assert not [f for f in rendered.frames if f.source.endswith("/rf-smoke-hall/availability")]


def test_dispatch_acknowledgements_and_modes_go_into_the_trace(tmp_path: Path) -> None:
    from replay.trace import TraceControl

    home = small_home()
    home.at("09:00").sos("sos-button").after("90s").acknowledge("sos:sos-button")
    home.at("12:00").set_mode("away")
    rendered = home.render()
    assert rendered.controls == [
        TraceControl("ack", "sos:sos-button", datetime(2026, 3, 2, 8, 1, 30, tzinfo=UTC)),
        TraceControl("mode", "away", datetime(2026, 3, 2, 11, 0, tzinfo=UTC)),
    ]
    trace = rendered.write_trace(tmp_path / "t.jsonl")
    inputs = list(TraceReader(trace).inputs())
    assert [i for i in inputs if isinstance(i, TraceControl)] == rendered.controls
    times = [i.at if isinstance(i, TraceControl) else i.wall_time for i in inputs]
    assert times == sorted(times)
    with pytest.raises(ScenarioError, match="unknown mode"):
        home.set_mode("holiday")
