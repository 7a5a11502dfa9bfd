"""A process that drains a buffer to a real dispatch with the pipelined forwarder, until empty.

``python -m tests.buffer.drain_worker PATH URL GATEWAY HOUSEHOLD SECRET``: prints ``drained`` and
exits once the buffer holds nothing pending (or is killed before that).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from forwarder.client import Credential, DispatchClient
from forwarder.delivery import Forwarder
from tests.fixtures.waiting import await_until


async def drain(path: Path, url: str, gateway: str, household: str, secret: str) -> None:
    raw = EventBuffer.open(path, gateway_id=gateway)
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    credential = Credential(gateway, household, secret, url)
    client = DispatchClient(url, credential=credential, insecure_http=True)  # loopback
    forwarder = Forwarder(buffer, client, max_events=100, pipeline_depth=4, backoff_max=0.5)
    task = asyncio.create_task(forwarder.run())
    try:
        await await_until(lambda: not raw.stats(datetime.now(UTC)).pending_total, 600)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await buffer.aclose()
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(drain(Path(sys.argv[1]), *sys.argv[2:6]))
