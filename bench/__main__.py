"""Run the benchmarks, each in a process of its own, and print one table of every figure.

    python -m bench [--quick] [--only NAME[,NAME...]] [--settle LOAD] [-- ARGS for the benchmark]

Each benchmark prints its own table and one JSON line (also appended to
``bench/results/latest.jsonl``); this runner collects the JSON lines and prints them together,
each figure beside the limit measured in the same run and the ratio. Exit status 1 if a
benchmark failed to run; a missed goal is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: name -> (module, extra args with --quick). Cheapest first.
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "dispatch_ingest": ("bench.dispatch_ingest", ["--quick"]),
    "supervision": ("bench.supervision", ["--quick"]),
    "dc09": ("bench.dc09", ["--quick"]),
    "login_storm": ("bench.login_storm", ["--quick"]),
    "latency": ("bench.latency", ["--quick"]),
    "console_push": ("bench.console_push", ["--quick"]),
    "ingest": ("bench.ingest", ["--quick"]),
    "drain": ("bench.drain", ["--quick"]),
    "footprint": ("bench.footprint", ["--quick"]),
    "replay": ("bench.replay_bench", ["--weeks", "6"]),
    "wristbands": ("bench.wristbands", ["--quick"]),
    "city": ("bench.city", ["--quick"]),
}

ROOT = Path(__file__).resolve().parent.parent


def available() -> dict[str, tuple[str, list[str]]]:
    """The benchmarks whose modules exist in this checkout."""
    return {
        name: spec
        for name, spec in BENCHMARKS.items()
        if importlib.util.find_spec(spec[0]) is not None
    }


def run_one(module: str, args: list[str]) -> tuple[int, list[dict[str, Any]], float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: list[dict[str, Any]] = []
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return process.wait(), lines, time.monotonic() - t0


def settle(below: float, *, longest_s: float, poll_s: float = 5.0) -> float:
    """Wait until the 1-minute load average is under ``below`` (the last benchmark's own load
    decays in about a minute), at most ``longest_s``; the load it ends at is returned."""
    deadline = time.monotonic() + longest_s
    load = os.getloadavg()[0]
    if load >= below:
        print(f"-- waiting for a load average under {below} (now {load:.2f})", flush=True)
    while load >= below and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        load = os.getloadavg()[0]
    if load >= below:
        print(f"-- still {load:.2f} after {longest_s:.0f} s: running anyway", flush=True)
    return load


def summary(results: list[dict[str, Any]]) -> None:
    print("\n== summary")
    rows = [
        (r["benchmark"], f["name"], f["value"], f["unit"], f["limit"], f["ratio"], f["goal"])
        for r in results
        for f in r["figures"]
    ]
    width = max((len(f"{b}: {n}") for b, n, *_ in rows), default=10)
    print(f"{'figure':<{width}}  {'value':>12}  {'limit':>12}  {'ratio':>8}  unit; goal")
    for bench, name, value, unit, limit, ratio, goal in rows:
        lim = f"{limit:,.2f}" if limit is not None else "-"
        rat = f"{ratio:,.3f}" if ratio is not None else "-"
        print(
            f"{bench + ': ' + name:<{width}}  {value:>12,.2f}  {lim:>12}  {rat:>8}  "
            f"{unit}{'; goal ' + goal if goal else ''}"
        )
    starts = [
        f"{r['benchmark']} {r['started_at_load']:.2f}" for r in results if "started_at_load" in r
    ]
    if starts:
        print(f"1-minute load average as each began: {', '.join(starts)}")
    for r in results:
        for note in r.get("notes", []):
            if "GOAL MISSED" in note:
                print(f"  {r['benchmark']}: {note}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller counts")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        metavar="LOAD",
        help="before each benchmark, wait until the 1-minute load average is under LOAD "
        "(at most --settle-max seconds): figures from a quiet machine",
    )
    parser.add_argument(
        "--settle-max",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="the longest wait for --settle (default 300)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.settle is not None and args.settle <= 0:
        parser.error(f"--settle must be a load average above 0, not {args.settle}")
    if args.settle_max < 0:
        parser.error(f"--settle-max must be 0 seconds or more, not {args.settle_max}")
    benches = available()
    if args.list:
        print("\n".join(benches))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(benches)
    unknown = [n for n in names if n not in benches]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(benches)}")
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        module, quick_args = benches[name]
        started_at = (
            settle(args.settle, longest_s=args.settle_max)
            if args.settle is not None
            else os.getloadavg()[0]
        )
        code, lines, elapsed = run_one(module, [*(quick_args if args.quick else []), *extra])
        print(f"-- {name}: exit {code} after {elapsed:.0f} s", flush=True)
        results += [{**line, "started_at_load": started_at} for line in lines]
        if code != 0 or not lines:
            failed.append(name)
    summary(results)
    if failed:
        print(f"failed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
