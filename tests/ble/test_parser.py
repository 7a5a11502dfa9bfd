"""The BLE parser: real BTHome samples, dedup, encryption, state changes, GATT and presence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from drivers.ble.frames import encode_notification, encode_presence
from firmware_sim.ble import BTHOME_UUID, BthomeDevice, advertisement
from tests.ble.helpers import adv_frame, make_parser, props, raw_frame, spec

SAMPLES = json.loads((Path(__file__).parent / "fixtures" / "bthome_samples.json").read_text())[
    "samples"
]
KEY = "231d39c1d7cc1ab1aee224cd096db932"
PENDANT = "A4:C1:38:8D:18:B2"
SMOKE = "54:48:E6:8F:80:A5"


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["name"] for s in SAMPLES])
def test_real_bthome_samples(sample: dict[str, Any]) -> None:
    options = {"bind_key": sample["bind_key"]} if "bind_key" in sample else {}
    parser = make_parser(spec("dev1", sample["address"].lower(), sample["role"], **options))
    adv = advertisement(
        sample["address"],
        rssi=-70,
        service_data={BTHOME_UUID: bytes.fromhex(sample["service_data"])},
    )
    readings = parser.parse(adv_frame(adv))

    if "rejected" in sample:
        assert readings == []
        assert parser.stats.rejected_by_reason == {sample["rejected"]: 1}
        return
    assert parser.stats.rejected == 0
    got = [r for r in readings if r.property != "signal"]
    assert [(r.property, r.value) for r in got] == [
        (want["property"], want["value"]) for want in sample["readings"]
    ]
    for reading, want in zip(got, sample["readings"], strict=True):
        assert reading.device == "dev1"
        for key, value in want.get("extra", {}).items():
            assert reading.extra[key] == value, (key, reading.extra)
    # Every accepted advertisement says how strong it was heard.
    assert [(r.value, r.extra) for r in readings if r.property == "signal"] == [
        (-70.0, {"unit": "dBm"})
    ]


def test_repeated_advertisement_is_one_press_and_each_new_packet_is_another() -> None:
    parser = make_parser(spec("pendant", PENDANT, "pendant"))
    button = BthomeDevice(PENDANT)
    first = button.press()
    assert props(parser.parse(adv_frame(first, at=0.0))) == [("pendant", "action", "single")]
    for i in range(1, 5):  # the device repeats the packet; the radio hears it again
        assert parser.parse(adv_frame(button.repeat(), at=0.1 * i)) == []
    assert parser.duplicates == 4
    assert props(parser.parse(adv_frame(button.press(), at=1.0))) == [
        ("pendant", "action", "single")
    ]
    assert props(parser.parse(adv_frame(button.press("double_press"), at=1.5))) == [
        ("pendant", "action", "double")
    ]
    assert parser.stats.rejected == 0


def test_same_packet_id_long_after_is_a_new_packet_but_a_stream_of_repeats_is_not() -> None:
    parser = make_parser(spec("pendant", PENDANT, "pendant"), duplicate_window_s=30)
    button = BthomeDevice(PENDANT)
    press = button.press()
    assert props(parser.parse(adv_frame(press, at=0)))
    # Repeats every 20 s keep the window sliding: still the same packet after a minute.
    for at in (20, 40, 60):
        assert parser.parse(adv_frame(press, at=at)) == []
    # Silence longer than the window: the device restarted its counter at the same id.
    assert props(parser.parse(adv_frame(press, at=100))) == [("pendant", "action", "single")]


def test_without_packet_id_identical_bytes_are_repeats_only_briefly() -> None:
    parser = make_parser(spec("pendant", PENDANT, "pendant"), repeat_window_s=2)
    button = BthomeDevice(PENDANT, with_packet_id=False)
    press = button.press()
    assert props(parser.parse(adv_frame(press, at=0)))
    assert parser.parse(adv_frame(press, at=0.5)) == []
    # A second press of a device without packet ids, seconds later, is a new press.
    assert props(parser.parse(adv_frame(button.press(), at=5))) == [("pendant", "action", "single")]


def test_encrypted_right_key_decodes_and_repeats_are_dropped() -> None:
    parser = make_parser(spec("smoke1", SMOKE, "smoke", bind_key=KEY))
    sensor = BthomeDevice(SMOKE, bind_key=KEY)
    assert props(parser.parse(adv_frame(sensor.smoke(True), at=0))) == [("smoke1", "smoke", True)]
    assert parser.parse(adv_frame(sensor.repeat(), at=0.2)) == []
    assert parser.duplicates == 1
    assert props(parser.parse(adv_frame(sensor.smoke(False), at=1))) == [("smoke1", "smoke", False)]
    assert parser.stats.rejected == 0


def test_encrypted_wrong_key_is_a_counted_rejection_with_a_clear_reason() -> None:
    parser = make_parser(spec("smoke1", SMOKE, "smoke", bind_key=KEY))
    impostor = BthomeDevice(SMOKE, bind_key="00112233445566778899aabbccddeeff")
    with capture_logs() as logs:
        for at in range(3):
            assert parser.parse(adv_frame(impostor.smoke(True), at=at)) == []
    assert parser.stats.rejected_by_reason == {"decryption_failed_wrong_bind_key": 3}
    # Logged once, not once per advertisement.
    rejected = [e for e in logs if e["event"] == "ble_frame_rejected"]
    assert [e["reason"] for e in rejected] == ["decryption_failed_wrong_bind_key"]
    assert "231d" not in json.dumps(logs, default=str)  # the key never reaches the log
    # A forged packet must not move the replay window: the real device still gets through.
    real = BthomeDevice(SMOKE, bind_key=KEY, counter=5)
    assert props(parser.parse(adv_frame(real.smoke(True), at=10))) == [("smoke1", "smoke", True)]


def test_replayed_counter_is_refused() -> None:
    parser = make_parser(spec("smoke1", SMOKE, "smoke", bind_key=KEY))
    sensor = BthomeDevice(SMOKE, bind_key=KEY, counter=1000)
    old = sensor.smoke(True)
    assert props(parser.parse(adv_frame(old, at=0)))
    assert props(parser.parse(adv_frame(sensor.smoke(False), at=1)))
    # Someone recorded the alarm packet and plays it back later.
    assert parser.parse(adv_frame(old, at=60)) == []
    assert parser.stats.rejected_by_reason == {"replayed_counter": 1}


def test_counter_restart_after_battery_change_is_accepted() -> None:
    parser = make_parser(spec("smoke1", SMOKE, "smoke", bind_key=KEY))
    before = BthomeDevice(SMOKE, bind_key=KEY, counter=5000)
    assert props(parser.parse(adv_frame(before.smoke(True), at=0)))
    after = BthomeDevice(SMOKE, bind_key=KEY, counter=0, packet_id=200)
    assert props(parser.parse(adv_frame(after.smoke(False), at=100))) == [
        ("smoke1", "smoke", False)
    ]


def test_real_counter_sequence_from_bthome_ble() -> None:
    parser = make_parser(spec("ht", SMOKE, "inactivity", bind_key=KEY))

    def send(hex_data: str, at: float) -> list[Any]:
        adv = advertisement(SMOKE, service_data={BTHOME_UUID: bytes.fromhex(hex_data)})
        return parser.parse(adv_frame(adv, at=at))

    send("41e445f3c9962b332211006c7c4519", 0)  # counter 1122867
    send("41723d3035fb88322211009e7414c0", 1)  # counter 1122866: older
    send("413e932cc7175f342211005538 76af".replace(" ", ""), 2)  # counter 1122868
    assert parser.stats.rejected_by_reason == {"replayed_counter": 1}


def test_states_are_reported_on_change_events_every_time() -> None:
    parser = make_parser(spec("hall", PENDANT, "door"))
    door = BthomeDevice(PENDANT)
    assert props(parser.parse(adv_frame(door.door(True), at=0))) == [("hall", "contact_open", True)]
    # The device re-advertises its state with new packet ids: no new reading.
    assert parser.parse(adv_frame(door.door(True), at=60)) == []
    assert props(parser.parse(adv_frame(door.packet((0x1A, 0), (0x01, 55)), at=61))) == [
        ("hall", "contact_open", False),
        ("hall", "battery", 55.0),
    ]
    assert parser.parse(adv_frame(door.battery(55), at=62)) == []


def test_every_button_reports_its_actions_whatever_its_role() -> None:
    # Which action of which device is an SOS is for the rules to decide.
    parser = make_parser(spec("remote", PENDANT, "remote"), spec("band", SMOKE, "wristband"))
    remote, band = BthomeDevice(PENDANT), BthomeDevice(SMOKE)
    assert props(parser.parse(adv_frame(remote.press("double_press")))) == [
        ("remote", "action", "double")
    ]
    assert props(parser.parse(adv_frame(band.press("hold_press")))) == [("band", "action", "hold")]
    assert props(parser.parse(adv_frame(band.press("hold_release"), at=1))) == [
        ("band", "action", "release")
    ]


def test_signal_only_on_meaningful_change() -> None:
    parser = make_parser(spec("hall", PENDANT, "door"), signal_delta_db=10)
    door = BthomeDevice(PENDANT)

    def signal_at(rssi: int, at: float) -> list[Any]:
        door.rssi = rssi
        readings = parser.parse(adv_frame(door.door(True), at=at))
        return [(r.value, r.extra["unit"]) for r in readings if r.property == "signal"]

    assert signal_at(-60, 0) == [(-60.0, "dBm")]
    assert signal_at(-65, 1) == []
    assert signal_at(-69, 2) == []
    assert signal_at(-71, 3) == [(-71.0, "dBm")]
    assert signal_at(-62, 4) == []
    assert signal_at(-60, 5) == [(-60.0, "dBm")]


def test_unconfigured_device_is_read_under_its_address() -> None:
    parser = make_parser(spec("hall", PENDANT, "door"))
    stranger = BthomeDevice("11:22:33:44:55:66")
    assert props(parser.parse(adv_frame(stranger.smoke(True)))) == [
        ("11:22:33:44:55:66", "smoke", True)
    ]


def test_gatt_notification_is_a_press_each_time() -> None:
    parser = make_parser(spec("band", PENDANT, "wristband", gatt=True, press_values=["01"]))
    char = "0000ffe1-0000-1000-8000-00805f9b34fb"
    for at in (0, 0.5):
        frame = raw_frame(
            encode_notification(address=PENDANT, characteristic=char, data=b"\x01"), at=at
        )
        readings = parser.parse(frame)
        assert props(readings) == [("band", "action", "single")]
        assert readings[0].extra == {"via": "gatt", "value": "01"}
    other = encode_notification(address=PENDANT, characteristic=char, data=b"\x02")
    assert parser.parse(raw_frame(other)) == []
    wrong_char = encode_notification(address=PENDANT, characteristic="0000ffe2", data=b"\x01")
    assert parser.parse(raw_frame(wrong_char)) == []
    assert parser.stats.rejected_by_reason == {
        "notification_not_a_press_value": 1,
        "notification_on_other_characteristic": 1,
    }


def test_presence_becomes_available_on_change_only() -> None:
    parser = make_parser(spec("band", PENDANT, "wristband", gatt=True))

    def presence(state: str, **kw: Any) -> list[Any]:
        payload = encode_presence(address=PENDANT, state=state, **kw)  # type: ignore[arg-type]
        return [(r.property, r.value, r.extra) for r in parser.parse(raw_frame(payload))]

    assert presence("connected") == [("available", True, {})]
    assert presence("disconnected", reason="connection lost") == []
    assert presence("unreachable", reason="not found", silent_s=121.26) == [
        ("available", False, {"reason": "not found", "silent_s": 121.3})
    ]
    assert presence("unreachable", reason="not found", silent_s=200) == []
    assert presence("connected") == [("available", True, {})]


def test_supervised_advertiser_is_available_again_when_heard() -> None:
    parser = make_parser(spec("hall", PENDANT, "door", offline_after_s=600))
    door = BthomeDevice(PENDANT)
    silent = encode_presence(address=PENDANT, state="silent", silent_s=601)
    assert props(parser.parse(adv_frame(door.door(False), at=0))) == [
        ("hall", "contact_open", False),
        ("hall", "available", True),
    ]
    assert props(parser.parse(raw_frame(silent, at=601))) == [("hall", "available", False)]
    assert props(parser.parse(adv_frame(door.door(False), at=700))) == [("hall", "available", True)]


def test_link_frames_report_the_driver_link() -> None:
    parser = make_parser()
    up = parser.parse(raw_frame(b"up", kind="link"))
    down = parser.parse(raw_frame(b"down:adapter gone", kind="link"))
    assert [(r.device, r.property, r.value) for r in up + down] == [
        ("ble", "link", True),
        ("ble", "link", False),
    ]
    assert down[0].extra == {"reason": "adapter gone"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"t": "adv"}', "bad_address"),
        (b'{"t": "what", "address": "A4:C1:38:8D:18:B2"}', "unknown_frame_type"),
        (b'{"t": "adv", "address": "AA:BB", "service_data": {"x": "zz"}}', "bad_service_data_hex"),
        (b'{"t": "adv", "address": "AA:BB", "rssi": "loud"}', "bad_rssi"),
        (b'{"t": "adv", "address": "AA:BB"}', "no_bthome_service_data"),
        (b'{"t": "presence", "address": "AA:BB", "state": "asleep"}', "bad_presence_state"),
    ],
)
def test_malformed_frames_are_counted_by_reason(payload: bytes, reason: str) -> None:
    parser = make_parser(spec("hall", PENDANT, "door"))
    assert parser.parse(raw_frame(payload)) == []
    assert parser.stats.as_dict() == {
        "frames": 1,
        "readings": 0,
        "rejected": 1,
        "rejected_by_reason": {reason: 1},
    }


def test_an_unexpected_failure_inside_is_counted_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import drivers.ble.parser as parser_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(parser_module, "decode_bthome", broken)
    parser = make_parser(spec("hall", PENDANT, "door"))
    with capture_logs() as logs:
        assert parser.parse(adv_frame(BthomeDevice(PENDANT).door(True))) == []
    assert parser.stats.rejected_by_reason == {"internal_error_RuntimeError": 1}
    assert logs[0]["error"] == "RuntimeError('bug')"
