"""An oversized Zigbee2MQTT state keeps what the parser needs: only the largest fields go."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from drivers.zigbee2mqtt.oversize import shrink_state

LIMIT = 4096

_scalars = st.one_of(st.booleans(), st.integers(-1000, 1000), st.text(max_size=20), st.none())


def test_only_the_oversized_field_is_dropped() -> None:
    payload = json.dumps({"smoke": True, "battery": 90, "dump": "x" * 10_000}).encode()
    shrunk = shrink_state(payload, LIMIT)
    assert shrunk is not None
    kept, dropped = shrunk
    assert json.loads(kept) == {"smoke": True, "battery": 90}
    assert dropped == ["dump"]


def test_what_cannot_be_shrunk_is_refused_with_none() -> None:
    assert shrink_state(b"x" * 10_000, LIMIT) is None  # not JSON
    assert shrink_state(json.dumps(["x" * 10_000]).encode(), LIMIT) is None  # not an object
    assert shrink_state(json.dumps({"k" * 10_000: 1}).encode(), LIMIT) is None


@given(
    small=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("big_")),
        _scalars,
        min_size=1,
        max_size=20,
    ),
    big=st.dictionaries(
        st.text(min_size=1, max_size=12).map(lambda k: "big_" + k),
        st.integers(LIMIT, 3 * LIMIT).map(lambda n: "y" * n),
        min_size=1,
        max_size=3,
    ),
)
def test_small_fields_survive_and_the_result_fits(
    small: dict[str, object], big: dict[str, str]
) -> None:
    payload = json.dumps({**small, **big}).encode()
    shrunk = shrink_state(payload, LIMIT)
    assert shrunk is not None
    kept, dropped = shrunk
    assert len(kept) <= LIMIT
    assert json.loads(kept) == small
    assert sorted(dropped) == sorted(big)
