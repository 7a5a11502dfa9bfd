"""The control socket over a real Unix socket, against the tests' own DaemonControl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contract.wire import EventKind
from gatewayd.control import (
    ControlClient,
    ControlError,
    ControlRequestError,
    ControlServer,
    ControlUnavailable,
    WatcherDropped,
    WatchHub,
)
from runtime.timeouts import within
from tests.fixtures.waiting import await_until
from tests.ops.fakes import FakeDaemon


@pytest.fixture
async def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
async def server(sock_dir: Path, daemon: FakeDaemon) -> AsyncIterator[ControlServer]:
    srv = ControlServer(sock_dir / "control.sock", daemon, watch_queue_limit=20)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.aclose()


async def raw(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path), limit=1 << 24)


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> Any:
    writer.write(line)
    await writer.drain()
    return json.loads(await within(reader.readline(), 5))


async def slow_watcher(path: Path) -> socket.socket:
    """A watcher that reads nothing after the acknowledgement: a plain socket, no reader task,
    so the kernel's buffers fill up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(str(path))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b'{"op": "watch"}\n')
    ack = b""
    while not ack.endswith(b"\n"):
        ack += await loop.sock_recv(sock, 1)
    assert json.loads(ack) == {"ok": True, "watching": True}
    return sock


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await loop.sock_recv(sock, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_status_round_trip(server: ControlServer, daemon: FakeDaemon) -> None:
    status = await ControlClient(server.path).status()
    assert status == daemon.status()
    assert status["buffer"]["depth"]["telemetry"] == 250


async def test_socket_is_group_accessible_only(server: ControlServer) -> None:
    mode = server.path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


async def test_set_mode_and_refuse_a_bad_one(server: ControlServer, daemon: FakeDaemon) -> None:
    client = ControlClient(server.path)
    assert await client.set_mode("test") == "test"
    assert daemon.mode == "test"
    with pytest.raises(ControlRequestError, match="mode must be one of: normal, away, test"):
        await client.set_mode("party")
    assert daemon.mode_changes == ["test"]


async def test_daemon_refusal_is_passed_on(server: ControlServer, daemon: FakeDaemon) -> None:
    async def refuse(mode: str) -> None:
        raise ValueError("cannot enter away mode while an alarm is active")

    daemon.set_mode = refuse  # type: ignore[method-assign]
    with pytest.raises(ControlRequestError, match="while an alarm is active"):
        await ControlClient(server.path).set_mode("away")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"this is not json\n", "request is not JSON"),
        (b"[1, 2]\n", "request must be a JSON object, got list"),
        (b'{"op": "reboot"}\n', "unknown op 'reboot'; expected one of: mode, status, watch"),
        (b'{"mode": "test"}\n', "unknown op None"),
        (b'{"op": "mode", "mode": 7}\n', "mode must be one of: normal, away, test (got 7)"),
        (b"\xff\xfe\n", "request is not JSON"),
    ],
)
async def test_bad_requests_are_answered_and_the_connection_goes_on(
    server: ControlServer, line: bytes, error: str
) -> None:
    reader, writer = await raw(server.path)
    try:
        answer = await ask(reader, writer, line)
        assert answer["ok"] is False
        assert error in answer["error"]
        # Same connection still serves a good request.
        answer = await ask(reader, writer, b'{"op": "status"}\n')
        assert answer["ok"] is True
        assert answer["status"]["gateway_id"] == "gw-0042"
    finally:
        writer.close()


async def test_oversized_line_is_refused_and_closed(server: ControlServer) -> None:
    reader, writer = await raw(server.path)
    writer.write(b'{"op": "status", "pad": "' + b"x" * 200_000 + b'"}\n')
    # The server answers and closes after 64 KiB; the rest of our write may hit a closed socket.
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    answer = json.loads(await within(reader.readline(), 5))
    assert answer == {"ok": False, "error": "request line longer than 65536 bytes"}
    assert await within(reader.read(), 5) == b""
    writer.close()
    # The daemon is unharmed.
    assert (await ControlClient(server.path).status())["gateway_id"] == "gw-0042"


