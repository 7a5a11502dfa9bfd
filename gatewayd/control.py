"""The local control socket: `gatewayd status`, `gatewayd mode` and the walk test talk to the
running daemon through it.

A Unix stream socket (mode 0660: root and the ``gatewayd`` group), newline-delimited JSON. Each
request is one JSON object on one line; each response is one JSON object on one line::

    → {"op": "status"}
    ← {"ok": true, "status": {...}}
    → {"op": "mode", "mode": "test"}              # "normal", "away" or "test"
    ← {"ok": true, "mode": "test"}
    → {"op": "watch"}
    ← {"ok": true, "watching": true}
    ← {"event": {...}}                            # one line per event the gateway buffers
    ← {"event": {...}}                            # ... until the client closes
    → {"op": "nonsense"}
    ← {"ok": false, "error": "unknown op 'nonsense'; expected one of: mode, status, watch"}

Several requests may share a connection; after ``watch`` the connection only streams. A line
longer than :data:`MAX_LINE_BYTES` gets an error and the connection is closed. A watcher that
cannot keep up (its queue of :data:`WATCH_QUEUE_LIMIT` events is full) is sent
``{"ok": false, "error": "dropped: ..."}`` and disconnected rather than let memory grow.

Nothing a client does can hurt the daemon: every request is handled in its own task, every
failure is answered or logged, and a vanished client only ends its own task.

Exceptions::

    ControlError
     ├── ControlUnavailable   the daemon is not running (no socket, nobody listening, no access)
     ├── ControlRequestError  the daemon refused a request (bad mode, ...)
     └── WatcherDropped       (daemon side) a watcher fell too far behind
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from gatewayd.status import GatewayStatus
from runtime.timeouts import within

__all__ = [
    "MAX_LINE_BYTES",
    "MODES",
    "WATCH_QUEUE_LIMIT",
    "ControlClient",
    "ControlError",
    "ControlRequestError",
    "ControlServer",
    "ControlUnavailable",
    "DaemonControl",
    "WatchHub",
    "WatcherDropped",
]

log = structlog.get_logger(__name__)

#: The gateway's operating modes.
MODES: Final = ("normal", "away", "test")
#: The longest request line the server reads; responses (status of a large home) may be longer.
MAX_LINE_BYTES: Final = 64 * 1024
#: The longest response line a client reads.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
#: Events queued for one watcher before it is dropped as too slow.
WATCH_QUEUE_LIMIT: Final = 1000
#: Connections served at once; more are refused so a flood of clients cannot starve the daemon.
MAX_CLIENTS: Final = 32
#: A request connection that sends nothing for this long is closed.
IDLE_TIMEOUT_S: Final = 60.0
#: How long a closing connection may take to deliver what is still buffered.
CLOSE_TIMEOUT_S: Final = 2.0
#: Longest path a Unix socket can be bound to (sun_path is 108 bytes including the NUL).
MAX_SOCKET_PATH: Final = 107
_OPS: Final = ("mode", "status", "watch")


class ControlError(Exception):
    """Talking to the daemon's control socket failed."""


class ControlUnavailable(ControlError):
    """The daemon is not running or its socket cannot be reached."""


class ControlRequestError(ControlError):
    """The daemon answered a request with an error."""


class WatcherDropped(ControlError):
    """A watcher fell too far behind and was dropped."""


class DaemonControl(Protocol):
    """What the daemon offers the control socket."""

    def status(self) -> GatewayStatus | dict[str, Any]:
        """A snapshot of the gateway's health (see docs/operations.md); the server sends a
        :class:`GatewayStatus` as :meth:`GatewayStatus.to_json`, a dict (tests) as it is."""
        ...

    async def set_mode(self, mode: str) -> None:
        """Switch to ``normal``, ``away`` or ``test``; raises ValueError on any other mode."""
        ...

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        """Each event the gateway buffers from this call on, as ``Event.model_dump(mode="json")``
        plus ``{"reading": {...}}`` where the causing reading is known.

        Collecting starts at the call, not at the first read (:meth:`WatchHub.subscribe` does
        this), so an event between the watcher's acknowledgement and its first read is kept.
        """
        ...


