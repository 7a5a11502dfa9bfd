"""``runtime.timeouts.within``: a timed wait that never loses a stop."""

from __future__ import annotations

import asyncio

import pytest

from runtime.timeouts import within


async def test_the_result_comes_back_within_the_time() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert await within(work(), 5) == 7
    assert await within(work(), None) == 7


async def test_time_up_cancels_the_work_and_raises_timeout() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(TimeoutError):
        await within(forever(), 0.01)
    assert cancelled.is_set()


async def test_a_stop_landing_as_the_work_fails_is_kept() -> None:
    """The case ``asyncio.wait_for`` loses on 3.11: the failure would replace the stop."""
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def caller() -> str:
        try:
            return await within(answer, 5)
        except OSError:
            return "took the stop for a failure"

    me = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the caller now waits for the answer
    answer.set_exception(OSError("device not found"))
    me.cancel()  # before the caller resumes
    with pytest.raises(asyncio.CancelledError):
        await me


async def test_a_stop_landing_as_the_work_succeeds_is_kept() -> None:
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    me = asyncio.create_task(within(answer, 5))
    await asyncio.sleep(0)
    answer.set_result("done")
    me.cancel()
    with pytest.raises(asyncio.CancelledError):
        await me
