"""Rough throughput of one dispatchd process on SQLite: batched ingest and heartbeats.

Run: ``python -m tests.dispatch.bench_dispatch [--events 100000] [--heartbeats 20000]``.
Requests are built and signed before the clock starts; a few concurrent clients keep the server
busy. Prints events/s and heartbeats/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from contract.signing import sign_request
from contract.wire import EventKind
from tests.dispatch.wire import batch, event, heartbeat
from tests.fixtures.dispatch import DispatchServer, EnrolledGateway


def signed(gw: EnrolledGateway, path: str, body: bytes) -> tuple[str, bytes, dict[str, str]]:
    headers = sign_request(
        gateway_id=gw.gateway_id, secret=gw.secret, method="POST", path=path, body=body
    ).as_dict()
    headers["Content-Type"] = "application/json"
    return path, body, headers


async def blast(url: str, requests: list[tuple[str, bytes, dict[str, str]]], clients: int) -> float:
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while queue:
                path, body, headers = queue.pop()
                reply = await client.post(path, content=body, headers=headers)
                if reply.status_code != 200:
                    raise RuntimeError(f"{reply.status_code}: {reply.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - start


async def asgi_heartbeats(count: int, gateways: int, concurrency: int) -> float:
    """Heartbeats/s of the application itself: raw ASGI calls, no HTTP client or socket."""
    from sqlalchemy import insert

    from dispatch import gateways as gw_store
    from dispatch import schema
    from dispatch.api.app import create_app
    from dispatch.db import Database
    from dispatch.migrations import migrate
    from dispatch.settings import Settings
    from dispatch.tx import transaction

    db = Database(f"sqlite:///{tempfile.mkdtemp(prefix='dispatch-bench-')}/dispatch.db")
    await migrate(db)
    secrets: dict[str, str] = {}
    for k in range(gateways):
        async with transaction(db) as tx:
            await tx.conn.execute(
                insert(schema.households).values(
                    id=f"h{k}",
                    name="h",
                    residents=[],
                    emergency_contacts=[],
                    devices=[],
                    created_at=tx.now,
                    updated_at=tx.now,
                )
            )
            code = await gw_store.make_enroll_code(tx, household_id=f"h{k}", ttl_s=600, actor="b")
            reply = await gw_store.enroll(
                tx, Settings(), code=code, gateway_id=f"gw{k}", version="1"
            )
            secrets[reply.gateway_id] = reply.secret
    app = create_app(db, Settings(), supervise=False)
    path = "/api/v1/gateway/heartbeat"
    requests = []
    for i in range(count):
        gid = f"gw{i % gateways}"
        body = heartbeat(gid).model_dump_json().encode()
        headers = sign_request(
            gateway_id=gid, secret=secrets[gid], method="POST", path=path, body=body
        ).as_dict()
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        requests.append((raw, body))

    async def call(raw: list[tuple[bytes, bytes]], body: bytes) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": raw,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        sent = False
        status = 0

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]

        await app(scope, receive, send)  # type: ignore[arg-type]
        return status

    async with app.router.lifespan_context(app):
        start = time.perf_counter()

        async def worker() -> None:
            while requests:
                raw, body = requests.pop()
                status = await call(raw, body)
                if status != 200:
                    raise RuntimeError(f"heartbeat answered {status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--alarm-every", type=int, default=100, help="1 alarm per N events")
    parser.add_argument("--heartbeats", type=int, default=20_000)
    parser.add_argument("--gateways", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--asgi", action="store_true", help="also measure the app without HTTP")
    args = parser.parse_args()
    if args.asgi:
        rate = asyncio.run(asgi_heartbeats(args.heartbeats, args.gateways, 64))
        print(f"heartbeats (in-process ASGI, no HTTP): {rate:,.0f}/s")

    workdir = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    server = DispatchServer(
        db_url=f"sqlite:///{workdir / 'dispatch.db'}",
        workdir=workdir,
        args=("--log-level", "WARNING"),
    )
    server.start()
    try:
        gateways = [server.enroll(f"hh-{i}") for i in range(args.gateways)]
        kinds = [EventKind.MOTION, EventKind.CONTACT, EventKind.BATTERY, EventKind.SIGNAL]
        requests = []
        made = 0
        n = 0
        while made < args.events:
            gw = gateways[n % len(gateways)]
            n += 1
            events = []
            for j in range(args.batch):
                k = EventKind.SOS if (made + j) % args.alarm_every == 0 else kinds[j % 4]
                events.append(event(gw.gateway_id, k, device=f"dev-{j % 20}"))
            made += len(events)
            body = batch(gw.gateway_id, *events).model_dump_json().encode()
            requests.append(signed(gw, "/api/v1/gateway/events", body))
        elapsed = asyncio.run(blast(server.url, requests, args.clients))
        print(
            f"ingest: {made} events in {len(requests)} batches of {args.batch}: "
            f"{elapsed:.2f} s = {made / elapsed:,.0f} events/s"
        )

        beats = []
        for i in range(args.heartbeats):
            gw = gateways[i % len(gateways)]
            body = heartbeat(gw.gateway_id).model_dump_json().encode()
            beats.append(signed(gw, "/api/v1/gateway/heartbeat", body))
        elapsed = asyncio.run(blast(server.url, beats, args.clients))
        print(
            f"heartbeats: {args.heartbeats} in {elapsed:.2f} s = {args.heartbeats / elapsed:,.0f}/s"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
