"""The parser's fast paths decide exactly what the plain paths they shortcut decide.

A replay runs tens of thousands of frames a second through the parser, so the parser keeps a
JSON decoder, takes in-range JSON numbers without the full number check, and keeps each native
name's device id and extra, and remembers what the payloads it saw last mean. Each is checked
here against the plain function it stands for.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.parsing import FrameRejected
from drivers.base import data_frame
from drivers.zigbee2mqtt import Zigbee2MqttParser
from drivers.zigbee2mqtt.bridge import BridgeMessageError, decode_json
from drivers.zigbee2mqtt.parser import _json, _number
from drivers.zigbee2mqtt.state import MEMO_SIZE, DecodedState, StateDecoder, decode_state
from tests.fixtures.zigbee import spec

BASE = "zigbee2mqtt"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-5, max_value=100_005),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1, max_value=100_001),
    st.booleans(),
    st.none(),
    st.text(alphabet="0123456789.-eEinfa ", max_size=12),
)
json_values = st.recursive(
    st.one_of(numbers, st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
payloads = st.one_of(
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    json_values.map(lambda v: b"\xef\xbb\xbf" + json.dumps(v).encode()),  # a UTF-8 BOM
    st.binary(max_size=80),
    st.sampled_from([b"NaN", b'{"a": Infinity}', b"-Infinity", b"[" * 3000, b"", b" {} "]),
)


def _plain_decode(payload: bytes) -> tuple[str, Any]:
    try:
        return ("ok", decode_json(payload))
    except BridgeMessageError as exc:
        return ("refused", exc.reason)


def _fast_decode(payload: bytes) -> tuple[str, Any]:
    try:
        return ("ok", _json(data_frame("zigbee", f"{BASE}/x", payload)))
    except FrameRejected as exc:
        return ("refused", exc.reason)


@SETTINGS
@given(payloads)
def test_kept_decoder_decodes_and_refuses_as_decode_json(payload: bytes) -> None:
    plain, fast = _plain_decode(payload), _fast_decode(payload)
    # NaN never equals itself, so compare the JSON text of what was decoded.
    assert json.dumps(fast, sort_keys=True) == json.dumps(plain, sort_keys=True)


RANGES = {"battery": ("battery", 0.0, 100.0), "voltage": ("voltage", 0.0, 100_000.0)}


@SETTINGS
@given(st.sampled_from(sorted(RANGES)), numbers)
def test_numbers_read_as_the_full_number_check_reads_them(key: str, value: Any) -> None:
    parser = Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE)
    text = json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity; what it can carry is an exponent that overflows to inf.
        text = "-1e999" if value < 0 else "1e999"
        value = float(text)
    payload = f'{{"{key}": {text}}}'.encode()
    readings = parser.parse(data_frame("zigbee", f"{BASE}/sensor", payload))
    ours, low, high = RANGES[key]
    expected = _number(value)
    if value is None:
        assert [r.property for r in readings] == ["seen"]
    elif expected is None or not low <= expected <= high:
        assert parser.stats.rejected_by_reason == {f"{key} is not a number in range": 1}
        assert readings == []
    else:
        assert [(r.property, r.value, type(r.value)) for r in readings] == [(ours, expected, float)]


def test_a_name_resolved_through_the_inventory_after_it_was_seen() -> None:
    """The kept device id of a name changes when the inventory maps the name to a known IEEE."""
    parser = Zigbee2MqttParser(
        driver_id="zigbee",
        base_topic=BASE,
        devices=[spec("smoke-k", "0x00158d0001a2b301", "smoke")],
    )
    first = parser.parse(data_frame("zigbee", f"{BASE}/kitchen", b'{"smoke": false}'))
    assert [(r.device, r.extra) for r in first] == [("kitchen", {"native": "kitchen"})]
    inventory = [
        {
            "ieee_address": "0x00158d0001a2b301",
            "friendly_name": "kitchen",
            "type": "EndDevice",
            "supported": True,
            "interview_completed": True,
            "definition": {"model": "JTYJ-GD-01LM/BW", "vendor": "Aqara"},
        }
    ]
    parser.parse(data_frame("zigbee", f"{BASE}/bridge/devices", json.dumps(inventory).encode()))
    assert parser.inventory, parser.stats.rejected_by_reason
    second = parser.parse(data_frame("zigbee", f"{BASE}/kitchen", b'{"smoke": true}'))
    assert [(r.device, r.property, r.extra) for r in second] == [
        ("smoke-k", "smoke", {"native": "kitchen", "ieee": "0x00158d0001a2b301"})
    ]
    # Renamed away: the name is no longer the configured device.
    parser.parse(data_frame("zigbee", f"{BASE}/bridge/devices", b"[]"))
    third = parser.parse(data_frame("zigbee", f"{BASE}/kitchen", b'{"smoke": false}'))
    assert [r.device for r in third] == ["kitchen"]


def test_readings_do_not_share_their_extra() -> None:
    parser = Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE)
    one = parser.parse(data_frame("zigbee", f"{BASE}/a", b'{"battery": 50, "smoke": false}'))
    assert len(one) == 2
    assert one[0].extra == one[1].extra == {"native": "a"}
    assert one[0].extra is not one[1].extra
    one[0].extra["x"] = 1  # a consumer that changes what it was given changes nothing else
    again = parser.parse(data_frame("zigbee", f"{BASE}/a", b'{"battery": 40}'))
    assert again[0].extra == {"native": "a"}


def test_a_leave_carries_its_reason_beside_the_kept_extra() -> None:
    parser = Zigbee2MqttParser(
        driver_id="zigbee", base_topic=BASE, devices=[spec("smoke-k", "kitchen", "smoke")]
    )
    parser.parse(data_frame("zigbee", f"{BASE}/kitchen", b'{"smoke": false}'))
    event = {
        "type": "device_leave",
        "data": {"ieee_address": "0x00158d0001a2b301", "friendly_name": "kitchen"},
    }
    left = parser.parse(data_frame("zigbee", f"{BASE}/bridge/event", json.dumps(event).encode()))
    assert [(r.device, r.property, r.value, r.extra) for r in left] == [
        ("smoke-k", "available", False, {"native": "kitchen", "reason": "left"})
    ]
    later = parser.parse(data_frame("zigbee", f"{BASE}/kitchen", b'{"smoke": true}'))
    assert [r.extra for r in later] == [{"native": "kitchen"}]


class _Forgetful(StateDecoder):
    """Decodes every payload afresh: what the parser did before it remembered payloads."""

    def __call__(self, payload: bytes) -> DecodedState:
        return decode_state(payload)


state_payloads = st.fixed_dictionaries(
    {},
    optional={
        "occupancy": st.booleans() | st.just("yes"),
        "battery": st.sampled_from([100, 99.5, -1, "80", None]),
        "linkquality": st.sampled_from([80, 95, 120, 300]),
        "contact": st.booleans(),
        "sos": st.booleans() | st.just(1),
        "action": st.sampled_from(["single", "", 7]),
    },
).map(lambda d: json.dumps(d).encode())


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            # A small pool, so that payloads repeat as a home's do.
            st.sampled_from([b'{"occupancy": true}', b"[1]", b"{bad", b""]) | state_payloads,
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_remembered_payloads_give_the_readings_and_refusals_of_fresh_decoding(
    frames: list[tuple[str, bytes, bool]],
) -> None:
    remembering = Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE)
    forgetful = Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE)
    forgetful._decode = _Forgetful()
    for name, payload, retained in frames:
        frame = data_frame("zigbee", f"{BASE}/{name}", payload, retained=retained)
        assert remembering.parse(frame) == forgetful.parse(frame)
    assert vars(remembering.stats) == vars(forgetful.stats)


def test_the_memory_of_payloads_is_bounded() -> None:
    decode = StateDecoder()
    for n in range(MEMO_SIZE * 3):
        assert decode(f'{{"battery": {n % 100}, "linkquality": {n}}}'.encode()).values
    assert len(decode._memo) <= MEMO_SIZE
