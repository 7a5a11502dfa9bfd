"""Inactivity in local active hours, the morning check, away mode, DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules import RuleEngine
from tests.rules.builders import EventKind, engine, events, feed, kinds, s

H = 3600


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def inactive(*, timezone: str = "UTC", morning: bool = False, **rules: object) -> RuleEngine:
    table: dict[str, object] = {"after_s": 4 * H, **rules}
    if not morning:
        table["not_up_by"] = ""
    return engine({"inactivity": table}, timezone=timezone, inactivity=True)


def inactivity_events(decisions: list) -> list:  # type: ignore[type-arg]
    return [x for x in events(decisions) if x.kind.condition is EventKind.INACTIVITY]


def sweep(e: RuleEngine, start: datetime, end: datetime, step: timedelta) -> list:  # type: ignore[type-arg]
    out = []
    t = start
    while t <= end:
        out += e.tick(t)
        t += step
    return out


def test_fires_once_at_threshold_and_activity_restores() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    feed(e, "pir-1", "motion", True, t)
    assert e.next_deadline() == t + s(4 * H)
    assert e.tick(t + s(4 * H - 1)) == []
    (alarm,) = inactivity_events(e.tick(t + s(4 * H)))
    assert alarm.kind is EventKind.INACTIVITY
    assert alarm.condition == "inactivity:-"
    assert alarm.device_id is None
    assert alarm.payload["due_at"] == (t + s(4 * H)).isoformat()
    assert alarm.payload["rule"] == "inactive_for"
    assert e.tick(t + s(10 * H)) == []
    out = feed(e, "door-1", "contact_open", True, t + s(11 * H))
    assert kinds(out) == ["inactivity_restore", "contact"]
    # 20:00: 2 h to the end of active hours, 2 h more from 07:00.
    assert e.next_deadline() == utc(2026, 1, 6, 9)


@pytest.mark.parametrize(
    ("prop", "device", "value"),
    [
        ("motion", "pir-1", True),
        ("contact_open", "door-1", True),
        ("sos", "sos-1", True),
        ("action", "band-1", "single"),
        ("action", "door-1", "toggle"),
    ],
)
def test_activity_sources(prop: str, device: str, value: object) -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    feed(e, device, prop, value, t + s(H))
    assert e.snapshot()["inactivity_due"] == (t + s(5 * H)).isoformat()


def test_not_activity_motion_false_retained_or_telemetry() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    feed(e, "pir-1", "motion", False, t + s(H))
    feed(e, "pir-1", "motion", True, t + s(H), retained=True)
    feed(e, "pir-1", "battery", 80, t + s(H))
    assert e.next_deadline() == t + s(4 * H)


def test_counted_only_inside_active_hours_across_midnight() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 20)  # 2 h before the end of active hours
    feed(e, "pir-1", "motion", True, t)
    due = utc(2026, 1, 6, 9)  # 2 h more from 07:00
    assert e.next_deadline() == due
    assert inactivity_events(sweep(e, t, due - s(60), timedelta(minutes=10))) == []
    (alarm,) = inactivity_events(e.tick(due))
    assert alarm.payload["due_at"] == due.isoformat()


def test_active_hours_crossing_midnight() -> None:
    e = inactive(active_hours="20:00-02:00", after_s=5 * H)
    t = utc(2026, 1, 5, 21)
    feed(e, "pir-1", "motion", True, t)
    # 5 h from 21:00 inside 20:00-02:00 is exactly 02:00, the window's end.
    assert e.next_deadline() == utc(2026, 1, 6, 2)
    e.tick(utc(2026, 1, 6, 2))
    feed(e, "pir-1", "motion", True, utc(2026, 1, 6, 1))  # time never runs backwards
    # Restored at 02:00 (the engine's clock); 18:00 of idle hours, then 5 h from 20:00.
    assert e.next_deadline() == utc(2026, 1, 7, 1)


def test_whole_day_window() -> None:
    e = inactive(active_hours="00:00-24:00", after_s=30)
    t = utc(2026, 1, 5, 23, 59, 50)
    feed(e, "pir-1", "motion", True, t)
    assert e.next_deadline() == t + s(30)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", (2026, 3, 29)),  # spring forward 02:00 -> 03:00
        ("Europe/Berlin", (2026, 10, 25)),  # fall back 03:00 -> 02:00
        ("Asia/Shanghai", (2026, 3, 29)),  # no DST
    ],
)
def test_dst_days_count_real_hours_inside_local_active_hours(
    zone: str, day: tuple[int, int, int]
) -> None:
    e = inactive(timezone=zone)
    eve = local(zone, day[0], day[1], day[2] - 1, 21, 0)
    feed(e, "pir-1", "motion", True, eve)
    due = local(zone, *day, 10, 0)  # 1 h before 22:00, 3 h after 07:00 local
    assert e.next_deadline() == due
    out = sweep(e, eve, due - s(60), timedelta(minutes=1))
    assert inactivity_events(out) == []
    (alarm,) = inactivity_events(e.tick(due))
    assert alarm.payload["due_at"] == due.isoformat()


@pytest.mark.parametrize("day", [(2026, 3, 29), (2026, 10, 25)])
def test_dst_day_whole_day_window_counts_real_seconds(day: tuple[int, int, int]) -> None:
    zone = "Europe/Berlin"
    e = inactive(timezone=zone, active_hours="00:00-24:00")
    start = local(zone, *day, 0, 30)
    feed(e, "pir-1", "motion", True, start)
    assert e.next_deadline() == start + s(4 * H)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", (2026, 3, 29)),
        ("Europe/Berlin", (2026, 10, 25)),
        ("Asia/Shanghai", (2026, 6, 2)),
    ],
)
def test_not_up_by_on_dst_days(zone: str, day: tuple[int, int, int]) -> None:
    e = inactive(timezone=zone, morning=True, after_s=12 * H)
    eve = local(zone, day[0], day[1], day[2] - 1, 21, 30)
    feed(e, "pir-1", "motion", True, eve)
    ten = local(zone, *day, 10, 0)
    out = sweep(e, eve, ten - s(60), timedelta(minutes=1))
    assert inactivity_events(out) == []
    (alarm,) = inactivity_events(e.tick(ten))
    assert alarm.payload["rule"] == "not_up_by"
    assert alarm.payload["due_at"] == ten.isoformat()


def test_not_up_by_satisfied_by_early_activity() -> None:
    zone = "Europe/Berlin"
    e = inactive(timezone=zone, morning=True, after_s=12 * H)
    feed(e, "pir-1", "motion", True, local(zone, 2026, 3, 28, 21))
    feed(e, "pir-1", "motion", True, local(zone, 2026, 3, 29, 5, 30))
    assert (
        inactivity_events(
            sweep(
                e,
                local(zone, 2026, 3, 29, 5, 31),
                local(zone, 2026, 3, 29, 12),
                timedelta(minutes=5),
            )
        )
        == []
    )


def test_not_up_by_needs_watching_since_night_end() -> None:
    e = inactive(morning=True, after_s=48 * H)
    e.tick(utc(2026, 1, 5, 9, 59))  # started a minute before not_up_by: no verdict today
    assert inactivity_events(e.tick(utc(2026, 1, 5, 10))) == []
    (alarm,) = inactivity_events(e.tick(utc(2026, 1, 6, 10)))
    assert alarm.payload["rule"] == "not_up_by"


def test_away_suspends_and_return_restarts() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    feed(e, "pir-1", "motion", True, t)
    e.set_mode("away", t + s(H))
    assert e.tick(t + s(30 * H)) == []
    e.set_mode("normal", t + s(30 * H))  # 2026-01-06 15:00
    assert e.next_deadline() == t + s(34 * H)


def test_going_away_restores_open_inactivity() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    e.tick(t + s(4 * H))
    out = e.set_mode("away", t + s(5 * H))
    assert kinds(out) == ["inactivity_restore"]
    assert events(out)[0].payload["reason"] == "away"


def test_activity_while_away_does_not_count() -> None:
    e = inactive()
    t = utc(2026, 1, 5, 9)
    e.tick(t)
    e.set_mode("away", t)
    feed(e, "pir-1", "motion", True, t + s(H))
    assert e.snapshot()["last_activity"] is None


def test_disabled() -> None:
    e = engine()
    e.tick(utc(2026, 1, 5, 9))
    assert e.tick(utc(2026, 1, 9, 9)) == []
