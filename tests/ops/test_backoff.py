"""The shared back-off: bounds, cap, reset and a ceiling that never comes down."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.backoff import (
    EQUAL_JITTER,
    FULL_JITTER,
    NARROW_JITTER,
    NO_JITTER,
    Backoff,
    Jitter,
)

initials = st.floats(min_value=1e-3, max_value=100.0)
spans = st.floats(min_value=1.0, max_value=1e4)  # maximum = initial * span
factors = st.floats(min_value=1.0, max_value=10.0)
jitters = st.sampled_from([FULL_JITTER, EQUAL_JITTER, NARROW_JITTER, NO_JITTER, Jitter(0, 3)])
retries = st.integers(min_value=0, max_value=10_000)


def make(initial: float, span: float, factor: float, jitter: Jitter, seed: int = 0) -> Backoff:
    return Backoff(initial, initial * span, factor=factor, jitter=jitter, rng=random.Random(seed))


@given(initials, spans, factors, jitters, retries, st.integers())
def test_every_delay_is_within_its_jitter_range_and_the_cap(
    initial: float, span: float, factor: float, jitter: Jitter, retry: int, seed: int
) -> None:
    backoff = make(initial, span, factor, jitter, seed)
    ceiling = backoff.ceiling(retry)
    delay = backoff.delay_for(retry)
    assert 0.0 <= delay <= backoff.maximum
    assert ceiling * jitter.low * (1 - 1e-12) <= delay <= ceiling * jitter.high * (1 + 1e-12)


@given(initials, spans, factors, jitters, retries)
def test_the_ceiling_grows_from_initial_to_the_cap_and_never_comes_down(
    initial: float, span: float, factor: float, jitter: Jitter, retry: int
) -> None:
    backoff = make(initial, span, factor, jitter)
    assert backoff.ceiling(0) == pytest.approx(initial)
    assert backoff.ceiling(retry) <= backoff.ceiling(retry + 1) <= backoff.maximum
    # min(maximum, initial * factor**retry), in logarithms where the power would overflow
    expected = math.exp(
        min(math.log(backoff.maximum), math.log(initial) + retry * math.log(factor))
    )
    assert backoff.ceiling(retry) == pytest.approx(expected, rel=1e-9)


@given(initials, spans, st.floats(min_value=1.5, max_value=10.0))
def test_the_cap_is_reached_and_held(initial: float, span: float, factor: float) -> None:
    backoff = make(initial, span, factor, NO_JITTER)
    delays = list(itertools.islice(backoff.delays(), 200))
    assert delays[-1] == backoff.maximum
    assert delays == sorted(delays)
    assert backoff.failures == 200


@given(initials, spans, factors, st.integers(min_value=1, max_value=60))
def test_reset_starts_again_from_initial(
    initial: float, span: float, factor: float, failures: int
) -> None:
    backoff = make(initial, span, factor, NO_JITTER)
    for _ in range(failures):
        backoff.next_delay()
    assert backoff.failures == failures
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == pytest.approx(initial)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(5))
    delays = [backoff.delay_for(3) for _ in range(500)]
    assert min(delays) < 0.8
    assert max(delays) > 7.2


def test_equal_jitter_never_retries_at_once() -> None:
    backoff = Backoff(1.0, 8.0, jitter=EQUAL_JITTER, rng=random.Random(5))
    delays = [backoff.delay_for(3) for _ in range(500)]
    assert min(delays) >= 4.0
    assert max(delays) > 7.6


async def test_wait_sleeps_the_delay_it_counts_with_the_injected_sleep() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(0.25, 1.0, jitter=NO_JITTER, sleep=sleep)
    waited = [await backoff.wait() for _ in range(4)]
    assert slept == waited == [0.25, 0.5, 1.0, 1.0]
    assert backoff.failures == 4


async def test_wait_uses_the_event_loop_sleep_by_default() -> None:
    backoff = Backoff(0.01, 0.01, jitter=NO_JITTER)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await backoff.wait() == 0.01
    assert loop.time() - started >= 0.009


def test_no_overflow_after_endless_failures() -> None:
    backoff = Backoff(0.5, 60.0, factor=10.0, jitter=NO_JITTER)
    assert backoff.ceiling(10**9) == 60.0
    assert Backoff(1.0, 1.0, factor=1.0).ceiling(10**9) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0, "maximum": 1.0}, "initial delay must be positive"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum .* must be at least the initial"),
        ({"initial": 1.0, "maximum": 2.0, "factor": 0.5}, "factor must be at least 1"),
        ({"initial": float("nan"), "maximum": 2.0}, "initial must be a finite number"),
        ({"initial": 1.0, "maximum": float("inf")}, "maximum must be a finite number"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (-0.1, 1.0, "0 <= low <= high"),
        (1.0, 0.5, "0 <= low <= high"),
        (0.0, float("inf"), "finite"),
    ],
)
def test_bad_jitter_is_named(low: float, high: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Jitter(low, high)


def test_a_negative_retry_number_is_refused() -> None:
    with pytest.raises(ValueError, match="retry number must be 0 or more"):
        Backoff(1.0, 2.0).ceiling(-1)
