"""The replay's virtual clock, with a small timer engine standing in for the rule engine.

These tests are about when the replay ticks the engine (at each deadline, on a grid, up to
``--until``), not about which alarms the real rules raise: that is tested with the real engine
in test_week_alone.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.wire import RawFrame, Reading
from replay.engine import (
    RealTimePacer,
    Replay,
    ReplayError,
    canonical_decision,
    canonical_line,
    compare,
    describe,
    read_expected,
    replay_lines,
)

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    kind: str
    device_id: str | None
    condition: str
    payload: dict[str, Any] = field(default_factory=dict)
    test: bool = False
    priority: int | None = 2


@dataclass(frozen=True)
class Decided:
    decision: Event
    at: datetime
    reading: Reading | None = None


class InactivityEngine:
    """Raises ``inactivity`` when no motion was seen for ``window``; exact deadlines."""

    def __init__(self, window: timedelta, *, exact: bool = True) -> None:
        self.window = window
        self.due: datetime | None = None
        self.ticks: list[datetime] = []
        if not exact:
            self.next_deadline = None  # type: ignore[assignment]

    def next_deadline(self) -> datetime | None:
        return self.due

    def feed(self, reading: Reading, now: datetime) -> list[Event]:
        self.due = now + self.window
        return [Event("motion", reading.device, f"motion:{reading.device}")]

    def tick(self, now: datetime) -> list[Event]:
        self.ticks.append(now)
        if self.due is not None and now >= self.due:
            self.due = None
            return [
                Event("inactivity", None, "inactivity", {"since_s": self.window.total_seconds()})
            ]
        return []


class StuckEngine(InactivityEngine):
    def next_deadline(self) -> datetime | None:
        return T0 + timedelta(minutes=1)  # never moves, whatever happens

    def tick(self, now: datetime) -> list[Event]:
        self.ticks.append(now)
        return []


class Decider:
    """Frames of ``{"device": ...}`` become motion readings for the engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        #: As the real decider counts them: the replay asks for a new deadline only after one.
        self.readings = 0
        self.controls: list[tuple[str, str, datetime]] = []

    def frame(self, frame: RawFrame) -> list[Decided]:
        data = json.loads(frame.payload)
        if data["device"] is None:
            return []  # a frame that says nothing new (a repeated state)
        self.readings += 1
        reading = Reading(
            driver=frame.driver,
            device=data["device"],
            property="motion",
            value=True,
            at=frame.wall_time,
        )
        return [
            Decided(d, frame.wall_time, reading) for d in self.engine.feed(reading, frame.wall_time)
        ]

    def tick(self, now: datetime) -> list[Decided]:
        return [Decided(d, now) for d in self.engine.tick(now)]

    def acknowledge(self, condition: str, now: datetime) -> list[Decided]:
        self.controls.append(("ack", condition, now))
        return [Decided(Event("acknowledged", None, condition), now)]

    def set_mode(self, mode: str, now: datetime) -> list[Decided]:
        self.controls.append(("mode", mode, now))
        return []


def motion(at: datetime, device: str | None = "motion-hall") -> RawFrame:
    return RawFrame(
        driver="sim",
        source=f"sim/{device or 'bridge'}",
        payload=json.dumps({"device": device}).encode(),
        wall_time=at,
        mono_time=(at - T0).total_seconds(),
    )


def kinds_at(lines: list[str]) -> list[tuple[str, str]]:
    return [(json.loads(line)["kind"], json.loads(line)["at"]) for line in lines]


def test_a_timer_fires_at_its_deadline_between_frames_even_when_fast() -> None:
    frames = [motion(T0), motion(T0 + timedelta(hours=5))]
    engine = InactivityEngine(timedelta(hours=2))
    lines = replay_lines(Decider(engine), frames)
    assert kinds_at(lines) == [
        ("motion", "2026-03-02T05:00:00Z"),
        ("inactivity", "2026-03-02T07:00:00Z"),  # to the second, not at the next frame
        ("motion", "2026-03-02T10:00:00Z"),
    ]
    assert engine.ticks == [T0 + timedelta(hours=2)]  # exactly one tick: at the deadline


