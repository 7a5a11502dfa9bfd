"""Local-time arithmetic for the inactivity rules, in real elapsed seconds.

Windows are local wall-clock times of each local date, turned into UTC instants with zoneinfo,
so a 07:00-22:00 window is 15 real hours on a DST day too, and a 00:00-24:00 window is 23 or 25.
A local time that does not exist (the spring-forward gap) maps to the instant zoneinfo gives it
(fold=0), which lies next to the gap: windows never overlap and never run backwards.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    remaining = timedelta(seconds=seconds)
    for ws, we in windows_from(start, window, zone):
        s = max(ws, start)
        if we <= s:
            continue
        if we - s >= remaining:
            return s + remaining
        remaining -= we - s
    return None


class ActiveClock:
    """:func:`seconds_due` for one window and zone, remembering the window the last start fell in.

    The inactivity clock restarts at every activity, thousands of times a second in a busy home,
    and almost always inside the window it last restarted in: there the due time is the start
    plus the seconds, if the window lasts that long, with no local-time arithmetic. Windows are
    in time order and never overlap, so the window that contains the start is the first that the
    full walk would use: both give the same instant.
    """

    def __init__(self, window: tuple[time, time | None], zone: ZoneInfo) -> None:
        self.window = window
        self.zone = zone
        self._known: tuple[datetime, datetime] | None = None

    def seconds_due(self, start: datetime, seconds: float) -> datetime | None:
        remaining = timedelta(seconds=seconds)
        known = self._known
        if known is not None and known[0] <= start < known[1] and known[1] - start >= remaining:
            return start + remaining
        first = True
        for ws, we in windows_from(start, self.window, self.zone):
            s = max(ws, start)
            if we <= s:
                continue
            if first:
                first = False
                self._known = (ws, we) if ws <= start else None
            if we - s >= remaining:
                return s + remaining
            remaining -= we - s
        return None
