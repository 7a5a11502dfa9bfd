"""Life-safety alarms, restores, SOS presses, retained state syncs, unconfigured devices."""

from __future__ import annotations

import pytest

from contract.wire import Priority
from rules import ActiveCondition
from tests.rules.builders import T0, EventKind, alarm_kinds, engine, events, feed, kinds, s


@pytest.mark.parametrize(
    ("device", "prop", "kind", "priority"),
    [
        ("smoke-k", "smoke", "smoke", Priority.LIFE_SAFETY),
        ("gas-k", "gas", "gas", Priority.LIFE_SAFETY),
        ("co-1", "carbon_monoxide", "carbon_monoxide", Priority.LIFE_SAFETY),
        ("fall-1", "fall", "fall", Priority.LIFE_SAFETY),
        ("leak-b", "water_leak", "water_leak", Priority.HIGH),
    ],
)
def test_detector_alarm_and_restore(device: str, prop: str, kind: str, priority: Priority) -> None:
    e = engine()
    raised = events(feed(e, device, prop, True, T0))
    assert [x.kind.value for x in raised] == [kind]
    alarm = raised[0]
    assert alarm.condition == f"{kind}:{device}"
    assert alarm.device_id == device
    assert (alarm.priority or alarm.kind.priority) is priority
    assert alarm.payload["property"] == prop
    assert alarm.payload["value"] is True
    assert alarm.payload["role"]
    assert "device_name" in alarm.payload
    # Still active: nothing new; unknown (None): nothing.
    assert events(feed(e, device, prop, True, T0 + s(1))) == []
    assert events(feed(e, device, prop, None, T0 + s(2))) == []
    restored = events(feed(e, device, prop, False, T0 + s(3)))
    assert [x.kind.value for x in restored] == [f"{kind}_restore"]
    assert restored[0].condition == alarm.condition
    assert events(feed(e, device, prop, False, T0 + s(4))) == []
    # A new alarm after a restore is a new alarm.
    assert kinds(feed(e, device, prop, True, T0 + s(500))) == [kind]


def test_room_and_name_in_payload() -> None:
    e = engine()
    alarm = events(feed(e, "smoke-k", "smoke", True, T0))[0]
    assert alarm.payload["room"] == "kitchen"
    assert alarm.payload["device_name"] == "smoke-k"


def test_sos_press_is_an_alarm_and_repeats_collapse_within_30s() -> None:
    e = engine()
    assert kinds(feed(e, "sos-1", "sos", True, T0)) == ["sos"]
    assert kinds(feed(e, "sos-1", "sos", True, T0 + s(10))) == []
    assert kinds(feed(e, "sos-1", "sos", True, T0 + s(29))) == []
    assert e.snapshot()["counts"]["collapsed_presses"] == 2
    # After the window, unacknowledged: a new alarm (the old one is closed first, so alarms
    # and restores of the condition alternate).
    again = events(feed(e, "sos-1", "sos", True, T0 + s(31)))
    assert [x.kind.value for x in again] == ["sos_restore", "sos"]
    assert again[0].payload["reason"] == "pressed_again"


def test_sos_press_other_device_is_its_own_alarm() -> None:
    e = engine()
    assert kinds(feed(e, "sos-1", "sos", True, T0)) == ["sos"]
    assert kinds(feed(e, "band-1", "sos", True, T0 + s(1))) == ["sos"]


def test_sos_after_acknowledgement_is_a_new_alarm() -> None:
    e = engine()
    feed(e, "sos-1", "sos", True, T0)
    acked = e.acknowledge("sos:sos-1", T0 + s(5))
    assert kinds(acked) == ["sos_restore"]
    assert kinds(feed(e, "sos-1", "sos", True, T0 + s(6))) == ["sos"]


@pytest.mark.parametrize("action", ["emergency", "single", "double", "hold"])
def test_sos_actions_of_sos_roles(action: str) -> None:
    e = engine()
    assert kinds(feed(e, "band-1", "action", action, T0)) == ["sos"]


def test_action_of_other_role_or_other_action_is_not_sos() -> None:
    e = engine()
    assert kinds(feed(e, "door-1", "action", "single", T0)) == []
    assert kinds(feed(e, "band-1", "action", "brightness_up", T0)) == []


