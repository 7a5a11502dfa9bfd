"""The tests' one way to wait: what it returns, and what its failure says."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.fixtures.waiting import WaitTimedOut, await_until, wait_until


def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "done", within=5) == "done"


def test_check_tests_the_value_and_the_value_is_returned() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), 5, check=lambda n: n >= 4) == 4


def test_failure_names_what_was_awaited_and_the_last_value() -> None:
    depth = [3]
    with pytest.raises(WaitTimedOut) as failed:
        wait_until(lambda: depth[0], 0.05, "the buffer drained", check=lambda d: d == 0)
    assert str(failed.value) == "not within 0.05 s: the buffer drained; last value seen: 3"
    assert isinstance(failed.value, AssertionError)  # pytest reports a failure, not an error


def test_without_a_description_the_failure_quotes_the_probe() -> None:
    pending = ["evt-1"]
    with pytest.raises(WaitTimedOut, match=r"lambda: not pending.*last value seen: False"):
        wait_until(lambda: not pending, 0.02)

    def buffer_empty() -> bool:
        return False

    with pytest.raises(WaitTimedOut, match=r"buffer_empty; last value seen: False"):
        wait_until(buffer_empty, 0.02)


def test_a_long_last_value_is_cut_short() -> None:
    with pytest.raises(WaitTimedOut) as failed:
        wait_until(lambda: ["x" * 100] * 100, 0.02, check=lambda _: False)
    assert len(str(failed.value)) < 500
    assert str(failed.value).endswith("...")


def test_an_exception_in_the_probe_is_not_swallowed() -> None:
    def probe() -> bool:
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError, match="the process died"):
        wait_until(probe, 5)


def test_it_gives_up_near_the_deadline_not_a_pause_later() -> None:
    longest_pause = 10.0
    started = time.monotonic()
    with pytest.raises(WaitTimedOut):
        wait_until(lambda: False, 0.3, interval=longest_pause)
    waited = time.monotonic() - started
    # The last pause is cut to the deadline: the wait ends near 0.3 s, not a long pause later.
    assert 0.3 <= waited < longest_pause / 2


async def test_async_form_awaits_a_coroutine_probe() -> None:
    counter = itertools.count()

    async def probe() -> int:
        await asyncio.sleep(0)
        return next(counter)

    assert await await_until(probe, 5, check=lambda n: n >= 2) == 2


async def test_async_form_lets_the_loop_run_while_it_waits() -> None:
    seen: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.05)
        seen.append("event")

    task = asyncio.create_task(later())
    assert await await_until(lambda: seen, 5) == ["event"]
    await task


async def test_async_failure_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(WaitTimedOut, match=r"not within 0.05 s: the alarm stored; last .* \[\]"):
        await await_until(lambda: [], 0.05, "the alarm stored")
