"""Scenario 7b: oversized and malformed requests at a real dispatchd's every door.

Every bad request must get a 4xx problem answer (never a 5xx, never a dropped connection), the
server must stay healthy, nothing of a refused batch may be stored, and a good alarm sent after
all of it must be stored exactly once.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contract.wire import EventKind
from tests.dispatch.wire import batch, event
from tests.faults.harness import check_exactly_once, stored_events
from tests.fixtures.dispatch import DispatchServer, EnrolledGateway

pytestmark = pytest.mark.slow

EVENTS = "/api/v1/gateway/events"
HEARTBEAT = "/api/v1/gateway/heartbeat"
ENROLL = "/api/v1/gateway/enroll"


def _good_body(gw: EnrolledGateway, condition: str) -> dict[str, Any]:
    alarm = event(gw.gateway_id, EventKind.SMOKE, device=None, payload={"condition": condition})
    body: dict[str, Any] = json.loads(batch(gw.gateway_id, alarm).model_dump_json())
    return body


def _cases(gw: EnrolledGateway, url: str) -> list[tuple[str, Callable[[], httpx.Response]]]:
    good = _good_body(gw, "smoke:refused")
    raw = json.dumps(good).encode()

    def signed(body: bytes, path: str = EVENTS, **sign: Any) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(
            url + path, content=body, headers=gw.signed_headers(path, body, **sign), timeout=30
        )

    def variant(**change: Any) -> bytes:
        doc = json.loads(raw)
        for key, value in change.items():
            if key.startswith("event_"):
                doc["events"][0][key.removeprefix("event_")] = value
            else:
                doc[key] = value
        return json.dumps(doc).encode()

    other_secret = EnrolledGateway(url, gw.gateway_id, gw.household_id, "0" * 64)
    stale = time.time() - 3600
    replay_headers = gw.signed_headers(EVENTS, raw)
    huge = (
        b'{"v":1,"gateway_id":"'
        + gw.gateway_id.encode()
        + b'","events":['
        + (b'{"x":"' + b"A" * 1_000_000 + b'"},') * 20
        + b"{}]}"
    )
    return [
        ("huge signed body (20 MB)", signed(huge)),
        ("huge unsigned body", lambda: httpx.post(url + EVENTS, content=huge, timeout=30)),
        ("lying Content-Length", lambda: _lying_length(url, gw)),
        ("not JSON", signed(b"{not json")),
        ("empty body", signed(b"")),
        ("JSON null", signed(b"null")),
        ("JSON array", signed(b"[1,2,3]")),
        ("unknown contract version", signed(variant(v=99))),
        ("version as text", signed(variant(v="1"))),
        ("events not a list", signed(variant(events="smoke"))),
        ("no events", signed(variant(events=[]))),
        ("seq as text", signed(variant(event_seq="seven"))),
        ("unknown kind", signed(variant(event_kind="meteor"))),
        ("bad id", signed(variant(event_id="../../etc/passwd"))),
        ("time not a time", signed(variant(event_at="yesterday"))),
        ("extra field", signed(variant(colour="blue"))),
        ("other gateway in batch", signed(variant(gateway_id="gw-someone-else"))),
        ("wrong secret", lambda: other_secret.send_events(raw)),
        ("no signature headers", lambda: httpx.post(url + EVENTS, json=good, timeout=30)),
        ("stale timestamp", signed(raw, now=stale)),
        ("signed for another path", _cross_path(gw, raw, url)),
        ("tampered body", lambda: httpx.post(
            url + EVENTS, content=raw.replace(b"smoke:refused", b"smoke:tampered"),
            headers=gw.signed_headers(EVENTS, raw), timeout=30)),
        ("replayed nonce (first)", lambda: httpx.post(
            url + EVENTS, content=raw, headers=replay_headers, timeout=30)),
        ("replayed nonce (again)", lambda: httpx.post(
            url + EVENTS, content=raw, headers=replay_headers, timeout=30)),
        ("unknown gateway", signed(raw, as_gateway="gw-nobody")),
        ("heartbeat of junk", signed(b'{"v":1,"uptime_s":"long"}', path=HEARTBEAT)),
        ("enroll with junk", lambda: httpx.post(url + ENROLL, json={"code": 5}, timeout=30)),
        ("enroll with a made-up code", lambda: httpx.post(
            url + ENROLL, json={"code": "NOPE-NOPE", "gateway_id": "gw-x", "version": "1"},
            timeout=30)),
        ("wrong method", lambda: httpx.put(url + EVENTS, content=raw, timeout=30)),
        ("operator API without session", lambda: httpx.get(url + "/api/v1/incidents", timeout=30)),
        ("login with junk", lambda: httpx.post(url + "/api/v1/auth/login", content=b"\xff\xfe",
                                               timeout=30)),
    ]  # fmt: skip


def _cross_path(gw: EnrolledGateway, raw: bytes, url: str) -> Callable[[], httpx.Response]:
    """A body signed for the heartbeat path, sent to the events path."""
    return lambda: httpx.post(
        url + EVENTS, content=raw, headers=gw.signed_headers(HEARTBEAT, raw), timeout=30
    )


def _lying_length(url: str, gw: EnrolledGateway) -> httpx.Response:
    """Content-Length says 10 GB; the client sends a few bytes and closes its side."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {EVENTS} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 10000000000\r\nConnection: close\r\n\r\n{{}}".encode()
        )
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/1.1 ") else 0
    headers = [
        (name, value) for name, _, value in (line.partition(": ") for line in lines[1:]) if value
    ]
    return httpx.Response(status, headers=headers, content=body)


