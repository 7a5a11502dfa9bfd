"""A process that appends to a buffer until it is killed, printing each event once committed.

``python -m tests.buffer.crash_writer PATH sync|async``: every line printed is ``seq id``, written
only after the append that made the event returned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from tests.buffer.helpers import alarm, draft


def batch(n: int) -> list:  # type: ignore[type-arg]
    return [alarm(f"b{n}") if (n + i) % 7 == 0 else draft(n=n, i=i) for i in range(1 + n % 5)]


def run_sync(path: Path) -> None:
    buffer = EventBuffer.open(path, gateway_id="gw-crash")
    n = 0
    while True:
        events = buffer.append(batch(n))
        sys.stdout.write("".join(f"{e.seq} {e.id}\n" for e in events))
        sys.stdout.flush()
        n += 1


async def run_async(path: Path) -> None:
    buffer = AsyncEventBuffer(EventBuffer.open(path, gateway_id="gw-crash"))
    await buffer.start()

    async def writer(k: int) -> None:
        n = k
        while True:
            events = await buffer.append(batch(n))
            sys.stdout.write("".join(f"{e.seq} {e.id}\n" for e in events))
            sys.stdout.flush()
            n += 4

    await asyncio.gather(*(writer(k) for k in range(4)))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if sys.argv[2] == "async":
        asyncio.run(run_async(target))
    else:
        run_sync(target)
