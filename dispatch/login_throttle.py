"""Slowing password guessing: failed logins per user and per address, in this process's memory.

Each user and each client address may fail a few logins freely; after that, each further attempt
waits twice as long as the one before (1 s, 2 s, 4 s, ... up to a cap). Failures older than the
window are forgotten, and a successful login forgets its user's failures. The wait is answered
before any password is checked, so a guesser costs no argon2 time while it waits.

An attempt counts as a failure from the moment it starts (and is taken back if it succeeds): so
concurrent guesses cannot all slip in before the first one's failure is recorded.

The memory is per process, by design: a dispatch centre runs one or two processes, and keeping
it out of the database keeps a guessing storm off the database that carries the alarms. Keys are
bounded (the oldest are dropped first), so random usernames cannot grow it without limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Attempt", "LoginThrottle"]


@dataclass(frozen=True)
class Attempt:
    """One login attempt, counted as a failure until :meth:`LoginThrottle.succeeded`."""

    user_key: str
    address_key: str
    at: float


class _Failures:
    """Failure times per key, oldest key first."""

    def __init__(self, free: int, max_keys: int) -> None:
        self.free = free
        self.max_keys = max_keys
        self.times: OrderedDict[str, deque[float]] = OrderedDict()

    def recent(self, key: str, since: float) -> deque[float]:
        times = self.times.get(key)
        if times is None:
            return deque()
        while times and times[0] <= since:
            times.popleft()
        if not times:
            del self.times[key]
        return times

    def add(self, key: str, at: float) -> None:
        self.times.setdefault(key, deque()).append(at)
        self.times.move_to_end(key)
        while len(self.times) > self.max_keys:
            self.times.popitem(last=False)

    def remove(self, key: str, at: float) -> None:
        times = self.times.get(key)
        if times is not None and at in times:
            times.remove(at)

    def wait(self, key: str, now: float, since: float, cap: float) -> float:
        times = self.recent(key, since)
        excess = len(times) - self.free
        if excess < 0:
            return 0.0
        delay = cap if excess >= 64 else min(cap, 2.0**excess)
        return min(delay, max(0.0, times[-1] + delay - now))


class LoginThrottle:
    """Per-user and per-address failed-login counting, with an exponential wait past a limit."""

    def __init__(
        self,
        *,
        per_user: int,
        per_address: int,
        max_delay_s: float,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._users = _Failures(per_user, max_keys)
        self._addresses = _Failures(per_address, max_keys)
        self._max_delay_s = max_delay_s
        self._window_s = window_s
        self._clock = clock

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until this user may try again from this address (0: now)."""
        now = self._clock()
        since = now - self._window_s
        return max(
            self._users.wait(username, now, since, self._max_delay_s),
            self._addresses.wait(address, now, since, self._max_delay_s),
        )

    def begin(self, username: str, address: str) -> Attempt:
        """Count an attempt as a failure until it succeeds."""
        attempt = Attempt(username, address, self._clock())
        self._users.add(username, attempt.at)
        self._addresses.add(address, attempt.at)
        return attempt

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: forget the user's failures and take back this attempt."""
        self._users.times.pop(attempt.user_key, None)
        self._addresses.remove(attempt.address_key, attempt.at)

    def tracked_keys(self) -> int:
        return len(self._users.times) + len(self._addresses.times)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (a client retrying at 0 would only be refused)."""
    return str(max(1, math.ceil(seconds)))
