"""A trace spanning restarts replays as the daemon ran it: a session header is a restart.

At each header after the first, replay rebuilds the parsers and the rule engine, as a restarted
daemon does, and seeds the engine with what the daemon persisted (its memory and the conditions
the buffer holds open). So a replay of a trace recorded live decides what the live gateway did.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contract.wire import RawFrame
from replay.trace import TraceControl, encode_control, encode_frame, encode_header
from tests.replay.live_sessions import ZIGBEE_DRIVER, replay_command

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

HOME = (
    """
[gateway]
id = "gw-restarts"
household = "hh-restarts"
timezone = "UTC"
state_dir = "state"

[rules.supervision]
default_s = 0

"""
    + ZIGBEE_DRIVER
    + """
[[devices]]
id = "smoke-kitchen"
driver = "zigbee"
address = "smoke_kitchen"
role = "smoke"
room = "kitchen"
"""
)


def frame(at: datetime, name: str, state: dict[str, object], *, retained: bool = False) -> bytes:
    return encode_frame(
        RawFrame(
            driver="zigbee",
            source=f"zigbee2mqtt/{name}",
            payload=json.dumps(state).encode(),
            retained=retained,
            wall_time=at,
            mono_time=(at - T0).total_seconds(),
        )
    )


def replay(tmp_path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    trace = tmp_path / "trace.jsonl"
    trace.write_bytes(b"".join(lines))
    home = tmp_path / "home.toml"
    home.write_text(HOME)
    return replay_command(trace, home, tmp_path / "out.jsonl")[0]


def test_a_walk_test_does_not_outlive_a_restart(tmp_path: Path) -> None:
    # The daemon restarts in normal mode: a smoke alarm after the restart is an alarm, as live.
    restart = T0 + timedelta(hours=1)
    decisions = replay(
        tmp_path,
        [
            encode_header("gw-restarts", T0),
            frame(T0 + timedelta(seconds=1), "smoke_kitchen", {"smoke": False}),
            encode_control(TraceControl("mode", "test", T0 + timedelta(minutes=10))),
            encode_header("gw-restarts", restart),
            frame(restart + timedelta(seconds=5), "smoke_kitchen", {"smoke": True}),
        ],
    )
    events = [(d["kind"], d["at"], d["test"]) for d in decisions if d["decision"] == "event"]
    assert ("smoke", "2026-03-02T09:00:05Z", False) in events


def test_retained_state_after_a_restart_is_read_as_the_restarted_daemon_reads_it(
    tmp_path: Path,
) -> None:
    # Live, the restarted daemon's fresh parser takes the broker's retained state as news: a
    # detector that went into alarm while the gateway was down is raised at once.
    restart = T0 + timedelta(hours=1)
    decisions = replay(
        tmp_path,
        [
            encode_header("gw-restarts", T0),
            frame(T0 + timedelta(seconds=1), "smoke_kitchen", {"smoke": False}),
            encode_header("gw-restarts", restart),
            frame(restart + timedelta(seconds=1), "smoke_kitchen", {"smoke": True}, retained=True),
        ],
    )
    alarms = [(d["kind"], d["at"]) for d in decisions if d.get("kind") == "smoke"]
    assert alarms == [("smoke", "2026-03-02T09:00:01Z")]


def test_the_recorder_marks_each_daemon_run_and_not_each_rotation(tmp_path: Path) -> None:
    from replay.recorder import Recorder, rotated_path
    from replay.trace import TraceHeader, TraceReader

    path = tmp_path / "trace.jsonl"
    first = Recorder.open(path, gateway_id="gw", max_bytes=4096, keep=3)
    for n in range(200):  # enough to rotate
        first.tap(
            RawFrame(
                driver="zigbee",
                source="zigbee2mqtt/smoke_kitchen",
                payload=b'{"smoke":false}',
                wall_time=T0 + timedelta(seconds=n),
                mono_time=float(n),
            )
        )
        first.flush()
    first.close()
    assert first.stats.rotations > 0
    second = Recorder.open(path, gateway_id="gw")
    second.close()
    files = [rotated_path(path, i) for i in (3, 2, 1) if rotated_path(path, i).exists()]
    headers = [h for h in TraceReader(*files, path) if isinstance(h, TraceHeader)]
    assert len(headers) >= 3
    assert {h.session for h in headers} == {first.session, second.session}
    assert headers[-1].session == second.session != first.session