class WatchHub:
    """Fans events out to watchers, each with a bounded queue; a full queue drops that watcher.

    The daemon calls :meth:`publish` for every event it buffers (cheap when nobody watches) and
    returns :meth:`subscribe` from its ``DaemonControl.watch``.
    """

    def __init__(self, *, queue_limit: int = WATCH_QUEUE_LIMIT) -> None:
        self._queue_limit = queue_limit
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    @property
    def watchers(self) -> int:
        return len(self._queues)

    def publish(self, item: dict[str, Any]) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                # Too slow: end its stream with WatcherDropped instead of growing without bound.
                self._queues.discard(queue)
                _drain_and_end(queue, _DROPPED)
                log.warning("control_watcher_dropped", reason="queue full", limit=self._queue_limit)

    def close(self) -> None:
        """End every watcher's stream (daemon shutdown)."""
        for queue in list(self._queues):
            _drain_and_end(queue)
        self._queues.clear()

    def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """A stream of every event published from this call on (not from the first read on,
        so nothing between subscribing and reading is missed)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self._queue_limit)
        self._queues.add(queue)
        return _Subscription(self._queues, queue, self._queue_limit)


class _Subscription:
    """One watcher's stream; ``aclose()`` (or the end of the stream) unsubscribes it."""

    def __init__(
        self,
        queues: set[asyncio.Queue[dict[str, Any] | None]],
        queue: asyncio.Queue[dict[str, Any] | None],
        limit: int,
    ) -> None:
        self._queues = queues
        self._queue = queue
        self._limit = limit

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self._queue.get()
        if item is None:
            self._queues.discard(self._queue)
            raise StopAsyncIteration
        if item is _DROPPED:
            raise WatcherDropped(f"more than {self._limit} events unread")
        return item

    async def aclose(self) -> None:
        self._queues.discard(self._queue)


#: The last item of a dropped watcher's queue (an identity, never sent anywhere).
_DROPPED: Final[dict[str, Any]] = {}


