"""Small builders shared by the buffer tests."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buffer.store import EventDraft
from contract.wire import EventKind

T0 = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)


def draft(
    kind: EventKind = EventKind.MOTION,
    *,
    at: datetime | None = None,
    device_id: str | None = "dev-1",
    **payload: Any,
) -> EventDraft:
    return EventDraft(kind=kind, at=at or T0, device_id=device_id, payload=payload)


def alarm(device_id: str = "btn-1", restore: bool = False, **payload: Any) -> EventDraft:
    kind = EventKind.SOS_RESTORE if restore else EventKind.SOS
    return draft(kind, device_id=device_id, condition=f"sos:{device_id}", **payload)


def trouble(device_id: str = "smoke-1", restore: bool = False) -> EventDraft:
    kind = EventKind.LOW_BATTERY_RESTORE if restore else EventKind.LOW_BATTERY
    return draft(kind, device_id=device_id, condition=f"low_battery:{device_id}")


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def copy_as_killed(path: Path, target: Path) -> Path:
    """Copy a live buffer's files as a kill -9 would leave them (database + WAL, no shm)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{target}{suffix}")
    return target
