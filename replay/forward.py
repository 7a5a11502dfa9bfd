"""Forwarding replayed events to a dispatch server, for a console demo of a recorded day.

The events go the way live ones do: into an event buffer (a temporary one, so the gateway's own
buffer is never touched) and out through the :class:`~forwarder.delivery.Forwarder`, signed with
the credential of an enrolled gateway. Each event is stamped with the real time it is sent (a
console shows it as new) and carries its time in the trace as ``payload.replay.trace_at``.

Use the credential of a demo gateway: dispatch takes the events as that gateway's.

The replay runs on the caller's thread; the buffer and forwarder run on an event loop in a
thread of their own, and :meth:`ReplayForwarder.submit` hands events across.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from replay.engine import DecidedLike
from replay.trace import iso_utc

if TYPE_CHECKING:
    from buffer.aio import AsyncEventBuffer
    from contract.home import HomeConfig
    from forwarder.client import Credential, DispatchClient
    from forwarder.delivery import Forwarder

__all__ = ["ForwardError", "ReplayForwarder"]

log = structlog.get_logger(__name__)


class ForwardError(Exception):
    """Forwarding cannot start: no credential, no dispatch URL."""


class ReplayForwarder:
    def __init__(
        self, credential: Credential, url: str, *, ca_file: Path | None, insecure_http: bool
    ) -> None:
        self.credential = credential
        self.url = url
        self.ca_file = ca_file
        self.insecure_http = insecure_http
        self.submitted = 0
        self.failed = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="replay-forward", daemon=True
        )
        self._tmp = Path(tempfile.mkdtemp(prefix="replay-forward-"))
        self._pending: list[concurrent.futures.Future[Any]] = []
        self.buffer: AsyncEventBuffer | None = None
        self.client: DispatchClient | None = None
        self.forwarder: Forwarder | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(
        cls,
        config: HomeConfig,
        *,
        url: str | None = None,
        credential_path: Path | None = None,
        transport: Any = None,
        insecure_http: bool = False,
    ) -> ReplayForwarder:
        from forwarder.client import Credential, CredentialError

        path = credential_path or config.gateway.state_dir / "credential.json"
        try:
            credential = Credential.load(path)
        except CredentialError as exc:
            raise ForwardError(f"--forward needs an enrolled gateway's credential: {exc}") from exc
        target = url or config.dispatch.url or credential.dispatch_url
        if not target:
            raise ForwardError("--forward: no dispatch URL (give one, or enrol the gateway)")
        forwarder = cls(
            credential,
            target,
            ca_file=config.dispatch.ca_file,
            insecure_http=insecure_http or config.dispatch.insecure_http,
        )
        forwarder._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(forwarder._open(transport), forwarder._loop).result(30)
        except Exception as exc:
            forwarder._stop_loop()
            raise ForwardError(f"--forward: cannot start forwarding: {exc}") from exc
        log.info("replay_forwarding", url=target, gateway=credential.gateway_id)
        return forwarder

    async def _open(self, transport: Any) -> None:
        from buffer.aio import AsyncEventBuffer
        from buffer.store import EventBuffer
        from forwarder.client import DispatchClient
        from forwarder.delivery import Forwarder

        raw = EventBuffer.open(self._tmp / "buffer.db", gateway_id=self.credential.gateway_id)
        self.buffer = AsyncEventBuffer(raw)
        await self.buffer.start()
        self.client = DispatchClient(
            self.url,
            credential=self.credential,
            ca_file=self.ca_file,
            transport=transport,
            insecure_http=self.insecure_http,
        )
        self.forwarder = Forwarder(self.buffer, self.client, backoff_max=5.0)
        self._task = asyncio.create_task(self.forwarder.run(), name="replay-forwarder")

    def submit(self, decided: DecidedLike) -> None:
        """Queue an event decision for dispatch (local actions are not forwarded)."""
        if getattr(decided.decision, "command", None) is not None:
            return
        from rules.decider import draft_of

        draft = draft_of(decided.decision, datetime.now(UTC))
        draft.payload["replay"] = {"trace_at": iso_utc(decided.at)}
        assert self.buffer is not None
        self._pending.append(
            asyncio.run_coroutine_threadsafe(self.buffer.append([draft]), self._loop)
        )
        self.submitted += 1

    def finish(self, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (up to ``timeout``) until dispatch has taken every event, then stop."""
        deadline = time.monotonic() + timeout
        for future in self._pending:
            try:
                future.result(max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                self.failed += 1
                log.error("replay_forward_append_failed", error=str(exc))
        delivered = False
        try:
            delivered = asyncio.run_coroutine_threadsafe(
                self._drained(deadline), self._loop
            ).result(max(0.1, deadline - time.monotonic()) + 1)
        except Exception as exc:
            log.error("replay_forward_wait_failed", error=str(exc))
        sent = self.forwarder.status.sent_total if self.forwarder else 0
        error = self.forwarder.status.last_error if self.forwarder else None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._stop_loop()
        return {
            "url": self.url,
            "events": self.submitted,
            "delivered": sent,
            "all_delivered": delivered,
            **({"last_error": error} if error and not delivered else {}),
        }

    async def _drained(self, deadline: float) -> bool:
        assert self.buffer is not None
        while time.monotonic() < deadline:
            if not await self.buffer.pending(max_events=1):
                return True
            if self.forwarder is not None:
                self.forwarder.wake()
            await asyncio.sleep(0.1)
        return False

    async def _close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.client is not None:
            await self.client.aclose()
        if self.buffer is not None:
            await self.buffer.aclose()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
