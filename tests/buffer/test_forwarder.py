from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from buffer.aio import AsyncEventBuffer
from buffer.store import BufferStorageError, EventBuffer
from contract.wire import Event, EventAck, EventKind, Lane
from forwarder.client import DispatchClient
from forwarder.delivery import CREDENTIAL_CONDITION, Forwarder
from tests.buffer.fake_dispatch import (
    CREDENTIAL,
    FakeDispatch,
    refuse_connection,
    revoked,
    server_error,
)
from tests.buffer.helpers import alarm, draft, trouble
from tests.fixtures.waiting import await_until


@pytest.fixture
def dispatch() -> FakeDispatch:
    return FakeDispatch()


@pytest.fixture
async def abuf(tmp_path: Path) -> AsyncIterator[AsyncEventBuffer]:
    buffer = AsyncEventBuffer(EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1"))
    await buffer.start()
    yield buffer
    await buffer.aclose()


@pytest.fixture
async def client(dispatch: FakeDispatch) -> AsyncIterator[DispatchClient]:
    c = DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, transport=dispatch.transport()
    )
    yield c
    await c.aclose()


class Running:
    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Forwarder:
        self.task = asyncio.create_task(self.forwarder.run())
        return self.forwarder

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # surface a crash of the loop
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def depth(abuf: AsyncEventBuffer) -> int:
    return abuf.buffer.stats(alarm().at).pending_total


