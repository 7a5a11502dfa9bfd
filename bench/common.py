"""Shared parts of the benchmarks: the physical limits they are compared with, and reporting.

Every benchmark measures, in the same run, the limit it is compared with (a bare fsync'd SQLite
commit on the same disk, the broker's own publish-to-subscribe round trip, a bare MQTT client's
receive rate, ...) and prints its figure beside that limit as a ratio. None of this is a test:
figures depend on the machine, so they are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Figure",
    "Report",
    "broker_roundtrip_ms",
    "fsync_commit_ms",
    "machine",
    "percentile",
]

RESULTS_DIR = Path(__file__).parent / "results"


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        # Other work on the machine skews every figure: say how busy it was.
        "loadavg_1m": os.getloadavg()[0],
    }


def fsync_commit_ms(directory: Path | None = None, n: int = 200) -> dict[str, float]:
    """Latency of one small fully-synchronous SQLite commit (WAL) on the given disk."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        conn = sqlite3.connect(Path(tmp) / "limit.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (body) VALUES (?)", (f"event {i}",))
            conn.execute("COMMIT")
            samples.append((time.perf_counter() - t0) * 1000)
        conn.close()
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "n": n}


async def _broker_roundtrip(host: str, port: int, n: int) -> list[float]:
    import aiomqtt

    topic = f"bench/limit/{uuid.uuid4().hex[:8]}"
    samples: list[float] = []
    async with aiomqtt.Client(host, port) as sub, aiomqtt.Client(host, port) as pub:
        await sub.subscribe(topic, qos=1)
        messages = sub.messages
        for i in range(n):
            t0 = time.perf_counter()
            await pub.publish(topic, str(i).encode(), qos=1)
            async for _ in messages:
                break
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


def broker_roundtrip_ms(
    host: str = "127.0.0.1", port: int = 1883, n: int = 500
) -> dict[str, float]:
    """The broker's own publish-to-subscribe round trip (QoS 1), measured with two bare clients."""
    samples = asyncio.run(_broker_roundtrip(host, port, n))
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "n": n}


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    limit: float | None = None
    limit_name: str = ""
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        if self.limit is None or self.limit == 0:
            return None
        return self.value / self.limit


@dataclass
class Report:
    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def print(self) -> None:
        width = max((len(f.name) for f in self.figures), default=10)
        print(f"\n== {self.benchmark}")
        print(f"{'figure':<{width}}  {'value':>12}  {'limit':>12}  {'ratio':>8}  goal")
        for f in self.figures:
            limit = f"{f.limit:,.2f}" if f.limit is not None else "-"
            ratio = f"{f.ratio:,.2f}" if f.ratio is not None else "-"
            print(
                f"{f.name:<{width}}  {f.value:>12,.2f}  {limit:>12}  {ratio:>8}  "
                f"{f.unit}{'; ' + f.limit_name if f.limit_name else ''}"
                f"{'; goal ' + f.goal if f.goal else ''}"
            )
        for note in self.notes:
            print(f"  note: {note}")
        line = {
            "benchmark": self.benchmark,
            "machine": machine(),
            "figures": [
                {
                    "name": f.name,
                    "value": round(f.value, 4),
                    "unit": f.unit,
                    "limit": None if f.limit is None else round(f.limit, 4),
                    "limit_name": f.limit_name,
                    "ratio": None if f.ratio is None else round(f.ratio, 4),
                    "goal": f.goal,
                }
                for f in self.figures
            ],
            "notes": self.notes,
        }
        print(json.dumps(line))
        RESULTS_DIR.mkdir(exist_ok=True)
        with (RESULTS_DIR / "latest.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
