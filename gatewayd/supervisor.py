"""Driver supervision: run a driver's transport for ever, restarting it with back-off.

A transport raises when its wire fails for good (and must not return at all). Each failure
goes out through the same ``submit`` as the driver's frames, as a ``link`` down frame: in the
daemon the rules turn it into a ``driver_fault`` trouble, in ``gatewayd record`` it is
recorded, so a replay sees what the daemon saw. The restart waits with the shared
:class:`~runtime.backoff.Backoff`; a run that stayed up for ``healthy_after_s`` starts the
next outage's back-off afresh.

Both ``gatewayd run`` (:mod:`gatewayd.daemon`) and ``gatewayd record`` supervise their drivers
with :class:`DriverRunner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from contract.wire import DriverHealth, RawFrame
from drivers.base import Driver, DriverError
from runtime.backoff import EQUAL_JITTER, Backoff

__all__ = ["DriverRunner", "restart_backoff"]

log = structlog.get_logger(__name__)

#: A run that lasted this long was healthy: its failure is the first of a new outage.
HEALTHY_AFTER_S = 60.0


def restart_backoff(initial: float = 1.0, maximum: float = 60.0) -> Backoff:
    """The restart delays: doubling from ``initial`` to ``maximum``, never less than half."""
    return Backoff(initial, maximum, jitter=EQUAL_JITTER)


class DriverRunner:
    """Runs one driver's transport, restarting it with back-off when it fails."""

    def __init__(
        self,
        driver: Driver,
        submit: Callable[[RawFrame], Awaitable[Any]],
        *,
        backoff: Backoff | None = None,
        healthy_after_s: float = HEALTHY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self._submit = submit
        self._backoff = backoff or restart_backoff()
        self._healthy_after_s = healthy_after_s
        self._clock = clock
        self.state = "starting"
        self.detail = ""
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"driver:{self.driver.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "stopped"

    async def _loop(self) -> None:
        bound = log.bind(driver=self.driver.id)
        while True:
            started = self._clock()
            self.state, self.detail = "running", ""
            try:
                await self.driver.run(self._submit)
                raise DriverError("transport returned; it should run until cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                self.state, self.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
                bound.error("driver_failed", error=self.detail, restarts=self.restarts)
                # The failure travels the data path, so the rules raise a driver_fault trouble.
                await self._submit(self.driver.link_frame(False, self.detail))
            if self._clock() - started > self._healthy_after_s:
                self._backoff.reset()
            await self._backoff.wait()

    def health(self) -> DriverHealth:
        state = (
            self.state if self.state in ("starting", "running", "failed", "stopped") else "degraded"
        )
        return DriverHealth(
            name=self.driver.id,
            state=state,
            detail=self.detail,
            restarts=self.restarts,
        )
