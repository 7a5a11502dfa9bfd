"""An in-process dispatch for client and forwarder tests, served through httpx.MockTransport.

It verifies each request's signature with :mod:`contract.signing` exactly as the real server must,
signs its 200 replies as the real server does (``sign_replies=False`` makes it a forger), stores
events by id (so a resend is a ``duplicate``), and can be told to fail in the ways a real
server or network does.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from contract.signing import (
    HEADER_NONCE,
    HEADER_REPLY_SIGNATURE,
    SignatureError,
    parse_headers,
    sign_reply,
    verify_request,
)
from contract.wire import Event, Heartbeat, IngestBatch, parse_message
from forwarder.client import Credential

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
CREDENTIAL = Credential(
    gateway_id="gw-1", household_id="hh-1", secret=SECRET, dispatch_url="https://dispatch.test"
)


def signed(
    request: httpx.Request, response: httpx.Response, secret: str = SECRET
) -> httpx.Response:
    """``response`` with dispatch's signature for ``request`` (as the real server signs)."""
    response.headers[HEADER_REPLY_SIGNATURE] = sign_reply(
        secret=secret,
        path=request.url.path,
        request_nonce=request.headers[HEADER_NONCE],
        status=response.status_code,
        body=response.content,
    )
    return response


def problem(status: int, title: str, detail: str | None = None) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    return httpx.Response(
        status, content=json.dumps(body), headers={"Content-Type": "application/problem+json"}
    )


@dataclass
class FakeDispatch:
    secret: str = SECRET
    stored: dict[str, Event] = field(default_factory=dict)
    #: Every batch received, in order (ids), including refused ones.
    batches: list[list[str]] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    acknowledged_events: list[str] = field(default_factory=list)
    #: Set to make the next requests fail: returns a response or raises.
    fault: Callable[[httpx.Request], httpx.Response] | None = None
    #: Events whose presence makes a whole batch be refused with 422.
    poison: set[str] = field(default_factory=set)
    #: Event ids to leave out of the acks (as if dispatch lost them).
    unacked: set[str] = field(default_factory=set)
    #: Incident acknowledged by a person, by event id.
    taken: set[str] = field(default_factory=set)
    nonces: set[str] = field(default_factory=set)
    #: False: answer like a forger who can reach the gateway but lacks its secret.
    sign_replies: bool = True
    #: Sign replies with this secret instead of the gateway's (a forger's guess).
    reply_secret: str | None = None
    #: Every signed reply sent, in order (a forger on the path can record them).
    replies: list[httpx.Response] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.fault is not None:  # answered as given: a fault is not dispatch's reply
            return self.fault(request)
        response = self._handle(request)
        if response.status_code == 200 and self.sign_replies:
            response = signed(request, response, self.reply_secret or self.secret)
            self.replies.append(response)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        try:
            headers = parse_headers(request.headers)
            verify_request(
                headers, secret=self.secret, method=request.method, path=request.url.path, body=body
            )
        except SignatureError as exc:
            return problem(401, "Bad signature", str(exc))
        if headers.nonce in self.nonces:
            return problem(401, "Replayed request")
        self.nonces.add(headers.nonce)
        if request.url.path.endswith("/api/v1/gateway/events"):
            return self._events(body)
        if request.url.path.endswith("/api/v1/gateway/heartbeat"):
            heartbeat = parse_message(Heartbeat, body)
            self.heartbeats.append(heartbeat)
            return httpx.Response(
                200,
                json={
                    "v": 1,
                    "server_time": datetime.now(UTC).isoformat(),
                    "acknowledged_events": self.acknowledged_events,
                },
            )
        return problem(404, "Not found")

    def _events(self, body: bytes) -> httpx.Response:
        batch = parse_message(IngestBatch, body)
        ids = [e.id for e in batch.events]
        self.batches.append(ids)
        bad = self.poison.intersection(ids)
        if bad:
            return problem(422, "Invalid event", f"event {sorted(bad)[0]} is not acceptable")
        acks = []
        for event in batch.events:
            if event.id in self.unacked:
                continue
            status = "duplicate" if event.id in self.stored else "stored"
            self.stored.setdefault(event.id, event)
            acks.append(
                {
                    "id": event.id,
                    "status": status,
                    "incident": {
                        "id": f"inc-{event.id[-6:]}",
                        "state": "acknowledged" if event.id in self.taken else "new",
                        "acknowledged": event.id in self.taken,
                    }
                    if event.lane.value == "alarm"
                    else None,
                }
            )
        return httpx.Response(200, json={"v": 1, "acks": acks})


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def server_error(request: httpx.Request) -> httpx.Response:
    return problem(503, "Service unavailable", "database is down")


def revoked(request: httpx.Request) -> httpx.Response:
    return problem(403, "Gateway revoked", "this gateway was revoked by an administrator")


@contextlib.contextmanager
def serve_on_loopback(dispatch: FakeDispatch) -> Iterator[int]:
    """Serve ``dispatch`` over real HTTP on 127.0.0.1; yields the port."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = httpx.Request(
                "POST", f"http://dispatch{self.path}", headers=dict(self.headers), content=body
            )
            with lock:
                response = dispatch.handle(request)
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
