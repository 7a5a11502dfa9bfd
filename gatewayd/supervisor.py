"""Driver supervision: run a driver's transport for ever, restarting it with back-off.

A transport raises when its wire fails for good (and must not return at all). Each failure
goes out through the same ``submit`` as the driver's frames, as a ``link`` down frame: in the
daemon the rules turn it into a ``driver_fault`` trouble, in ``gatewayd record`` it is
recorded, so a replay sees what the daemon saw. The restart waits with the shared
:class:`~runtime.backoff.Backoff`; a run that stayed up for ``healthy_after_s`` starts the
next outage's back-off afresh.

A transport that keeps running while its own link (broker, port, receiver) is down says so with
``link`` frames; the runner watches them on their way out, so the driver is ``degraded`` from
``link_down_since`` until its link is up again, not ``running``.

Both ``gatewayd run`` (:mod:`gatewayd.daemon`) and ``gatewayd record`` supervise their drivers
with :class:`DriverRunner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
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
        #: When the driver's link went down (a ``link`` down frame or a failure); None while up.
        self.link_down_since: datetime | None = None
        self.link_down_reason = ""
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
                await self.driver.run(self._emit)
                raise DriverError("transport returned; it should run until cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                self.state, self.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
                bound.error("driver_failed", error=self.detail, restarts=self.restarts)
                # The failure travels the data path, so the rules raise a driver_fault trouble.
                await self._emit(self.driver.link_frame(False, self.detail))
            if self._clock() - started > self._healthy_after_s:
                self._backoff.reset()
            await self._backoff.wait()

    async def _emit(self, frame: RawFrame) -> Any:
        if frame.kind == "link":
            self._note_link(frame)
        # What submit returns (the pipeline's future of the frame being durable) goes back to
        # the transport, which acknowledges its wire only then.
        return await self._submit(frame)

    def _note_link(self, frame: RawFrame) -> None:
        if frame.payload == b"up":
            self.link_down_since, self.link_down_reason = None, ""
            return
        reason = frame.payload.removeprefix(b"down:").decode("utf-8", "replace")
        self.link_down_reason = reason[:300]
        if self.link_down_since is None:  # an outage starts once, however often it is reported
            self.link_down_since = frame.wall_time

    @property
    def effective_state(self) -> str:
        """The runner's state, ``degraded`` while the transport runs but its link is down."""
        if self.state == "running" and self.link_down_since is not None:
            return "degraded"
        return self.state

    @property
    def effective_detail(self) -> str:
        if self.effective_state == "degraded":
            return f"link down: {self.link_down_reason or 'no reason given'}"
        return self.detail

    def health(self) -> DriverHealth:
        """The driver in the heartbeat. The contract's DriverHealth has no field for when the
        link went down (a new field would make an older dispatch refuse every heartbeat), so
        the detail says it: ``link down since 2026-11-29T08:10:00Z: <reason>``."""
        state = self.effective_state
        detail = self.effective_detail
        if state == "degraded" and self.link_down_since is not None:
            since = self.link_down_since.strftime("%Y-%m-%dT%H:%M:%SZ")
            detail = f"link down since {since}: {self.link_down_reason or 'no reason given'}"
        return DriverHealth(
            name=self.driver.id,
            state=state if state in ("starting", "running", "failed", "stopped") else "degraded",
            detail=detail,
            restarts=self.restarts,
        )