async def test_delivers_alarms_first_in_bounded_batches(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    appended: list[Event] = []
    for i in range(6):
        appended += await abuf.append([draft(n=i) for _ in range(5)])
        appended += await abuf.append([trouble(f"s{i}"), alarm(f"a{i}")])
    forwarder = Forwarder(abuf, client, max_events=8)
    async with Running(forwarder):
        # The buffer's counts change in its worker thread a moment before the forwarder resumes.
        await await_until(lambda: forwarder.status.sent_total == len(appended), 5)
    arrived = [i for batch in dispatch.batches for i in batch]
    assert sorted(arrived) == sorted(e.id for e in appended)
    assert max(len(b) for b in dispatch.batches) == 8
    lanes = [dispatch.stored[i].lane.rank for i in arrived]
    assert lanes == sorted(lanes), "alarms, then troubles, then telemetry"
    seqs = {
        lane: [dispatch.stored[i].seq for i in arrived if dispatch.stored[i].lane is lane]
        for lane in Lane
    }
    assert all(s == sorted(s) for s in seqs.values())
    assert forwarder.status.sent_total == len(appended)
    assert forwarder.status.reachable is True


async def test_batches_are_bounded_by_bytes(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    await abuf.append([draft(text="x" * 3000) for _ in range(40)])
    async with Running(Forwarder(abuf, client, max_events=500, max_bytes=16 * 1024)):
        await await_until(lambda: depth(abuf) == 0, 5)
    assert len(dispatch.stored) == 40
    assert max(len(b) for b in dispatch.batches) <= 5


def test_backoff_is_full_jitter_and_capped(client: DispatchClient) -> None:
    forwarder = Forwarder(
        None,  # type: ignore[arg-type]
        client,
        backoff_initial=0.5,
        backoff_max=60.0,
        rng=random.Random(7),
    )
    ceilings = []
    for failures in range(1, 15):
        forwarder.status.consecutive_failures = failures
        delays = [forwarder._backoff(None) for _ in range(200)]
        ceiling = min(60.0, 0.5 * 2 ** (failures - 1))
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter: spread over the whole range, not bunched at the ceiling.
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9
        ceilings.append(ceiling)
    assert ceilings[-1] == 60.0
    forwarder.status.consecutive_failures = 1
    assert forwarder._backoff(retry_after=5.0) >= 5.0
    assert forwarder._backoff(retry_after=1e6) == 60.0


@pytest.mark.parametrize("fault", [refuse_connection, server_error])
async def test_outage_keeps_events_and_recovers(
    abuf: AsyncEventBuffer,
    client: DispatchClient,
    dispatch: FakeDispatch,
    fault: Callable[[httpx.Request], httpx.Response],
) -> None:
    dispatch.fault = fault
    events = await abuf.append([alarm(), draft(), trouble()])
    forwarder = Forwarder(
        abuf, client, backoff_initial=0.01, backoff_max=0.05, rng=random.Random(1)
    )
    async with Running(forwarder):
        await await_until(lambda: forwarder.status.consecutive_failures >= 5, 5)
        assert forwarder.status.reachable is False
        assert forwarder.status.last_error
        assert forwarder.last_delay is not None
        assert forwarder.last_delay <= 0.05
        assert depth(abuf) == 3
        dispatch.fault = None
        await await_until(lambda: forwarder.status.consecutive_failures == 0, 5)
    assert depth(abuf) == 0
    assert set(dispatch.stored) == {e.id for e in events}
    assert forwarder.status.consecutive_failures == 0
    assert forwarder.status.last_success_at is not None


async def test_lost_reply_resend_is_harmless(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    """Dispatch stores the batch but the reply is lost: the resend comes back as duplicates."""
    events = await abuf.append([alarm(), draft(), draft()])
    lost = {"left": 1}

    def store_then_time_out(request: httpx.Request) -> httpx.Response:
        dispatch.fault = None
        dispatch.handle(request)
        lost["left"] -= 1
        raise httpx.ReadTimeout("reply lost", request=request)

    dispatch.fault = store_then_time_out
    seen: list[tuple[Event, EventAck]] = []
    forwarder = Forwarder(abuf, client, backoff_initial=0.01, backoff_max=0.02, on_acks=seen.extend)
    async with Running(forwarder):
        await await_until(lambda: len(seen) == 3, 5)
    assert depth(abuf) == 0
    assert len(dispatch.batches) == 2
    assert dispatch.batches[0] == dispatch.batches[1]
    assert len(dispatch.stored) == 3
    assert {a.status.value for _, a in seen} == {"duplicate"}
    assert {e.id for e, _ in seen} == {e.id for e in events}


async def test_only_acked_ids_leave_the_buffer(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    events = await abuf.append([draft(n=i) for i in range(4)])
    dispatch.unacked = {events[2].id}
    forwarder = Forwarder(abuf, client, backoff_initial=0.01, backoff_max=0.02)
    async with Running(forwarder):
        await await_until(lambda: len(dispatch.batches) >= 2, 5)
        [left] = await abuf.pending()
        assert left.id == events[2].id
        dispatch.unacked = set()
        await await_until(lambda: depth(abuf) == 0, 5)
    assert dispatch.batches[1][0] == events[2].id


async def test_new_alarm_ends_a_long_backoff_at_once(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    dispatch.fault = refuse_connection
    await abuf.append([draft()])
    forwarder = Forwarder(
        abuf, client, backoff_initial=30.0, backoff_max=30.0, rng=random.Random(3)
    )
    forwarder.rng.uniform = lambda a, b: b  # type: ignore[method-assign]
    async with Running(forwarder):
        await await_until(lambda: forwarder.status.consecutive_failures == 1, 5)
        dispatch.fault = None
        await asyncio.sleep(0.05)
        assert dispatch.stored == {}, "still backing off"
        [sos] = await abuf.append([alarm()])
        await await_until(lambda: sos.id in dispatch.stored, 2.0)
    assert len(dispatch.stored) == 2


async def test_idle_forwarder_wakes_on_new_events(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    async with Running(Forwarder(abuf, client)):
        await asyncio.sleep(0.05)
        [event] = await abuf.append([draft()])
        await await_until(lambda: event.id in dispatch.stored, 2.0)


async def test_refused_event_is_found_by_halves_and_quarantined(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    events = await abuf.append([draft(n=i) for i in range(20)])
    events += await abuf.append([alarm()])
    dispatch.poison = {events[13].id}
    forwarder = Forwarder(abuf, client)
    with capture_logs() as logs:
        async with Running(forwarder):
            await await_until(lambda: forwarder.status.sent_total == 20, 5)
            await await_until(lambda: forwarder.status.quarantined_total == 1, 5)
    assert set(dispatch.stored) == {e.id for e in events} - {events[13].id}
    # Bisection costs a handful of requests, not one per event.
    assert forwarder.requests <= 12
    assert forwarder.status.quarantined_total == 1
    assert abuf.stats(alarm().at).quarantined_events == 1
    [row] = abuf.buffer.db.query("select id, reason from quarantine")
    assert row["id"] == events[13].id
    assert "422" in row["reason"]
    assert any(
        e["event"] == "event_refused_by_dispatch" and e["log_level"] == "error" for e in logs
    )
    # Released later (dispatch fixed), it is delivered.
    dispatch.poison = set()
    assert await abuf.release_quarantined() == 1
    async with Running(Forwarder(abuf, client)):
        await await_until(lambda: events[13].id in dispatch.stored, 5)


async def test_revoked_credential_raises_a_trouble_and_keeps_everything(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    dispatch.fault = revoked
    [sos] = await abuf.append([alarm()])
    forwarder = Forwarder(abuf, client, backoff_max=0.05)
    async with Running(forwarder):
        await await_until(lambda: forwarder.status.consecutive_failures >= 3, 5)
        assert forwarder.status.rejected is not None
        assert "revoked" in forwarder.status.rejected
        active = await abuf.active_conditions()
        assert [(c.condition, c.kind) for c in active] == [
            ("sos:btn-1", EventKind.SOS),
            (CREDENTIAL_CONDITION, EventKind.DRIVER_FAULT),
        ]
        # One trouble, not one per attempt.
        assert abuf.stats(alarm().at).depth[Lane.TROUBLE] == 1
        dispatch.fault = None
        await await_until(
            lambda: any(e.kind is EventKind.DRIVER_FAULT_RESTORE for e in dispatch.stored.values()),
            5,
        )
        await await_until(lambda: depth(abuf) == 0, 5)
    kinds = [e.kind for e in dispatch.stored.values()]
    assert sos.id in dispatch.stored
    assert EventKind.DRIVER_FAULT in kinds
    assert EventKind.DRIVER_FAULT_RESTORE in kinds
    assert forwarder.status.rejected is None
    assert [c.condition for c in await abuf.active_conditions()] == ["sos:btn-1"]


async def test_incident_acknowledgement_reaches_on_acks(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    events = await abuf.append([alarm("a"), alarm("b"), draft()])
    dispatch.taken = {events[1].id}
    taken: list[str] = []

    def on_acks(acks: Sequence[tuple[Event, EventAck]]) -> None:
        taken.extend(e.id for e, a in acks if a.incident and a.incident.acknowledged)

    forwarder = Forwarder(abuf, client, on_acks=on_acks)
    async with Running(forwarder):
        await await_until(lambda: forwarder.status.sent_total == 3, 5)
    assert taken == [events[1].id]


async def test_a_failing_on_acks_does_not_stop_forwarding(
    abuf: AsyncEventBuffer, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    def broken(acks: Sequence[tuple[Event, EventAck]]) -> None:
        raise RuntimeError("listener bug")

    await abuf.append([alarm()])
    async with Running(Forwarder(abuf, client, on_acks=broken)):
        await await_until(lambda: depth(abuf) == 0, 5)
        await abuf.append([draft()])
        await await_until(lambda: len(dispatch.stored) == 2, 5)


async def test_a_buffer_error_is_waited_out_not_fatal(
    abuf: AsyncEventBuffer,
    client: DispatchClient,
    dispatch: FakeDispatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = abuf.buffer.pending
    calls = {"n": 0}

    def flaky(**kwargs: int) -> list[Event]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise BufferStorageError("disk I/O error")
        return real(**kwargs)

    monkeypatch.setattr(abuf.buffer, "pending", flaky)
    [event] = await abuf.append([alarm()])
    forwarder = Forwarder(abuf, client, backoff_max=0.05)
    async with Running(forwarder):
        await await_until(lambda: event.id in dispatch.stored, 5)
    assert calls["n"] >= 2


async def test_events_go_under_the_credentials_gateway_id(
    tmp_path: Path, client: DispatchClient, dispatch: FakeDispatch
) -> None:
    abuf = AsyncEventBuffer(EventBuffer.open(tmp_path / "old.db", gateway_id="gw-old"))
    try:
        [event] = await abuf.append([alarm()])
        async with Running(Forwarder(abuf, client)):
            await await_until(lambda: event.id in dispatch.stored, 5)
        assert dispatch.stored[event.id].gateway_id == CREDENTIAL.gateway_id
    finally:
        await abuf.aclose()
