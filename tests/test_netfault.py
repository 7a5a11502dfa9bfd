"""The fault proxy itself must behave, or the fault suite proves nothing."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.netfault import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"ping")
        return s.recv(1024)


def _roundtrip_or_raise(port: int) -> None:
    if _roundtrip(port) == b"":
        raise ConnectionResetError("closed without an answer")


def test_pass_refuse_blackhole_reset(echo_port: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo_port)
    proxy.start()
    try:
        assert _roundtrip(proxy.port) == b"ping"
        proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            _roundtrip(proxy.port)
        proxy.set_mode("blackhole")
        with pytest.raises(TimeoutError):
            _roundtrip(proxy.port, timeout=0.3)
        proxy.set_mode("reset")
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            _roundtrip_or_raise(proxy.port)
        proxy.set_mode("pass")
        assert _roundtrip(proxy.port) == b"ping"
    finally:
        proxy.stop()