def test_malformed_requests_are_4xx_and_the_server_stays_well(
    dispatch_server: DispatchServer,
) -> None:
    gw = dispatch_server.enroll("hh-abuse", "gw-abuse")
    results: dict[str, int] = {}
    for name, send in _cases(gw, dispatch_server.url):
        reply = send()
        results[name] = reply.status_code
        if name == "replayed nonce (first)":
            continue  # the genuine first use is accepted; its replay is the case
        assert 400 <= reply.status_code < 500, f"{name}: {reply.status_code} {reply.text[:300]}"
        if reply.content:
            assert reply.headers.get("content-type", "").startswith(
                ("application/problem+json", "application/json")
            ), f"{name}: not a problem document: {reply.headers.get('content-type')}"
        assert httpx.get(dispatch_server.url + "/healthz", timeout=5).status_code == 200, name
    assert dispatch_server.process is not None
    assert dispatch_server.process.poll() is None
    stored = stored_events(dispatch_server.db_url, "gw-abuse")
    conditions = {e.condition for e in stored}
    assert "smoke:tampered" not in conditions
    # Only the genuine first use of the replayed request was stored from all of that.
    assert [e.condition for e in stored] == ["smoke:refused"]

    good = _good_body(gw, "smoke:after-the-abuse")
    reply = gw.send_events(json.dumps(good).encode())
    assert reply.status_code == 200, reply.text
    again = gw.send_events(json.dumps(good).encode())  # a resend after a lost reply
    assert [a["status"] for a in again.json()["acks"]] == ["duplicate"]
    stored = stored_events(dispatch_server.db_url, "gw-abuse")
    check_exactly_once(
        {good["events"][0]["id"]: "smoke"},
        stored,
        expected_conditions={"smoke:refused", "smoke:after-the-abuse"},
    )
    print(f"\nmalformed requests: {len(results)} kinds, answers {sorted(set(results.values()))}")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_deeply_nested_json_is_a_4xx(dispatch_server: DispatchServer, signed: bool) -> None:
    gw = dispatch_server.enroll("hh-nested", "gw-nested")
    body = b"[" * 10_000 + b"]" * 10_000
    headers = gw.signed_headers(EVENTS, body) if signed else {"Content-Type": "application/json"}
    reply = httpx.post(dispatch_server.url + EVENTS, content=body, headers=headers, timeout=30)
    assert httpx.get(dispatch_server.url + "/healthz", timeout=5).status_code == 200
    assert 400 <= reply.status_code < 500, f"{reply.status_code} {reply.text[:200]}"
