"""An in-process dispatch for client and forwarder tests, served through httpx.MockTransport.

It verifies each request's signature with :mod:`contract.signing` exactly as the real server must,
stores events by id (so a resend is a ``duplicate``), and can be told to fail in the ways a real
server or network does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from contract.signing import SignatureError, parse_headers, verify_request
from contract.wire import Event, Heartbeat, IngestBatch, parse_message
from forwarder.client import Credential

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
CREDENTIAL = Credential(
    gateway_id="gw-1", household_id="hh-1", secret=SECRET, dispatch_url="https://dispatch.test"
)


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

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.fault is not None:
            return self.fault(request)
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