def test_a_deadline_at_the_frame_time_is_ticked_before_the_frame() -> None:
    frames = [motion(T0), motion(T0 + timedelta(hours=2))]
    lines = replay_lines(Decider(InactivityEngine(timedelta(hours=2))), frames)
    assert [k for k, _ in kinds_at(lines)] == ["motion", "inactivity", "motion"]


def test_after_the_last_frame_the_clock_runs_on_to_until() -> None:
    frames = [motion(T0)]
    engine = InactivityEngine(timedelta(hours=2))
    assert kinds_at(replay_lines(Decider(engine), frames)) == [("motion", "2026-03-02T05:00:00Z")]
    until = T0 + timedelta(hours=3)
    lines = replay_lines(Decider(InactivityEngine(timedelta(hours=2))), frames, until=until)
    assert kinds_at(lines)[-1] == ("inactivity", "2026-03-02T07:00:00Z")


def test_frames_after_until_are_not_fed() -> None:
    frames = [motion(T0), motion(T0 + timedelta(hours=1)), motion(T0 + timedelta(hours=9))]
    replay = Replay(Decider(InactivityEngine(timedelta(hours=2))), until=T0 + timedelta(hours=4))
    summary = replay.run(frames)
    assert summary.frames == 2
    assert summary.frames_after_until == 1
    assert summary.last_at == T0 + timedelta(hours=4)
    assert summary.by_kind == {"motion": 2, "inactivity": 1}


def test_an_engine_without_deadlines_is_ticked_on_a_one_second_grid() -> None:
    frames = [motion(T0), motion(T0 + timedelta(seconds=10))]
    engine = InactivityEngine(timedelta(seconds=3), exact=False)
    lines = replay_lines(Decider(engine), frames)
    assert kinds_at(lines)[1] == ("inactivity", "2026-03-02T05:00:03Z")
    assert engine.ticks == [T0 + timedelta(seconds=s) for s in range(1, 11)]


def test_grid_and_deadlines_together_give_the_same_decisions_as_deadlines_alone() -> None:
    frames = [motion(T0 + timedelta(minutes=m * 37, seconds=m * 11)) for m in range(12)]
    exact = replay_lines(Decider(InactivityEngine(timedelta(minutes=30))), frames)
    gridded = replay_lines(Decider(InactivityEngine(timedelta(minutes=30))), frames, tick_grid=1.0)
    assert exact == gridded
    assert sum(1 for line in exact if '"inactivity"' in line) == 11


def test_a_deadline_that_never_advances_does_not_hang_the_replay() -> None:
    frames = [motion(T0), motion(T0 + timedelta(hours=1))]
    replay = Replay(Decider(StuckEngine(timedelta(hours=2))), until=T0 + timedelta(hours=2))
    summary = replay.run(frames)
    assert summary.frames == 2
    assert summary.stuck_deadlines >= 1


def test_same_frames_give_byte_identical_decisions() -> None:
    frames = [motion(T0 + timedelta(minutes=m * 50), f"m{m % 3}") for m in range(40)]
    first = replay_lines(Decider(InactivityEngine(timedelta(hours=1))), frames)
    second = replay_lines(Decider(InactivityEngine(timedelta(hours=1))), frames)
    assert first == second
    assert all(json.loads(line) for line in first)


