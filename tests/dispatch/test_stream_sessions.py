"""The live stream lives no longer than the session it was opened with: it ends on logout, when the
operator is disabled and when the session expires (a real server and a streaming client)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from tests.dispatch.conftest import new_operator
from tests.fixtures.dispatch import DispatchServer

#: Longer than the server's slowest look at a session (its poll on PostgreSQL is 2 s).
CLOSE_WITHIN_S = 8.0


def seconds_until_stream_ends(client: httpx.Client, action: Callable[[], None]) -> float:
    """Open the live stream, do ``action`` once it is open, and read until the server ends the
    stream; the seconds from the action to the end. A stream still open fails the test."""
    timeout = httpx.Timeout(CLOSE_WITHIN_S, read=CLOSE_WITHIN_S)
    with client.stream("GET", "/api/v1/stream", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        action()
        started = time.monotonic()
        try:
            for _ in lines:
                assert time.monotonic() - started < CLOSE_WITHIN_S, "the stream goes on"
        except httpx.ReadTimeout as exc:
            raise AssertionError("the stream was still open after the session ended") from exc
        return time.monotonic() - started


def test_stream_ends_on_logout(live_server: DispatchServer) -> None:
    _name, client = new_operator(live_server)

    def log_out() -> None:
        assert client.post("/api/v1/auth/logout").status_code == 204

    assert seconds_until_stream_ends(client, log_out) < CLOSE_WITHIN_S


def test_stream_ends_when_the_operator_is_disabled(live_server: DispatchServer) -> None:
    name, client = new_operator(live_server)
    admin = live_server.operator_client()

    def disable() -> None:
        reply = admin.patch(f"/api/v1/operators/{name}", json={"disabled": True})
        assert reply.status_code == 200, reply.text

    assert seconds_until_stream_ends(client, disable) < CLOSE_WITHIN_S


def test_stream_ends_when_the_session_expires(live_server: DispatchServer) -> None:
    _name, client = new_operator(live_server)
    token = client.cookies["dispatch_session"]
    expires = datetime.now(UTC) + timedelta(seconds=2)
    stamp = expires.strftime("%Y-%m-%d %H:%M:%S.%f")
    if live_server.db_url.startswith("postgresql"):
        stamp += "+00:00"

    def shorten_session() -> None:
        engine = sa.create_engine(
            live_server.db_url.replace("postgresql://", "postgresql+psycopg://")
        )
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE sessions SET expires_at = :t WHERE token_hash = :h"),
                {"t": stamp, "h": hashlib.sha256(token.encode()).hexdigest()},
            )
        engine.dispose()

    ended_after = seconds_until_stream_ends(client, shorten_session)
    assert 1.0 <= ended_after < CLOSE_WITHIN_S, "ends at the expiry, not before"
