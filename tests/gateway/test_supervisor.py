"""The driver supervisor both `gatewayd run` and `gatewayd record` use: restarts with back-off."""

from __future__ import annotations

import asyncio
import random

from contract.wire import RawFrame
from drivers.base import Driver, FrameParser, FrameSink, TransportError
from gatewayd.supervisor import DriverRunner, restart_backoff
from runtime.backoff import EQUAL_JITTER, Backoff
from runtime.timeouts import within


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BrokenDriver(Driver):
    """Each run stays up for the next of ``uptimes`` seconds (on the fake clock), then fails."""

    type_name = "broken"

    def __init__(self, clock: Clock, uptimes: list[float], *, returns: bool = False) -> None:
        super().__init__("rf", {}, [])
        self.clock = clock
        self.uptimes = uptimes
        self.returns = returns
        self.runs = 0

    def create_parser(self) -> FrameParser:
        raise NotImplementedError

    async def run(self, emit: FrameSink) -> None:
        self.runs += 1
        self.clock.now += self.uptimes[(self.runs - 1) % len(self.uptimes)]
        if self.returns:
            return
        raise TransportError(f"port gone (run {self.runs})")


class Sleeps:
    """The back-off's sleep: notes each delay, and lets the test stop after ``limit`` of them."""

    def __init__(self, clock: Clock, limit: int) -> None:
        self.clock = clock
        self.limit = limit
        self.delays: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds
        if len(self.delays) >= self.limit:
            self.done.set()
            await asyncio.Event().wait()  # park until the runner is stopped
        await asyncio.sleep(0)


async def supervise(
    driver: BrokenDriver, clock: Clock, limit: int, *, initial: float = 1.0, maximum: float = 8.0
) -> tuple[DriverRunner, Sleeps, list[RawFrame]]:
    frames: list[RawFrame] = []

    async def submit(frame: RawFrame) -> None:
        frames.append(frame)

    sleeps = Sleeps(clock, limit)
    backoff = Backoff(initial, maximum, jitter=EQUAL_JITTER, rng=random.Random(1), sleep=sleeps)
    runner = DriverRunner(driver, submit, backoff=backoff, clock=clock, healthy_after_s=60.0)
    runner.start()
    await within(sleeps.done.wait(), 5)
    return runner, sleeps, frames


async def test_a_failing_transport_is_restarted_with_doubling_capped_delays() -> None:
    clock = Clock()
    driver = BrokenDriver(clock, [0.1])
    runner, sleeps, frames = await supervise(driver, clock, limit=6)
    health = runner.health()
    await runner.stop()
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(sleeps.delays) == 6
    for delay, ceiling in zip(sleeps.delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert driver.runs == 6
    assert (health.state, health.restarts) == ("failed", 6)
    assert health.detail == "TransportError: port gone (run 6)"
    assert [f.payload for f in frames[:2]] == [
        b"down:TransportError: port gone (run 1)",
        b"down:TransportError: port gone (run 2)",
    ]
    assert all(f.kind == "link" and f.driver == "rf" for f in frames)
    assert runner.health().state == "stopped"


async def test_a_run_that_stayed_up_starts_the_back_off_afresh() -> None:
    clock = Clock()
    # Three quick failures, then a run that was up for two minutes, then a quick failure.
    driver = BrokenDriver(clock, [0.1, 0.1, 0.1, 120.0, 0.1])
    runner, sleeps, _ = await supervise(driver, clock, limit=5)
    await runner.stop()
    assert sleeps.delays[2] >= 2.0  # third failure in a row: ceiling 4
    assert sleeps.delays[3] <= 1.0  # after the healthy run: back to the initial ceiling
    assert sleeps.delays[4] >= 1.0  # and growing again from there


async def test_a_transport_that_returns_is_a_failure() -> None:
    clock = Clock()
    driver = BrokenDriver(clock, [0.1], returns=True)
    runner, _, frames = await supervise(driver, clock, limit=2)
    await runner.stop()
    assert frames[0].payload == (
        b"down:DriverError: transport returned; it should run until cancelled"
    )


def test_restart_delays_never_drop_below_half_the_ceiling() -> None:
    backoff = restart_backoff(1.0, 60.0)
    assert (backoff.initial, backoff.maximum, backoff.jitter) == (1.0, 60.0, EQUAL_JITTER)
