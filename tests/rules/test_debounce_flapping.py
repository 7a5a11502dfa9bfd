"""delay_on debounce and the flapping rule."""

from __future__ import annotations

from tests.rules.builders import T0, engine, events, feed, kinds, s


def test_delay_on_fires_at_onset_plus_delay() -> None:
    e = engine({"delay_on": {"water_leak": 10}})
    assert feed(e, "leak-b", "water_leak", True, T0) == []
    assert e.snapshot()["pending"] == {"water_leak:leak-b": (T0 + s(10)).isoformat()}
    assert e.next_deadline() == T0 + s(10)
    assert feed(e, "leak-b", "water_leak", True, T0 + s(5)) == []
    assert e.tick(T0 + s(9)) == []
    (alarm,) = events(e.tick(T0 + s(10)))
    assert alarm.kind.value == "water_leak"
    assert alarm.payload["due_at"] == (T0 + s(10)).isoformat()
    assert alarm.payload["delay_on_s"] == 10
    assert kinds(feed(e, "leak-b", "water_leak", False, T0 + s(20))) == ["water_leak_restore"]


def test_delay_on_cancelled_if_it_clears_first() -> None:
    e = engine({"delay_on": {"water_leak": 10}})
    feed(e, "leak-b", "water_leak", True, T0)
    assert feed(e, "leak-b", "water_leak", False, T0 + s(9)) == []
    assert e.tick(T0 + s(100)) == []
    assert e.snapshot()["pending"] == {}


def test_delay_on_fired_by_a_later_reading_without_tick() -> None:
    e = engine({"delay_on": {"smoke": 5}})
    feed(e, "smoke-k", "smoke", True, T0)
    # The timer runs first, at its own due time, then the reading.
    assert kinds(feed(e, "smoke-k", "smoke", False, T0 + s(7))) == ["smoke", "smoke_restore"]


def test_delay_on_per_device_overrides_kind() -> None:
    e = engine({"delay_on": {"water_leak": 10}, "devices": {"leak-k": {"delay_on_s": 0}}})
    assert kinds(feed(e, "leak-k", "water_leak", True, T0)) == ["water_leak"]
    assert kinds(feed(e, "leak-b", "water_leak", True, T0)) == []


def test_delayed_alarm_sounds_sirens_at_due_time() -> None:
    e = engine({"delay_on": {"smoke": 3}})
    assert feed(e, "smoke-k", "smoke", True, T0) == []
    out = e.tick(T0 + s(3))
    assert [type(d).__name__ for d in out] == ["EmitEvent", "LocalAction", "LocalAction"]


def flap(e, times: int, start_s: float = 0, period_s: float = 4) -> list:  # type: ignore[no-untyped-def]
    out = []
    t = start_s
    for _ in range(times):
        out += feed(e, "leak-b", "water_leak", True, T0 + s(t))
        out += feed(e, "leak-b", "water_leak", False, T0 + s(t + period_s / 2))
        t += period_s
    return out


def test_flapping_suppresses_after_max_alarms_and_raises_one_trouble() -> None:
    e = engine()
    out = flap(e, 8)  # 8 alarms within 32 s
    ks = kinds(out)
    assert ks.count("water_leak") == 5
    assert ks.count("water_leak_restore") == 5
    assert ks.count("flapping") == 1
    flapping = next(x for x in events(out) if x.kind.value == "flapping")
    assert flapping.condition == "flapping:leak-b"
    assert flapping.device_id == "leak-b"
    assert e.snapshot()["counts"]["suppressed_alarms"] == 3
    # Quiet for a window after the last change (restore at 30 s): flapping_restore at 90 s.
    assert e.next_deadline() == T0 + s(30 + 60)
    assert kinds(e.tick(T0 + s(90))) == ["flapping_restore"]
    assert kinds(feed(e, "leak-b", "water_leak", True, T0 + s(200))) == ["water_leak"]


def test_condition_active_when_flapping_ends_is_raised_then() -> None:
    e = engine()
    flap(e, 5)
    assert kinds(feed(e, "leak-b", "water_leak", True, T0 + s(21))) == ["flapping"]
    # Stuck on: held back, but raised when the flapping trouble ends.
    out = e.tick(T0 + s(81))
    assert kinds(out) == ["flapping_restore", "water_leak"]
    alarm = events(out)[1]
    assert alarm.payload["after_flapping"] is True
    assert kinds(feed(e, "leak-b", "water_leak", False, T0 + s(90))) == ["water_leak_restore"]


def test_life_safety_alarm_after_a_quiet_window_is_never_suppressed() -> None:
    e = engine()
    out = []
    for i in range(5):
        out += feed(e, "smoke-k", "smoke", True, T0 + s(i * 2))
        out += feed(e, "smoke-k", "smoke", False, T0 + s(i * 2 + 1))
    # The last restore was at 9 s; more than a window later a new alarm goes through.
    assert kinds(feed(e, "smoke-k", "smoke", True, T0 + s(70)))[0] == "smoke"


def test_flapping_configurable() -> None:
    e = engine({"flapping": {"max_alarms": 2, "window_s": 10}})
    ks = kinds(flap(e, 3, period_s=2))
    assert ks.count("water_leak") == 2
    assert ks.count("flapping") == 1
