"""Walk-test and away modes."""

from __future__ import annotations

import pytest

from tests.rules.builders import T0, actions, engine, events, feed, kinds, s


def test_test_mode_gives_one_test_event_per_reading_and_no_alarms() -> None:
    e = engine()
    assert e.set_mode("test", T0) == []
    out = feed(e, "smoke-k", "smoke", True, T0 + s(1))
    assert actions(out) == []
    (ev,) = events(out)
    assert ev.kind.value == "test"
    assert ev.test is True
    assert ev.device_id == "smoke-k"
    assert ev.payload["property"] == "smoke"
    assert ev.payload["value"] is True
    assert ev.payload["would_raise"] == "smoke"
    (motion,) = events(feed(e, "pir-1", "motion", True, T0 + s(2)))
    assert motion.payload["would_raise"] is None
    (band,) = events(feed(e, "band-1", "action", "hold", T0 + s(3)))
    assert band.payload["would_raise"] == "sos"
    (batt,) = events(feed(e, "pir-1", "battery", 5, T0 + s(4)))
    assert batt.payload["would_raise"] == "low_battery"
    assert e.tick(T0 + s(600)) == []  # no escalation of test readings
    assert e.snapshot()["active"] == []


def test_leaving_test_mode_raises_no_stale_alarms() -> None:
    e = engine()
    e.set_mode("test", T0)
    feed(e, "smoke-k", "smoke", True, T0 + s(1))
    feed(e, "gas-k", "gas", True, T0 + s(2))
    feed(e, "gas-k", "gas", False, T0 + s(3))
    assert e.set_mode("normal", T0 + s(4)) == []
    assert e.tick(T0 + s(600)) == []
    # A false from a detector that never alarmed outside test mode is no restore.
    assert kinds(feed(e, "smoke-k", "smoke", False, T0 + s(601))) == []
    assert kinds(feed(e, "smoke-k", "smoke", True, T0 + s(602))) == ["smoke"]


def test_supervision_continues_in_test_mode() -> None:
    e = engine({"supervision": {"default_s": 0, "siren": 100}}, supervision=True)
    e.set_mode("test", T0)
    offline = events(e.tick(T0 + s(100)))
    assert sorted(x.condition for x in offline) == [
        "device_offline:siren-1",
        "device_offline:siren-2",
    ]
    out = events(feed(e, "siren-1", "battery", 90, T0 + s(101)))
    assert [x.kind.value for x in out] == ["device_offline_restore", "test"]


def test_unavailable_still_raised_in_test_mode() -> None:
    e = engine()
    e.set_mode("test", T0)
    assert kinds(feed(e, "pir-1", "available", False, T0)) == ["device_offline", "test"]
    assert kinds(feed(e, "pir-1", "available", True, T0 + s(1))) == [
        "device_offline_restore",
        "test",
    ]


def test_driver_link_faults_still_raised_in_test_mode() -> None:
    e = engine()
    e.set_mode("test", T0)
    assert kinds(feed(e, "zigbee", "link", False, T0, driver="zigbee")) == ["driver_fault"]


def test_unconfigured_life_safety_ignored_in_test_mode() -> None:
    e = engine()
    e.set_mode("test", T0)
    assert feed(e, "0xabc", "smoke", True, T0) == []


def test_away_mode_keeps_life_safety_alarms() -> None:
    e = engine()
    e.set_mode("away", T0)
    assert kinds(feed(e, "smoke-k", "smoke", True, T0 + s(1))) == ["smoke"]


def test_unknown_mode_refused() -> None:
    e = engine()
    with pytest.raises(ValueError, match="unknown mode"):
        e.set_mode("party", T0)  # type: ignore[arg-type]
    assert e.mode == "normal"


def test_snapshot_is_json() -> None:
    import json

    e = engine()
    feed(e, "smoke-k", "smoke", True, T0)
    e.set_mode("away", T0 + s(1))
    snap = json.loads(json.dumps(e.snapshot()))
    assert snap["mode"] == "away"
    (active,) = snap["active"]
    assert active == {
        "kind": "smoke",
        "device_id": "smoke-k",
        "condition": "smoke:smoke-k",
        "since": T0.isoformat(),
        "detail": active["detail"],
    }
    assert active["detail"]["room"] == "kitchen"


def test_test_mode_keeps_contact_state_current() -> None:
    # Door opened in normal mode, closed during a walk test, opened again after it: the
    # re-opening is a real change, so it is reported and counts as activity.
    e = engine({"inactivity": {"after_s": 4 * 3600, "not_up_by": ""}}, inactivity=True)
    assert kinds(feed(e, "door-1", "contact_open", True, T0)) == ["contact"]
    e.set_mode("test", T0 + s(60))
    (tested,) = events(feed(e, "door-1", "contact_open", False, T0 + s(120)))
    assert tested.test is True
    e.set_mode("normal", T0 + s(180))
    out = events(feed(e, "door-1", "contact_open", True, T0 + s(240)))
    assert [(x.kind.value, x.payload["open"]) for x in out] == [("contact", True)]
    assert e.snapshot()["last_activity"] == (T0 + s(240)).isoformat()
    assert e.next_deadline() == T0 + s(240 + 4 * 3600)


def test_activity_during_a_walk_test_is_not_lost() -> None:
    e = engine({"inactivity": {"after_s": 4 * 3600, "not_up_by": ""}}, inactivity=True)
    feed(e, "pir-1", "motion", True, T0)
    e.set_mode("test", T0 + s(60))
    feed(e, "pir-1", "motion", False, T0 + s(90))
    feed(e, "pir-1", "motion", True, T0 + s(120))
    assert e.snapshot()["last_activity"] == (T0 + s(120)).isoformat()
