"""Away / in hospital (dispatch's word, until an end instant): the inactivity rule rests."""

from __future__ import annotations

from datetime import timedelta

from rules import RuleEngine
from rules.memory import EngineMemory
from tests.rules.builders import engine, events, feed, kinds, s
from tests.rules.test_inactivity import H, inactive, inactivity_events, sweep, utc


def test_no_inactivity_alarm_while_absent_and_count_starts_at_the_end() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    feed(e, "pir-1", "motion", True, t)
    until = t + s(48 * H)
    assert e.set_absence(until, t + s(H)) == []
    assert e.snapshot()["absent_until"] == until.isoformat()
    assert inactivity_events(sweep(e, t + s(H), until, timedelta(minutes=30))) == []
    # 2026-01-07 09:00 back: four active hours later the alarm is due again.
    assert e.next_deadline() == until + s(4 * H)
    (alarm,) = inactivity_events(e.tick(until + s(4 * H)))
    assert alarm.payload["rule"] == "inactive_for"


def test_without_absence_the_same_home_raises() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    feed(e, "pir-1", "motion", True, t)
    assert len(inactivity_events(sweep(e, t, t + s(48 * H), timedelta(minutes=30)))) == 1


def test_absence_restores_an_open_inactivity_alarm() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    assert len(inactivity_events(e.tick(t + s(4 * H)))) == 1
    out = e.set_absence(t + s(24 * H), t + s(5 * H))
    assert kinds(out) == ["inactivity_restore"]
    assert events(out)[0].payload["reason"] == "absent"


def test_activity_while_absent_does_not_restart_the_count() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    until = t + s(24 * H)
    e.set_absence(until, t)
    feed(e, "pir-1", "motion", True, t + s(23 * H))  # a neighbour watering the plants
    assert e.next_deadline() == until + s(4 * H)


def test_back_early_counts_from_then() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    e.set_absence(t + s(72 * H), t)
    back = t + s(24 * H)  # 2026-01-06 09:00
    e.set_absence(None, back)
    assert e.snapshot()["absent_until"] is None
    assert e.next_deadline() == back + s(4 * H)


def test_an_end_already_past_changes_nothing() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    revision = e.revision
    assert e.set_absence(t - s(60), t) == []
    assert e.revision == revision
    assert e.next_deadline() == t + s(4 * H)


def test_repeating_the_same_absence_changes_nothing() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.set_absence(t + s(10 * H), t)
    revision = e.revision
    e.set_absence(t + s(10 * H), t + s(60))
    assert e.revision == revision


def test_morning_check_rests_while_absent() -> None:
    e = inactive(morning=True, after_s=72 * H)
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    e.set_absence(utc(2026, 1, 7, 12), t)
    assert inactivity_events(sweep(e, t, utc(2026, 1, 7, 12), timedelta(minutes=30))) == []
    # The first morning after the return, watched since its night's end, counts again.
    (alarm,) = inactivity_events(e.tick(utc(2026, 1, 8, 10)))
    assert alarm.payload["rule"] == "not_up_by"


def test_absence_survives_a_restart() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    until = t + s(48 * H)
    e.set_absence(until, t)
    memory = EngineMemory.from_json(e.memory().to_json())
    again: RuleEngine = inactive()
    again.resume([], memory)
    feed(again, "pir-1", "motion", True, t + s(H))
    assert again.snapshot()["absent_until"] == until.isoformat()
    assert again.next_deadline() == until + s(4 * H)


def test_an_engine_without_inactivity_takes_absence_quietly() -> None:
    e = engine()
    t = utc(2026, 1, 5, 9)
    assert e.set_absence(t + s(H), t) == []
