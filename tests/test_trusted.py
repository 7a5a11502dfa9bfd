"""The contract's fast constructors build what validation builds, and refuse what it refuses.

The gateway makes a Reading per reading, an Event per event and a RawFrame per message without
pydantic when every field is plain (:mod:`contract.trusted`), and writes event ids itself
(:func:`contract.wire.new_event_id`). Each is checked here against what it stands for: pydantic's
validation of the same fields, and python-ulid's reading of the same id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from ulid import ULID

from contract.trusted import make_event, make_frame, make_reading
from contract.wire import (
    MAX_PAYLOAD_BYTES,
    Event,
    EventKind,
    Priority,
    RawFrame,
    Reading,
    new_event_id,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Level(IntEnum):
    LOW = 1


# Text that validation takes, refuses (lone surrogates, too long, empty) or takes as it is.
texts = st.one_of(
    st.text(max_size=8),
    st.text(alphabet="abc:-_.@", min_size=1, max_size=8),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=4),
    st.sampled_from(["", "a\udc80", "x" * 64, "x" * 65, "y" * 128, "y" * 129, "door-1", "é"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
# What is not plain: validation takes some (an IntEnum as a number) and refuses others.
odd = st.one_of(
    st.sampled_from([Level.LOW, EventKind.SMOKE, b"bytes", (1, 2), [1], {"a": 1}, object()]),
    st.decimals(allow_nan=False, places=2, max_value=100, min_value=-100),
)
values = st.one_of(scalars, odd)
times = st.one_of(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([timezone(timedelta(hours=2)), timezone(timedelta(0), "Z0")]),
    ),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),  # naive
    st.just("2026-01-01T00:00:00Z"),
)
extras = st.one_of(
    st.none(),
    st.dictionaries(texts, scalars, max_size=4),
    st.dictionaries(st.one_of(texts, st.integers()), values, max_size=3),
    st.just([("a", 1)]),
)


def _outcome(build: Any) -> tuple[str, Any]:
    """What building gives: the model's fields and dump, or that validation refused it."""
    try:
        made = build()
    except ValidationError:
        return ("refused", None)
    assert isinstance(made, BaseModel)
    try:
        dump: Any = made.model_dump_json()
    except ValueError as exc:  # bytes that are not UTF-8, a value JSON cannot hold
        dump = type(exc)
    return ("made", (made.__dict__, dump, made.model_fields_set, type(made)))


def _same(fast: Any, slow: Any) -> None:
    got, expected = _outcome(fast), _outcome(slow)
    assert got[0] == expected[0]
    if got[0] == "made":
        fields, dump, fields_set, kind = got[1]
        assert kind is expected[1][3]
        assert fields == expected[1][0]
        assert list(fields) == list(expected[1][0])  # the same order, so the same dumps
        assert dump == expected[1][1]
        assert fields_set == expected[1][2]


@SETTINGS
@given(
    driver=texts,
    device=texts,
    prop=texts,
    value=values,
    at=times,
    retained=st.one_of(st.booleans(), st.just(1)),
    extra=extras,
)
def test_make_reading_agrees_with_validation(
    driver: Any, device: Any, prop: Any, value: Any, at: Any, retained: Any, extra: Any
) -> None:
    _same(
        lambda: make_reading(driver, device, prop, value, at, retained, extra),
        lambda: Reading(
            driver=driver,
            device=device,
            property=prop,
            value=value,
            at=at,
            retained=retained,
            extra=extra if extra is not None else {},
        ),
    )


def test_make_reading_copies_extra() -> None:
    extra = {"native": "hall"}
    reading = make_reading("zigbee", "hall", "motion", True, datetime.now(UTC), False, extra)
    extra["native"] = "changed"
    assert reading.extra == {"native": "hall"}


payload_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
)
payloads = st.one_of(
    st.dictionaries(texts, payload_values, max_size=5),
    st.dictionaries(st.one_of(texts, st.integers()), scalars, max_size=3),
    st.builds(lambda n: {"note": "é" * n}, st.integers(min_value=300, max_value=MAX_PAYLOAD_BYTES)),
    st.builds(lambda n: {"note": "x" * n}, st.integers(min_value=4000, max_value=4200)),
    st.just(["not", "a", "dict"]),
)
event_ids = st.one_of(
    st.builds(new_event_id),
    st.sampled_from(["01ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAI", "short", ""]),
)


