"""The parser on its own: merged state in, one reading per change out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from contract.wire import RawFrame, Reading
from drivers.base import data_frame, link_frame
from drivers.zigbee2mqtt import Zigbee2MqttParser
from tests.fixtures.zigbee import spec

BASE = "zigbee2mqtt"
SAMPLES = json.loads((Path(__file__).parent / "samples" / "wire_samples.json").read_text())


def frame(topic: str, payload: Any, *, retained: bool = False) -> RawFrame:
    if not isinstance(payload, bytes):
        payload = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return data_frame("zigbee", f"{BASE}/{topic}", payload, retained=retained)


def values(readings: list[Reading]) -> list[tuple[str, str, Any]]:
    """Changes only: the ``seen`` check-ins of messages that changed nothing are tested apart."""
    return [(r.device, r.property, r.value) for r in readings if r.property != "seen"]


def make(*specs: Any, **kwargs: Any) -> Zigbee2MqttParser:
    return Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE, devices=specs, **kwargs)


def test_wire_samples_give_the_documented_readings() -> None:
    parser = make()
    parser.parse(link_frame("zigbee", True))
    for sample in SAMPLES["messages"]:
        got = values(parser.parse(frame(sample["topic"], sample["payload"])))
        expected = [tuple(e) for e in sample.get("expect", [])]
        assert got == expected, sample["source"]
    assert parser.stats.rejected == 0
    assert [e.status for e in parser.events if e.type == "device_interview"] == [
        "started",
        "successful",
        "failed",
    ]


def test_inventory_from_the_documented_bridge_devices() -> None:
    parser = make()
    parser.parse(frame("bridge/devices", SAMPLES["bridge_devices"], retained=True))
    assert set(parser.inventory) == {"0x00158d00018255df", "0x00169a00022256da"}
    plug = parser.inventory["0x00158d00018255df"]
    assert (plug.friendly_name, plug.model, plug.vendor) == ("my_plug", "ZNCZ02LM", "Xiaomi")
    assert plug.exposed_properties == ["state"]
    assert parser.inventory["0x00169a00022256da"].model == ""  # unsupported: no definition


def test_state_becomes_changes_only() -> None:
    parser = make(spec("smoke", "kitchen_smoke", "smoke"))
    state = {"smoke": False, "battery": 100, "linkquality": 90}
    first = parser.parse(frame("kitchen_smoke", state))
    assert values(first) == [
        ("smoke", "smoke", False),
        ("smoke", "battery", 100.0),
        ("smoke", "signal", 90.0),
    ]
    same = {"smoke": False, "battery": 100, "linkquality": 95}
    assert values(parser.parse(frame("kitchen_smoke", same))) == []
    alarm = parser.parse(frame("kitchen_smoke", {**same, "smoke": True}))
    assert values(alarm) == [("smoke", "smoke", True)]
    assert values(parser.parse(frame("kitchen_smoke", {**same, "smoke": True}))) == []
    restore = parser.parse(frame("kitchen_smoke", {**same, "smoke": False}))
    assert values(restore) == [("smoke", "smoke", False)]


def test_null_is_neither_alarm_nor_restore() -> None:
    parser = make(spec("leak", "bath", "water_leak"))
    assert values(parser.parse(frame("bath", {"water_leak": True}))) == [
        ("leak", "water_leak", True)
    ]
    assert values(parser.parse(frame("bath", {"water_leak": None}))) == []
    # Still in alarm as far as anyone knows: the same value again is not a new alarm...
    assert values(parser.parse(frame("bath", {"water_leak": True}))) == []
    # ...and a null first sight remembers nothing that would fake a later transition.
    assert values(parser.parse(frame("other", {"water_leak": None}))) == []
    assert values(parser.parse(frame("other", {"water_leak": False}))) == [
        ("other", "water_leak", False)
    ]


def test_contact_true_means_closed() -> None:
    parser = make(spec("door", "front", "door"))
    assert values(parser.parse(frame("front", {"contact": True}))) == [
        ("door", "contact_open", False)
    ]
    assert values(parser.parse(frame("front", {"contact": False}))) == [
        ("door", "contact_open", True)
    ]


def test_occupancy_and_presence_are_motion() -> None:
    parser = make()
    got = parser.parse(frame("hall", {"occupancy": True, "presence": True}))
    assert values(got) == [("hall", "motion", True)]
    assert values(parser.parse(frame("hall", {"occupancy": False}))) == [("hall", "motion", False)]


def test_repeated_sos_presses_are_each_a_reading() -> None:
    parser = make(spec("sos", "0x00158d0001a2b301", "sos_button"))
    parser.parse(
        frame(
            "bridge/devices",
            [{"ieee_address": "0x00158d0001a2b301", "friendly_name": "bedside"}],
        )
    )
    state = {"battery": 90, "linkquality": 100}
    presses = []
    for _ in range(3):
        presses += parser.parse(frame("bedside", {**state, "action": "single"}))
    # What the button said, each time, and nothing more: the rules decide what is an SOS.
    assert [v for v in values(presses) if v[1] not in ("battery", "signal")] == [
        ("sos", "action", "single")
    ] * 3
    assert presses[-1].extra["ieee"] == "0x00158d0001a2b301"
    assert values(parser.parse(frame("bedside", {**state, "action": ""}))) == []
    released = parser.parse(frame("bedside", {**state, "action": "off"}))
    assert values(released) == [("sos", "action", "off")]


def test_the_devices_own_sos_flag_is_an_sos_when_it_turns_true() -> None:
    parser = make(spec("pendant", "pendant", "pendant"))
    assert values(parser.parse(frame("pendant", {"sos": False}))) == []
    assert values(parser.parse(frame("pendant", {"sos": True}))) == [("pendant", "sos", True)]
    assert values(parser.parse(frame("pendant", {"sos": True}))) == []
    assert values(parser.parse(frame("pendant", {"sos": False}))) == []
    assert values(parser.parse(frame("pendant", {"sos": True}))) == [("pendant", "sos", True)]


def test_action_of_a_non_sos_role_is_not_an_sos() -> None:
    parser = make(spec("switch", "wall", "other"))
    assert values(parser.parse(frame("wall", {"action": "emergency"}))) == [
        ("switch", "action", "emergency")
    ]


def test_retained_state_known_is_nothing_and_unknown_is_flagged() -> None:
    parser = make(spec("gas", "kitchen_gas", "gas"))
    live = parser.parse(frame("kitchen_gas", {"gas": True}))
    assert [r.retained for r in live] == [False]
    assert parser.parse(frame("kitchen_gas", {"gas": True}, retained=True)) == []
    restarted = make(spec("gas", "kitchen_gas", "gas"))
    stale = restarted.parse(frame("kitchen_gas", {"gas": True}, retained=True))
    assert values(stale) == [("gas", "gas", True)]
    assert stale[0].retained is True


def test_retained_action_is_not_a_press() -> None:
    parser = make(spec("sos", "button", "sos_button"))
    assert parser.parse(frame("button", {"action": "single"}, retained=True)) == []


def test_signal_only_on_a_meaningful_change() -> None:
    parser = make(signal_delta=10)
    got = []
    for lqi in (100, 104, 96, 109, 110, 101, 99):
        got += [r for r in parser.parse(frame("dev", {"linkquality": lqi})) if r.property != "seen"]
    assert [r.value for r in got] == [100.0, 110.0, 99.0]
    assert all(r.extra["unit"] == "lqi" for r in got)


def test_availability_both_forms_and_bridge_link() -> None:
    parser = make(spec("pir", "hall", "motion"))
    assert values(parser.parse(frame("hall/availability", "offline"))) == [
        ("pir", "available", False)
    ]
    assert parser.parse(frame("hall/availability", '{"state":"offline"}')) == []
    assert values(parser.parse(frame("hall/availability", '{"state":"online"}'))) == [
        ("pir", "available", True)
    ]
    assert values(parser.parse(link_frame("zigbee", True))) == [("zigbee", "link", True)]
    assert values(parser.parse(frame("bridge/state", '{"state":"offline"}'))) == [
        ("zigbee", "link", False)
    ]
    assert parser.parse(link_frame("zigbee", False, "broker gone")) == []  # already down
    assert parser.parse(link_frame("zigbee", True)) == []  # bridge still offline
    assert values(parser.parse(frame("bridge/state", "online"))) == [("zigbee", "link", True)]


def test_device_leave_of_a_configured_device_is_unavailable() -> None:
    parser = make(spec("door", "0x00158d0001a2b306", "door"))
    leave = {
        "type": "device_leave",
        "data": {"ieee_address": "0x00158d0001a2b306", "friendly_name": "0x00158d0001a2b306"},
    }
    assert values(parser.parse(frame("bridge/event", leave))) == [("door", "available", False)]


def test_own_commands_and_cleared_retained_state_are_ignored() -> None:
    parser = make()
    parser.parse(frame("dev", {"smoke": True}))
    assert parser.parse(frame("dev/set", {"warning": {"mode": "emergency"}})) == []
    assert parser.parse(frame("dev/set/warning", "x")) == []
    assert parser.parse(frame("dev", b"")) == []  # removal clears the retained state
    assert values(parser.parse(frame("dev", {"smoke": True}))) == [("dev", "smoke", True)]
    assert parser.stats.rejected == 0


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("dev", b"{not json", "not JSON"),
        ("dev", b"[1, 2]", "device state is not a JSON object"),
        ("dev", b'{"smoke": "yes"}', "smoke is not a boolean"),
        ("dev", b'{"battery": 1e400}', "battery is not a number in range"),
        ("dev", b'{"battery": NaN}', "not JSON"),
        ("dev", b'{"linkquality": 9999}', "linkquality is not a number in range"),
        ("dev", b'{"action": 5}', "action is not text"),
        ("dev/availability", b"maybe", "availability: not an online/offline state"),
        ("bridge/devices", b'{"a": 1}', "bridge/devices: bridge/devices is not a list"),
        ("bridge/event", b'{"type": "x"}', "bridge/event: bridge/event without type and data"),
        ("x" * 200, b"{}", "device name empty or too long"),
        ("dev", b"[" * 100_000, "not JSON"),
    ],
)
def test_bad_input_is_counted_with_its_reason(topic: str, payload: bytes, reason: str) -> None:
    parser = make()
    assert parser.parse(frame(topic, payload)) == []
    assert parser.stats.rejected_by_reason == {reason: 1}


def test_foreign_topics_are_rejected_and_logged_once() -> None:
    parser = make()
    foreign = RawFrame(
        driver="zigbee",
        source="elsewhere/x",
        payload=b"{}",
        wall_time=datetime.now(UTC),
        mono_time=0.0,
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            assert parser.parse(foreign) == []
    assert parser.stats.rejected_by_reason == {"topic outside the base topic": 3}
    assert [e["reason"] for e in logs if e["event"] == "zigbee_frame_rejected"] == [
        "topic outside the base topic"
    ]


def test_a_bad_field_does_not_hide_the_good_ones() -> None:
    parser = make(spec("smoke", "s", "smoke"))
    got = parser.parse(frame("s", {"smoke": True, "battery": "lots"}))
    assert values(got) == [("smoke", "smoke", True)]
    assert parser.stats.rejected_by_reason == {"battery is not a number in range": 1}


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import drivers.zigbee2mqtt.parser as parser_module

    monkeypatch.setattr(parser_module, "MAX_DEVICES", 3)
    parser = make()
    for n in range(5):
        parser.parse(frame(f"dev{n}", {"smoke": False}))
    assert parser.stats.rejected_by_reason == {"too many devices": 2}
    # Devices already known keep working.
    assert values(parser.parse(frame("dev0", {"smoke": True}))) == [("dev0", "smoke", True)]


def test_a_message_that_changes_nothing_is_a_check_in() -> None:
    parser = make()
    first = parser.parse(frame("kitchen_smoke", {"smoke": False, "battery": 90}))
    assert "seen" not in [r.property for r in first]
    again = parser.parse(frame("kitchen_smoke", {"smoke": False, "battery": 90}))
    assert [(r.property, r.value) for r in again] == [("seen", True)]
    # A retained state sync at reconnect is not a check-in: the device said nothing new.
    assert parser.parse(frame("kitchen_smoke", {"smoke": False}, retained=True)) == []
