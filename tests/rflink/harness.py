"""Run a driver's transport into its parser and wait for the readings a test expects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from contract.wire import RawFrame, Reading
from drivers.base import Driver, FrameParser
from tests.fixtures.waiting import await_until

Match = Callable[[Reading], bool]


def has(device: str, prop: str, value: Any = ...) -> Match:
    def match(r: Reading) -> bool:
        return r.device == device and r.property == prop and (value is ... or r.value == value)

    match.__name__ = f"{device}.{prop}={value!r}"
    return match


class Pipeline:
    """The driver's frames, each parsed as the daemon would, kept in order."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.parser: FrameParser = driver.create_parser()
        self.frames: list[RawFrame] = []
        self.readings: list[Reading] = []

    async def emit(self, frame: RawFrame) -> None:
        self.frames.append(frame)
        self.readings.extend(self.parser.parse(frame))

    async def wait_for(self, match: Match, *, after: int = 0, within: float = 5.0) -> Reading:
        """The first reading (from index ``after``) that matches; fails after ``within`` seconds."""
        readings = await await_until(
            lambda: self.readings[after:],
            within,
            f"a reading {getattr(match, '__name__', match)} from #{after}",
            check=lambda seen: any(match(r) for r in seen),
        )
        return next(r for r in readings if match(r))

    def count(self, match: Match, *, after: int = 0) -> int:
        return sum(1 for r in self.readings[after:] if match(r))

    def mark(self) -> int:
        return len(self.readings)


@contextlib.asynccontextmanager
async def running(driver: Driver) -> AsyncIterator[Pipeline]:
    pipeline = Pipeline(driver)
    task = asyncio.create_task(driver.run(pipeline.emit))
    try:
        yield pipeline
        if task.done():  # the transport must never end on its own
            task.result()
            raise AssertionError("driver.run returned without being cancelled")
    finally:
        task.cancel()
        # A transport that swallows its cancellation would hang the daemon's shutdown.
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await task
