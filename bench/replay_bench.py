"""Replay throughput: frames per second through `gatewayd replay --fast` (goal 50,000 frames/s).

    python -m bench.replay_bench [--weeks 60]

The trace is the library's week in the life of a resident living alone, repeated week after week
(each copy shifted by a week), so the rules see a long, realistic life. Measured in the same run:

- the limit: reading the trace and JSON-decoding its lines, nothing else (what any replay must
  at least do);
- the trace reader: lines to validated frames;
- the reader and the parsers: frames to readings;
- `gatewayd replay --fast` as a process (its own summary's rate: after start-up, before exit).

Not a test: figures depend on the machine, so they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import Report
from contract.home import load_config
from firmware_sim.scenarios import folder
from replay.trace import TraceReader, TraceWriter, iter_lines, read_frames

GOAL = 50_000.0


def long_trace(path: Path, weeks: int) -> int:
    """The week-alone trace repeated ``weeks`` times, one week after the other."""
    week = read_frames(folder("week_alone") / "trace.jsonl.gz")
    with TraceWriter.open(path, gateway_id="gw-bench", started=week[0].wall_time) as writer:
        for n in range(weeks):
            shift = timedelta(days=7 * n)
            for frame in week:
                writer.write(
                    frame.model_copy(
                        update={
                            "wall_time": frame.wall_time + shift,
                            "mono_time": frame.mono_time + shift.total_seconds(),
                        }
                    )
                )
    return len(week) * weeks


def rate_of(func: Any, *, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of ``func() -> frames``, in frames per second."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = func()
        best = max(best, count / (time.perf_counter() - t0))
    return best


def read_and_decode(path: Path) -> int:
    count = 0
    with path.open("rb") as stream:
        for line, _complete in iter_lines(stream, gzipped=path.suffix == ".gz", on_damage=print):
            json.loads(line)
            count += 1
    return count


def read_frames_only(path: Path) -> int:
    return sum(1 for _ in TraceReader(path).frames())


def read_and_parse(path: Path, config_path: Path) -> int:
    from gatewayd.daemon import build_drivers

    parsers = {k: d.create_parser() for k, d in build_drivers(load_config(config_path)).items()}
    count = 0
    for frame in TraceReader(path).frames():
        parsers[frame.driver].parse(frame)
        count += 1
    return count


def replay_process(path: Path, config_path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "replay",
            str(path),
            "--config",
            str(config_path),
            "--fast",
            "--out",
            "/dev/null",
            "--summary",
            "json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"gatewayd replay failed ({result.returncode}):\n{result.stderr}")
    summary: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weeks", type=int, default=60, help="weeks of life in the trace")
    args = parser.parse_args()
    config_path = folder("week_alone") / "home.toml"
    report = Report("replay")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.jsonl.gz"
        frames = long_trace(path, args.weeks)
        limit = rate_of(lambda: read_and_decode(path))
        report.add("read + JSON-decode lines", limit, "frames/s", limit, "read + decode")
        reader = rate_of(lambda: read_frames_only(path))
        report.add("trace reader (frames)", reader, "frames/s", limit, "read + decode")
        parse = rate_of(lambda: read_and_parse(path, config_path), repeat=1)
        report.add("reader + parsers", parse, "frames/s", limit, "read + decode")
        summary = replay_process(path, config_path)
        report.add(
            "gatewayd replay --fast",
            float(summary["frames_per_s"]),
            "frames/s",
            limit,
            "read + decode",
            goal=f">= {GOAL:,.0f} frames/s",
        )
        report.notes.append(
            f"{frames:,} frames ({args.weeks} weeks of week_alone), "
            f"{path.stat().st_size / 2**20:.1f} MiB gzip; replay took decisions: "
            f"{summary['decisions']:,}, alarms: {summary['alarms']}"
        )
    report.print()


if __name__ == "__main__":
    main()
