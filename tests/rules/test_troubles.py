"""Troubles with restores, supervision, and telemetry."""

from __future__ import annotations

from rules import ActiveCondition
from tests.rules.builders import T0, EventKind, dev, engine, events, feed, kinds, s


def test_tamper_and_restore() -> None:
    e = engine()
    assert kinds(feed(e, "smoke-k", "tamper", True, T0)) == ["tamper"]
    assert kinds(feed(e, "smoke-k", "tamper", True, T0 + s(1))) == []
    assert kinds(feed(e, "smoke-k", "tamper", False, T0 + s(2))) == ["tamper_restore"]


def test_low_battery_from_flag() -> None:
    e = engine()
    assert kinds(feed(e, "pir-1", "battery_low", True, T0)) == ["low_battery"]
    assert kinds(feed(e, "pir-1", "battery_low", False, T0 + s(1))) == ["low_battery_restore"]


def test_low_battery_from_percent_with_telemetry_on_crossing() -> None:
    e = engine()
    assert kinds(feed(e, "pir-1", "battery", 50, T0)) == ["battery"]
    # Telemetry at most hourly.
    assert kinds(feed(e, "pir-1", "battery", 40, T0 + s(60))) == []
    # Crossing below 15 % reports at once, with the trouble.
    assert kinds(feed(e, "pir-1", "battery", 14, T0 + s(120))) == ["battery", "low_battery"]
    assert kinds(feed(e, "pir-1", "battery", 13, T0 + s(180))) == []
    assert kinds(feed(e, "pir-1", "battery", 80, T0 + s(240))) == ["battery", "low_battery_restore"]
    assert kinds(feed(e, "pir-1", "battery", 79, T0 + s(3840))) == ["battery"]


def test_battery_threshold_configurable() -> None:
    e = engine({"battery_low_percent": 30})
    assert kinds(feed(e, "pir-1", "battery", 25, T0)) == ["battery", "low_battery"]


def test_available_false_and_back() -> None:
    e = engine()
    off = events(feed(e, "door-1", "available", False, T0))
    assert [x.kind for x in off] == [EventKind.DEVICE_OFFLINE]
    assert off[0].condition == "device_offline:door-1"
    assert kinds(feed(e, "door-1", "available", False, T0 + s(1))) == []
    assert kinds(feed(e, "door-1", "available", True, T0 + s(2))) == ["device_offline_restore"]


def test_link_fault_is_a_driver_trouble() -> None:
    e = engine()
    down = events(feed(e, "zigbee", "link", False, T0, driver="zigbee", reason="broker gone"))
    assert [(x.kind, x.device_id, x.condition) for x in down] == [
        (EventKind.DRIVER_FAULT, None, "driver_fault:zigbee")
    ]
    assert down[0].payload["reason"] == "broker gone"
    assert kinds(feed(e, "zigbee", "link", False, T0 + s(1), driver="zigbee")) == []
    assert kinds(feed(e, "zigbee", "link", True, T0 + s(2), driver="zigbee")) == [
        "driver_fault_restore"
    ]


def test_seeded_driver_fault_restored_by_link_up() -> None:
    e = engine()
    e.seed_active([ActiveCondition("driver_fault:zigbee", EventKind.DRIVER_FAULT, None)])
    assert kinds(feed(e, "zigbee", "link", True, T0, driver="zigbee")) == ["driver_fault_restore"]


# -- supervision --------------------------------------------------------------------------------


def test_supervision_fires_at_exactly_last_seen_plus_interval() -> None:
    e = engine({"supervision": {"default_s": 3600, "siren": 600}}, supervision=True)
    e.tick(T0)  # the engine starts watching
    feed(e, "pir-1", "motion", False, T0 + s(100))
    assert e.next_deadline() == T0 + s(600)  # the sirens, silent since start
    fired = events(e.tick(T0 + s(600)))
    assert sorted(x.condition for x in fired) == [
        "device_offline:siren-1",
        "device_offline:siren-2",
    ]
    assert fired[0].payload["due_at"] == (T0 + s(600)).isoformat()
    assert fired[0].payload["reason"] == "silent"
    out = e.tick(T0 + s(3600 + 99))
    assert not any(x.condition == "device_offline:pir-1" for x in events(out))
    out = events(e.tick(T0 + s(3600 + 100)))
    assert "device_offline:pir-1" in [x.condition for x in out]
    # Any reading restores.
    assert kinds(feed(e, "pir-1", "battery", 90, T0 + s(4000))) == [
        "device_offline_restore",
        "battery",
    ]


