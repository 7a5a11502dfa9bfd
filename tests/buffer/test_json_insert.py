"""A group's rows, inserted as one JSON statement, are stored exactly as row-by-row inserts
store them (the buffer uses the JSON statement where SQLite has its JSON functions)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buffer.store import EventBuffer, EventDraft
from contract.wire import EventKind, Priority

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
drafts = st.builds(
    EventDraft,
    kind=st.sampled_from(list(EventKind)),
    at=st.builds(lambda s: T0 + timedelta(seconds=s), st.floats(min_value=0, max_value=1e6)),
    device_id=st.one_of(st.none(), st.sampled_from(["door-1", "é bad id", "smoke:1"])),
    payload=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    test=st.booleans(),
    priority=st.one_of(st.none(), st.sampled_from(list(Priority))),
)


def _stored(path: Path, groups: list[list[EventDraft]], *, json_insert: bool) -> list[Any]:
    buffer = EventBuffer.open(path, gateway_id="gw-1", clock=lambda: T0, reserve_bytes=0)
    try:
        assert buffer._json_insert  # this SQLite has its JSON functions
        buffer._json_insert = json_insert
        for group in groups:
            buffer.append(group)
    finally:
        buffer.close()
    conn = sqlite3.connect(path)
    try:
        # Everything but the random part of the id, with each value's storage class.
        return conn.execute(
            "SELECT seq, substr(id, 1, 10), typeof(id), lane, kind, priority, typeof(priority), "
            "device_id, at, test, typeof(test), payload, size, appended_at FROM events "
            "ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


@SETTINGS
@given(st.lists(st.lists(drafts, min_size=1, max_size=6), min_size=1, max_size=3))
def test_one_statement_stores_what_row_by_row_stores(
    tmp_path_factory: Any, groups: list[list[EventDraft]]
) -> None:
    folder = tmp_path_factory.mktemp("json-insert")
    by_json = _stored(folder / "json.db", groups, json_insert=True)
    by_rows = _stored(folder / "rows.db", groups, json_insert=False)
    assert by_json == by_rows
    assert len(by_json) >= sum(len(g) for g in groups)
