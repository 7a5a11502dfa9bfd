"""A console closed the moment its live stream opened (a tab shut, a page reloaded) leaves the
database as it was: the stream's reads and its presence beat run to their end instead of being
cut off, which tore the connection down (an error in the log each time) and once left SQLite's
write lock held, so that every write after it failed 30 s later with "database is locked"."""

from __future__ import annotations

import json
import time

from tests.dispatch.conftest import unique
from tests.fixtures.dispatch import DispatchServer


def test_streams_closed_at_once_leave_no_torn_connection_and_writes_answer(
    dispatch_server: DispatchServer,
) -> None:
    admin = dispatch_server.operator_client()
    for _ in range(80):
        with admin.stream("GET", "/api/v1/stream", headers={"Last-Event-ID": "0"}) as response:
            assert response.status_code == 200
            next(response.iter_lines())
    began = time.monotonic()
    made = admin.post("/api/v1/households", json={"id": unique("hh"), "name": "after"})
    assert made.status_code == 201, made.text
    assert time.monotonic() - began < 10, "a write waited on a lock"
    dispatch_server.stop()
    errors = [
        entry["event"].splitlines()[0]
        for entry in map(json.loads, dispatch_server.log_path.read_text().splitlines())
        if entry.get("level") in ("error", "critical")
    ]
    assert errors == []
