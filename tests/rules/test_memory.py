"""The engine's memory: exported as plain data, taken back after a restart; and the walk test
keeps every piece of state current (properties over arbitrary reading sequences)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import RuleEngine
from rules.memory import EngineMemory, EngineMemoryError
from tests.rules.builders import T0, engine, events, feed, kinds, s

H = 3600


def watched() -> RuleEngine:
    return engine(
        {"inactivity": {"after_s": 4 * H, "active_hours": "00:00-24:00", "not_up_by": ""}},
        inactivity=True,
        supervision=True,
    )


def restarted(old: RuleEngine) -> RuleEngine:
    """A new engine resumed from the old one's memory, through its stored JSON form."""
    new = watched()
    active = [
        type("Row", (), {"condition": c["condition"], "kind": c["kind"], "device_id": None})()
        for c in old.snapshot()["active"]
    ]
    new.resume(active, EngineMemory.from_json(old.memory().to_json()))
    return new


def test_a_resumed_engine_keeps_its_clocks() -> None:
    old = watched()
    feed(old, "pir-1", "motion", True, T0)
    old.tick(T0 + s(H))
    new = restarted(old)
    new.tick(T0 + s(2 * H))  # restarted an hour later: the clock has run on
    assert new.snapshot()["last_activity"] == T0.isoformat()
    (alarm,) = [x for x in events(new.tick(T0 + s(4 * H))) if x.kind.value == "inactivity"]
    assert alarm.payload["due_at"] == (T0 + s(4 * H)).isoformat()


def test_a_resumed_engine_keeps_contact_state_escalation_and_away_mode() -> None:
    old = watched()
    feed(old, "door-1", "contact_open", True, T0)
    feed(old, "smoke-k", "smoke", True, T0 + s(1))
    old.set_mode("away", T0 + s(2))
    new = restarted(old)
    assert new.mode == "away"
    # The door is known open: a retained open after the restart is no change, no event.
    assert kinds(feed(new, "door-1", "contact_open", True, T0 + s(3), retained=True)) == []
    # The smoke alarm's escalation schedule survived: escalated at 60 s, not 60 s after start.
    out = new.tick(T0 + s(61))
    assert kinds(out) == ["escalation"]


def test_a_walk_test_ends_with_a_restart() -> None:
    old = watched()
    old.set_mode("test", T0)
    new = restarted(old)
    assert new.mode == "normal"
    assert kinds(feed(new, "smoke-k", "smoke", True, T0 + s(5))) == ["smoke"]


def test_resume_only_before_the_first_call() -> None:
    e = watched()
    e.tick(T0)
    with pytest.raises(RuntimeError, match="before the engine's first call"):
        e.resume([], None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "memory"),
        ('{"version": 2}', "version"),
        ('{"last_activity": "yesterday"}', "last_activity"),
        ('{"last_seen": {"pir-1": "2026-01-05T09:00:00"}}', "last_seen.pir-1"),
        ('{"conditions": [{"key": "smoke:x", "kind": "nonsense"}]}', "conditions.0.kind"),
        ('{"surprise": 1}', "surprise"),
    ],
)
def test_an_unusable_memory_is_refused_by_name(text: str, problem: str) -> None:
    with pytest.raises(EngineMemoryError, match=problem):
        EngineMemory.from_json(text)


def test_the_memory_reads_back_as_it_was_written() -> None:
    e = watched()
    feed(e, "door-1", "contact_open", True, T0)
    feed(e, "pir-1", "battery", 50, T0 + s(1))
    e.set_mode("away", T0 + s(2))
    feed(e, "door-1", "contact_open", False, T0 + s(3))
    feed(e, "door-1", "contact_open", True, T0 + s(4))
    memory = e.memory()
    assert EngineMemory.from_json(memory.to_json()) == memory
    assert memory.entry_due == {"door-1": T0 + s(34)}


# -- the walk test changes only what is reported -------------------------------------------------

ACTIVITY = st.one_of(
    st.tuples(st.just("pir-1"), st.just("motion"), st.booleans()),
    st.tuples(st.just("door-1"), st.just("contact_open"), st.booleans()),
    st.tuples(st.just("band-1"), st.just("action"), st.sampled_from(["toggle", "on"])),
)
READINGS = st.lists(
    st.tuples(st.integers(min_value=1, max_value=600), ACTIVITY, st.booleans()), max_size=25
)


def run(readings: list[Any], window: tuple[int, int] | None) -> tuple[RuleEngine, list[Any]]:
    """Feed the readings, in test mode between the two indexes of ``window``."""
    e = engine(
        {"inactivity": {"after_s": 4 * H, "not_up_by": ""}, "sos_actions": ["emergency"]},
        inactivity=True,
    )
    out: list[Any] = []
    at = T0
    for n, (dt, (device, prop, value), retained) in enumerate(readings):
        at += timedelta(seconds=dt)
        if window is not None and n == window[0]:
            e.set_mode("test", at)
        if window is not None and n == window[1]:
            e.set_mode("normal", at)
        decided = feed(e, device, prop, value, at, retained=retained)
        out.append([x for x in events(decided) if x.kind.value in ("contact", "motion")])
    return e, out


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=READINGS, data=st.data())
def test_no_activity_is_lost_across_a_walk_test(readings: list[Any], data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=len(readings)))
    end = data.draw(st.integers(min_value=start, max_value=len(readings)))
    normal, normal_out = run(readings, None)
    tested, tested_out = run(readings, (start, end))
    # The same last activity, as if there had been no walk test ...
    assert tested.snapshot()["last_activity"] == normal.snapshot()["last_activity"]
    assert tested.memory().contact == normal.memory().contact
    assert tested.memory().motion == normal.memory().motion
    # ... and after it, the same changes are reported.
    assert tested_out[end:] == normal_out[end:]
