"""Dispatch ingest: events/s (batched) and heartbeats/s, SQLite and PostgreSQL, one process and two.

    python -m bench.dispatch_ingest [--quick] [--backends sqlite,postgres]

Real `dispatchd serve` processes on loopback; real enrolled gateways (one per household); every
request signed as a gateway signs it, prepared before the clock starts and sent over keep-alive
connections by a lean HTTP client (see :mod:`bench.harness`). Batches are 500 events, 99%
telemetry and 1% alarms alternating with their restores, so incident routing is exercised.

The limits, measured in the same run: for events, a bare ``executemany`` of rows shaped like the
events table into the same database, committed every 500 rows (fsync'd on SQLite, as dispatch
commits events), into a table without indexes (the goal's limit) and, beside it, into a table of
the events table's own shape (its composite key and indexes: what any insert of those rows pays);
for heartbeats, a bare ASGI application (:mod:`bench.bare_asgi`) under the same
server, sent the same requests by the same client, answering with a reply of the same shape.
Goal: 20,000 events/s batched and 5,000 heartbeats/s in one process on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from bench.common import Report
from bench.footprint import cpu_seconds
from bench.harness import (
    DispatchServer,
    EnrolledGateway,
    enroll_many,
    free_port,
    pg_available,
    pg_database,
    port_open,
    post_all,
    signed_request,
    start_dispatch,
)
from contract.wire import Event, EventKind, Heartbeat, IngestBatch, Lane, new_event_id
from dispatch import schema
from dispatch.timing import parse_server_timing

EVENTS_GOAL = 20_000.0
HEARTBEATS_GOAL = 5_000.0
BATCH = 500
EVENTS_PATH = "/api/v1/gateway/events"
HEARTBEAT_PATH = "/api/v1/gateway/heartbeat"


def make_batches(
    gateways: list[EnrolledGateway], total: int
) -> list[tuple[EnrolledGateway, bytes]]:
    """``total`` events in batches of BATCH, round-robin over the gateways."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    out: list[tuple[EnrolledGateway, bytes]] = []
    seqs = dict.fromkeys((g.gateway_id for g in gateways), 0)
    alarm_on = dict.fromkeys((g.gateway_id for g in gateways), False)
    for n in range(max(1, total // BATCH)):
        gateway = gateways[n % len(gateways)]
        events: list[Event] = []
        for i in range(BATCH):
            seq = seqs[gateway.gateway_id]
            seqs[gateway.gateway_id] += 1
            at = start + timedelta(microseconds=seq)
            if i % 100 == 99:
                on = not alarm_on[gateway.gateway_id]
                alarm_on[gateway.gateway_id] = on
                kind = EventKind.SMOKE if on else EventKind.SMOKE_RESTORE
                payload: dict[str, Any] = {"condition": "smoke:smoke-kitchen", "room": "kitchen"}
                device = "smoke-kitchen"
            else:
                kind = EventKind.CONTACT
                payload = {"condition": "contact:door-front", "contact_open": i % 2 == 0}
                device = "door-front"
            events.append(
                Event(
                    id=new_event_id(at),
                    gateway_id=gateway.gateway_id,
                    seq=seq,
                    kind=kind,
                    priority=kind.priority,
                    device_id=device,
                    at=at,
                    payload=payload,
                )
            )
        # Lane order, as the gateway's buffer hands them out.
        events.sort(key=lambda e: (e.lane is not Lane.ALARM, e.seq))
        batch = IngestBatch(gateway_id=gateway.gateway_id, events=events)
        out.append((gateway, batch.model_dump_json().encode()))
    return out


def make_heartbeats(
    gateways: list[EnrolledGateway], total: int
) -> list[tuple[EnrolledGateway, bytes]]:
    out = []
    for n in range(total):
        gateway = gateways[n % len(gateways)]
        heartbeat = Heartbeat(
            gateway_id=gateway.gateway_id,
            sent_at=datetime.now(UTC),
            uptime_s=float(n),
            version="bench",
            interval_s=30.0,
            buffer_depth={Lane.ALARM: 0, Lane.TROUBLE: 0, Lane.TELEMETRY: 0},
        )
        out.append((gateway, heartbeat.model_dump_json().encode()))
    return out


def _limit_rows(n: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC).isoformat()
    payload = json.dumps({"condition": "contact:door-front", "contact_open": True})
    return [
        (
            new_event_id(),
            "gw-limit",
            "hh-limit",
            i,
            "contact",
            4,
            "door-front",
            now,
            now,
            False,
            payload,
            None,
        )
        for i in range(n)
    ]


_LIMIT_DDL = (
    "CREATE TABLE bench_limit (id TEXT PRIMARY KEY, gateway_id TEXT, household_id TEXT, "
    "seq BIGINT, kind TEXT, priority INTEGER, device_id TEXT, at TEXT, received_at TEXT, "
    "test BOOLEAN, payload TEXT, incident_id TEXT)"
)


_LIMIT_COLUMNS = (
    "id, gateway_id, household_id, seq, kind, priority, device_id, at, received_at, test, "
    "payload, incident_id"
)


def _dialect(name: str) -> Dialect:
    return make_url(f"{name}://").get_dialect()()


def _events_shape_ddl(dialect: Dialect) -> list[str]:
    """A table ``bench_limit`` of the events table's own shape: its columns, composite key and
    indexes (renamed, so they live beside the real ones in the same database)."""
    table = schema.events.to_metadata(MetaData(), name="bench_limit")
    ddl = [str(CreateTable(table).compile(dialect=dialect))]
    ddl += [
        str(CreateIndex(index).compile(dialect=dialect)).replace("ix_events_", "ix_bench_limit_")
        for index in sorted(table.indexes, key=lambda i: str(i.name))
    ]
    return ddl


def limit_sqlite(path: Path, rows: int, *, shaped: bool = False) -> tuple[float, float]:
    """Rows/s of a bare executemany into the same SQLite file, fsync'd every BATCH rows, and rows
    per second of this process's CPU; ``shaped``: into a table of the events table's shape."""
    data = _limit_rows(rows)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("DROP TABLE IF EXISTS bench_limit")
        for ddl in _events_shape_ddl(_dialect("sqlite")) if shaped else [_LIMIT_DDL]:
            conn.execute(ddl)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, rows, BATCH):
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO bench_limit ({_LIMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                data[i : i + BATCH],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        cpu = max(time.process_time() - c0, 0.001)
        conn.execute("DROP TABLE bench_limit")
    finally:
        conn.close()
    return rows / elapsed, rows / cpu


def limit_postgres(url: str, rows: int, *, shaped: bool = False) -> tuple[float, float]:
    """Rows/s of a bare executemany into the same PostgreSQL database, committed every BATCH, and
    rows per second of this (client) process's CPU: the server's CPU is outside both figures.
    ``shaped``: into a table of the events table's shape."""
    import psycopg

    data = _limit_rows(rows)
    if shaped:  # the events table's types: timestamps and JSON, not text
        data = [
            (*r[:7], datetime.fromisoformat(r[7]), datetime.fromisoformat(r[8]), *r[9:])
            for r in data
        ]
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_limit")
        for ddl in _events_shape_ddl(_dialect("postgresql")) if shaped else [_LIMIT_DDL]:
            conn.execute(ddl.encode())
        conn.commit()
        t0, c0 = time.perf_counter(), time.process_time()
        with conn.cursor() as cur:
            for i in range(0, rows, BATCH):
                cur.executemany(
                    f"INSERT INTO bench_limit ({_LIMIT_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    data[i : i + BATCH],
                )
                conn.commit()
        elapsed = time.perf_counter() - t0
        cpu = max(time.process_time() - c0, 0.001)
        conn.execute("DROP TABLE bench_limit")
        conn.commit()
    return rows / elapsed, rows / cpu


def limit_bare_asgi(requests: list[bytes], *, connections: int) -> tuple[float, float]:
    """Requests/s of the bare ASGI application (same server, same client, same requests), and
    requests per second of its process's CPU."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_asgi", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bare ASGI application did not start")
            time.sleep(0.05)
        cpu0 = cpu_seconds(proc.pid)
        result = asyncio.run(post_all([(port, r) for r in requests], connections=connections))
        cpu = cpu_seconds(proc.pid) - cpu0
        if result.ok != len(requests):
            raise SystemExit(f"bare ASGI refused: {dict(result.statuses)}")
        return len(requests) / result.elapsed_s, len(requests) / max(cpu, 0.01)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stage_medians(headers: list[str]) -> dict[str, float]:
    """Median milliseconds of each stage of the events requests (their Server-Timing)."""
    by_stage: dict[str, list[float]] = {}
    for header in headers:
        for name, ms in parse_server_timing(header).items():
            by_stage.setdefault(name, []).append(ms)
    return {name: statistics.median(values) for name, values in by_stage.items()}


def run_case(
    db_url: str,
    workdir: Path,
    *,
    processes: int,
    events: int,
    heartbeats: int,
    gateways: int,
) -> dict[str, float]:
    servers: list[DispatchServer] = []
    try:
        servers.append(start_dispatch(db_url, workdir))
        for _ in range(processes - 1):
            servers.append(start_dispatch(db_url, workdir))
        enrolled = enroll_many(servers[0], gateways, prefix=f"p{processes}")
        ports = [s.port for s in servers]
        batches = make_batches(enrolled, events)
        event_requests = [
            (ports[i % len(ports)], signed_request(g, EVENTS_PATH, body, ports[i % len(ports)]))
            for i, (g, body) in enumerate(batches)
        ]
        beats = make_heartbeats(enrolled, heartbeats)
        beat_requests = [
            (ports[i % len(ports)], signed_request(g, HEARTBEAT_PATH, body, ports[i % len(ports)]))
            for i, (g, body) in enumerate(beats)
        ]
        pids = [s.process.pid for s in servers if s.process is not None]
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        ev = asyncio.run(post_all(event_requests, connections=4 * processes))
        if ev.ok != len(event_requests):
            raise SystemExit(f"event batches refused: {dict(ev.statuses)} {ev.sample_error}")
        cpu1 = sum(cpu_seconds(pid) for pid in pids)
        hb = asyncio.run(post_all(beat_requests, connections=32 * processes))
        if hb.ok != len(beat_requests):
            raise SystemExit(f"heartbeats refused: {dict(hb.statuses)} {hb.sample_error}")
        cpu2 = sum(cpu_seconds(pid) for pid in pids)
        bare, bare_per_cpu_s = limit_bare_asgi(
            [r for _, r in beat_requests], connections=32 * processes
        )
        stored = servers[0].operator_client().get("/api/v1/events", params={"limit": 1})
        stage_ms = stage_medians(ev.server_timings)
        return {
            **{f"stage_{name}_ms": ms for name, ms in stage_ms.items()},
            "events_per_s": len(batches) * BATCH / ev.elapsed_s,
            "heartbeats_per_s": len(beats) / hb.elapsed_s,
            "bare_asgi_per_s": bare,
            # Per second of the servers' CPU: what a busy machine's scheduling does not skew.
            "events_per_cpu_s": len(batches) * BATCH / max(cpu1 - cpu0, 0.01),
            "heartbeats_per_cpu_s": len(beats) / max(cpu2 - cpu1, 0.01),
            "bare_asgi_per_cpu_s": bare_per_cpu_s,
            "stored_check": float(stored.status_code),
        }
    finally:
        for server in servers:
            server.stop()
            server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and heartbeats")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--processes", default="1,2", help="process counts to run, e.g. 1,2")
    args = parser.parse_args(argv)
    events = 20_000 if args.quick else 200_000
    heartbeats = 10_000 if args.quick else 40_000
    gateways = 16 if args.quick else 64
    report = Report("dispatch_ingest")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    process_counts = [int(p) for p in args.processes.split(",") if p.strip()]
    for backend in backends:
        if backend == "postgres" and not pg_available():
            report.notes.append("PostgreSQL not answering on 127.0.0.1:5432: skipped")
            continue
        for processes in process_counts:
            with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
                workdir = Path(tmp)
                if backend == "sqlite":
                    db_path = workdir / "dispatch.db"
                    result = run_case(
                        f"sqlite:///{db_path}",
                        workdir,
                        processes=processes,
                        events=events,
                        heartbeats=heartbeats,
                        gateways=gateways,
                    )
                    limit, limit_per_cpu_s = limit_sqlite(db_path, events)
                    shaped, shaped_per_cpu_s = limit_sqlite(db_path, events, shaped=True)
                else:
                    with pg_database() as url:
                        result = run_case(
                            url,
                            workdir,
                            processes=processes,
                            events=events,
                            heartbeats=heartbeats,
                            gateways=gateways,
                        )
                        limit, limit_per_cpu_s = limit_postgres(url, events)
                        shaped, shaped_per_cpu_s = limit_postgres(url, events, shaped=True)
            one_sqlite = backend == "sqlite" and processes == 1
            label = f"{backend}, {processes} proc"
            report.add(
                f"events/s ({label})",
                result["events_per_s"],
                "events/s",
                limit,
                "bare executemany rows/s",
                goal=f">= {EVENTS_GOAL:,.0f}" if one_sqlite else "",
            )
            report.add(
                f"events/s, limit of the table's shape ({label})",
                result["events_per_s"],
                "events/s",
                shaped,
                "bare executemany rows/s into the events table's shape",
            )
            report.add(
                f"heartbeats/s ({label})",
                result["heartbeats_per_s"],
                "heartbeats/s",
                result["bare_asgi_per_s"],
                "bare ASGI app requests/s",
                goal=f">= {HEARTBEATS_GOAL:,.0f}" if one_sqlite else "",
            )
            report.add(
                f"heartbeats per CPU-second ({label})",
                result["heartbeats_per_cpu_s"],
                "heartbeats/CPU-s",
                result["bare_asgi_per_cpu_s"],
                "bare ASGI app requests/CPU-s",
            )
            report.add(
                f"events per CPU-second ({label})",
                result["events_per_cpu_s"],
                "events/CPU-s",
                limit_per_cpu_s,
                "bare executemany rows/CPU-s",
            )
            report.add(
                f"events per CPU-second, limit of the table's shape ({label})",
                result["events_per_cpu_s"],
                "events/CPU-s",
                shaped_per_cpu_s,
                "bare executemany rows/CPU-s into the events table's shape",
            )
            stages = {k[6:-3]: v for k, v in result.items() if k.startswith("stage_")}
            if stages:
                report.notes.append(
                    f"events request stages ({label}), median ms: "
                    + ", ".join(f"{name} {ms:.2f}" for name, ms in stages.items())
                )
            if one_sqlite:
                for name, value, goal in (
                    ("events/s", result["events_per_s"], EVENTS_GOAL),
                    ("heartbeats/s", result["heartbeats_per_s"], HEARTBEATS_GOAL),
                ):
                    if value < goal:
                        report.notes.append(
                            f"GOAL MISSED: {name} on SQLite, one process: "
                            f"{value:,.0f} < {goal:,.0f}"
                        )
    report.notes.append(
        f"{events:,} events in batches of {BATCH} (99% contact telemetry, 1% smoke alarm/"
        f"restore), {heartbeats:,} heartbeats, {gateways} gateways in their own households"
    )
    report.print()


if __name__ == "__main__":
    main()
