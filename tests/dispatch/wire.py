"""Building gateway wire messages and reading the live stream in tests."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from contract.wire import Event, EventKind, Heartbeat, IngestBatch, Lane

_seq = itertools.count(1)


def event(
    gateway_id: str,
    kind: EventKind | str,
    *,
    device: str | None = "pendant-1",
    test: bool = False,
    at: datetime | None = None,
    payload: dict[str, Any] | None = None,
) -> Event:
    return Event.create(
        gateway_id=gateway_id,
        seq=next(_seq),
        kind=EventKind(kind),
        at=at or datetime.now(UTC),
        device_id=device,
        test=test,
        payload=payload or {},
    )


def batch(gateway_id: str, *events: Event) -> IngestBatch:
    ordered = sorted(events, key=lambda e: (e.lane.rank, e.seq))
    return IngestBatch(gateway_id=gateway_id, events=ordered)


def heartbeat(gateway_id: str, *, interval_s: float = 30.0, **extra: Any) -> Heartbeat:
    return Heartbeat(
        gateway_id=gateway_id,
        sent_at=datetime.now(UTC),
        uptime_s=12.5,
        version="1.2.3",
        interval_s=interval_s,
        buffer_depth={Lane.ALARM: 0, Lane.TROUBLE: 1, Lane.TELEMETRY: 7},
        oldest_unsent_age_s=3.0,
        **extra,
    )


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def sse_events(
    client: httpx.Client,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    last_event_id: int | None = None,
    timeout: float = 15.0,
) -> list[dict[str, Any]]:
    """Read the live stream until ``until(events)`` holds; each event is the parsed ``data``
    plus ``_id`` and ``_event``. Fails with the events so far if the time runs out."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with client.stream(
        "GET", "/api/v1/stream", headers=headers, timeout=httpx.Timeout(timeout, read=timeout)
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in _lines(response):
            if line == "":
                if "data" in current:
                    item = json.loads(current["data"])
                    item["_id"] = int(current["id"])
                    item["_event"] = current.get("event")
                    events.append(item)
                    if until(events):
                        return events
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                current[name] = value.removeprefix(" ")
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"stream condition not met in {timeout} s; got {events}")


def _lines(response: httpx.Response) -> Iterator[str]:
    yield from response.iter_lines()
