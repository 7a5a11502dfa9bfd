"""The engine keeps its earliest timer instead of walking every timer on each call.

Checked against the walk it replaces: after every step of arbitrary reading sequences, the kept
earliest timer is exactly the one a walk over all timers finds, and so is ``next_deadline()``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from contract.wire import Reading
from rules import RuleEngine
from tests.rules.builders import HOME, T0, engine
from tests.rules.builders import dev as device
from tests.rules.test_properties import SETTINGS, Step, step_strategy


def walk(e: RuleEngine) -> tuple[datetime, int, str] | None:
    """Every timer of the engine, walked one by one: the reference the kept value must match."""
    candidates: list[tuple[datetime, int, str]] = []
    for key, pending in e._pending.items():
        candidates.append((pending.due, 0, key))
    for key, cond in e._active.items():
        if cond.escalate_at is not None:
            candidates.append((cond.escalate_at, 1, key))
    for dev, interval in e._interval.items():
        if interval > 0 and f"device_offline:{dev}" not in e._active:
            candidates.append((e._last_seen[dev] + timedelta(seconds=interval), 2, dev))
    for dev in e._flapping_devices():
        candidates.append((e._flap_quiet_since(dev) + e._flapping.quiet_window(dev), 3, dev))
    contacts = e._contacts
    for dev, entry in contacts.entry_due.items():
        candidates.append((entry, 6, dev))
    if e.mode != "test":
        for dev, since in contacts.opened_at.items():
            left_open = contacts.left_open_due(dev, since)
            if left_open is not None:
                candidates.append((left_open, 7, dev))
    due = e._inactivity_watch()
    if due is not None:
        candidates.append((due, 4, "after"))
    if e.rules.inactivity.enabled and e._morning_next is not None:
        candidates.append((e._morning_next, 5, "morning"))
    return min(candidates, default=None)


def flappy_engine() -> RuleEngine:
    """Every timer kind in play: delay_on, short supervision, quick flapping, inactivity."""
    return engine(
        {
            "delay_on": {"water_leak": 5},
            "supervision": {"default_s": 3000, "siren": 900, "motion": 120},
            "flapping": {"max_alarms": 2, "window_s": 300},
            "escalate_after_s": 30,
            "escalate_every_s": 60,
        },
        inactivity=True,
        supervision=True,
        timezone="Europe/Berlin",
    )


def restless_engine() -> RuleEngine:
    """Inactivity after 10 minutes and slow supervision: the inactivity timer is mostly the
    earliest, and every activity moves it."""
    return engine(
        {
            "inactivity": {"after_s": 600, "active_hours": "06:00-23:00"},
            "supervision": {"default_s": 50_000, "siren": 0},
            "delay_on": {"water_leak": 5},
        },
        inactivity=True,
        supervision=True,
        timezone="Europe/Berlin",
    )


ENGINES = [flappy_engine, restless_engine]


def check_each_step(e: RuleEngine, steps: list[Step]) -> None:
    e.tick(T0)
    assert e._earliest() == walk(e)
    t = T0
    for step in steps:
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
            e.feed(reading, t)
        elif step.kind == "tick":
            e.tick(t)
        elif step.kind == "ack":
            e.acknowledge(step.device, t)
        else:
            e.set_mode(step.value, t)
        expected = walk(e)
        assert e._earliest() == expected, step
        assert e.next_deadline() == (expected[0] if expected else None)


@SETTINGS
@given(st.sampled_from(ENGINES), st.lists(step_strategy(), max_size=80))
def test_kept_earliest_timer_is_the_walked_one(
    make: Callable[[], RuleEngine], steps: list[Step]
) -> None:
    check_each_step(make(), steps)


ALARM_PROPS = ["smoke", "water_leak", "gas", "sos", "action", "available", "motion", "seen"]


@SETTINGS
@given(st.sampled_from(ENGINES), st.lists(step_strategy(props=ALARM_PROPS), max_size=80))
def test_kept_earliest_timer_through_alarms_flapping_and_escalation(
    make: Callable[[], RuleEngine], steps: list[Step]
) -> None:
    check_each_step(make(), steps)


def test_many_check_ins_keep_the_heap_small_and_right() -> None:
    """Thousands of check-ins (the heap compacts itself) and devices that go silent."""
    e = flappy_engine()
    devices = [d.id for d in HOME if d.id not in ("pir-1", "siren-2")]
    steps: list[Step] = []
    for i in range(3000):
        device = devices[i % len(devices)]
        steps.append(Step("read", dt=1.5, device=device, prop="seen", value=True))
        if i % 500 == 499:
            steps.append(Step("tick", dt=4000))
    check_each_step(e, steps)
    assert len(e._checkins) <= 2 * len(e._checkin_every) + 65


FOCUSED_DEVICES = ["smoke-k", "smoke-h", "leak-b", "sos-1", "pir-1", "siren-1"]


def focused_step() -> st.SearchStrategy[Step]:
    """Few devices and few properties, so alarms, acks, flapping and modes meet often."""
    read = st.builds(
        Step,
        kind=st.just("read"),
        dt=st.sampled_from([0, 1, 4, 6, 40, 200, 1000]),
        device=st.sampled_from(FOCUSED_DEVICES),
        prop=st.sampled_from(["smoke", "water_leak", "sos", "available", "motion", "seen"]),
        value=st.sampled_from([True, True, False, None]),
    )
    tick = st.builds(Step, kind=st.just("tick"), dt=st.sampled_from([1, 30, 61, 400, 5000]))
    ack = st.builds(
        Step,
        kind=st.just("ack"),
        dt=st.sampled_from([0, 10]),
        device=st.sampled_from(["smoke:smoke-k", "smoke:smoke-h", "sos:sos-1"]),
    )
    mode = st.builds(
        Step, kind=st.just("mode"), dt=st.just(1), value=st.sampled_from(["normal", "test"])
    )
    return st.one_of(read, read, read, tick, ack, mode)


@SETTINGS
@given(st.sampled_from(ENGINES), st.lists(focused_step(), max_size=80))
def test_kept_earliest_timer_on_a_busy_few_devices(
    make: Callable[[], RuleEngine], steps: list[Step]
) -> None:
    check_each_step(make(), steps)


def test_acknowledged_alarm_leaves_the_timers() -> None:
    check_each_step(
        flappy_engine(),
        [
            Step("read", dt=1, device="smoke-k", prop="smoke", value=True),
            Step("ack", dt=5, device="smoke:smoke-k"),
        ],
    )


def test_walk_test_mode_drops_a_pending_delay() -> None:
    check_each_step(
        flappy_engine(),
        [
            Step("read", dt=1, device="leak-b", prop="water_leak", value=True),
            Step("mode", dt=1, value="test"),
        ],
    )


def test_seeded_offline_device_leaves_supervision() -> None:
    e = flappy_engine()
    e.tick(T0)
    assert e._earliest() == walk(e)
    e.seed_active([_Seeded("device_offline:pir-1", "device_offline", "pir-1")])
    assert e._earliest() == walk(e)


class _Seeded:
    def __init__(self, condition: str, kind: str, device_id: str) -> None:
        self.condition, self.kind, self.device_id = condition, kind, device_id


DOORS = [f"door-{i}" for i in range(1, 5)]


def doors_engine() -> RuleEngine:
    """Several doors that flap, are left open inside hours, and are opened in away mode: the
    timers a busy door updates in place of a walk over every timer."""
    home = (*HOME, *(device(d, "door", room="hall") for d in DOORS[1:]))
    return engine(
        {
            "contacts": {
                "left_open_after_s": 120,
                "left_open_hours": "07:00-22:00",
                "flapping_changes": 3,
                "flapping_window_s": 60,
                "entry_delay_s": 20,
            },
            "flapping": {"max_alarms": 2, "window_s": 300},
            "supervision": {"default_s": 3000, "siren": 900, "motion": 120},
            "escalate_after_s": 30,
        },
        home,
        inactivity=True,
        supervision=True,
        timezone="Europe/Berlin",
    )


def door_step() -> st.SearchStrategy[Step]:
    read = st.builds(
        Step,
        kind=st.just("read"),
        dt=st.sampled_from([0, 1, 5, 30, 61, 130, 3600]),
        device=st.sampled_from([*DOORS, "smoke-k"]),
        prop=st.sampled_from(["contact_open", "contact_open", "contact_open", "smoke"]),
        value=st.booleans(),
        retained=st.booleans(),
    )
    tick = st.builds(Step, kind=st.just("tick"), dt=st.sampled_from([1, 20, 61, 130, 40_000]))
    mode = st.builds(
        Step, kind=st.just("mode"), dt=st.just(1), value=st.sampled_from(["normal", "away", "test"])
    )
    return st.one_of(read, read, read, read, tick, mode)


@SETTINGS
@given(st.lists(door_step(), max_size=120))
def test_kept_earliest_timer_through_busy_doors(steps: list[Step]) -> None:
    check_each_step(doors_engine(), steps)


def test_a_closing_door_whose_left_open_timer_was_the_earliest() -> None:
    """The earliest rare timer goes with its door: the next one comes from a rescan."""
    check_each_step(
        doors_engine(),
        [
            Step("tick", dt=8 * 3600),  # inside the left-open hours
            Step("read", dt=1, device="door-1", prop="contact_open", value=True),
            Step("read", dt=10, device="door-2", prop="contact_open", value=True),
            Step("read", dt=10, device="door-1", prop="contact_open", value=False),
            Step("tick", dt=150),
        ],
    )


def test_a_flapping_door_moves_its_quiet_end_while_it_is_the_earliest() -> None:
    """Each change of a flapping door restarts its quiet time: the kept timer moves with it."""
    flips = [
        Step("read", dt=1, device="door-1", prop="contact_open", value=i % 2 == 0) for i in range(6)
    ]
    check_each_step(
        doors_engine(),
        [
            Step("tick", dt=8 * 3600),
            *flips,
            Step("read", dt=5, device="door-1", prop="contact_open", value=True),
            Step("read", dt=5, device="door-1", prop="contact_open", value=False),
            Step("tick", dt=59),
            Step("tick", dt=10),
        ],
    )
