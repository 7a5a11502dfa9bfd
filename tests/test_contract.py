from __future__ import annotations

import contextlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.wire import (
    ContractError,
    Event,
    EventKind,
    IngestBatch,
    Lane,
    Priority,
    UnsupportedVersion,
    _size_bound,
    new_event_id,
    parse_message,
)

AT = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)


def test_contact_id_codes_of_the_kit() -> None:
    assert str(EventKind.SOS.contact_id) == "1101"
    assert str(EventKind.SMOKE.contact_id) == "1111"
    assert str(EventKind.SMOKE_RESTORE.contact_id) == "3111"
    assert str(EventKind.GAS.contact_id) == "1151"
    assert str(EventKind.WATER_LEAK.contact_id) == "1154"
    assert str(EventKind.DEVICE_OFFLINE.contact_id) == "1381"
    assert str(EventKind.TAMPER.contact_id) == "1383"
    assert str(EventKind.LOW_BATTERY.contact_id) == "1384"
    assert EventKind.MOTION.contact_id is None


def test_every_alarm_and_trouble_has_a_restore_or_is_one_shot() -> None:
    for kind in EventKind:
        if kind.is_restore:
            assert kind.condition.restore is kind
            assert kind.lane is kind.condition.lane
    assert EventKind.SMOKE.is_alarm
    assert not EventKind.SMOKE_RESTORE.is_alarm
    assert EventKind.LOW_BATTERY.lane is Lane.TROUBLE
    assert EventKind.SOS.priority is Priority.LIFE_SAFETY
    assert EventKind.WATER_LEAK.priority is Priority.HIGH


def test_event_roundtrip_and_utc_normalisation() -> None:
    local = AT.astimezone(timezone(timedelta(hours=8)))
    event = Event.create(
        gateway_id="gw-1",
        seq=7,
        kind=EventKind.SMOKE,
        at=local,
        device_id="smoke-kitchen",
        payload={"room": "kitchen"},
    )
    assert event.at.tzinfo is not None
    assert event.at.utcoffset() == timedelta(0)
    again = parse_message(Event, event.model_dump_json())
    assert again == event


def test_unknown_version_is_refused_by_name() -> None:
    event = Event.create(gateway_id="gw-1", seq=1, kind=EventKind.SOS, at=AT)
    data = json.loads(event.model_dump_json())
    data["v"] = 2
    with pytest.raises(UnsupportedVersion, match="version 2"):
        parse_message(Event, data)
    batch = {"v": 1, "gateway_id": "gw-1", "events": [data]}
    with pytest.raises(UnsupportedVersion):
        parse_message(IngestBatch, batch)


def test_batch_refuses_foreign_gateway_events() -> None:
    event = Event.create(gateway_id="gw-2", seq=1, kind=EventKind.SOS, at=AT)
    with pytest.raises(ContractError, match="gw-2"):
        parse_message(
            IngestBatch, {"gateway_id": "gw-1", "events": [event.model_dump(mode="json")]}
        )


_SOS = {"gateway_id": "g", "seq": 1, "kind": "sos", "priority": 1, "at": AT.isoformat()}


def test_oversized_payload_and_naive_time_are_refused() -> None:
    with pytest.raises(ContractError, match="limit"):
        parse_message(Event, {"id": new_event_id(), **_SOS, "payload": {"x": "a" * 5000}})
    with pytest.raises(ContractError, match="timezone"):
        parse_message(
            Event,
            {
                "id": new_event_id(),
                "gateway_id": "g",
                "seq": 1,
                "kind": "sos",
                "priority": 1,
                "at": "2026-11-29T08:30:00",
            },
        )


@given(
    st.lists(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_event_ids_sort_by_time(times: list[datetime]) -> None:
    ids = {t: new_event_id(t) for t in times}
    ordered = sorted(times)
    # Same-millisecond ids have no defined order; compare at millisecond resolution.
    for a, b in itertools.pairwise(ordered):
        if int(a.timestamp() * 1000) < int(b.timestamp() * 1000):
            assert ids[a] < ids[b]


@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10)),
    )
)
def test_parse_message_only_raises_contract_errors(data: bytes | str | dict[str, object]) -> None:
    with contextlib.suppress(ContractError):
        parse_message(Event, data)


def test_contract_doc_has_a_valid_example_of_every_kind() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "contract.md").read_text()
    blocks = re.findall(r"### `([a-z_]+)`\n\n```json\n(.*?)\n```", text, re.S)
    documented = {}
    for name, body in blocks:
        event = parse_message(Event, body)
        assert event.kind.value == name
        documented[name] = event
    assert set(documented) == {k.value for k in EventKind}


_FLAT_VALUES = (
    st.text()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)


@given(st.dictionaries(st.text(), _FLAT_VALUES, max_size=20))
def test_payload_size_bound_is_never_below_the_serialised_size(
    payload: dict[str, object],
) -> None:
    """The size check skips serialising only what the bound proves small enough."""
    bound = _size_bound(payload)
    assert bound is not None
    assert bound >= len(json.dumps(payload, separators=(",", ":"), default=str))


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=1200), max_size=6))
def test_payload_limit_is_the_serialised_size(payload: dict[str, str]) -> None:
    """Accepted exactly when the compact JSON fits, whichever way the size was checked."""
    fits = len(json.dumps(payload, separators=(",", ":"))) <= 4096
    data = {"id": new_event_id(), **_SOS, "payload": payload}
    if fits:
        assert parse_message(Event, data).payload == payload
    else:
        with pytest.raises(ContractError, match="limit"):
            parse_message(Event, data)


def test_kind_tables_say_what_the_names_say() -> None:
    """Each kind's lane, priority, condition and restore flag, kept in tables, match their
    definition: a restore is its condition's twin and shares its lane and priority."""
    from contract.wire import _KIND_INFO

    for kind in EventKind:
        restore = kind.value.endswith("_restore")
        condition = EventKind(kind.value.removesuffix("_restore"))
        assert kind.is_restore is restore
        assert kind.condition is condition
        assert kind.lane is _KIND_INFO[condition][0]
        assert kind.priority is _KIND_INFO[condition][1]
        assert kind.is_alarm is (kind.lane is Lane.ALARM and not restore)