@SETTINGS
@given(
    event_id=event_ids,
    gateway_id=texts,
    seq=st.one_of(st.integers(min_value=-2, max_value=10**12), st.just(True)),
    kind=st.one_of(st.sampled_from(list(EventKind)), st.just("smoke")),
    priority=st.one_of(st.sampled_from(list(Priority)), st.sampled_from([1, 7])),
    device_id=st.one_of(st.none(), texts),
    at=times,
    test=st.one_of(st.booleans(), st.just(0)),
    payload=payloads,
    sized=st.booleans(),
)
def test_make_event_agrees_with_validation(
    event_id: Any,
    gateway_id: Any,
    seq: Any,
    kind: Any,
    priority: Any,
    device_id: Any,
    at: Any,
    test: Any,
    payload: Any,
    sized: bool,
) -> None:
    fields = {
        "id": event_id,
        "gateway_id": gateway_id,
        "seq": seq,
        "kind": kind,
        "priority": priority,
        "device_id": device_id,
        "at": at,
        "test": test,
        "payload": payload,
    }
    size: int | None = None
    if sized:
        import json

        try:
            size = len(json.dumps(payload, separators=(",", ":"), default=str))
        except (TypeError, ValueError):
            size = None
    _same(lambda: make_event(**fields, payload_size=size), lambda: Event(**fields))


@SETTINGS
@given(
    driver=texts,
    source=st.one_of(texts, st.just("z" * 512), st.just("z" * 513)),
    payload=st.one_of(st.binary(max_size=16), st.just("text")),
    kind=st.sampled_from(["data", "link", "other"]),
    retained=st.one_of(st.booleans(), st.just(1)),
    wall_time=times,
    mono_time=st.one_of(st.floats(allow_nan=False), st.integers(min_value=0, max_value=10)),
)
def test_make_frame_agrees_with_validation(
    driver: Any,
    source: Any,
    payload: Any,
    kind: Any,
    retained: Any,
    wall_time: Any,
    mono_time: Any,
) -> None:
    fields = {
        "driver": driver,
        "source": source,
        "payload": payload,
        "kind": kind,
        "retained": retained,
        "wall_time": wall_time,
        "mono_time": mono_time,
    }
    _same(lambda: make_frame(**fields), lambda: RawFrame(**fields))


@SETTINGS
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1970, 1, 1, 0, 0, 1),
            max_value=datetime(2400, 1, 1),
            timezones=st.just(UTC),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_event_ids_are_ulids_of_their_time(times: list[datetime]) -> None:
    ids = [new_event_id(at) for at in times]
    for event_id, at in zip(ids, times, strict=True):
        parsed = ULID.from_str(event_id)
        assert str(parsed) == event_id
        assert parsed.milliseconds == int(at.timestamp() * 1000)
    stamps = [int(at.timestamp() * 1000) for at in times]
    for i, (stamp_i, id_i) in enumerate(zip(stamps, ids, strict=True)):
        for stamp_j, id_j in zip(stamps[i + 1 :], ids[i + 1 :], strict=True):
            # Time-sortable whatever the order they were made in.
            if stamp_i != stamp_j:
                assert (id_i < id_j) == (stamp_i < stamp_j)
    assert len(set(ids)) == len(ids)


def test_ids_of_one_millisecond_count_up() -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    first, second, third = (ULID.from_str(new_event_id(at)) for _ in range(3))
    assert int(second) == int(first) + 1
    assert int(third) == int(second) + 1


def test_event_id_now_and_out_of_range() -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    now_id = ULID.from_str(new_event_id())
    assert before <= now_id.milliseconds <= int(datetime.now(UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="ULID"):
        new_event_id(datetime(1969, 12, 31, tzinfo=UTC))


def test_plain_fields_skip_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case takes the fast path (else the speed-up silently went away)."""
    import contract.trusted as trusted

    def refuse(**_: Any) -> None:
        raise AssertionError("validated")

    for name in ("Reading", "Event", "RawFrame"):
        monkeypatch.setattr(trusted, name, refuse)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    reading = make_reading("zigbee", "door-1", "contact_open", True, at, False, {"native": "d"})
    assert reading.value is True
    event = make_event(
        id=new_event_id(at),
        gateway_id="gw-1",
        seq=7,
        kind=EventKind.CONTACT,
        priority=Priority.INFO,
        device_id="door-1",
        at=at,
        test=False,
        payload={"condition": "contact:door-1", "open": True},
    )
    assert event.seq == 7
    frame = make_frame("zigbee", "zigbee2mqtt/door", b"{}", wall_time=at, mono_time=1.0)
    assert frame.kind == "data"


def test_a_forked_child_draws_its_own_random_bits() -> None:
    import os
    import warnings

    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    new_event_id(datetime(2026, 3, 1, 11, 0, tzinfo=UTC))  # the pool is drawn
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Newer Pythons warn of forking a process with threads (the test runner's): the child
        # here only makes an id and leaves.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id(at).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_event_id(at)
    assert child[:10] == parent[:10]
    assert child != parent