def test_pacing_at_speed_n_waits_virtual_time_over_n() -> None:
    slept: list[float] = []
    now = [100.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = RealTimePacer(3600.0, sleep=sleep, clock=lambda: now[0])
    frames = [motion(T0 + timedelta(hours=h)) for h in range(5)]
    lines = replay_lines(Decider(InactivityEngine(timedelta(minutes=30))), frames, pace=pacer)
    # 4 virtual hours at 3600x: about 4 s of waiting in total, spread over the steps.
    assert sum(slept) == pytest.approx(4.0)
    assert slept[0] == pytest.approx(0.5)  # the first inactivity tick, 30 virtual minutes in
    assert len(slept) == 8  # 4 frames after the first and 4 deadlines
    assert sum(1 for line in lines if '"inactivity"' in line) == 4
    with pytest.raises(ValueError, match="speed"):
        RealTimePacer(0)


def test_canonical_form_is_sorted_and_utc() -> None:
    at = datetime(2026, 3, 2, 7, 0, tzinfo=UTC).astimezone()
    decided = Decided(Event("smoke", "smoke-kitchen", "smoke:smoke-kitchen", {"z": 1, "a": at}), at)
    record = canonical_decision(decided)
    line = canonical_line(record)
    assert list(json.loads(line)) == sorted(json.loads(line))
    assert record["at"] == "2026-03-02T07:00:00Z"
    assert record["payload"] == {"z": 1, "a": "2026-03-02T07:00:00Z"}
    assert record["decision"] == "event"
    assert record["reading"] is None


def test_compare_names_missing_extra_and_changed() -> None:
    a = [
        '{"at": "1", "kind": "smoke"}',
        '{"at": "2", "kind": "motion"}',
        '{"at": "3", "kind": "sos"}',
    ]
    b = [
        '{"at": "1", "kind": "smoke"}',
        '{"at": "2", "kind": "motion", "x": 1}',
        '{"at": "4", "kind": "gas"}',
    ]
    result = compare(read_expected(a), read_expected(b))
    assert not result.ok
    assert len(result.changed) == 2
    assert result.diff.startswith("--- expected\n+++ replayed\n")
    assert '-{"at": "3", "kind": "sos"}' in result.diff
    text = "\n".join(describe(result))
    assert "2 changed" in text
    only_missing = compare(read_expected(a), read_expected(a[:1]))
    assert (len(only_missing.missing), len(only_missing.extra)) == (2, 0)
    assert compare(read_expected(a), read_expected(a)).ok


def test_expected_files_may_be_edited_by_hand() -> None:
    lines = ["# a comment", "", '{"kind": "smoke",   "at": "1"}']
    assert read_expected(lines) == ['{"at": "1", "kind": "smoke"}']
    with pytest.raises(ReplayError, match="<expected>:2"):
        read_expected(["{}", "nope"])


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=25),
    window=st.integers(min_value=1, max_value=900),
    until_after=st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
)
@settings(max_examples=60, deadline=None)
def test_exact_deadlines_decide_as_a_one_second_clock_does(
    offsets: list[int], window: int, until_after: int | None
) -> None:
    """With whole-second times, ticking only at deadlines equals ticking every second."""
    frames = [
        motion(T0 + timedelta(seconds=s), f"m{s % 3}" if s % 4 else None) for s in sorted(offsets)
    ]
    until = None if until_after is None else frames[-1].wall_time + timedelta(seconds=until_after)
    exact = replay_lines(Decider(InactivityEngine(timedelta(seconds=window))), frames, until=until)
    every_second = replay_lines(
        Decider(InactivityEngine(timedelta(seconds=window), exact=False)), frames, until=until
    )
    assert exact == every_second


def test_acknowledgements_and_mode_changes_are_replayed_at_their_time() -> None:
    from replay.trace import TraceControl

    ack_at = T0 + timedelta(hours=3)
    inputs = [
        motion(T0),
        TraceControl("mode", "away", T0 + timedelta(minutes=10)),
        TraceControl("ack", "inactivity", ack_at),
        motion(T0 + timedelta(hours=4)),
    ]
    decider = Decider(InactivityEngine(timedelta(hours=2)))
    lines = replay_lines(decider, inputs)
    assert decider.controls == [
        ("mode", "away", T0 + timedelta(minutes=10)),
        ("ack", "inactivity", ack_at),
    ]
    # The deadline before the acknowledgement is ticked first.
    assert [k for k, _ in kinds_at(lines)] == ["motion", "inactivity", "acknowledged", "motion"]


def test_a_clock_step_backwards_in_the_trace_does_not_confuse_the_replay() -> None:
    """The wall clock of a gateway can step back (NTP, a flat RTC battery)."""
    frames = [
        motion(T0 + timedelta(hours=1)),
        motion(T0),  # an hour back
        motion(T0 + timedelta(hours=4)),
    ]
    replay = Replay(Decider(InactivityEngine(timedelta(hours=2))))
    summary = replay.run(frames)
    assert summary.frames == 3
    assert summary.last_at == T0 + timedelta(hours=4)
    assert summary.by_kind["inactivity"] == 1
