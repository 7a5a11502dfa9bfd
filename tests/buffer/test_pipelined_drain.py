"""The pipelined forwarder against a real dispatchd: several batches in flight, yet alarms and
troubles reach dispatch in order and first, and a gateway killed mid-drain loses nothing and
stores nothing twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.wire import Event, IngestBatch, IngestReply, Lane
from forwarder.client import Credential, DispatchClient
from forwarder.delivery import Forwarder
from tests.buffer.helpers import alarm, draft, trouble
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.procs import REPO_ROOT, module_cmd, project_env
from tests.fixtures.waiting import await_until, wait_until

pytestmark = pytest.mark.slow


def stored(server: DispatchServer, gateway_id: str) -> list[tuple[str, int, str]]:
    """(id, seq, kind) of the gateway's events in dispatch's database, in the order stored."""
    path = server.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT id, seq, kind FROM events WHERE gateway_id = ? ORDER BY rowid", (gateway_id,)
        ).fetchall()
    return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]


def fill(buffer: EventBuffer, groups: int) -> list[Event]:
    """A backlog: telemetry, with an alarm and its restore and a trouble and its restore in
    every tenth group."""
    events: list[Event] = []
    for n in range(groups):
        drafts = [draft(n=n, i=i) for i in range(20)]
        if n % 10 == 0:
            drafts += [alarm(f"b{n}"), trouble(f"s{n}")]
            drafts += [alarm(f"b{n}", restore=True), trouble(f"s{n}", restore=True)]
        events += buffer.append(drafts)
    return events


class InFlight:
    """Counts the requests under way at once (the forwarder's client, observed)."""

    def __init__(self, client: DispatchClient) -> None:
        self.now = 0
        self.most = 0
        send: Callable[[IngestBatch], Awaitable[IngestReply]] = client.send_events

        async def counting(batch: IngestBatch) -> IngestReply:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await send(batch)
            finally:
                self.now -= 1

        client.send_events = counting  # type: ignore[method-assign]


async def test_pipelined_drain_keeps_alarm_and_trouble_lanes_in_order_and_first(
    tmp_path: Path, dispatch_server: DispatchServer
) -> None:
    gw = dispatch_server.enroll("hh-pipeline")
    raw = EventBuffer.open(tmp_path / "b.db", gateway_id=gw.gateway_id)
    backlog = fill(raw, 150)
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    credential = Credential(gw.gateway_id, gw.household_id, gw.secret, gw.url)
    client = DispatchClient(gw.url, credential=credential, insecure_http=True)  # loopback
    in_flight = InFlight(client)
    forwarder = Forwarder(buffer, client, max_events=50, pipeline_depth=4)
    task = asyncio.create_task(forwarder.run())
    late: list[Event] = []
    try:
        # Mid-drain, while telemetry batches are in flight, an alarm and a trouble happen.
        await await_until(lambda: in_flight.most > 1, 60, "batches in flight together")
        late = await buffer.append([alarm("late"), trouble("late")])
        await await_until(lambda: not raw.stats(datetime.now(UTC)).pending_total, 180, "drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await buffer.aclose()
    rows = stored(dispatch_server, gw.gateway_id)
    assert sorted(r[0] for r in rows) == sorted(e.id for e in [*backlog, *late])  # once each
    lane = {e.id: e.lane for e in [*backlog, *late]}
    for name in (Lane.ALARM, Lane.TROUBLE):
        seqs = [seq for id_, seq, _ in rows if lane[id_] is name]
        assert seqs == sorted(seqs), f"{name.value} lane out of order at dispatch"
    position = {r[0]: i for i, r in enumerate(rows)}
    last_telemetry = max(position[e.id] for e in backlog if e.lane is Lane.TELEMETRY)
    assert all(position[e.id] < last_telemetry for e in late), "the late alarm waited its turn"
    assert in_flight.most == 4


def test_kill_9_during_a_pipelined_drain_loses_nothing_and_stores_once(
    tmp_path: Path, dispatch_server: DispatchServer
) -> None:
    gw = dispatch_server.enroll("hh-pipeline-kill")
    path = tmp_path / "b.db"
    raw = EventBuffer.open(path, gateway_id=gw.gateway_id)
    backlog = fill(raw, 400)
    raw.close()
    args = (str(path), gw.url, gw.gateway_id, gw.household_id, gw.secret)

    def worker(stdout: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            module_cmd("tests.buffer.drain_worker", *args),
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=project_env(),
            cwd=REPO_ROOT,
            text=True,
        )

    first = worker(subprocess.DEVNULL)
    try:
        part = wait_until(
            lambda: len(stored(dispatch_server, gw.gateway_id)),
            180,
            "a part of the backlog stored",
            check=lambda n: n >= len(backlog) // 3,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    assert part < len(backlog), "killed after the drain ended: nothing tested"
    second = worker(subprocess.PIPE)
    out: Any
    try:
        out, _ = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(5)
    assert out.strip() == "drained"
    rows = stored(dispatch_server, gw.gateway_id)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "an event stored twice"
    assert sorted(ids) == sorted(e.id for e in backlog), "an event lost"
    reopened = EventBuffer.open(path, gateway_id=gw.gateway_id)
    try:
        assert reopened.stats(datetime.now(UTC)).pending_total == 0
    finally:
        reopened.close()