def _drain_and_end(
    queue: asyncio.Queue[dict[str, Any] | None], last: dict[str, Any] | None = None
) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(last)


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class ControlServer:
    """Serves :class:`DaemonControl` on a Unix socket at ``path`` (mode 0660)."""

    def __init__(
        self,
        path: Path,
        control: DaemonControl,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        watch_queue_limit: int = WATCH_QUEUE_LIMIT,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self._control = control
        self._max_line = max_line_bytes
        self._watch_limit = watch_queue_limit
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        """Bind and listen. Raises :class:`ControlError` if the path is unusable or another
        daemon already serves it; a stale socket file of a dead daemon is replaced."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise ControlError(
                f"control socket path {self.path} is longer than {MAX_SOCKET_PATH} bytes; "
                f"set a shorter [status] socket in the home config"
            )
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            sock.bind(str(self.path))
            # Before listen(): nobody can connect yet, so no window with looser permissions.
            os.chmod(self.path, 0o660)
            self._inode = self.path.stat().st_ino
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=sock, limit=self._max_line
            )
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot listen on control socket {self.path}: {exc}") from exc
        log.info("control_listening", path=str(self.path))

    def _remove_stale(self) -> None:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"cannot use control socket {self.path}: {exc}") from exc
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            # Nobody listening: the file is left over from a daemon that died.
            self.path.unlink(missing_ok=True)
            log.info("control_stale_socket_removed", path=str(self.path))
            return
        finally:
            probe.close()
        raise ControlError(f"another gatewayd already serves {self.path}")

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            if len(self._clients) > self._max_clients:
                await self._send(writer, {"ok": False, "error": "too many control connections"})
                return
            await self._conversation(reader, writer)
        except (ConnectionError, BrokenPipeError):
            pass  # the client went away; nothing of the daemon's is lost
        except asyncio.CancelledError:
            # Only aclose() cancels a connection's task. Ending quietly keeps asyncio's stream
            # callback (Python 3.11) from logging the cancellation as an error.
            return
        except Exception:
            log.exception("control_client_failed")
        finally:
            self._clients.discard(task)
            await _close(writer)

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                line = await within(reader.readuntil(b"\n"), self._idle_timeout)
            except TimeoutError:
                return
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    await self._send(writer, {"ok": False, "error": "request must end with \\n"})
                return
            except asyncio.LimitOverrunError:
                await self._send(
                    writer,
                    {"ok": False, "error": f"request line longer than {self._max_line} bytes"},
                )
                return
            if not line.strip():
                continue
            request, error = _parse_request(line)
            if request is None:
                await self._send(writer, {"ok": False, "error": error})
                continue
            op = request["op"]
            if op == "status":
                await self._send(writer, await self._status())
            elif op == "mode":
                await self._send(writer, await self._set_mode(request.get("mode")))
            else:  # watch: the connection streams from now on
                await self._watch(reader, writer)
                return

    async def _status(self) -> dict[str, Any]:
        try:
            snapshot = self._control.status()
            if isinstance(snapshot, GatewayStatus):
                snapshot = snapshot.to_json()
            json.dumps(snapshot, default=str)
        except Exception as exc:
            log.exception("control_status_failed")
            return {"ok": False, "error": f"status failed: {type(exc).__name__}: {exc}"}
        return {"ok": True, "status": snapshot}

    async def _set_mode(self, mode: object) -> dict[str, Any]:
        if not isinstance(mode, str) or mode not in MODES:
            return {
                "ok": False,
                "error": f"mode must be one of: {', '.join(MODES)} (got {mode!r})",
            }
        try:
            await self._control.set_mode(mode)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control_set_mode_failed", mode=mode)
            return {"ok": False, "error": f"mode change failed: {type(exc).__name__}: {exc}"}
        log.info("control_mode_set", mode=mode)
        return {"ok": True, "mode": mode}

    async def _watch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._watch_limit)
        stream = self._control.watch()

        async def pump() -> None:
            # Keeps pulling from the daemon at the daemon's pace; a slow client overflows its
            # own queue, never the daemon's.
            async for item in stream:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    raise WatcherDropped(f"more than {self._watch_limit} events unread") from None

        async def hangup() -> None:
            # The client sends nothing more; EOF (or any data, ignored) tells us it is gone.
            while await reader.read(4096):
                pass

        async def send() -> None:
            while True:
                await self._send(writer, {"event": await queue.get()})

        await self._send(writer, {"ok": True, "watching": True})
        tasks = [asyncio.create_task(c) for c in (pump(), hangup(), send())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        for task in done:
            exc = task.exception()
            if isinstance(exc, WatcherDropped):
                log.warning("control_watcher_dropped", reason=str(exc))
                with contextlib.suppress(Exception):
                    await within(self._send(writer, {"ok": False, "error": f"dropped: {exc}"}), 1.0)
            elif exc is not None and not isinstance(exc, ConnectionError):
                log.error("control_watch_failed", error=f"{type(exc).__name__}: {exc}")
            elif task is tasks[0] and exc is None:
                # The daemon ended the stream (shutting down).
                with contextlib.suppress(Exception):
                    await self._send(writer, {"ok": False, "error": "gatewayd is stopping"})

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(_encode(message))
        await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully if the peer takes what is still buffered, else abort."""
    writer.close()
    try:
        await within(writer.wait_closed(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        # A peer that never reads would hold the connection (and its buffer) forever.
        writer.transport.abort()
    except Exception:
        pass  # the peer is gone already


def _parse_request(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"request is not JSON: {exc}"
    if not isinstance(request, dict):
        return None, f"request must be a JSON object, got {type(request).__name__}"
    op = request.get("op")
    if op not in _OPS:
        return None, f"unknown op {op!r}; expected one of: {', '.join(_OPS)}"
    return request, ""


class ControlClient:
    """Talks to a running daemon's control socket; one connection per call."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await within(
                asyncio.open_unix_connection(str(self.path), limit=MAX_RESPONSE_BYTES),
                self.timeout,
            )
        except FileNotFoundError as exc:
            raise ControlUnavailable(
                f"gatewayd is not running (no socket at {self.path}); "
                f"start it with systemctl start gatewayd"
            ) from exc
        except ConnectionRefusedError as exc:
            raise ControlUnavailable(
                f"gatewayd is not running (nothing listens at {self.path}); "
                f"start it with systemctl start gatewayd"
            ) from exc
        except PermissionError as exc:
            raise ControlUnavailable(
                f"no permission to open {self.path}; run as root or as a member of the "
                f"gatewayd group"
            ) from exc
        except TimeoutError as exc:
            raise ControlUnavailable(
                f"gatewayd did not accept a connection at {self.path} within {self.timeout:g} s"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK:
                raise ControlUnavailable(f"{self.path} is not a socket") from exc
            raise ControlUnavailable(f"cannot connect to gatewayd at {self.path}: {exc}") from exc

    async def _read(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise ControlUnavailable("gatewayd closed the control connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise ControlError("response from gatewayd is too long") from exc
        except ConnectionError as exc:
            raise ControlUnavailable(f"control connection lost: {exc}") from exc
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ControlError(f"gatewayd sent a line that is not JSON: {line[:80]!r}") from exc
        if not isinstance(message, dict):
            raise ControlError(f"gatewayd sent {type(message).__name__}, not an object")
        return message

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the ``ok`` response; raises on an error response."""
        reader, writer = await self._connect()
        try:
            writer.write(_encode(request))
            await writer.drain()
            response = await within(self._read(reader), self.timeout)
        except TimeoutError as exc:
            raise ControlError(f"gatewayd did not answer within {self.timeout:g} s") from exc
        except ConnectionError as exc:
            raise ControlUnavailable(f"control connection lost: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if not response.get("ok"):
            raise ControlRequestError(str(response.get("error") or "request refused"))
        return response

    async def status(self) -> dict[str, Any]:
        response = await self.request({"op": "status"})
        snapshot = response.get("status")
        if not isinstance(snapshot, dict):
            raise ControlError("gatewayd answered status without a status object")
        return snapshot

    async def set_mode(self, mode: str) -> str:
        """Switch the gateway's mode; returns the mode now in force."""
        response = await self.request({"op": "mode", "mode": mode})
        return str(response.get("mode", mode))

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Start watching; on entry the daemon has confirmed, so no later event is missed::

            async with client.subscribe() as events:
                await client.set_mode("test")
                async for event in events: ...

        The iterator raises :class:`ControlError` if the daemon drops this watcher or stops.
        """
        reader, writer = await self._connect()
        try:
            writer.write(_encode({"op": "watch"}))
            await writer.drain()
            try:
                first = await within(self._read(reader), self.timeout)
            except TimeoutError as exc:
                raise ControlError(f"gatewayd did not answer within {self.timeout:g} s") from exc
            if not first.get("ok"):
                raise ControlRequestError(str(first.get("error") or "watch refused"))
            yield self._events(reader)
        except ConnectionError as exc:
            raise ControlUnavailable(f"control connection lost: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _events(self, reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
        while True:
            message = await self._read(reader)
            event = message.get("event")
            if isinstance(event, dict):
                yield event
            elif message.get("ok") is False:
                raise ControlRequestError(str(message.get("error") or "watch ended"))

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        """Each event the gateway buffers from the first read on, until the caller stops."""
        async with self.subscribe() as events:
            async for event in events:
                yield event
