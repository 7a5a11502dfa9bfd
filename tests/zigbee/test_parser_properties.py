"""Property tests: arbitrary topics and payloads never make the parser raise, and every refused
frame is counted and its reason logged exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.wire import RawFrame
from drivers.base import data_frame, link_frame
from drivers.zigbee2mqtt import Zigbee2MqttParser
from tests.fixtures.zigbee import spec

BASE = "zigbee2mqtt"
KEYS = [
    "smoke",
    "gas",
    "water_leak",
    "occupancy",
    "presence",
    "contact",
    "sos",
    "tamper",
    "battery",
    "battery_low",
    "voltage",
    "linkquality",
    "test",
    "carbon_monoxide",
    "action",
    "state",
    "type",
    "data",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
names = st.sampled_from(["smoke", "button", "0x00158d0001a2b301", "a/b", "", "x" * 200]) | st.text(
    max_size=12
)
suffixes = st.sampled_from(["", "/availability", "/set", "/get", "/x"])
topics = st.one_of(
    st.builds(lambda n, s: f"{BASE}/{n}{s}", names, suffixes),
    st.sampled_from(
        [f"{BASE}/bridge/{w}" for w in ("state", "devices", "event", "info", "logging")]
    ),
    st.text(max_size=40),
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


payloads = st.one_of(
    json_values.map(_encode),
    st.binary(max_size=200),
    st.sampled_from([b"online", b"offline", b"", b'{"state":"online"}', b"[" * 5000]),
)
frames = st.one_of(
    st.builds(
        lambda t, p, r: data_frame("zigbee", t[:512], p, retained=r),
        topics,
        payloads,
        st.booleans(),
    ),
    st.builds(lambda up, why: link_frame("zigbee", up, why), st.booleans(), st.text(max_size=10)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=30))
def test_parser_never_raises_and_logs_each_reason_once(batch: list[RawFrame]) -> None:
    parser = Zigbee2MqttParser(
        driver_id="zigbee",
        base_topic=BASE,
        devices=[spec("sos", "button", "sos_button"), spec("smoke", "smoke", "smoke")],
    )
    with structlog.testing.capture_logs() as logs:
        for frame in batch:
            before = parser.stats.rejected
            readings = parser.parse(frame)
            # A frame is either read (maybe to nothing new) or counted as refused, never lost
            # silently to an exception; readings are always valid contract objects.
            assert parser.stats.rejected >= before
            for reading in readings:
                assert reading.driver == "zigbee"
                assert reading.at == frame.wall_time
                assert reading.retained == frame.retained
    logged = Counter(e["reason"] for e in logs if e["event"] == "zigbee_frame_rejected")
    assert set(logged) == set(parser.stats.rejected_by_reason)
    assert all(count == 1 for count in logged.values())
    assert sum(parser.stats.rejected_by_reason.values()) == parser.stats.rejected
    assert not [r for r in parser.stats.rejected_by_reason if r.startswith("internal_error")]
    assert parser.stats.frames == len(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), json_scalars, max_size=6), max_size=20))
def test_same_state_twice_never_emits_twice(states: list[dict[str, Any]]) -> None:
    parser = Zigbee2MqttParser(driver_id="zigbee", base_topic=BASE)
    for state in states:
        state = {k: v for k, v in state.items() if k != "action"}
        parser.parse(data_frame("zigbee", f"{BASE}/dev", _encode(state)))
        again = parser.parse(data_frame("zigbee", f"{BASE}/dev", _encode(state)))
        # Only a check-in: the device was heard from, nothing changed.
        assert [r.property for r in again] in ([], ["seen"])
