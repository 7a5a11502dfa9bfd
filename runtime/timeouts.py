"""``within``: await something for at most so long, and never lose a stop on the way.

Python 3.11's ``asyncio.wait_for`` swallows a cancellation that arrives after the awaited work
has finished but before the waiter resumes (CPython gh-86296, fixed in 3.12 by building it on
``asyncio.timeout``): the work's result or error comes back instead, and a loop that retries on
errors never sees that it was told to stop. Every timed wait in the house goes through here
(ruff's banned-API rule refuses ``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """Await ``awaitable`` for at most ``seconds`` (``None``: no limit).

    Raises :class:`TimeoutError` when the time is up (the work is cancelled first, as with
    ``wait_for``); a cancellation of the caller always propagates as ``CancelledError``.
    """
    async with asyncio.timeout(seconds):
        return await awaitable