async def test_status_failure_inside_the_daemon_is_an_answer(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    daemon.status_error = KeyError("buffer")
    with pytest.raises(ControlRequestError, match="status failed: KeyError"):
        await ControlClient(server.path).status()
    daemon.status_error = None
    assert (await ControlClient(server.path).status())["mode"] == "normal"


async def test_client_vanishing_mid_request_does_not_hurt(server: ControlServer) -> None:
    for _ in range(20):
        _, writer = await raw(server.path)
        writer.write(b'{"op": "status"}\n{"op": "sta')
        writer.transport.abort()
    await await_until(lambda: server.clients == 0, 5)
    assert (await ControlClient(server.path).status())["version"] == "0.1.0"


async def test_watch_streams_buffered_events(server: ControlServer, daemon: FakeDaemon) -> None:
    received: list[dict[str, Any]] = []

    async def watcher() -> None:
        async for event in ControlClient(server.path).watch():
            received.append(event)
            if len(received) == 3:
                return

    task = asyncio.create_task(watcher())
    await await_until(lambda: daemon.hub.watchers == 1, 5)
    reading = {"property": "test", "value": True, "extra": {"linkquality": 120}}
    sent = [
        daemon.publish(EventKind.TEST, "sos_button", test=True, reading=reading),
        daemon.publish(EventKind.SMOKE, "kitchen_smoke", payload={"room": "kitchen"}),
        daemon.publish(EventKind.HEARTBEAT, None),
    ]
    await within(task, 5)
    assert received == sent
    assert received[0]["reading"]["extra"]["linkquality"] == 120
    # The watcher left: the server and the daemon's hub forget it.
    await await_until(lambda: daemon.hub.watchers == 0 and server.clients == 0, 5)


async def test_events_right_after_the_ack_are_not_lost(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    reader, writer = await raw(server.path)
    assert (await ask(reader, writer, b'{"op": "watch"}\n')) == {"ok": True, "watching": True}
    event = daemon.publish(EventKind.TEST, "hall_door", test=True)
    assert json.loads(await within(reader.readline(), 5)) == {"event": event}
    writer.close()


async def test_vanished_watcher_is_cleaned_up(server: ControlServer, daemon: FakeDaemon) -> None:
    reader, writer = await raw(server.path)
    await ask(reader, writer, b'{"op": "watch"}\n')
    await await_until(lambda: daemon.hub.watchers == 1, 5)
    writer.transport.abort()
    await await_until(lambda: daemon.hub.watchers == 0 and server.clients == 0, 5)
    # Publishing afterwards reaches nobody and harms nothing.
    daemon.publish(EventKind.MOTION, "hall_door")
    assert (await ControlClient(server.path).status())["gateway_id"] == "gw-0042"


async def test_slowest_watcher_is_dropped_not_the_others(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    # A slow watcher: asks to watch, then never reads.
    slow = await slow_watcher(server.path)
    fast: list[dict[str, Any]] = []
    total = 600

    async def fast_watcher() -> None:
        async for event in ControlClient(server.path).watch():
            fast.append(event)
            if len(fast) == total:
                return

    task = asyncio.create_task(fast_watcher())
    await await_until(lambda: daemon.hub.watchers == 2, 5)
    padding = "p" * 2000  # big events fill the slow watcher's socket buffers quickly
    for i in range(total):
        daemon.publish(EventKind.SIGNAL, "sos_button", payload={"n": i, "pad": padding})
        await asyncio.sleep(0)
    await within(task, 10)
    assert [e["payload"]["n"] for e in fast] == list(range(total))
    # The slow watcher gets what was already in flight, then the reason, then EOF.
    data = await within(read_to_eof(slow), 10)
    last = json.loads(data.splitlines()[-1])
    assert last["ok"] is False
    assert last["error"].startswith("dropped: more than 20 events unread")
    assert len(data.splitlines()) < total
    slow.close()
    await await_until(lambda: daemon.hub.watchers == 0 and server.clients == 0, 5)


async def test_a_watcher_that_never_reads_is_disconnected(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    sock = await slow_watcher(server.path)
    await await_until(lambda: daemon.hub.watchers == 1, 5)
    for i in range(400):
        daemon.publish(EventKind.SIGNAL, "sos_button", payload={"n": i, "pad": "p" * 2000})
        await asyncio.sleep(0)
    # Dropped, and its connection aborted even though it never takes the buffered data.
    await await_until(lambda: daemon.hub.watchers == 0 and server.clients == 0, within=8)
    sock.close()


async def test_watch_ends_with_an_error_when_the_daemon_stops(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    async def watcher() -> None:
        async for _ in ControlClient(server.path).watch():
            pass

    task = asyncio.create_task(watcher())
    await await_until(lambda: daemon.hub.watchers == 1, 5)
    daemon.hub.close()
    with pytest.raises(ControlRequestError, match="gatewayd is stopping"):
        await within(task, 5)


async def test_too_many_clients_are_refused(sock_dir: Path, daemon: FakeDaemon) -> None:
    server = ControlServer(sock_dir / "c.sock", daemon, max_clients=2)
    await server.start()
    try:
        held = [await raw(server.path) for _ in range(2)]
        await await_until(lambda: server.clients == 2, 5)
        with pytest.raises(ControlRequestError, match="too many control connections"):
            await ControlClient(server.path).status()
        for _, writer in held:
            writer.close()
        await await_until(lambda: server.clients == 0, 5)
        assert (await ControlClient(server.path).status())["mode"] == "normal"
    finally:
        await server.aclose()


async def test_idle_connections_are_closed(sock_dir: Path, daemon: FakeDaemon) -> None:
    server = ControlServer(sock_dir / "c.sock", daemon, idle_timeout=0.1)
    await server.start()
    try:
        reader, writer = await raw(server.path)
        assert await within(reader.read(), 5) == b""
        writer.close()
    finally:
        await server.aclose()


async def test_unterminated_request_gets_an_error(server: ControlServer) -> None:
    reader, writer = await raw(server.path)
    writer.write(b'{"op": "status"}')
    writer.write_eof()
    answer = json.loads(await within(reader.readline(), 5))
    assert answer == {"ok": False, "error": "request must end with \\n"}
    writer.close()


async def test_not_running_is_explained(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    with pytest.raises(ControlUnavailable) as info:
        await ControlClient(path).status()
    assert str(info.value) == (
        f"gatewayd is not running (no socket at {path}); start it with systemctl start gatewayd"
    )


async def test_stale_socket_is_replaced_and_removed_on_close(
    sock_dir: Path, daemon: FakeDaemon
) -> None:
    path = sock_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves behind
    with pytest.raises(ControlUnavailable, match="nothing listens at"):
        await ControlClient(path).status()
    server = ControlServer(path, daemon)
    await server.start()
    assert (await ControlClient(path).status())["gateway_id"] == "gw-0042"
    await server.aclose()
    assert not path.exists()
    with pytest.raises(ControlUnavailable, match="no socket at"):
        await ControlClient(path).status()


async def test_second_daemon_on_the_same_socket_is_refused(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    with pytest.raises(ControlError, match="another gatewayd already serves"):
        await ControlServer(server.path, daemon).start()
    # The first one still serves.
    assert (await ControlClient(server.path).status())["gateway_id"] == "gw-0042"


async def test_refuses_to_replace_a_regular_file(sock_dir: Path, daemon: FakeDaemon) -> None:
    path = sock_dir / "home.toml"
    path.write_text("precious")
    with pytest.raises(ControlError, match="is not a socket; refusing to replace it"):
        await ControlServer(path, daemon).start()
    assert path.read_text() == "precious"


async def test_too_long_socket_path_is_explained(sock_dir: Path, daemon: FakeDaemon) -> None:
    path = sock_dir / ("d" * 120) / "control.sock"
    with pytest.raises(ControlError, match=r"longer than 107 bytes; set a shorter \[status\]"):
        await ControlServer(path, daemon).start()


async def test_socket_not_a_socket_for_client(sock_dir: Path) -> None:
    path = sock_dir / "plain"
    path.write_text("")
    with pytest.raises(ControlUnavailable):
        await ControlClient(path).status()
    assert path.read_text() == ""


async def test_random_garbage_never_hurts_the_server(server: ControlServer) -> None:
    rng = random.Random(20261129)
    for _ in range(10):
        reader, writer = await raw(server.path)
        lines = [rng.randbytes(rng.randint(0, 400)).replace(b"\n", b" ") + b"\n" for _ in range(20)]
        writer.write(b"".join(lines))
        await writer.drain()
        answers = []
        for _ in lines:
            line = await within(reader.readline(), 5)
            if not line:
                break
            answers.append(json.loads(line))
        writer.close()
        # Blank lines are skipped; every other line got an answer and none was taken as valid.
        assert all(a["ok"] is False and a["error"] for a in answers)
        assert len(answers) == sum(1 for line in lines if line.strip())
    assert (await ControlClient(server.path).status())["gateway_id"] == "gw-0042"


async def test_watch_hub_drops_only_the_slow_subscriber() -> None:
    hub = WatchHub(queue_limit=3)
    slow = hub.subscribe()
    fast = hub.subscribe()
    got: list[dict[str, Any]] = []
    for n in range(5):
        hub.publish({"n": n})
        got.append(await anext(fast))
    assert got == [{"n": n} for n in range(5)]
    assert hub.watchers == 1
    with pytest.raises(WatcherDropped, match="more than 3 events unread"):
        await anext(slow)
    await fast.aclose()  # type: ignore[attr-defined]
    assert hub.watchers == 0


async def test_watch_hub_close_ends_every_stream() -> None:
    hub = WatchHub()
    subscriptions = [hub.subscribe() for _ in range(3)]
    hub.publish({"n": 1})
    hub.close()
    for subscription in subscriptions:
        # What was not yet read is not delivered after close: the daemon is stopping.
        assert [item async for item in subscription] == []
    assert hub.watchers == 0


async def test_a_drop_inside_the_daemon_reaches_the_client(sock_dir: Path) -> None:
    daemon = FakeDaemon()
    daemon.hub = WatchHub(queue_limit=2)
    server = ControlServer(sock_dir / "c.sock", daemon)
    await server.start()
    try:
        async with ControlClient(server.path).subscribe() as events:
            # Publishing without yielding: the server's pump cannot keep up with the hub.
            for n in range(5):
                daemon.publish(EventKind.MOTION, "hall_door", payload={"n": n})
            with pytest.raises(ControlRequestError, match="dropped: more than 2 events unread"):
                async for _ in events:
                    pass
    finally:
        await server.aclose()
