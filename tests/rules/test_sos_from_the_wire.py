"""Which button press is an SOS: the rules decide it, from what the device reported.

Frames as each radio delivers them go through the driver's own parser and the rule engine
(``rules.decider.Decider``), as in the gateway. A parser reports the action (``double``, RFLink's
``on``, a BTHome ``long`` press); ``sos_actions`` of the home's rules decides, for devices of an
SOS role, which of them is a call for help. A home that narrows the list is obeyed exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.devices import ROLES, SOS_ROLES, DeviceSpec
from contract.wire import EventKind, RawFrame
from drivers.ble import BleDriver
from drivers.ble.frames import BTHOME_UUID, encode_advertisement, encode_notification
from drivers.rflink import RflinkDriver
from drivers.zigbee2mqtt import Zigbee2MqttDriver
from firmware_sim.catalogue import ZIGBEE
from rules import EmitEvent, RuleEngine, load_rules
from rules.decider import Decided, Decider

T0 = datetime(2026, 3, 11, 1, 14, tzinfo=UTC)

ZIGBEE_NAME = "bedside_button"
RF_ADDRESS = "Kaku:41"
BLE_ADDRESS = "A4:C1:38:8D:18:B2"
GATT_ADDRESS = "FF:FF:10:2A:4B:01"
NOTIFY_CHARACTERISTIC = "0000ffe1-0000-1000-8000-00805f9b34fb"

#: BTHome's button event codes (object 0x3A) and the action the BLE parser reports for each.
BTHOME_BUTTON = {
    0x01: "single",
    0x02: "double",
    0x03: "triple",
    0x04: "long",
    0x05: "long_double",
    0x06: "long_triple",
    0x80: "hold",
    0x81: "release",
}


def home(role: str) -> list[DeviceSpec]:
    """One button of ``role`` on every driver."""
    return [
        DeviceSpec(id="zb-button", driver="zigbee", address=ZIGBEE_NAME, role=role),
        DeviceSpec(id="rf-button", driver="rf", address=RF_ADDRESS, role=role),
        DeviceSpec(id="ble-button", driver="ble", address=BLE_ADDRESS, role=role),
        DeviceSpec(
            id="gatt-band",
            driver="ble",
            address=GATT_ADDRESS,
            role=role,
            options={"gatt": True, "press_values": ["01"]},
        ),
    ]


def decider(rules: dict[str, Any] | None = None, *, role: str = "sos_button") -> Decider:
    """The gateway's decider over :func:`home`, with the home's ``[rules]`` table."""
    table: dict[str, Any] = {
        **(rules or {}),
        "inactivity": {"enabled": False},
        "supervision": {"default_s": 0},
    }
    devices = home(role)
    on = {d: [s for s in devices if s.driver == d] for d in ("zigbee", "rf", "ble")}
    parsers = {
        "zigbee": Zigbee2MqttDriver("zigbee", {}, on["zigbee"]).create_parser(),
        "rf": RflinkDriver("rf", {"port": "socket://127.0.0.1:1"}, on["rf"]).create_parser(),
        "ble": BleDriver("ble", {}, on["ble"]).create_parser(),
    }
    return Decider(RuleEngine(load_rules(table), devices), parsers)


def _frame(driver: str, source: str, payload: bytes, at: float) -> RawFrame:
    return RawFrame(
        driver=driver,
        source=source,
        payload=payload,
        wall_time=T0 + timedelta(seconds=at),
        mono_time=1000.0 + at,
    )


def zigbee_press(action: str, *, at: float = 0.0) -> RawFrame:
    """An HS1EB / TS0215A button's message as Zigbee2MQTT publishes it (merged state)."""
    payload = {"action": action, "battery": 100, "linkquality": 120, "voltage": 2900}
    return _frame("zigbee", f"zigbee2mqtt/{ZIGBEE_NAME}", json.dumps(payload).encode(), at)


def zigbee_state(state: dict[str, Any], *, at: float = 0.0) -> RawFrame:
    return _frame("zigbee", f"zigbee2mqtt/{ZIGBEE_NAME}", json.dumps(state).encode(), at)


