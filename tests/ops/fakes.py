"""A small DaemonControl of the tests' own: the seam the real daemon implements."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from contract.wire import Event, EventKind
from gatewayd.control import MODES, WatchHub


def realistic_status() -> dict[str, Any]:
    """A status snapshot of a home with an outage in progress, as the daemon produces it."""
    return {
        "gateway_id": "gw-0042",
        "household": "Musterstrasse 12, Flat 3",
        "version": "0.1.0",
        "uptime_s": 93_784.2,
        "mode": "normal",
        "drivers": [
            {
                "id": "zigbee",
                "type": "zigbee2mqtt",
                "state": "running",
                "detail": "broker 127.0.0.1:1883, 5 devices",
                "restarts": 0,
                "link_down_since": None,
            },
            {
                "id": "rflink",
                "type": "rflink",
                "state": "degraded",
                "detail": "port /dev/ttyUSB0 vanished; retrying",
                "restarts": 3,
                "link_down_since": "2026-11-29T08:10:00Z",
            },
        ],
        "devices": [
            {
                "id": "sos_button",
                "role": "sos_button",
                "room": "bedroom",
                "driver": "zigbee",
                "last_seen": "2026-11-29T08:29:50Z",
                "battery": 87.0,
                "signal": 120.0,
                "online": True,
            },
            {
                "id": "kitchen_smoke",
                "role": "smoke",
                "room": "kitchen",
                "driver": "zigbee",
                "last_seen": "2026-11-29T08:25:00Z",
                "battery": 14.0,
                "signal": 45.0,
                "online": True,
            },
            {
                "id": "hall_door",
                "role": "door",
                "room": "hall",
                "driver": "rflink",
                "last_seen": "2026-11-28T20:00:00Z",
                "battery": None,
                "signal": None,
                "online": False,
            },
        ],
        "buffer": {
            "depth": {"alarm": 1, "trouble": 4, "telemetry": 250},
            "oldest_unsent_age_s": 640.5,
            "evicted_total": 0,
            "size_bytes": 1_245_184,
        },
        "forwarder": {
            "last_success_at": "2026-11-29T08:19:30Z",
            "reachable": False,
            "consecutive_failures": 21,
            "last_error": "connect timeout to https://dispatch.example.org",
        },
        "troubles": [
            {
                "kind": "device_offline",
                "device_id": "hall_door",
                "since": "2026-11-28T20:30:00Z",
                "detail": "no supervision report for 30 min",
            },
            {
                "kind": "low_battery",
                "device_id": "kitchen_smoke",
                "since": "2026-11-29T06:00:00Z",
                "detail": "14 %",
            },
        ],
    }


class FakeDaemon:
    """Status from a dict, modes recorded, events fanned out through a real WatchHub."""

    def __init__(self, snapshot: dict[str, Any] | None = None) -> None:
        self.snapshot = snapshot if snapshot is not None else realistic_status()
        self.mode = self.snapshot.get("mode", "normal")
        self.mode_changes: list[str] = []
        self.hub = WatchHub(queue_limit=5000)
        self.on_mode: Callable[[str], None] | None = None
        self.status_error: Exception | None = None
        self.seq = 0
        #: Set at the first event published.
        self.published = asyncio.Event()

    def status(self) -> dict[str, Any]:
        if self.status_error is not None:
            raise self.status_error
        snapshot = copy.deepcopy(self.snapshot)
        snapshot["mode"] = self.mode
        return snapshot

    async def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.mode_changes.append(mode)
        if self.on_mode is not None:
            self.on_mode(mode)

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        return self.hub.subscribe()

    def publish(
        self,
        kind: EventKind,
        device_id: str | None,
        *,
        test: bool = False,
        payload: dict[str, Any] | None = None,
        reading: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.seq += 1
        event = Event.create(
            gateway_id="gw-0042",
            seq=self.seq,
            kind=kind,
            at=datetime.now(UTC),
            device_id=device_id,
            test=test,
            payload=payload,
        ).model_dump(mode="json")
        if reading is not None:
            event["reading"] = reading
        self.hub.publish(event)
        self.published.set()
        return event
