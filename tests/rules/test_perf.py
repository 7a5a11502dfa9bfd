"""The cost of one telemetry reading through the engine (the daemon feeds every reading).

Compared, in the same run, with work the machine's speed and load change alike: building the
``Reading`` itself (what a parser pays for every reading anyway), and the same feed in a home
eighty times bigger. No wall-clock limit: on a busy machine both sides slow down together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from rules import RuleEngine
from tests.rules.builders import HOME, T0, dev, engine, rd

N = 5000
ROUNDS = 5
#: Measured about 0.4-0.9 (feed / build) and 1.1-1.3 (big home / test home) on a 2-core VM.
FEED_PER_BUILD_LIMIT = 3.0
BIG_HOME_LIMIT = 3.0

BIG_HOME = (
    *HOME,
    *(dev(f"pir-x{i}", "motion") for i in range(500)),
    *(dev(f"door-x{i}", "door") for i in range(500)),
)

CASES = [("pir-1", "motion", True), ("pir-1", "battery", 80), ("door-1", "contact_open", False)]


def best_per_call(*runs: Callable[[], None]) -> list[float]:
    """Seconds per call of each run (N calls each), the best of ``ROUNDS`` interleaved rounds:
    interleaving lets other work on the machine slow every run alike."""
    best = [float("inf")] * len(runs)
    for _ in range(ROUNDS):
        for k, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[k] = min(best[k], (time.perf_counter() - start) / N)
    return best


def feeding(e: RuleEngine, device: str, prop: str, value: object) -> Callable[[], None]:
    reading = rd(device, prop, value)
    e.feed(reading, T0)
    times = [T0 + timedelta(seconds=i * 0.01) for i in range(N)]

    def run() -> None:
        for now in times:
            e.feed(reading, now)

    return run


def building(device: str, prop: str, value: object) -> Callable[[], None]:
    def run() -> None:
        for _ in range(N):
            rd(device, prop, value)

    return run


@pytest.mark.parametrize(("device", "prop", "value"), CASES)
def test_feed_costs_no_more_than_a_few_times_building_the_reading(
    device: str, prop: str, value: object
) -> None:
    e = engine(inactivity=True, supervision=True)
    feed, build = best_per_call(feeding(e, device, prop, value), building(device, prop, value))
    print(f"feed({prop}={value!r}): {feed * 1e6:.2f} µs; building the reading {build * 1e6:.2f} µs")
    assert feed / build < FEED_PER_BUILD_LIMIT


@pytest.mark.parametrize(("device", "prop", "value"), CASES)
def test_feed_cost_does_not_grow_with_the_home(device: str, prop: str, value: object) -> None:
    small = engine(inactivity=True, supervision=True)
    big = engine(devices=BIG_HOME, inactivity=True, supervision=True)
    in_small, in_big = best_per_call(
        feeding(small, device, prop, value), feeding(big, device, prop, value)
    )
    print(
        f"feed({prop}={value!r}): {in_small * 1e6:.2f} µs with {len(HOME)} devices, "
        f"{in_big * 1e6:.2f} µs with {len(BIG_HOME)}"
    )
    assert in_big / in_small < BIG_HOME_LIMIT
