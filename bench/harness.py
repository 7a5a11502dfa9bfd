"""Real services for the benchmarks: dispatchd processes, enrolled gateways, PostgreSQL databases,
and a lean loopback HTTP load generator.

The load generator sends pre-built HTTP/1.1 requests over keep-alive connections and reads the
replies by ``Content-Length``: an httpx client costs more CPU per request than the server it is
measuring, and on a two-core machine that would measure the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contract.signing import sign_request
from tests.fixtures.dispatch import DispatchServer, EnrolledGateway

__all__ = [
    "PG_ADMIN_URL",
    "DispatchServer",
    "EnrolledGateway",
    "LoadResult",
    "enroll_many",
    "free_port",
    "pg_available",
    "pg_database",
    "port_open",
    "post_all",
    "signed_request",
]

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pg_available() -> bool:
    return port_open("127.0.0.1", 5432)


@contextlib.contextmanager
def pg_database(prefix: str = "bench") -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; yields its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_dispatch(db_url: str, workdir: Path, *args: str) -> DispatchServer:
    server = DispatchServer(db_url=db_url, workdir=workdir, args=tuple(args))
    server.start(timeout=60)
    return server


def enroll_many(
    server: DispatchServer, count: int, *, prefix: str = "bench"
) -> list[EnrolledGateway]:
    """``count`` gateways, each in a household of its own."""
    return [
        server.enroll(f"hh-{prefix}-{i:04d}", f"gw-{prefix}-{i:04d}", version="bench")
        for i in range(count)
    ]


class Credentials(Protocol):
    """What signing needs of a gateway: an enrolled one, or one stored in bulk."""

    @property
    def gateway_id(self) -> str: ...
    @property
    def secret(self) -> str: ...


def signed_request(gateway: Credentials, path: str, body: bytes, port: int) -> bytes:
    """A complete signed HTTP/1.1 POST, ready to write to a socket (valid for MAX_SKEW_S)."""
    signed = sign_request(
        gateway_id=gateway.gateway_id,
        secret=gateway.secret,
        method="POST",
        path=path,
        body=body,
        nonce=secrets.token_hex(16),
    )
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in signed.as_dict().items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    statuses: Counter[int]
    elapsed_s: float
    latencies_ms: list[float]
    sample_error: str = ""
    #: Each reply's ``Server-Timing`` header, when it had one.
    server_timings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
    """Status, body and ``Server-Timing`` of one reply."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    timing = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "server-timing":
            timing = value.strip()
    body = await reader.readexactly(length) if length else b""
    return status, body, timing


async def post_all(
    requests: Sequence[tuple[int, bytes]],
    *,
    connections: int = 8,
    timeout_s: float = 300.0,
) -> LoadResult:
    """Send every ``(port, request)`` to 127.0.0.1 over ``connections`` keep-alive connections.

    Each connection sends one request at a time and waits for its reply (no pipelining), taking
    the next request from a shared queue; requests for different ports go to different
    connections. Bounded by ``timeout_s``.
    """
    by_port: dict[int, list[bytes]] = {}
    for port, request in requests:
        by_port.setdefault(port, []).append(request)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors: list[str] = []
    timings: list[str] = []

    async def worker(port: int, queue: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                request = queue.pop()
                t0 = time.perf_counter()
                writer.write(request)
                status, body, timing = await _read_reply(reader)
                latencies.append((time.perf_counter() - t0) * 1000)
                if timing:
                    timings.append(timing)
                statuses[status] += 1
                if status != 200 and not errors:
                    errors.append(f"{status}: {body[:300]!r}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    workers = []
    for port, queue in by_port.items():
        queue.reverse()  # pop() from the end keeps the given order
        per_port = max(1, connections // len(by_port))
        workers += [worker(port, queue) for _ in range(per_port)]
    t0 = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*workers)
    return LoadResult(
        statuses, time.perf_counter() - t0, latencies, errors[0] if errors else "", timings
    )
