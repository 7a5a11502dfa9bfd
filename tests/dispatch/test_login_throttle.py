"""Password guessing is slowed per user and per address, with a clear 429 and Retry-After; the
throttle's arithmetic is checked on a virtual clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.login_throttle import LoginThrottle
from dispatch.settings import Settings
from tests.dispatch.conftest import app_server, unique
from tests.fixtures.dispatch_app import DispatchApp

PER_USER, PER_ADDRESS = 3, 6


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded() -> Iterator[DispatchApp]:
    """A fresh centre (the throttle remembers failures per process) with small allowances.

    Its throttle runs on a clock that stands still: each attempt hashes a password, and on a busy
    machine a few hashes outlast the first one-second wait, which would make the test's outcome
    depend on the machine's speed. The waits themselves are checked on a virtual clock below.
    """
    settings = Settings(login_failures_per_user=PER_USER, login_failures_per_address=PER_ADDRESS)
    for server in app_server("sqlite", settings):
        server.services.login_throttle = LoginThrottle(
            per_user=PER_USER,
            per_address=PER_ADDRESS,
            max_delay_s=settings.login_lockout_max_s,
            clock=Clock(),
        )
        yield server


def attempt(server: DispatchApp, username: str, password: str) -> int:
    reply = server.http().post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    if reply.status_code == 429:
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["title"] == "too many failed logins"
        assert 1 <= int(reply.headers["retry-after"]) <= 300
        assert "try again in" in reply.json()["detail"]
    return reply.status_code


def test_guessing_one_users_password_is_throttled(guarded: DispatchApp) -> None:
    guarded.add_operator("victim", "the-right-password")
    statuses = [attempt(guarded, "victim", f"guess-{n}") for n in range(PER_USER + 2)]
    assert statuses == [401] * PER_USER + [429, 429]
    # Even the right password waits: a guesser must not learn it was right.
    assert attempt(guarded, "victim", "the-right-password") == 429
    # Another operator at the same address is not locked out by it.
    guarded.add_operator("colleague", "another-password")
    assert attempt(guarded, "colleague", "another-password") == 200


def test_guessing_from_one_address_is_throttled(guarded: DispatchApp) -> None:
    statuses = [attempt(guarded, unique("nobody"), "guess") for _ in range(PER_ADDRESS + 1)]
    assert statuses == [401] * PER_ADDRESS + [429]


def test_a_success_clears_the_users_failures(guarded: DispatchApp) -> None:
    guarded.add_operator("typo", "the-right-password")
    for _ in range(PER_USER - 1):
        assert attempt(guarded, "typo", "wrong") == 401
    assert attempt(guarded, "typo", "the-right-password") == 200
    for _ in range(PER_USER - 1):
        assert attempt(guarded, "typo", "wrong") == 401


@given(
    free=st.integers(1, 10),
    extra=st.integers(1, 20),
    max_delay=st.floats(1, 3600),
)
def test_delay_grows_is_capped_and_ends(free: int, extra: int, max_delay: float) -> None:
    clock = Clock()
    throttle = LoginThrottle(
        per_user=free, per_address=10_000, max_delay_s=max_delay, window_s=86400, clock=clock
    )
    for _ in range(free):
        assert throttle.retry_after("u", "a") == 0
        throttle.begin("u", "a")
    delays = []
    for _ in range(extra):
        wait = throttle.retry_after("u", "a")
        assert 0 < wait <= max_delay
        delays.append(wait)
        clock.now += wait + 1e-6  # float rounding: just past the end of the wait
        assert throttle.retry_after("u", "a") == 0
        throttle.begin("u", "a")
    growing = all(later >= earlier - 1e-6 for earlier, later in itertools.pairwise(delays))
    assert growing, f"each failure waits at least as long as the one before: {delays}"
    assert throttle.retry_after("other", "a") == 0


@given(failures=st.integers(0, 50), window=st.floats(1, 3600))
def test_failures_are_forgotten_after_the_window(failures: int, window: float) -> None:
    clock = Clock()
    throttle = LoginThrottle(
        per_user=1, per_address=1, max_delay_s=10 * window, window_s=window, clock=clock
    )
    for _ in range(failures):
        throttle.begin("u", "a")
    clock.now += window + 0.001
    assert throttle.retry_after("u", "a") == 0


def test_memory_is_bounded_under_random_usernames() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        per_user=5, per_address=10**9, max_delay_s=60, window_s=900, clock=clock, max_keys=100
    )
    for n in range(10_000):
        throttle.begin(f"user-{n}", "a")
    assert throttle.tracked_keys() <= 200