def rflink_line(cmd: str, *, at: float = 0.0, seq: int = 6) -> RawFrame:
    """A KAKU remote's line as the RFLink receiver prints it (protocol reference)."""
    return _frame("rf", "/dev/ttyACM0", f"20;{seq:02X};Kaku;ID=41;SWITCH=1;CMD={cmd};".encode(), at)


def bthome_press(event: int, *, at: float = 0.0, packet_id: int = 0x52) -> RawFrame:
    """A Shelly BLU Button1 advertisement (bthome-ble's sample ``40005201643a01``).

    BTHome v2, not encrypted: packet id, battery 100 %, one button event.
    """
    data = bytes([0x40, 0x00, packet_id, 0x01, 0x64, 0x3A, event])
    payload = encode_advertisement(
        address=BLE_ADDRESS,
        rssi=-70,
        name=None,
        service_data={BTHOME_UUID: data},
        manufacturer_data={},
        service_uuids=[],
        tx_power=None,
    )
    return _frame("ble", BLE_ADDRESS, payload, at)


def gatt_press(*, at: float = 0.0) -> RawFrame:
    """A wristband's button: a notification on its configured characteristic."""
    payload = encode_notification(
        address=GATT_ADDRESS, characteristic=NOTIFY_CHARACTERISTIC, data=b"\x01"
    )
    return _frame("ble", GATT_ADDRESS, payload, at)


def sos_of(decided: list[Decided]) -> list[str | None]:
    """Device ids of the SOS alarms among the decisions."""
    return [
        d.decision.device_id
        for d in decided
        if isinstance(d.decision, EmitEvent) and d.decision.kind is EventKind.SOS
    ]


# -- a narrowed sos_actions is obeyed, on every driver ---------------------------------------


def test_zigbee_double_press_is_no_sos_when_only_emergency_is() -> None:
    d = decider({"sos_actions": ["emergency"]})
    assert sos_of(d.frame(zigbee_press("double"))) == []
    assert sos_of(d.frame(zigbee_press("single", at=60))) == []
    assert sos_of(d.frame(zigbee_press("emergency", at=120))) == ["zb-button"]


def test_rflink_on_is_no_sos_unless_the_rules_say_so() -> None:
    narrowed = decider({"sos_actions": ["emergency"]})
    assert sos_of(narrowed.frame(rflink_line("ON"))) == []
    listed = decider({"sos_actions": ["on"]})
    assert sos_of(listed.frame(rflink_line("ON"))) == ["rf-button"]


def test_bthome_double_press_is_no_sos_unless_the_rules_say_so() -> None:
    narrowed = decider({"sos_actions": ["emergency"]})
    assert sos_of(narrowed.frame(bthome_press(0x02))) == []
    listed = decider({"sos_actions": ["double"]})
    assert sos_of(listed.frame(bthome_press(0x02))) == ["ble-button"]


def test_gatt_press_is_no_sos_unless_the_rules_say_so() -> None:
    narrowed = decider({"sos_actions": ["emergency"]})
    assert sos_of(narrowed.frame(gatt_press())) == []
    listed = decider({"sos_actions": ["single"]})
    assert sos_of(listed.frame(gatt_press())) == ["gatt-band"]


def test_the_devices_own_sos_flag_is_an_sos_whatever_the_actions() -> None:
    d = decider({"sos_actions": []})
    assert sos_of(d.frame(zigbee_state({"sos": False}))) == []
    assert sos_of(d.frame(zigbee_state({"sos": True}, at=1))) == ["zb-button"]


# -- the default pack keeps every press the kits' buttons make an SOS --------------------------


def _catalogue_presses() -> list[tuple[str, str]]:
    """(model, action) of every press a Zigbee button of the simulators' catalogue reports.

    A released button or a zone back to normal (``off``, ``*release``, ``stop``) is no press.
    """
    return [
        (model.model, action)
        for model in ZIGBEE.values()
        for expose in model.exposes
        if expose["name"] == "action"
        for action in expose["values"]
        if action not in ("off", "stop") and not action.endswith("release")
    ]


