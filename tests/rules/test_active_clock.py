"""The inactivity clock's remembered window gives the due time the full local-time walk gives.

The inactivity clock restarts at every activity; :class:`rules.localtime.ActiveClock` answers
from the window the last start fell in instead of walking local dates again. Checked against
:func:`rules.localtime.seconds_due` over random windows, zones with daylight saving time (and
Lord Howe's half hour), and runs of starts as activity makes them: mostly later, sometimes not.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.localtime import ActiveClock, seconds_due

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]
clock_times = st.builds(
    time, st.integers(min_value=0, max_value=23), st.sampled_from([0, 15, 30, 59])
)
windows = st.tuples(clock_times, st.one_of(st.none(), clock_times))
# Around the spring-forward and fall-back nights of the zones above, and any day.
starts = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 3, 7), max_value=datetime(2026, 4, 7), timezones=st.just(UTC)
    ),
    st.datetimes(
        min_value=datetime(2026, 9, 20), max_value=datetime(2026, 11, 5), timezones=st.just(UTC)
    ),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
steps = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=120),
        st.floats(min_value=0, max_value=86_400 * 2),
        st.floats(min_value=-3_600, max_value=0),
    ),
    max_size=30,
)


@SETTINGS
@given(
    zone=st.sampled_from(ZONES),
    window=windows,
    seconds=st.one_of(
        st.floats(min_value=1, max_value=7 * 86_400), st.sampled_from([60.0, 14_400.0])
    ),
    first=starts,
    moves=steps,
)
def test_active_clock_agrees_with_the_walk(
    zone: str,
    window: tuple[time, time | None],
    seconds: float,
    first: datetime,
    moves: list[float],
) -> None:
    tz = ZoneInfo(zone)
    clock = ActiveClock(window, tz)
    start = first
    for move in [0.0, *moves]:
        start = start + timedelta(seconds=move)
        assert clock.seconds_due(start, seconds) == seconds_due(start, seconds, window, tz)
