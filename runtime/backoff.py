"""The one exponential back-off every retry loop uses: capped, jittered, reset on success.

The delay before retry ``n`` (0 for the first retry after a failure) is drawn from the
*ceiling* ``min(maximum, initial * factor**n)``, scaled by a uniform draw from the
:class:`Jitter` range and capped at ``maximum`` again::

    backoff = Backoff(0.5, 30.0, jitter=EQUAL_JITTER)
    while True:
        try:
            await connect_and_serve()
        except OSError:
            delay = await backoff.wait()      # or: delay = backoff.next_delay(); log; sleep
            continue
        backoff.reset()                        # a success starts the next outage afresh

Jitter spreads reconnects of many gateways (or many devices of one gateway) after a shared
outage, so they do not arrive at the broker or dispatch in lock-step:

- :data:`FULL_JITTER` draws from ``[0, ceiling]``: the widest spread (the forwarder);
- :data:`EQUAL_JITTER` from ``[ceiling / 2, ceiling]``: never retries at once;
- :data:`NARROW_JITTER` from ``[0.8, 1.2] * ceiling`` (capped): keeps the doubling's pace;
- :data:`NO_JITTER` waits the ceiling itself (a local resource, nobody to collide with).

The rng and the sleep are injectable, so tests neither wait nor depend on chance.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

__all__ = ["EQUAL_JITTER", "FULL_JITTER", "NARROW_JITTER", "NO_JITTER", "Backoff", "Jitter"]


@dataclass(frozen=True)
class Jitter:
    """A delay is ``ceiling * uniform(low, high)``, capped at the back-off's maximum."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"jitter bounds must be finite numbers, got {self.low}, {self.high}")
        if not 0.0 <= self.low <= self.high:
            raise ValueError(f"jitter needs 0 <= low <= high, got low={self.low}, high={self.high}")


FULL_JITTER = Jitter(0.0, 1.0)
EQUAL_JITTER = Jitter(0.5, 1.0)
NARROW_JITTER = Jitter(0.8, 1.2)
NO_JITTER = Jitter(1.0, 1.0)

Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    """Exponential back-off with jitter; counts the failures since the last :meth:`reset`."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: Jitter = FULL_JITTER,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        for name, value in (("initial", initial), ("maximum", maximum), ("factor", factor)):
            if not math.isfinite(value):
                raise ValueError(f"back-off {name} must be a finite number, got {value}")
        if initial <= 0:
            raise ValueError(f"back-off initial delay must be positive, got {initial}")
        if maximum < initial:
            raise ValueError(
                f"back-off maximum ({maximum}) must be at least the initial delay ({initial})"
            )
        if factor < 1:
            raise ValueError(f"back-off factor must be at least 1, got {factor}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._sleep = sleep
        #: Failures since the last reset: the next delay is for retry number ``failures``.
        self.failures = 0
        # From this retry on the ceiling is surely the maximum; the power is not computed past
        # it, where it could overflow a float (one step of slack for the logarithm's rounding).
        ratio = self.maximum / self.initial
        self._capped_from: float = (
            math.inf if self.factor == 1.0 else math.ceil(math.log(ratio, self.factor)) + 1
        )

    def ceiling(self, retry: int) -> float:
        """The largest delay before retry number ``retry`` (0 is the first): never decreasing."""
        if retry < 0:
            raise ValueError(f"retry number must be 0 or more, got {retry}")
        if retry >= self._capped_from:
            return self.maximum
        return min(self.maximum, self.initial * self.factor**retry)

    def delay_for(self, retry: int) -> float:
        """A jittered delay before retry number ``retry``; the failure count is not touched."""
        drawn = self.ceiling(retry) * self._rng.uniform(self.jitter.low, self.jitter.high)
        return min(self.maximum, drawn)

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before trying again."""
        delay = self.delay_for(self.failures)
        self.failures += 1
        return delay

    async def wait(self) -> float:
        """Count a failure and sleep its delay (with the injected sleep); returns the delay."""
        delay = self.next_delay()
        await self._sleep(delay)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits about ``initial`` again."""
        self.failures = 0

    def delays(self) -> Iterator[float]:
        """The delays of consecutive failures, endlessly (each one counted as it is taken)."""
        while True:
            yield self.next_delay()
