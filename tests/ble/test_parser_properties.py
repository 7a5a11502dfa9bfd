"""Property tests: no input makes the parser raise; what the simulator sends, it reads back."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ble.frames import encode_advertisement
from firmware_sim.ble import (
    BATTERY,
    BTHOME_UUID,
    BUTTON,
    DOOR,
    GAS,
    MOISTURE,
    MOTION,
    SMOKE,
    TAMPER,
    BthomeDevice,
    advertisement,
)
from tests.ble.helpers import adv_frame, make_parser, raw_frame, spec

KEY = "231d39c1d7cc1ab1aee224cd096db932"
PLAIN = "A4:C1:38:8D:18:B2"
SECRET = "54:48:E6:8F:80:A5"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fresh_parser():  # type: ignore[no-untyped-def]
    return make_parser(
        spec("plain", PLAIN, "pendant"),
        spec("secret", SECRET, "smoke", bind_key=KEY),
        spec("band", "11:22:33:44:55:66", "wristband", gatt=True),
    )


@FAST
@given(
    data=st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    address=st.sampled_from([PLAIN, SECRET, "11:22:33:44:55:66", "77:88:99:AA:BB:CC"]),
)
def test_arbitrary_service_data_never_raises_and_every_refusal_is_counted(
    data: list[bytes], address: str
) -> None:
    parser = _fresh_parser()
    for i, service_data in enumerate(data):
        adv = advertisement(address, service_data={BTHOME_UUID: service_data})
        readings = parser.parse(adv_frame(adv, at=i))
        assert all(r.driver == "ble" for r in readings)
    stats = parser.stats
    assert stats.frames == len(data)
    assert stats.rejected == sum(stats.rejected_by_reason.values())
    assert stats.rejected <= stats.frames
    assert all(reason and len(reason) < 64 for reason in stats.rejected_by_reason)
    # Refusals are named ones; none is an exception the parser had to catch.
    assert not [r for r in stats.rejected_by_reason if r.startswith("internal_error")]


@FAST
@given(
    header=st.sampled_from([0x40, 0x41, 0x42, 0x43, 0x44, 0x45]),
    body=st.binary(max_size=30),
)
def test_bytes_behind_a_valid_header_never_raise(header: int, body: bytes) -> None:
    parser = _fresh_parser()
    for address in (PLAIN, SECRET):
        adv = advertisement(address, service_data={BTHOME_UUID: bytes([header]) + body})
        parser.parse(adv_frame(adv))
    assert parser.stats.frames == 2
    assert not [r for r in parser.stats.rejected_by_reason if r.startswith("internal_error")]


@FAST
@given(payload=st.binary(max_size=200))
def test_arbitrary_frame_payload_never_raises(payload: bytes) -> None:
    parser = _fresh_parser()
    readings = parser.parse(raw_frame(payload))
    assert parser.stats.frames == 1
    try:
        is_object = isinstance(json.loads(payload), dict)
    except ValueError:
        is_object = False
    if not is_object:
        assert readings == []
        assert parser.stats.rejected == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@FAST
@given(
    kind=st.sampled_from(["adv", "notify", "presence", "x"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "rssi",
                "name",
                "service_data",
                "manufacturer_data",
                "service_uuids",
                "tx_power",
                "char",
                "data",
                "state",
                "reason",
                "silent_s",
            ]
        ),
        json_values,
    ),
)
def test_arbitrary_json_frames_never_raise(kind: str, fields: dict[str, object]) -> None:
    parser = _fresh_parser()
    payload = json.dumps({"t": kind, "address": "11:22:33:44:55:66", **fields}).encode()
    parser.parse(raw_frame(payload))
    assert parser.stats.frames == 1


binary_objects = st.sampled_from([SMOKE, GAS, MOISTURE, MOTION, TAMPER, DOOR])
PROPERTY = {
    SMOKE: "smoke",
    GAS: "gas",
    MOISTURE: "water_leak",
    MOTION: "motion",
    TAMPER: "tamper",
    DOOR: "contact_open",
}


@FAST
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("binary"), binary_objects, st.booleans()),
            st.tuples(st.just("battery"), st.just(BATTERY), st.integers(0, 100)),
            st.tuples(st.just("press"), st.just(BUTTON), st.sampled_from(["press", "long_press"])),
        ),
        min_size=1,
        max_size=12,
    ),
    encrypted=st.booleans(),
    repeats=st.integers(0, 3),
)
def test_what_the_simulator_sends_the_parser_reads_back(
    steps: list[tuple[str, int, object]], encrypted: bool, repeats: int
) -> None:
    address = SECRET if encrypted else PLAIN
    device = BthomeDevice(address, bind_key=KEY if encrypted else None)
    parser = make_parser(
        spec("dev", address, "pendant", **({"bind_key": KEY} if encrypted else {}))
    )
    state: dict[str, object] = {}
    presses = 0
    at = 0.0
    for kind, object_id, value in steps:
        if kind == "press":
            adv = device.press(str(value))
        else:
            adv = device.packet((object_id, int(value)))  # type: ignore[call-overload]
        readings = [r for r in parser.parse(adv_frame(adv, at=at)) if r.property != "signal"]
        for _ in range(repeats):  # repeats of the same packet add nothing
            at += 0.1
            assert parser.parse(adv_frame(device.repeat(), at=at)) == []
        at += 1.0
        if kind == "press":
            presses += 1
            action = {"press": "single", "long_press": "long"}[str(value)]
            assert [(r.property, r.value) for r in readings] == [("action", action)]
            continue
        prop = "battery" if kind == "battery" else PROPERTY[object_id]
        expected = float(value) if kind == "battery" else bool(value)  # type: ignore[arg-type]
        changed = state.get(prop) != expected or prop not in state
        state[prop] = expected
        assert [(r.property, r.value) for r in readings] == ([(prop, expected)] if changed else [])
    assert parser.stats.rejected == 0
    assert parser.duplicates == repeats * len(steps)
    assert presses == sum(1 for s in steps if s[0] == "press")


def test_encode_advertisement_is_what_the_parser_decodes() -> None:
    payload = encode_advertisement(
        address="a4:c1:38:8d:18:b2",
        rssi=-61,
        name="SBBT-002C",
        service_data={BTHOME_UUID.upper(): b"\x40\x3a\x01"},
        manufacturer_data={2985: b"\x01\x02"},
        service_uuids=[BTHOME_UUID],
        tx_power=None,
    )
    parser = make_parser(spec("dev", PLAIN, "sos_button"))
    readings = parser.parse(raw_frame(payload))
    assert [(r.device, r.property, r.value) for r in readings] == [
        ("dev", "action", "single"),
        ("dev", "signal", -61.0),
    ]
