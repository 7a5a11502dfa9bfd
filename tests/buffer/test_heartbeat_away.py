"""The heartbeat reply's ``away_until`` reaches the gateway's callback; unknown reply fields from
a later dispatch are ignored rather than failing the heartbeat."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from contract.wire import HeartbeatReply, parse_message
from forwarder.client import DispatchClient
from forwarder.delivery import HeartbeatSender
from tests.buffer.fake_dispatch import CREDENTIAL, signed
from tests.buffer.test_dispatch_client import heartbeat

UNTIL = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)


def test_a_reply_with_a_field_this_gateway_does_not_know_still_parses() -> None:
    reply = parse_message(
        HeartbeatReply,
        b'{"v": 1, "server_time": "2026-11-29T08:30:00Z", "later_field": {"x": 1}}',
    )
    assert reply.away_until is None
    assert reply.acknowledged_events == []


async def test_every_reply_tells_the_gateway_whether_the_household_is_away() -> None:
    replies: list[dict[str, Any]] = [
        {"v": 1, "server_time": "2026-11-29T08:30:00Z", "away_until": "2026-12-08T10:00:00+08:00"},
        {"v": 1, "server_time": "2026-11-29T08:30:30Z"},
    ]
    told: list[dt.datetime | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return signed(request, httpx.Response(200, json=replies.pop(0)))

    async with DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, transport=httpx.MockTransport(handler)
    ) as client:
        sender = HeartbeatSender(client, make_heartbeat=heartbeat, on_away=told.append)
        await sender.send_now()
        await sender.send_now()
    assert told == [UNTIL, None]


async def test_a_failing_away_callback_does_not_fail_the_heartbeat() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        reply = httpx.Response(200, json={"v": 1, "server_time": "2026-11-29T08:30:00Z"})
        return signed(request, reply)

    def broken(_until: dt.datetime | None) -> None:
        raise RuntimeError("boom")

    async with DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, transport=httpx.MockTransport(handler)
    ) as client:
        sender = HeartbeatSender(client, make_heartbeat=heartbeat, on_away=broken)
        reply = await sender.send_now()
    assert reply.away_until is None
    assert sender.status.consecutive_failures == 0