@pytest.mark.parametrize(("model", "action"), _catalogue_presses())
def test_default_pack_zigbee_press_is_an_sos(model: str, action: str) -> None:
    assert sos_of(decider().frame(zigbee_press(action))) == ["zb-button"], model


@pytest.mark.parametrize("event", sorted(set(BTHOME_BUTTON) - {0x81}))
def test_default_pack_bthome_press_is_an_sos(event: int) -> None:
    assert sos_of(decider().frame(bthome_press(event))) == ["ble-button"]


@pytest.mark.parametrize("cmd", ["ON", "ALLON"])
def test_default_pack_rflink_on_is_an_sos(cmd: str) -> None:
    assert sos_of(decider().frame(rflink_line(cmd))) == ["rf-button"]


def test_default_pack_gatt_press_is_an_sos() -> None:
    assert sos_of(decider().frame(gatt_press())) == ["gatt-band"]


@pytest.mark.parametrize(
    "frame",
    [zigbee_press("off"), rflink_line("OFF"), bthome_press(0x81)],
    ids=["zigbee-off", "rflink-off", "bthome-release"],
)
def test_default_pack_a_release_is_no_sos(frame: RawFrame) -> None:
    assert sos_of(decider().frame(frame)) == []


def test_catalogue_has_sos_buttons_to_check() -> None:
    assert {action for _, action in _catalogue_presses()} >= {"single", "emergency"}


# -- the property: an SOS iff the action is listed, for SOS roles only -------------------------

_words = st.sampled_from(
    ["single", "double", "triple", "hold", "long", "emergency", "on", "off", "release", "sos"]
)
#: An action word as a device reports it (the rules refuse a blank or padded one in the list).
_zigbee_action = st.one_of(
    _words, st.text(min_size=1, max_size=64).filter(lambda a: a == a.strip() != "")
)
_rflink_action = st.one_of(
    st.sampled_from(["on", "allon", "off"]),
    _words,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=16),
)
_any_action = st.one_of(_words, _zigbee_action)


@st.composite
def _case(draw: st.DrawFn, action: st.SearchStrategy[Any]) -> tuple[Any, list[str], str]:
    """(action, sos_actions, role); the list holds the action about half the time.

    The action is what goes on the wire (a BTHome event code, or the action's text).
    """
    chosen = draw(action)
    listed = draw(st.lists(_any_action, max_size=6))
    if draw(st.booleans()):
        word = BTHOME_BUTTON[chosen] if isinstance(chosen, int) else chosen
        listed.insert(draw(st.integers(0, len(listed))), word)
    # SOS roles more often than their share of ROLES: they are what the property is about.
    role = draw(st.one_of(st.sampled_from(sorted(SOS_ROLES)), st.sampled_from(sorted(ROLES))))
    return chosen, listed, role


def _expected(action: str, listed: list[str], role: str, device: str) -> list[str | None]:
    return [device] if role in SOS_ROLES and action in listed else []


@settings(max_examples=150, deadline=None)
@given(case=_case(_zigbee_action))
def test_zigbee_action_is_an_sos_iff_listed(case: tuple[str, list[str], str]) -> None:
    action, listed, role = case
    d = decider({"sos_actions": listed}, role=role)
    got = sos_of(d.frame(zigbee_press(action)))
    assert got == _expected(action, listed, role, "zb-button")


@settings(max_examples=150, deadline=None)
@given(case=_case(_rflink_action))
def test_rflink_command_is_an_sos_iff_listed(case: tuple[str, list[str], str]) -> None:
    action, listed, role = case
    d = decider({"sos_actions": listed}, role=role)
    got = sos_of(d.frame(rflink_line(action.upper())))
    assert got == _expected(action, listed, role, "rf-button")


@settings(max_examples=150, deadline=None)
@given(case=_case(st.sampled_from(sorted(BTHOME_BUTTON))))
def test_bthome_press_is_an_sos_iff_listed(case: tuple[Any, list[str], str]) -> None:
    event, listed, role = case
    d = decider({"sos_actions": listed}, role=role)
    got = sos_of(d.frame(bthome_press(event)))
    assert got == _expected(BTHOME_BUTTON[event], listed, role, "ble-button")