def test_supervision_interval_from_device_options_and_rules_table() -> None:
    devices = [dev("pir-1", "motion", checkin_interval_s=120), dev("door-1", "door")]
    e = engine(
        {"supervision": {"default_s": 0}, "devices": {"door-1": {"checkin_interval_s": 60}}},
        devices,
        supervision=True,
    )
    e.tick(T0)
    assert [x.condition for x in events(e.tick(T0 + s(60)))] == ["device_offline:door-1"]
    assert [x.condition for x in events(e.tick(T0 + s(120)))] == ["device_offline:pir-1"]


def test_supervision_zero_means_unsupervised() -> None:
    e = engine({"supervision": {"default_s": 0, "siren": 0}}, supervision=True)
    e.tick(T0)
    assert e.next_deadline() is None
    assert e.tick(T0 + s(10 * 86400)) == []


def test_supervision_default_intervals_by_role() -> None:
    e = engine(supervision=True)
    e.tick(T0)
    assert e.next_deadline() == T0 + s(1800)  # sirens: 30 min
    out = events(e.tick(T0 + s(3 * 3600)))
    offline = {x.device_id for x in out if x.kind is EventKind.DEVICE_OFFLINE}
    assert "pir-1" in offline
    assert "smoke-k" in offline


def test_supervision_independent_of_tick_splitting() -> None:
    a = engine({"supervision": {"default_s": 100}}, supervision=True)
    b = engine({"supervision": {"default_s": 100}}, supervision=True)
    a.tick(T0)
    b.tick(T0)
    out_a = []
    for i in range(1, 30):
        out_a += a.tick(T0 + s(i * 7))
    assert out_a == b.tick(T0 + s(29 * 7))


# -- telemetry ----------------------------------------------------------------------------------


def test_motion_event_when_motion_goes_true() -> None:
    e = engine()
    assert kinds(feed(e, "pir-1", "motion", True, T0)) == ["motion"]
    assert kinds(feed(e, "pir-1", "motion", True, T0 + s(1))) == []
    assert kinds(feed(e, "pir-1", "motion", False, T0 + s(2))) == []
    assert kinds(feed(e, "pir-1", "motion", True, T0 + s(3))) == ["motion"]


def test_contact_event_on_change() -> None:
    e = engine()
    first = events(feed(e, "door-1", "contact_open", True, T0))
    assert [x.kind.value for x in first] == ["contact"]
    assert first[0].payload["open"] is True
    assert kinds(feed(e, "door-1", "contact_open", True, T0 + s(1))) == []
    assert kinds(feed(e, "door-1", "contact_open", False, T0 + s(2))) == ["contact"]


def test_retained_first_contact_state_is_not_an_event() -> None:
    e = engine()
    assert kinds(feed(e, "door-1", "contact_open", False, T0, retained=True)) == []
    assert kinds(feed(e, "door-1", "contact_open", True, T0 + s(1))) == ["contact"]


def test_other_properties_are_ignored_and_counted() -> None:
    e = engine()
    assert feed(e, "pir-1", "signal", -70, T0) == []
    assert feed(e, "gas-k", "gas_concentration", 3.2, T0) == []
    assert e.snapshot()["counts"]["ignored_readings"] == 2


def test_a_seen_check_in_keeps_supervision_quiet_and_is_no_walk_test_tick() -> None:
    e = engine({"supervision": {"default_s": 3600}}, [dev("smoke-k", "smoke")], supervision=True)
    feed(e, "smoke-k", "smoke", False, T0)
    # Heard from every 50 minutes with nothing new: never offline.
    for n in range(1, 6):
        assert "device_offline" not in kinds(feed(e, "smoke-k", "seen", True, T0 + s(3000 * n)))
        assert "device_offline" not in kinds(e.tick(T0 + s(3000 * n + 2999)))
    e.set_mode("test", T0 + s(16_000))
    assert kinds(feed(e, "smoke-k", "seen", True, T0 + s(16_001))) == []
