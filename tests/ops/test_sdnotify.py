"""sd_notify against a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from runtime import sdnotify


class Listener:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, timeout: float = 2.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def drain(self) -> list[dict[str, str]]:
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096).decode()
                messages.append(dict(line.split("=", 1) for line in data.split("\n")))
        except BlockingIOError:
            return messages
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def listener(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    path = sock_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield Listener(sock)
    finally:
        sock.close()


def test_ready_sends_ready_and_status(listener: Listener) -> None:
    assert sdnotify.ready("3 drivers up") is True
    assert listener.recv() == {"READY": "1", "STATUS": "3 drivers up"}


def test_stopping_status_and_watchdog_ping(listener: Listener) -> None:
    assert sdnotify.stopping()
    assert listener.recv() == {"STOPPING": "1"}
    assert sdnotify.status("buffer: 0 unsent")
    assert listener.recv() == {"STATUS": "buffer: 0 unsent"}
    assert sdnotify.watchdog_ping()
    assert listener.recv() == {"WATCHDOG": "1"}


def test_reloading_carries_the_monotonic_clock(listener: Listener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = listener.recv()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_newlines_in_a_value_cannot_inject_assignments(listener: Listener) -> None:
    sdnotify.status("line one\nREADY=1")
    assert listener.recv() == {"STATUS": "line one READY=1"}


def test_abstract_namespace_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"gatewayd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        assert sdnotify.ready()
        sock.settimeout(2)
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False
    assert sdnotify.watchdog_ping() is False


def test_a_dead_socket_never_raises(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_dir / "nobody-here.sock"))
    with structlog.testing.capture_logs() as logs:
        assert sdnotify.ready() is False
    assert logs[0]["event"] == "sd_notify_failed"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "ours", 30.0),
        ("30000000", "1", None),  # another process's watchdog (we inherited the environment)
        ("30000000", "not-a-pid", None),
        ("garbage", None, None),
        ("0", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "ours" else value)
    assert sdnotify.watchdog_interval() == expected


async def test_watchdog_pings_only_while_healthy(listener: Listener) -> None:
    healthy = True
    task = asyncio.create_task(sdnotify.run_watchdog(lambda: healthy, 0.1))
    with structlog.testing.capture_logs() as logs:
        await asyncio.sleep(0.32)
        pings_healthy = listener.drain()
        healthy = False
        await asyncio.sleep(0.06)  # let a ping already due go out
        listener.drain()
        await asyncio.sleep(0.3)
        pings_unhealthy = listener.drain()
        healthy = True
        await asyncio.sleep(0.2)
        pings_recovered = listener.drain()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every 0.05 s while healthy: about six in 0.32 s.
    assert 2 <= len(pings_healthy) <= 8
    assert all(p == {"WATCHDOG": "1"} for p in pings_healthy)
    assert pings_unhealthy == []
    assert len(pings_recovered) >= 2
    events = [entry["event"] for entry in logs]
    assert events.count("sd_watchdog_withheld") == 1  # once per episode, not per tick
    assert "sd_watchdog_resumed" in events


async def test_a_raising_health_check_withholds_the_ping(listener: Listener) -> None:
    def broken() -> bool:
        raise RuntimeError("pipeline state unknown")

    task = asyncio.create_task(sdnotify.run_watchdog(broken, 0.05))
    with structlog.testing.capture_logs() as logs:
        await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listener.drain() == []
    assert logs[0]["event"] == "sd_watchdog_withheld"
    assert "pipeline state unknown" in logs[0]["reason"]