def test_configured_sos_actions() -> None:
    e = engine({"sos_actions": ["hold"]})
    assert kinds(feed(e, "band-1", "action", "single", T0)) == []
    assert kinds(feed(e, "band-1", "action", "hold", T0 + s(1))) == ["sos"]


# -- retained state syncs -----------------------------------------------------------------------


def test_retained_active_state_of_active_condition_raises_nothing() -> None:
    e = engine()
    feed(e, "smoke-k", "smoke", True, T0)
    assert events(feed(e, "smoke-k", "smoke", True, T0 + s(5), retained=True)) == []


def test_retained_active_state_of_seeded_condition_raises_nothing() -> None:
    e = engine()
    e.seed_active([ActiveCondition("smoke:smoke-k", EventKind.SMOKE, "smoke-k")])
    assert events(feed(e, "smoke-k", "smoke", True, T0, retained=True)) == []
    assert kinds(feed(e, "smoke-k", "smoke", False, T0 + s(1), retained=True)) == ["smoke_restore"]


def test_retained_active_state_never_reported_raises_the_alarm() -> None:
    e = engine()
    assert kinds(feed(e, "gas-k", "gas", True, T0, retained=True)) == ["gas"]


def test_inactive_state_of_inactive_condition_raises_nothing() -> None:
    e = engine()
    assert events(feed(e, "gas-k", "gas", False, T0, retained=True)) == []
    assert events(feed(e, "gas-k", "gas", False, T0 + s(1))) == []


def test_retained_press_raised_once_only() -> None:
    e = engine()
    assert kinds(feed(e, "sos-1", "sos", True, T0, retained=True)) == ["sos"]
    e.acknowledge("sos:sos-1", T0 + s(1))
    # The broker re-sends the same retained press at the next reconnect: not a new alarm.
    assert kinds(feed(e, "sos-1", "sos", True, T0 + s(100), retained=True)) == []


def test_seed_accepts_unknown_keys_harmlessly() -> None:
    e = engine()

    class Row:
        condition = "dispatch:credential"
        kind = "dispatch_credential"
        device_id = None

    e.seed_active([Row()])
    assert e.snapshot()["seeded_other"] == ["dispatch:credential"]
    assert kinds(feed(e, "smoke-k", "smoke", True, T0)) == ["smoke"]
    assert [a["condition"] for a in e.snapshot()["active"]] == ["smoke:smoke-k"]


def test_seeded_escalation_row_is_read_by_its_condition_key() -> None:
    e = engine()
    # The buffer's latest event of the condition was an escalation.
    e.seed_active([ActiveCondition("smoke:smoke-k", EventKind.ESCALATION, "smoke-k")])
    assert kinds(feed(e, "smoke-k", "smoke", False, T0)) == ["smoke_restore"]


# -- unconfigured devices -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "kind"),
    [
        ("smoke", "smoke"),
        ("gas", "gas"),
        ("carbon_monoxide", "carbon_monoxide"),
        ("fall", "fall"),
        ("water_leak", "water_leak"),
        ("sos", "sos"),
    ],
)
def test_unconfigured_life_safety_still_alarms(prop: str, kind: str) -> None:
    e = engine()
    alarm = events(feed(e, "0x00158d0001", prop, True, T0))
    assert [a.kind.value for a in alarm] == [kind]
    assert alarm[0].device_id is None
    assert alarm[0].payload["address"] == "0x00158d0001"
    assert alarm[0].condition == f"{kind}:0x00158d0001"
    if kind != "sos":
        assert kinds(feed(e, "0x00158d0001", prop, False, T0 + s(1))) == [f"{kind}_restore"]


def test_unconfigured_other_readings_are_counted_and_ignored() -> None:
    e = engine()
    assert feed(e, "0xdead", "motion", True, T0) == []
    assert feed(e, "0xdead", "battery", 3, T0) == []
    assert e.snapshot()["counts"]["unconfigured_readings"] == 2


def test_configured_device_found_by_native_address() -> None:
    e = engine()
    alarm = events(feed(e, "addr-smoke-k", "smoke", True, T0))
    assert alarm[0].device_id == "smoke-k"


def test_non_boolean_detector_value_is_ignored() -> None:
    e = engine()
    assert alarm_kinds(feed(e, "smoke-k", "smoke", "on", T0)) == []
    assert e.snapshot()["counts"]["ignored_readings"] == 1
