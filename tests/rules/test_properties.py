"""Hypothesis properties of the rule engine over arbitrary reading sequences in virtual time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.wire import EventKind, Reading
from rules import Decision, EmitEvent, RuleEngine, load_rules
from rules.localtime import seconds_due
from tests.rules.builders import HOME, T0, engine, events

PROPERTIES = [
    "sos",
    "action",
    "smoke",
    "gas",
    "carbon_monoxide",
    "water_leak",
    "fall",
    "motion",
    "contact_open",
    "tamper",
    "battery_low",
    "battery",
    "available",
    "voltage",
    "signal",
    "gas_concentration",
    "test",
    "fault",
    "link",
]
DEVICES = [d.id for d in HOME] + ["0xunknown", "addr-smoke-k", "zigbee"]
VALUES = st.one_of(
    st.booleans(),
    st.none(),
    st.sampled_from(["single", "double", "hold", "emergency", "toggle", "", "on"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Step:
    kind: str  # "read", "tick", "ack", "mode"
    dt: float
    device: str = ""
    prop: str = ""
    value: Any = None
    retained: bool = False


def step_strategy(*, props: list[str] = PROPERTIES, modes: bool = True) -> st.SearchStrategy[Step]:
    read = st.builds(
        Step,
        kind=st.just("read"),
        dt=st.floats(min_value=0, max_value=400),
        device=st.sampled_from(DEVICES),
        prop=st.sampled_from(props),
        value=VALUES,
        retained=st.booleans(),
    )
    tick = st.builds(Step, kind=st.just("tick"), dt=st.floats(min_value=0, max_value=20_000))
    ack = st.builds(
        Step,
        kind=st.just("ack"),
        dt=st.floats(min_value=0, max_value=100),
        device=st.sampled_from(["sos:sos-1", "smoke:smoke-k", "sos:band-1", "x"]),
    )
    options = [read, read, read, tick, ack]
    if modes:
        mode = st.builds(
            Step,
            kind=st.just("mode"),
            dt=st.floats(min_value=0, max_value=100),
            value=st.sampled_from(["normal", "away", "test"]),
        )
        options.append(mode)
    return st.one_of(*options)


def run(e: RuleEngine, steps: list[Step], *, extra_ticks: bool = False) -> list[Decision]:
    out: list[Decision] = e.tick(T0)  # the engine starts watching here, however it is ticked
    t = T0
    for step in steps:
        if extra_ticks and step.dt > 1:
            out += e.tick(t + timedelta(seconds=step.dt / 3))
            out += e.tick(t + timedelta(seconds=step.dt / 2))
        t += timedelta(seconds=step.dt)
        if step.kind == "read":
            driver = step.device if step.prop == "link" else "z2m"
            reading = Reading(
                driver=driver,
                device=step.device,
                property=step.prop,
                value=step.value,
                at=t,
                retained=step.retained,
            )
            out += e.feed(reading, t)
        elif step.kind == "tick":
            out += e.tick(t)
        elif step.kind == "ack":
            out += e.acknowledge(step.device, t)
        else:
            out += e.set_mode(step.value, t)
    return out + e.tick(t + timedelta(seconds=1))


def full_engine() -> RuleEngine:
    return engine(
        {"delay_on": {"water_leak": 5}, "supervision": {"default_s": 3000, "siren": 900}},
        inactivity=True,
        supervision=True,
        timezone="Europe/Berlin",
    )


@SETTINGS
@given(st.lists(step_strategy(), max_size=60))
def test_alarms_and_restores_of_a_condition_alternate(steps: list[Step]) -> None:
    e = full_engine()
    is_open: dict[str, bool] = {}
    for ev in events(run(e, steps)):
        if ev.kind.is_restore:
            assert is_open.get(ev.condition) is True, (ev, is_open)
            is_open[ev.condition] = False
        elif ev.kind.restore is not None:
            assert not is_open.get(ev.condition), (ev, is_open)
            is_open[ev.condition] = True
    active = {a["condition"] for a in e.snapshot()["active"]}
    assert active == {c for c, o in is_open.items() if o}


ACTIVE_PROPS = {
    EventKind.SMOKE: "smoke",
    EventKind.GAS: "gas",
    EventKind.CARBON_MONOXIDE: "carbon_monoxide",
    EventKind.WATER_LEAK: "water_leak",
    EventKind.FALL: "fall",
    EventKind.TAMPER: "tamper",
}


@SETTINGS
@given(st.lists(step_strategy(), max_size=60))
def test_nothing_fires_for_a_device_that_never_reported_an_active_value(steps: list[Step]) -> None:
    e = full_engine()
    reported: set[tuple[str, str]] = set()
    t = T0
    for step in steps:
        t += timedelta(seconds=step.dt)
        decisions: list[Decision]
        if step.kind == "read":
            driver = step.device if step.prop == "link" else "z2m"
            r = Reading(
                driver=driver, device=step.device, property=step.prop, value=step.value, at=t
            )
            if step.value is True or (step.prop == "action" and isinstance(step.value, str)):
                reported.add((step.device, step.prop))
            decisions = e.feed(r, t)
        elif step.kind == "tick":
            decisions = e.tick(t)
        elif step.kind == "ack":
            decisions = e.acknowledge(step.device, t)
        else:
            decisions = e.set_mode(step.value, t)
        for ev in events(decisions):
            if ev.kind.is_restore or ev.kind.condition is EventKind.INACTIVITY:
                continue
            device = ev.device_id or ev.payload.get("address")
            aliases = {device, f"addr-{device}"}
            if ev.kind is EventKind.SOS:
                assert any((d, p) in reported for d in aliases for p in ("sos", "action")), ev
            elif ev.kind in ACTIVE_PROPS:
                assert any((d, ACTIVE_PROPS[ev.kind]) in reported for d in aliases), ev


@SETTINGS
@given(st.lists(step_strategy(), max_size=40))
def test_output_independent_of_tick_splitting(steps: list[Step]) -> None:
    plain = run(full_engine(), steps)
    split = run(full_engine(), steps, extra_ticks=True)
    assert split == plain


@SETTINGS
@given(
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York"]),
    st.integers(min_value=0, max_value=365 * 24 * 3600),
    st.floats(min_value=60, max_value=6 * 86_400),
    st.lists(st.floats(min_value=1, max_value=4 * 3600), min_size=1, max_size=200),
)
def test_inactivity_fires_exactly_once_at_the_threshold(
    zone: str, offset: int, after_s: float, tick_steps: list[float]
) -> None:
    e = RuleEngine(
        load_rules({"inactivity": {"after_s": after_s, "not_up_by": ""}}),
        HOME,
        timezone=zone,
    )
    start = datetime(2026, 1, 1, tzinfo=T0.tzinfo) + timedelta(seconds=offset)
    e.feed(Reading(driver="z2m", device="pir-1", property="motion", value=True, at=start), start)
    due = seconds_due(start, after_s, e.rules.inactivity.window(), ZoneInfo(zone))
    assert due is not None
    t = start
    fired: list[tuple[datetime, EmitEvent]] = []
    for step in tick_steps:
        t += timedelta(seconds=step)
        fired += [(t, ev) for ev in events(e.tick(t)) if ev.kind is EventKind.INACTIVITY]
    if t < due:
        assert fired == []
    else:
        assert len(fired) == 1
        at, ev = fired[0]
        assert ev.payload["due_at"] == due.isoformat()
        assert at >= due
        assert at - timedelta(seconds=max(tick_steps)) < due


READINGS = st.builds(
    Reading,
    driver=st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True),
    device=st.one_of(st.sampled_from(DEVICES), st.text(min_size=1, max_size=20)),
    property=st.one_of(st.sampled_from(PROPERTIES), st.text(min_size=1, max_size=10)),
    value=VALUES,
    at=st.just(T0),
    retained=st.booleans(),
    extra=st.dictionaries(
        st.text(max_size=5), st.one_of(st.none(), st.booleans(), st.text(max_size=5))
    ),
)


@SETTINGS
@given(st.lists(st.tuples(READINGS, st.floats(min_value=-100, max_value=10_000)), max_size=50))
def test_feed_never_raises(readings: list[tuple[Reading, float]]) -> None:
    e = full_engine()
    t = T0
    for reading, dt in readings:
        t += timedelta(seconds=dt)  # also backwards: the engine holds its clock
        result = e.feed(reading, t)
        assert isinstance(result, list)
    e.snapshot()
