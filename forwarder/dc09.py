"""Delivering the buffer's events to standard alarm receivers over SIA DC-09.

One message at a time, alarms first and each lane in order, the way the standard has a
transmitter wait for each answer:

- ``ACK`` (or ``RSP``): delivered; the buffer records it for this channel, and the event leaves
  once every channel (dispatchd too, when dual reporting) has delivered it.
- ``NAK``: the receiver refused our timestamp; its own clock comes in the NAK, and the message
  goes again at once stamped with it (and every later one, until the clocks agree again).
- ``DUH``: the receiver does not understand the message. Sending it again would not help: it is
  set aside for this channel (kept in the buffer's bookkeeping, logged), and a ``driver_fault``
  trouble tells dispatch. It is not restored by a later ``ACK`` (that would close the trouble
  incident before anyone saw it): an operator resolves it; the daemon raises it once per run.
- No answer, a closed connection or a refused connection: tried ``attempts`` times, then the next
  receiver (the backups, in order); when every receiver failed, back off and start again at the
  primary. An alarm appended meanwhile ends the wait.

The sequence number of an event's message comes from the event's own sequence number, so a
message sent again (after a lost answer, or a restart) carries the same one, which is how the
standard lets a receiver recognise a repeat. ``NULL`` messages supervise the link while idle.
Events with nothing to say in Contact ID or SIA (plain telemetry) are done for this channel at
once, without a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBufferError
from contract.dc09 import (
    Dc09Config,
    Dc09Error,
    Dc09Message,
    cid_for,
    decode,
    encode,
    sia_code_for,
)
from contract.wire import Event, EventKind
from forwarder.dc09_link import Dc09Link, LinkError, open_link
from forwarder.troubles import driver_fault
from runtime.backoff import Backoff

__all__ = ["CHANNEL", "REFUSED_CONDITION", "Dc09Channel", "Dc09Status", "Outcome"]

log = structlog.get_logger(__name__)

#: This channel's name in the buffer's per-channel bookkeeping.
CHANNEL = "dc09"
#: The trouble condition raised while a receiver answers DUH.
REFUSED_CONDITION = "dc09:refused"
#: Events read from the buffer at a time (each is still sent and answered on its own).
_BATCH = 100


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Dc09Status:
    sent_total: int = 0
    refused_total: int = 0
    skipped_total: int = 0
    nulls_sent: int = 0
    naks: int = 0
    failovers: int = 0
    reachable: bool | None = None
    receiver: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    #: The receiver's clock minus ours, learnt from its last NAK, in seconds.
    clock_offset_s: float = 0.0


class Outcome:
    ACK = "ACK"
    DUH = "DUH"


class _AllFailed(Exception):
    pass


class Dc09Channel:
    """Sends pending events to the configured DC-09 receivers until cancelled."""

    def __init__(
        self,
        buffer: AsyncEventBuffer,
        config: Dc09Config,
        *,
        zone_of: Callable[[str | None], int] = lambda _device: 0,
        links: Sequence[Dc09Link] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        channel: str | None = CHANNEL,
    ) -> None:
        self.buffer = buffer
        self.config = config
        self.zone_of = zone_of
        self.links = (
            list(links)
            if links is not None
            else [open_link(r.transport, r.host, r.port) for r in config.receivers]
        )
        self.clock = clock
        self.channel = channel
        self.key = config.key_bytes
        self.status = Dc09Status()
        self._retry = Backoff(min(0.5, config.backoff_max), config.backoff_max, rng=rng)
        self._new_events, self._alarm = buffer.listen()
        #: The DUH trouble was raised in this run (once per run: it stays open at dispatch).
        self._trouble_open = False
        self._null_due = asyncio.get_running_loop().time() + config.null_interval

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            for link in self.links:
                with contextlib.suppress(Exception):
                    await link.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._new_events.clear()
            self._alarm.clear()
            delay: float | None = None
            try:
                batch = await self.buffer.pending(max_events=_BATCH, channel=self.channel)
                if batch:
                    await self._deliver_all(batch)
                elif self.config.null_interval and loop.time() >= self._null_due:
                    await self.send_null()
                else:
                    await self._idle(loop.time())
                    continue
            except _AllFailed:
                delay = self._retry.delay_for(max(0, self.status.consecutive_failures - 1))
            except EventBufferError as exc:
                log.error("dc09_buffer_error", error=str(exc))
                self.status.last_error = f"buffer: {exc}"
                delay = self.config.backoff_max
            if delay is not None:
                await _wait_any((self._alarm,), delay)

    async def _idle(self, now: float) -> None:
        limit = 60.0
        if self.config.null_interval:
            limit = max(0.0, self._null_due - now)
        await _wait_any((self._new_events,), limit)

    async def _deliver_all(self, batch: list[Event]) -> None:
        done: list[str] = []
        try:
            for event in batch:
                message = self.message_for(event)
                if message is None:
                    done.append(event.id)
                    self.status.skipped_total += 1
                    continue
                outcome = await self._send(message)
                if outcome == Outcome.DUH:
                    await self._refused(event, message)
                    continue
                done.append(event.id)
                self.status.sent_total += 1
        finally:
            if done:
                await self.buffer.acknowledge(done, channel=self.channel)

    # -- messages -------------------------------------------------------------------------

    def message_for(self, event: Event) -> Dc09Message | None:
        """The DC-09 message of an event, or None when it has nothing to say in DC-09."""
        cfg = self.config
        zone = self.zone_of(event.device_id)
        if cfg.format == "SIA-DCS":
            sia = sia_code_for(event.kind, test=event.test, area=cfg.group, zone=zone)
            data = None if sia is None else sia.format(cfg.account)
        else:
            cid = cid_for(event.kind, test=event.test, group=cfg.group, zone=zone)
            data = None if cid is None else cid.format(cfg.account)
        if data is None:
            return None
        return Dc09Message(
            type=cfg.format,
            # 1..9999, and the same each time this event is sent.
            sequence=event.seq % 9999 + 1,
            account=cfg.account.upper(),
            line=cfg.line_number.upper(),
            receiver=cfg.receiver_number.upper(),
            data=data,
        )

    async def send_null(self) -> None:
        """One NULL (supervision) message, answered like any other."""
        cfg = self.config
        message = Dc09Message(
            type="NULL",
            sequence=0,
            account=cfg.account.upper(),
            line=cfg.line_number.upper(),
            receiver=cfg.receiver_number.upper(),
        )
        await self._send(message)
        self.status.nulls_sent += 1
        self._null_due = asyncio.get_running_loop().time() + cfg.null_interval

    async def _send(self, message: Dc09Message) -> str:
        """Deliver one message, failing over from receiver to receiver; ACK or DUH."""
        errors: list[str] = []
        for index, link in enumerate(self.links):
            for _attempt in range(self.config.attempts):
                try:
                    outcome = await self._exchange(link, message)
                except LinkError as exc:
                    errors.append(str(exc))
                    continue
                self._succeeded(link, index)
                return outcome
            if index + 1 < len(self.links):
                self.status.failovers += 1
                log.warning(
                    "dc09_receiver_failed_over",
                    failed=link.name,
                    next=self.links[index + 1].name,
                    error=errors[-1] if errors else None,
                )
        self._failed("; ".join(errors[-len(self.links) :]))
        raise _AllFailed

    async def _exchange(self, link: Dc09Link, message: Dc09Message) -> str:
        """Send and wait for the answer to this message; NAK means send again re-stamped."""
        timeout = self.config.timeout
        for _nak in range(3):
            stamped = _replace_time(
                message, self.clock() + timedelta(seconds=self.status.clock_offset_s)
            )
            await link.send(encode(stamped, key=self.key), timeout)
            answer = await self._answer(link, message.sequence, timeout)
            if answer.type in ("ACK", "RSP"):
                return Outcome.ACK
            if answer.type == "DUH":
                return Outcome.DUH
            # NAK: take the receiver's clock, if it sent one, and go again.
            self.status.naks += 1
            if answer.timestamp is not None:
                offset = (answer.timestamp - self.clock()).total_seconds()
                log.warning("dc09_nak_clock", receiver=link.name, offset_s=round(offset, 1))
                self.status.clock_offset_s = offset
        raise LinkError(f"{link.name}: NAK after NAK")

    async def _answer(self, link: Dc09Link, sequence: int, timeout: float) -> Dc09Message:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await link.receive(max(0.0, deadline - loop.time()))
            try:
                answer = decode(frame, keys=lambda _acct: self.key)
            except Dc09Error as exc:
                log.warning(
                    "dc09_bad_answer", receiver=link.name, reason=exc.reason, error=str(exc)
                )
                continue
            if answer.type == "NAK" or (
                answer.type in ("ACK", "DUH", "RSP") and answer.sequence == sequence
            ):
                return answer
            log.info("dc09_stray_answer", receiver=link.name, type=answer.type, seq=answer.sequence)

    def _succeeded(self, link: Dc09Link, index: int) -> None:
        if self.status.reachable is False or self.status.receiver != link.name:
            log.info("dc09_receiver_in_use", receiver=link.name, backup=index > 0)
        self.status.reachable = True
        self.status.receiver = link.name
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.status.last_success_at = self.clock()

    def _failed(self, error: str) -> None:
        if self.status.reachable is not False:
            log.warning("dc09_receivers_unreachable", error=error)
        self.status.reachable = False
        self.status.consecutive_failures += 1
        self.status.last_error = error

    # -- refusals -------------------------------------------------------------------------

    async def _refused(self, event: Event, message: Dc09Message) -> None:
        self.status.refused_total += 1
        log.error(
            "dc09_event_refused",
            event_id=event.id,
            kind=event.kind.value,
            seq=event.seq,
            data=message.data,
            action="set aside for DC-09 (DUH: the receiver does not understand it)",
        )
        await self.buffer.quarantine(
            [event.id],
            reason=f"DC-09 receiver answered DUH to {message.data}",
            channel=self.channel,
        )
        if self._trouble_open or event.kind.condition is EventKind.DRIVER_FAULT:
            return
        await self.buffer.append(
            [
                driver_fault(
                    self.clock(),
                    condition=REFUSED_CONDITION,
                    component="dc09",
                    detail=f"the DC-09 receiver does not understand {message.data}",
                )
            ]
        )
        self._trouble_open = True


def _replace_time(message: Dc09Message, at: datetime) -> Dc09Message:
    return Dc09Message(
        type=message.type,
        sequence=message.sequence,
        account=message.account,
        line=message.line,
        receiver=message.receiver,
        data=message.data,
        xdata=message.xdata,
        timestamp=at.replace(microsecond=0),
    )


async def _wait_any(events: Sequence[asyncio.Event], limit_s: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
