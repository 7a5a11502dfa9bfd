"""A reply dispatch did not sign acknowledges nothing: the forwarder keeps the events, counts and
reports the forgery, and sends them again; only dispatch's own signature deletes them. Over real
HTTP on loopback, with a fake dispatch that forges in each way a party on the path could."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.signing import (
    HEADER_REPLY_SIGNATURE,
    SignatureError,
    parse_headers,
    sign_request,
    verify_reply,
)
from forwarder.client import DispatchClient, ReplyNotAuthentic
from forwarder.delivery import Forwarder, HeartbeatSender
from tests.buffer.fake_dispatch import CREDENTIAL, SECRET, FakeDispatch, serve_on_loopback
from tests.buffer.helpers import alarm, trouble
from tests.buffer.test_dispatch_client import heartbeat
from tests.buffer.test_forwarder import Running
from tests.fixtures.waiting import await_until

OTHER_SECRET = "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXI="


def _unsigned(dispatch: FakeDispatch) -> None:
    dispatch.sign_replies = False


def _wrong_key(dispatch: FakeDispatch) -> None:
    dispatch.reply_secret = OTHER_SECRET


def _replayed(dispatch: FakeDispatch) -> None:
    """A genuine signed reply to an earlier request, played back to every later one."""
    captured = dispatch.replies[-1]

    def replay(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=captured.headers, content=captured.content)

    dispatch.fault = replay


def _request_signature_as_reply(dispatch: FakeDispatch) -> None:
    """The request's own signature copied into the reply (a reflecting forger)."""

    def reflect(request: httpx.Request) -> httpx.Response:
        ids = [e["id"] for e in httpx.Response(200, content=request.content).json()["events"]]
        acks = [{"id": i, "status": "stored", "incident": None} for i in ids]
        body = httpx.Response(200, json={"v": 1, "acks": acks}).content
        return httpx.Response(
            200,
            headers={
                "Content-Type": "application/json",
                HEADER_REPLY_SIGNATURE: parse_headers(request.headers).signature,
            },
            content=body,
        )

    dispatch.fault = reflect


@pytest.mark.parametrize(
    "forge",
    [_unsigned, _wrong_key, _replayed, _request_signature_as_reply],
    ids=lambda f: f.__name__,
)
async def test_a_forged_acknowledgement_deletes_nothing(
    tmp_path: Path, forge: Callable[[FakeDispatch], None]
) -> None:
    dispatch = FakeDispatch()
    with serve_on_loopback(dispatch) as port:
        abuf = AsyncEventBuffer(EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1"))
        await abuf.start()
        client = DispatchClient(
            f"http://127.0.0.1:{port}", credential=CREDENTIAL, timeout=2, insecure_http=True
        )
        forwarder = Forwarder(abuf, client, backoff_initial=0.02, backoff_max=0.1)
        try:
            async with Running(forwarder):
                # An honest exchange first (the replay forger records its reply).
                await abuf.append([trouble("before")])
                await await_until(lambda: forwarder.status.sent_total == 1, 10, "first batch")
                forge(dispatch)
                appended = await abuf.append([alarm("sos-1"), trouble("smoke-1")])
                await await_until(
                    lambda: forwarder.status.unauthentic_replies >= 3, 10, "forged replies refused"
                )
                now = datetime.now(UTC)
                assert abuf.stats(now).pending_total == 2, "a forged reply deleted events"
                assert forwarder.status.sent_total == 1
                assert forwarder.status.reachable is False
                assert "not authentic" in (forwarder.status.last_error or "")
                # Dispatch itself answers again: the kept events go, exactly those.
                dispatch.fault = None
                dispatch.sign_replies = True
                dispatch.reply_secret = None
                await await_until(
                    lambda: abuf.stats(datetime.now(UTC)).pending_total == 0, 10, "drained"
                )
                # The counter follows the buffer's commit by a loop turn: wait for it too.
                await await_until(lambda: forwarder.status.sent_total >= 3, 10, "counted")
        finally:
            await client.aclose()
            await abuf.aclose()
    assert {e.id for e in appended} <= set(dispatch.stored)
    assert forwarder.status.sent_total == 3


async def test_a_forged_heartbeat_reply_acknowledges_no_alarm() -> None:
    dispatch = FakeDispatch(acknowledged_events=["01M8K6SXT0812JFE47KCTDY1TM"], sign_replies=False)
    taken: list[list[str]] = []
    with serve_on_loopback(dispatch) as port:
        async with DispatchClient(
            f"http://127.0.0.1:{port}", credential=CREDENTIAL, timeout=2, insecure_http=True
        ) as client:
            sender = HeartbeatSender(client, make_heartbeat=heartbeat, on_acknowledged=taken.append)
            with pytest.raises(ReplyNotAuthentic, match="HeartbeatReply"):
                await sender.send_now()
            assert taken == []
            assert sender.status.consecutive_failures == 1
            dispatch.sign_replies = True
            await sender.send_now()
    assert taken == [["01M8K6SXT0812JFE47KCTDY1TM"]]


def test_a_request_signature_never_verifies_as_a_reply() -> None:
    """Domain separation: the same secret, path, nonce and bytes signed as a request is not a
    reply signature."""
    body = b'{"v": 1, "acks": []}'
    request = sign_request(
        gateway_id="gw-1", secret=SECRET, method="POST", path="/p", body=body, nonce="n" * 16
    )
    with pytest.raises(SignatureError):
        verify_reply(
            request.signature,
            secret=SECRET,
            path="/p",
            request_nonce=request.nonce,
            status=200,
            body=body,
        )
    with pytest.raises(SignatureError, match="no X-Dispatch-Signature"):
        verify_reply(None, secret=SECRET, path="/p", request_nonce="n" * 16, status=200, body=body)
    with pytest.raises(SignatureError):  # not ASCII: refused, not a crash
        verify_reply("sïg", secret=SECRET, path="/p", request_nonce="n" * 16, status=200, body=body)
