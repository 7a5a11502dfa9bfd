"""Sirens, escalation and acknowledgement."""

from __future__ import annotations

from contract.wire import Priority
from tests.rules.builders import HOME, T0, actions, dev, engine, events, feed, kinds, s


def commands(decisions: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(a.command.device, a.command.action) for a in actions(decisions)]


def test_siren_on_for_smoke_gas_co_and_off_when_all_restored() -> None:
    e = engine()
    assert commands(feed(e, "smoke-k", "smoke", True, T0)) == [
        ("siren-1", "siren_on"),
        ("siren-2", "siren_on"),
    ]
    assert commands(feed(e, "co-1", "carbon_monoxide", True, T0 + s(1))) == [
        ("siren-1", "siren_on"),
        ("siren-2", "siren_on"),
    ]
    assert commands(feed(e, "smoke-k", "smoke", False, T0 + s(2))) == []
    assert commands(feed(e, "co-1", "carbon_monoxide", False, T0 + s(3))) == [
        ("siren-1", "siren_off"),
        ("siren-2", "siren_off"),
    ]


def test_no_siren_for_water_leak_fall_or_sos() -> None:
    e = engine()
    assert commands(feed(e, "leak-b", "water_leak", True, T0)) == []
    assert commands(feed(e, "fall-1", "fall", True, T0)) == []
    assert commands(feed(e, "sos-1", "sos", True, T0)) == []


def test_no_sirens_configured_no_siren_actions() -> None:
    e = engine(devices=[d for d in HOME if d.role != "siren"])
    assert commands(feed(e, "smoke-k", "smoke", True, T0)) == []


def test_escalation_at_exactly_alarm_plus_60s_and_every_60s() -> None:
    e = engine()
    feed(e, "sos-1", "sos", True, T0)
    assert e.next_deadline() == T0 + s(60)
    assert e.tick(T0 + s(59)) == []
    out = e.tick(T0 + s(60))
    esc = events(out)
    assert [x.kind.value for x in esc] == ["escalation"]
    assert esc[0].device_id == "sos-1"
    assert esc[0].condition == "sos:sos-1"
    assert esc[0].payload["escalates"] == "sos:sos-1"
    assert esc[0].payload["attempt"] == 1
    assert esc[0].payload["due_at"] == (T0 + s(60)).isoformat()
    assert commands(out) == [
        ("siren-1", "siren_on"),
        ("siren-2", "siren_on"),
        ("secondary", "notify"),
    ]
    notify = actions(out)[-1].command
    assert notify.params["condition"] == "sos:sos-1"
    assert notify.params["attempt"] == 1
    assert notify.params["room"] == "bedroom"
    second = events(e.tick(T0 + s(120)))
    assert [x.payload["attempt"] for x in second] == [2]


def test_acknowledge_stops_escalation_and_acks_the_sos_device() -> None:
    e = engine()
    feed(e, "band-1", "action", "emergency", T0)
    e.tick(T0 + s(60))
    out = e.acknowledge("sos:band-1", T0 + s(70))
    assert commands(out) == [("band-1", "ack")]
    assert kinds(out) == ["sos_restore"]
    assert e.tick(T0 + s(600)) == []
    assert e.next_deadline() is None


def test_acknowledge_smoke_stops_escalation_keeps_alarm_no_device_ack() -> None:
    e = engine()
    feed(e, "smoke-k", "smoke", True, T0)
    out = e.acknowledge("smoke:smoke-k", T0 + s(10))
    assert out == []
    assert e.tick(T0 + s(600)) == []
    assert [a["condition"] for a in e.snapshot()["active"]] == ["smoke:smoke-k"]
    assert kinds(feed(e, "smoke-k", "smoke", False, T0 + s(700))) == ["smoke_restore"]


def test_restore_stops_escalation() -> None:
    e = engine()
    feed(e, "gas-k", "gas", True, T0)
    feed(e, "gas-k", "gas", False, T0 + s(30))
    assert e.tick(T0 + s(600)) == []


def test_high_priority_alarm_is_not_escalated() -> None:
    e = engine()
    feed(e, "leak-b", "water_leak", True, T0)
    assert e.tick(T0 + s(600)) == []


def test_acknowledge_unknown_condition_is_harmless() -> None:
    e = engine()
    assert e.acknowledge("smoke:nope", T0) == []
    assert e.acknowledge("dispatch:credential", T0) == []


def test_repeat_press_after_window_keeps_escalation_schedule() -> None:
    e = engine()
    feed(e, "sos-1", "sos", True, T0)
    feed(e, "sos-1", "sos", True, T0 + s(45))  # a new alarm, but escalation stays due at +60
    esc = events(e.tick(T0 + s(60)))
    assert [x.payload["attempt"] for x in esc] == [1]


def test_escalation_configurable() -> None:
    e = engine({"escalate_after_s": 90, "escalate_every_s": 30})
    feed(e, "fall-1", "fall", True, T0)
    out = events(e.tick(T0 + s(150)))
    assert [x.payload["due_at"] for x in out] == [
        (T0 + s(90)).isoformat(),
        (T0 + s(120)).isoformat(),
        (T0 + s(150)).isoformat(),
    ]


def test_escalation_of_unconfigured_device() -> None:
    e = engine(devices=[dev("siren-1", "siren")])
    feed(e, "0xabc", "smoke", True, T0)
    out = e.tick(T0 + s(60))
    assert [x.device_id for x in events(out)] == [None]
    assert commands(out) == [("siren-1", "siren_on"), ("secondary", "notify")]


def test_confirmed_water_leak_is_life_safety() -> None:
    e = engine()
    first = events(feed(e, "leak-b", "water_leak", True, T0))[0]
    assert first.priority is None
    assert "confirmed" not in first.payload
    second = events(feed(e, "leak-k", "water_leak", True, T0 + s(30)))[0]
    assert second.payload["confirmed"] is True
    assert second.payload["confirmed_by"] == "leak-b"
    assert second.priority is Priority.LIFE_SAFETY
    # Confirmed, it is escalated like any life-safety alarm.
    assert [x.condition for x in events(e.tick(T0 + s(90)))] == ["water_leak:leak-k"]


def test_no_confirmation_outside_the_window() -> None:
    e = engine({"confirm_window_s": 60})
    feed(e, "smoke-k", "smoke", True, T0)
    second = events(feed(e, "smoke-h", "smoke", True, T0 + s(61)))[0]
    assert "confirmed" not in second.payload
