"""Forwarding buffered events to dispatch, and the periodic heartbeat.

The forwarder takes pending events in lane order (alarms, troubles, telemetry), sends them in
batches bounded by count and bytes, and removes from the buffer exactly the ids dispatch
acknowledged. Each event keeps its id, and dispatch stores by id, so sending an event twice
(after a lost reply or a crash) is harmless: exactly once as dispatch sees it.

A backlog goes out pipelined: up to ``pipeline_depth`` batches of telemetry in flight at once,
their acknowledgements applied to the buffer in the order the batches were sent. A batch with an
alarm or a trouble waits until everything sent before it is acknowledged and is then sent alone,
so those lanes reach dispatch in order, one request at a time (dispatch routes them to incidents
in arrival order), and an alarm appended meanwhile is the next thing sent.

While dispatch is unreachable it backs off exponentially with full jitter, capped at
``backoff_max``; an alarm appended meanwhile ends the wait at once. A batch that dispatch
refuses as a whole (a 4xx that is not about the credential) is split in halves until the one
refused event is found; that event is quarantined in the buffer (kept, logged, retried
hourly) so that it never blocks its lane. A refused credential (401/403) stops nothing from being
kept: the forwarder appends a ``driver_fault`` trouble, retries at ``backoff_max``, and appends
the restore once dispatch accepts it again. A reply without dispatch's valid signature
acknowledges nothing: the batch stays in the buffer, the forgery is logged and counted, and the
batch is sent again with back-off.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBufferError
from contract.wire import (
    Event,
    EventAck,
    Heartbeat,
    HeartbeatReply,
    IngestBatch,
    IngestReply,
    Lane,
)
from forwarder.client import (
    DispatchAuthRejected,
    DispatchClient,
    DispatchError,
    DispatchProtocolError,
    DispatchRejected,
    DispatchUnreachable,
    ReplyNotAuthentic,
)
from forwarder.troubles import driver_fault, driver_fault_restore
from runtime.backoff import Backoff

__all__ = ["CREDENTIAL_CONDITION", "Forwarder", "ForwarderStatus", "HeartbeatSender"]

log = structlog.get_logger(__name__)

#: The trouble condition raised while dispatch refuses this gateway's credential.
CREDENTIAL_CONDITION = "dispatch:credential"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ForwarderStatus:
    last_success_at: datetime | None = None
    #: None until the first attempt.
    reachable: bool | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    sent_total: int = 0
    quarantined_total: int = 0
    #: Set while dispatch refuses the credential (revoked, wrong secret).
    rejected: str | None = None
    #: Replies that did not carry dispatch's valid signature (each one's events were kept).
    unauthentic_replies: int = 0


async def _wait_any(events: Iterable[asyncio.Event], limit_s: float | None) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


@dataclass(slots=True)
class _Flight:
    """A batch of telemetry sent, its reply not yet applied."""

    events: list[Event]
    reply: asyncio.Task[IngestReply]


class Forwarder:
    """Sends pending events to dispatch until cancelled."""

    def __init__(
        self,
        buffer: AsyncEventBuffer,
        client: DispatchClient,
        *,
        max_events: int = 500,
        max_bytes: int = 512 * 1024,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        on_acks: Callable[[Sequence[tuple[Event, EventAck]]], None] | None = None,
        rng: random.Random | None = None,
        quarantine_retry_s: float = 3600.0,
        clock: Callable[[], datetime] = _utcnow,
        pipeline_depth: int = 4,
        channel: str | None = None,
    ) -> None:
        self.buffer = buffer
        self.pipeline_depth = max(1, pipeline_depth)
        self._flights: collections.deque[_Flight] = collections.deque()
        #: The last telemetry seq sent in a batch still in flight (None: nothing in flight).
        self._cursor: int | None = None
        self.client = client
        #: This forwarder's name in the buffer's per-channel bookkeeping (dual reporting).
        self.channel = channel
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_acks = on_acks
        self.rng = rng or random.Random()
        # A backoff_max below the initial delay (a small [dispatch] backoff_max) is the ceiling
        # from the first retry on.
        self._retry = Backoff(min(backoff_initial, backoff_max), backoff_max, rng=self.rng)
        self.quarantine_retry_s = quarantine_retry_s
        self.clock = clock
        self.status = ForwarderStatus()
        self._wake = asyncio.Event()
        self._trouble_open: bool | None = None
        self._next_release = time.monotonic() + quarantine_retry_s
        #: Requests sent (batches, including halves of a split), for tests and metrics.
        self.requests = 0
        self._id_mismatch_logged = False
        self.last_delay: float | None = None

    def wake(self) -> None:
        """Try now: end an idle wait or a back-off."""
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            # Unacknowledged events stay in the buffer: sent again later, stored once by id.
            for flight in self._flights:
                if flight.reply.done() and not flight.reply.cancelled():
                    flight.reply.exception()  # retrieved: a failure no one will act on now
                flight.reply.cancel()
            self._flights.clear()
            self._cursor = None

    async def _run(self) -> None:
        if self._trouble_open is None:
            active = await self.buffer.active_conditions()
            self._trouble_open = any(c.condition == CREDENTIAL_CONDITION for c in active)
        while True:
            # Cleared before reading, so a commit after the read is never missed.
            self.buffer.new_events.clear()
            self.buffer.alarm_appended.clear()
            self._wake.clear()
            try:
                await self._maybe_release_quarantined()
                batch = await self.buffer.pending(
                    max_events=self.max_events,
                    max_bytes=self.max_bytes,
                    telemetry_after=self._cursor,
                    channel=self.channel,
                )
                if not batch:
                    if not self._flights:
                        await _wait_any((self.buffer.new_events, self._wake), limit_s=60.0)
                        continue
                    delay = await self._land()
                elif self._may_pipeline(batch):
                    self._launch(batch)
                    full = len(self._flights) >= self.pipeline_depth
                    delay = await self._land() if full else None
                else:
                    # Alarms and troubles: after everything sent before them, and alone.
                    delay = await self._land_all()
                    if delay is None:
                        delay = await self._deliver(batch)
            except EventBufferError as exc:
                # The buffer is the source of truth: if it cannot be read or updated, wait and
                # retry (an unacknowledged event is only sent again, never lost).
                log.error("forwarder_buffer_error", error=str(exc))
                self.status.last_error = f"buffer: {exc}"
                delay = self.backoff_max
            if delay is not None:
                self.last_delay = delay
                await _wait_any((self.buffer.alarm_appended, self._wake), limit_s=delay)

    def _may_pipeline(self, batch: list[Event]) -> bool:
        """Telemetry only, and dispatch answered the last request (no burst at a dead link)."""
        return (
            self.pipeline_depth > 1
            and self.status.reachable is True
            and all(e.lane is Lane.TELEMETRY for e in batch)
        )

    def _launch(self, batch: list[Event]) -> None:
        events = self._as_sent(batch)
        self.requests += 1
        gateway_id = self.client.credential.gateway_id
        reply = asyncio.create_task(
            self.client.send_events(IngestBatch(gateway_id=gateway_id, events=events))
        )
        self._flights.append(_Flight(events, reply))
        self._cursor = batch[-1].seq

    async def _land(self) -> float | None:
        """Apply the reply to the oldest batch in flight. After a failure, what is still in
        flight is landed too and the unacknowledged events are read afresh."""
        delay = await self._settle(self._finish(self._flights.popleft()))
        if delay is not None:
            await self._land_all()
        if not self._flights:
            self._cursor = None
        return delay

    async def _land_all(self) -> float | None:
        """Apply every reply in flight, in the order the batches were sent; the first failure's
        back-off, if any."""
        first: float | None = None
        while self._flights:
            delay = await self._settle(self._finish(self._flights.popleft()))
            first = delay if first is None else first
        self._cursor = None
        return first

    async def _finish(self, flight: _Flight) -> None:
        try:
            reply = await flight.reply
        except DispatchAuthRejected:
            raise
        except DispatchRejected:
            await self._send(flight.events)  # one request at a time: find the refused event
            return
        await self._apply(flight.events, reply.acks)

    async def _deliver(self, batch: list[Event]) -> float | None:
        """Send a batch; returns how long to back off, or None to go on at once."""
        return await self._settle(self._send(batch))

    async def _settle(self, attempt: Awaitable[None]) -> float | None:
        """Await a delivery; returns how long to back off, or None to go on at once."""
        try:
            await attempt
        except DispatchAuthRejected as exc:
            self._failed(str(exc))
            if self.status.rejected is None:
                log.error(
                    "dispatch_refused_credential",
                    status=exc.status,
                    title=exc.title,
                    detail=exc.detail,
                    action="events are kept; retrying every backoff_max",
                )
            self.status.rejected = str(exc)
            await self._raise_trouble(exc)
            return self.backoff_max
        except ReplyNotAuthentic as exc:
            # Logged every time: something answers in dispatch's name.
            self.status.unauthentic_replies += 1
            log.error(
                "dispatch_reply_not_authentic",
                error=str(exc),
                action="the batch is kept and sent again",
                total=self.status.unauthentic_replies,
            )
            self._failed(str(exc))
            return self._backoff(None)
        except DispatchUnreachable as exc:
            self._failed(str(exc))
            return self._backoff(exc.retry_after)
        except DispatchError as exc:
            self._failed(str(exc))
            return self._backoff(None)
        self.status.reachable = True
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.status.last_success_at = self.clock()
        if self.status.rejected is not None:
            log.info("dispatch_accepts_credential_again")
            self.status.rejected = None
        if self._trouble_open:
            await self._restore_trouble()
        return None

    def _failed(self, error: str) -> None:
        if self.status.reachable is not False:
            log.warning("dispatch_unreachable", error=error)
        self.status.reachable = False
        self.status.consecutive_failures += 1
        self.status.last_error = error

    def _backoff(self, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2^(failures-1))]."""
        delay = self._retry.delay_for(max(0, self.status.consecutive_failures - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _as_sent(self, events: list[Event]) -> list[Event]:
        gateway_id = self.client.credential.gateway_id
        if events[0].gateway_id != gateway_id:
            # The credential is who dispatch knows; the buffer's id may be a stale config value.
            if not self._id_mismatch_logged:
                log.warning(
                    "gateway_id_differs_from_credential",
                    buffer=events[0].gateway_id,
                    credential=gateway_id,
                    action="events are sent under the credential's id",
                )
                self._id_mismatch_logged = True
            events = [e.model_copy(update={"gateway_id": gateway_id}) for e in events]
        return events

    async def _send(self, events: list[Event]) -> None:
        events = self._as_sent(events)
        gateway_id = self.client.credential.gateway_id
        self.requests += 1
        try:
            reply = await self.client.send_events(IngestBatch(gateway_id=gateway_id, events=events))
        except DispatchAuthRejected:
            raise
        except DispatchRejected as exc:
            if len(events) == 1:
                await self._quarantine(events[0], exc)
                return
            # Find the refused event(s) by halves; the first half goes first to keep order.
            middle = len(events) // 2
            log.warning("batch_refused_splitting", size=len(events), error=str(exc))
            await self._send(events[:middle])
            await self._send(events[middle:])
            return
        await self._apply(events, reply.acks)

    async def _apply(self, events: list[Event], acks: list[EventAck]) -> None:
        by_id = {e.id: e for e in events}
        matched = [(by_id[a.id], a) for a in acks if a.id in by_id]
        strangers = [a.id for a in acks if a.id not in by_id]
        if strangers:
            log.warning("acks_for_unknown_events", ids=strangers[:10], count=len(strangers))
        if matched:
            await self.buffer.acknowledge([a for _, a in matched], channel=self.channel)
            self.status.sent_total += len(matched)
        if self.on_acks is not None and matched:
            try:
                self.on_acks(matched)
            except Exception as exc:
                log.error("on_acks_failed", error=repr(exc))
        if len(matched) < len(events):
            missing = [e.id for e in events if e.id not in {a.id for _, a in matched}]
            log.warning("events_not_acknowledged", ids=missing[:10], count=len(missing))
            if not matched:
                raise DispatchProtocolError(
                    f"dispatch acknowledged none of the {len(events)} events sent"
                )

    async def _quarantine(self, event: Event, exc: DispatchRejected) -> None:
        log.error(
            "event_refused_by_dispatch",
            event_id=event.id,
            kind=event.kind.value,
            seq=event.seq,
            status=exc.status,
            title=exc.title,
            detail=exc.detail,
            action="quarantined in the buffer; retried every quarantine_retry_s",
        )
        await self.buffer.quarantine([event.id], reason=str(exc)[:500], channel=self.channel)
        self.status.quarantined_total += 1

    async def _maybe_release_quarantined(self) -> None:
        if time.monotonic() < self._next_release:
            return
        self._next_release = time.monotonic() + self.quarantine_retry_s
        if self.buffer.stats(self.clock()).quarantined_events:
            released = await self.buffer.release_quarantined(channel=self.channel)
            log.warning("quarantined_events_retried", count=released)

    async def _raise_trouble(self, exc: DispatchRejected) -> None:
        if self._trouble_open:
            return
        await self.buffer.append(
            [
                driver_fault(
                    self.clock(),
                    condition=CREDENTIAL_CONDITION,
                    component="forwarder",
                    detail=exc.detail or "",
                    status=exc.status,
                    title=exc.title[:200],
                )
            ]
        )
        self._trouble_open = True

    async def _restore_trouble(self) -> None:
        await self.buffer.append(
            [
                driver_fault_restore(
                    self.clock(), condition=CREDENTIAL_CONDITION, component="forwarder"
                )
            ]
        )
        self._trouble_open = False


@dataclass(slots=True)
class HeartbeatStatus:
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    sent_total: int = 0
    #: Dispatch's clock minus ours at the last reply, in seconds.
    clock_offset_s: float | None = None


class HeartbeatSender:
    """Posts the daemon's heartbeat every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        client: DispatchClient,
        *,
        make_heartbeat: Callable[[], Heartbeat],
        interval: float = 30.0,
        on_acknowledged: Callable[[Sequence[str]], object] | None = None,
        on_away: Callable[[datetime | None], object] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        max_clock_offset_s: float = 60.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        self.client = client
        self.make_heartbeat = make_heartbeat
        self.interval = interval
        self.on_acknowledged = on_acknowledged
        #: Called with every reply's ``away_until`` (None: the household is at home).
        self.on_away = on_away
        self.clock = clock
        self.max_clock_offset_s = max_clock_offset_s
        self.status = HeartbeatStatus()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.send_now()
            except DispatchError as exc:
                if self.status.consecutive_failures == 1:
                    log.warning("heartbeat_failed", error=str(exc))
            except Exception as exc:
                # A broken heartbeat builder must not stop the heartbeats for good.
                log.error("heartbeat_error", error=repr(exc))
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def send_now(self) -> HeartbeatReply:
        """Send one heartbeat now; raises :class:`DispatchError` if it did not get through."""
        heartbeat = self.make_heartbeat()
        try:
            reply = await self.client.send_heartbeat(heartbeat)
        except DispatchError as exc:
            self.status.consecutive_failures += 1
            self.status.last_error = str(exc)
            raise
        now = self.clock()
        self.status.last_success_at = now
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.status.sent_total += 1
        offset = (reply.server_time - now).total_seconds()
        self.status.clock_offset_s = offset
        if abs(offset) > self.max_clock_offset_s:
            log.warning("gateway_clock_drift", offset_s=round(offset, 1))
        if reply.acknowledged_events and self.on_acknowledged is not None:
            try:
                self.on_acknowledged(list(reply.acknowledged_events))
            except Exception as exc:
                log.error("on_acknowledged_failed", error=repr(exc))
        if self.on_away is not None:
            try:
                self.on_away(reply.away_until)
            except Exception as exc:
                log.error("on_away_failed", error=repr(exc))
        return reply
