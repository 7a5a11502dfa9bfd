"""Local-time arithmetic for the inactivity rules, in real elapsed seconds.

Windows are local wall-clock times of each local date, turned into UTC instants with zoneinfo,
so a 07:00-22:00 window is 15 real hours on a DST day too, and a 00:00-24:00 window is 23 or 25.
A local time that does not exist (the spring-forward gap) maps to the instant zoneinfo gives it
(fold=0), which lies next to the gap: windows never overlap and never run backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["ActiveClock", "local_instant", "seconds_due", "windows_from"]

#: Bound on the search for a due time (a year of days); beyond it nothing is due.
_MAX_DAYS = 400


def local_instant(day: date, at: time | None, zone: ZoneInfo) -> datetime:
    """The UTC instant of local ``at`` on ``day``; ``at=None`` is midnight ending the day."""
    if at is None:
        day, at = day + timedelta(days=1), time(0)
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def windows_from(
    start: datetime, window: tuple[time, time | None], zone: ZoneInfo
) -> Iterator[tuple[datetime, datetime]]:
    """Active windows (UTC) in time order, from the one that may contain ``start`` on."""
    begin, end = window
    crosses_midnight = end is not None and end <= begin
    day = start.astimezone(zone).date() - timedelta(days=1)
    for _ in range(_MAX_DAYS):
        ws = local_instant(day, begin, zone)
        we = local_instant(day + timedelta(days=1) if crosses_midnight else day, end, zone)
        if we > ws:
            yield ws, we
        day += timedelta(days=1)


def seconds_due(
    start: datetime, seconds: float, window: tuple[time, time | None], zone: ZoneInfo
) -> datetime | None:
    """The instant at which ``seconds`` of active time have passed since ``start``."""
    return _due_in(windows_from(start, window, zone), start, seconds)


class ActiveClock:
    """:func:`seconds_due` for one window and zone, remembering the windows of its last walk.

    The inactivity clock restarts at every activity, thousands of times a second in a busy home,
    almost always after the start of the windows its last due time was counted in: from there,
    the walk over local dates would meet those same windows again, so they are walked from
    memory, with the same arithmetic. Windows are in time order and never overlap: every window
    before the first remembered one ends before it begins, so before any start that lies after
    that beginning, and is skipped by the walk too. A start before the remembered windows, or
    a due time beyond them, takes the full walk (and is remembered instead).
    """

    def __init__(self, window: tuple[time, time | None], zone: ZoneInfo) -> None:
        self.window = window
        self.zone = zone
        self._windows: list[tuple[datetime, datetime]] = []

    def seconds_due(self, start: datetime, seconds: float) -> datetime | None:
        windows = self._windows
        if windows and windows[0][0] <= start:
            due = _due_in(windows, start, seconds)
            if due is not None:
                return due
        used: list[tuple[datetime, datetime]] = []
        due = _due_in(windows_from(start, self.window, self.zone), start, seconds, used=used)
        self._windows = used if due is not None else []
        return due


def _due_in(
    windows: Iterable[tuple[datetime, datetime]],
    start: datetime,
    seconds: float,
    *,
    used: list[tuple[datetime, datetime]] | None = None,
) -> datetime | None:
    """The walk of :func:`seconds_due` over consecutive windows; None if they end first.
    ``used`` collects the windows that counted."""
    remaining = timedelta(seconds=seconds)
    for ws, we in windows:
        s = max(ws, start)
        if we <= s:
            continue
        if used is not None:
            used.append((ws, we))
        if we - s >= remaining:
            return s + remaining
        remaining -= we - s
    return None
