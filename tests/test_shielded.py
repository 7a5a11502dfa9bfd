"""run_to_end: the caller is cancelled at once; the work still runs to its end."""

from __future__ import annotations

import asyncio

import pytest

from runtime.shielded import run_to_end
from runtime.timeouts import within


@pytest.mark.asyncio
async def test_a_cancelled_caller_stops_waiting_and_the_work_finishes() -> None:
    finished = asyncio.Event()
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.sleep(0.05)
        finished.set()
        return "done"

    caller = asyncio.create_task(run_to_end(work()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not finished.is_set()  # the caller did not wait for it
    await within(finished.wait(), 1)


@pytest.mark.asyncio
async def test_the_result_and_the_error_reach_a_caller_that_waits() -> None:
    async def ok() -> int:
        return 7

    async def broken() -> int:
        raise ValueError("no")

    assert await run_to_end(ok()) == 7
    with pytest.raises(ValueError, match="no"):
        await run_to_end(broken())
