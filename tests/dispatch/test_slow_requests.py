"""An answer that begins late is in the log with what was asked; a prompt one is not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from dispatch.api.slow_requests import SlowRequestLog


async def _slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return PlainTextResponse("done", status_code=201)


async def _stream(_request: Request) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        yield "first\n"
        await asyncio.sleep(0.3)
        yield "second\n"

    return StreamingResponse(lines(), media_type="text/plain")


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/slow", _slow), Route("/stream", _stream)])
    timed = SlowRequestLog(app, threshold_s=0.2)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=timed), base_url="http://t")


@pytest.mark.asyncio
async def test_a_late_answer_is_logged_with_what_was_asked() -> None:
    async with _client() as client:
        with capture_logs() as logs:
            reply = await client.get("/slow", params={"s": "0.3"})
    assert reply.status_code == 201
    slow = [e for e in logs if e["event"] == "slow request"]
    assert len(slow) == 1, logs
    assert slow[0]["log_level"] == "warning"
    assert (slow[0]["method"], slow[0]["path"], slow[0]["status"]) == ("GET", "/slow", 201)
    assert slow[0]["took_s"] >= 0.3


@pytest.mark.asyncio
async def test_prompt_answers_and_long_streams_are_not() -> None:
    async with _client() as client:
        with capture_logs() as logs:
            assert (await client.get("/slow")).status_code == 201
            # A stream that begins at once is prompt, however long it then stays open.
            assert (await client.get("/stream")).text == "first\nsecond\n"
    assert [e for e in logs if e["event"] == "slow request"] == []
