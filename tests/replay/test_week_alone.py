"""The library's scenarios through `gatewayd replay`: the real Zigbee2MQTT parser and rule engine.

- the week in the life of a resident living alone replays to its expected decisions, and those
  hold what the story says must be raised;
- replaying twice gives byte-identical decisions; --fast and --speed give the same decisions;
- an altered expectation fails with a readable diff;
- corrupt and torn trace lines are reported by line number and skipped, and the replay goes on.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from firmware_sim.scenarios import folder
from tests.fixtures.procs import run_module

WEEK = folder("week_alone")


def replay(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    result = run_module("gatewayd", "replay", *args, "--no-progress", timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def decisions(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def week_decisions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("week") / "decisions.jsonl"
    code, _, err = replay(
        str(WEEK / "trace.jsonl.gz"), "--config", str(WEEK / "home.toml"), "--out", str(out)
    )
    assert code == 0, err
    return out


def test_week_alone_replays_to_its_expected_decisions() -> None:
    code, out, err = replay(
        str(WEEK / "trace.jsonl.gz"),
        "--config",
        str(WEEK / "home.toml"),
        "--expect",
        str(WEEK / "expected.jsonl"),
    )
    assert code == 0, err
    assert "decisions match the expected file" in err
    assert out == ""  # with --expect and no --out, decisions are compared, not printed


@pytest.mark.parametrize("name", ["sos_at_night", "kitchen_gas", "rf_smoke_hall"])
def test_the_other_scenarios_replay_to_their_expected_decisions(name: str) -> None:
    scenario = folder(name)
    code, _, err = replay(
        str(scenario / "trace.jsonl.gz"),
        "--config",
        str(scenario / "home.toml"),
        "--expect",
        str(scenario / "expected.jsonl"),
    )
    assert code == 0, err
    expected = [
        json.loads(line)
        for line in (scenario / "expected.jsonl").read_text().splitlines()
        if line.startswith("{")
    ]
    alarms = {(d["kind"], d["device_id"]) for d in expected if d["decision"] == "event"}
    story = {
        "sos_at_night": {("sos", "sos-button"), ("sos_restore", "sos-button")},
        "kitchen_gas": {("gas", "gas-kitchen"), ("water_leak", "leak-bathroom")},
        "rf_smoke_hall": {("smoke", "rf-smoke-hall"), ("sos", "rf-pendant")},
    }[name]
    assert story <= alarms
    # Acknowledged by dispatch: escalation stops (a handful at most, not one a minute for hours).
    assert sum(1 for d in expected if d.get("kind") == "escalation") <= 3


def test_the_expected_decisions_tell_the_story(week_decisions: Path) -> None:
    events = [d for d in decisions(week_decisions) if d["decision"] == "event"]
    kinds = {(e["kind"], e["device_id"]) for e in events}
    # Friday 18:05 Berlin: smoke in the kitchen, raised at that very second.
    smoke = [e for e in events if e["kind"] == "smoke"]
    assert smoke
    assert smoke[0]["at"] == "2026-03-06T17:05:00Z"
    assert smoke[0]["device_id"] == "smoke-kitchen"
    assert any(e["kind"] == "smoke_restore" for e in events)
    # The smoke detector's battery ran down.
    assert ("low_battery", "smoke-kitchen") in kinds
    # Thursday 10:41 Berlin: a fall, then no movement: an inactivity (or fall) alarm that day,
    # raised by the clock, not by a reading.
    still = [
        e
        for e in events
        if e["kind"] in ("inactivity", "fall")
        and "2026-03-05T09:41:00Z" < str(e["at"]) < "2026-03-06"
    ]
    assert still, "no alarm after the fall"
    assert still[0]["reading"] is None or still[0]["kind"] == "fall"
    # Saturday 13:00: the front door sensor dropped off the network, and stayed off.
    door = [
        e
        for e in events
        if e["device_id"] == "door-front" and str(e["kind"]).startswith("device_offline")
    ]
    assert door
    assert door[-1]["kind"] == "device_offline"
    assert str(door[-1]["at"]) > "2026-03-07T12:00:00Z"


def test_no_false_troubles_or_alarms(week_decisions: Path) -> None:
    events = [d for d in decisions(week_decisions) if d["decision"] == "event"]
    # Every other device checked in all week (about hourly): a device_offline for any of them,
    # or for the door before it dropped, is a false trouble that would reach dispatch.
    false_offline = [
        (e["at"], e["device_id"])
        for e in events
        if e["kind"] == "device_offline"
        and (e["device_id"] != "door-front" or str(e["at"]) < "2026-03-07T12:00:00Z")
    ]
    assert false_offline == []
    # Inactivity only on the day of the fall.
    assert {str(e["at"])[:10] for e in events if e["kind"] == "inactivity"} == {"2026-03-05"}
    # No alarm at all on the ordinary days before the fall.
    early_alarms = [
        e
        for e in events
        if e["kind"] in ("smoke", "gas", "water_leak", "sos", "inactivity", "fall", "intrusion")
        and str(e["at"]) < "2026-03-05T09:41:00Z"
    ]
    assert early_alarms == []


def test_replaying_twice_gives_byte_identical_decisions(
    week_decisions: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.jsonl"
    code, _, err = replay(
        str(WEEK / "trace.jsonl.gz"), "--config", str(WEEK / "home.toml"), "--out", str(again)
    )
    assert code == 0, err
    assert again.read_bytes() == week_decisions.read_bytes()
    assert week_decisions.read_bytes().count(b"\n") > 10


def test_an_altered_expectation_fails_with_a_readable_diff(
    week_decisions: Path, tmp_path: Path
) -> None:
    lines = week_decisions.read_text().splitlines()
    smoke_at = next(i for i, line in enumerate(lines) if '"kind": "smoke"' in line)
    altered = list(lines)
    altered[smoke_at] = altered[smoke_at].replace("2026-03-06T17:05:00Z", "2026-03-06T17:06:00Z")
    del altered[0]
    altered.append(json.dumps({"at": "2026-03-09T00:00:00Z", "decision": "event", "kind": "sos"}))
    expected = tmp_path / "expected.jsonl"
    expected.write_text("\n".join(altered) + "\n")
    code, _, err = replay(
        str(WEEK / "trace.jsonl.gz"), "--config", str(WEEK / "home.toml"), "--expect", str(expected)
    )
    assert code == 1
    assert f"--- {expected}" in err
    assert "+++ replayed" in err
    assert '-{"at": "2026-03-06T17:06:00Z"' in err
    assert '+{"at": "2026-03-06T17:05:00Z"' in err
    assert "1 missing, 1 extra, 1 changed" in err or "missing" in err
    assert (
        "changed: 2026-03-06T17:06:00Z smoke smoke-kitchen  ->  2026-03-06T17:05:00Z smoke" in err
    )


def test_fast_and_paced_replays_decide_the_same(tmp_path: Path) -> None:
    gas = folder("kitchen_gas")
    fast, paced = tmp_path / "fast.jsonl", tmp_path / "paced.jsonl"
    args = (str(gas / "trace.jsonl.gz"), "--config", str(gas / "home.toml"))
    code, _, err = replay(*args, "--fast", "--out", str(fast))
    assert code == 0, err
    # 4 hours of trace at 7200x: about two seconds of real pacing.
    code, _, err = replay(*args, "--speed", "7200", "--out", str(paced), "--summary", "json")
    assert code == 0, err
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["elapsed_s"] > 1.5
    assert paced.read_bytes() == fast.read_bytes()
    assert any(d["kind"] == "gas" for d in decisions(fast))


def test_corrupt_and_torn_lines_are_reported_and_skipped(
    week_decisions: Path, tmp_path: Path
) -> None:
    lines = gzip.decompress((WEEK / "trace.jsonl.gz").read_bytes()).splitlines(keepends=True)
    lines.insert(4, b"}}} not json\n")  # line 5
    lines.insert(99, b'{"t":"frame","driver":"zigbee"}\n')  # line 100
    lines.append(b'{"t":"frame","wall":"2026-03-09T04:00:00Z","mono":1.0,"dri')  # torn
    trace = tmp_path / "damaged.jsonl"
    trace.write_bytes(b"".join(lines))
    out = tmp_path / "out.jsonl"
    code, _, err = replay(
        str(trace), "--config", str(WEEK / "home.toml"), "--out", str(out), "--summary", "json"
    )
    assert code == 0, err
    assert f"{trace}:5: not JSON" in err
    assert f"{trace}:100: " in err
    assert f"{trace}:{len(lines)}: truncated last line" in err
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["skipped_lines"] == 3
    # The bad lines held no frames: the decisions are those of the clean trace.
    assert out.read_bytes() == week_decisions.read_bytes()


def test_the_trace_may_come_in_rotated_pieces(week_decisions: Path, tmp_path: Path) -> None:
    lines = gzip.decompress((WEEK / "trace.jsonl.gz").read_bytes()).splitlines(keepends=True)
    half = len(lines) // 2
    header = lines[0]
    (tmp_path / "t.1.jsonl").write_bytes(b"".join(lines[:half]))
    (tmp_path / "t.jsonl").write_bytes(header + b"".join(lines[half:]))
    out = tmp_path / "out.jsonl"
    code, _, err = replay(
        str(tmp_path / "t.1.jsonl"),
        str(tmp_path / "t.jsonl"),
        "--config",
        str(WEEK / "home.toml"),
        "--out",
        str(out),
    )
    assert code == 0, err
    assert out.read_bytes() == week_decisions.read_bytes()


def test_bad_flags_and_files_are_named(tmp_path: Path) -> None:
    args = (str(WEEK / "trace.jsonl.gz"), "--config", str(WEEK / "home.toml"))
    code, _, err = replay(*args, "--speed", "2", "--fast")
    assert code == 2
    assert "exclude" in err
    code, _, err = replay(*args, "--until", "tomorrow")
    assert code == 2
    assert "--until" in err
    code, _, err = replay(str(tmp_path / "missing.jsonl"), "--config", str(WEEK / "home.toml"))
    assert code == 1
    assert "missing.jsonl" in err
    bad = tmp_path / "home.toml"
    shutil.copy(WEEK / "home.toml", bad)
    bad.write_text(bad.read_text().replace('role = "smoke"', 'role = "smok"'))
    code, _, err = replay(str(WEEK / "trace.jsonl.gz"), "--config", str(bad))
    assert code == 3
    assert "smok" in err


def test_until_keeps_the_clock_running_after_the_last_frame(tmp_path: Path) -> None:
    night = folder("sos_at_night")
    out = tmp_path / "out.jsonl"
    code, _, err = replay(
        str(night / "trace.jsonl.gz"),
        "--config",
        str(night / "home.toml"),
        "--until",
        "2026-03-12T08:00:00Z",
        "--out",
        str(out),
        "--summary",
        "json",
    )
    assert code == 0, err
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["last_at"] == "2026-03-12T08:00:00Z"
    assert any(d["kind"] == "sos" for d in decisions(out))
