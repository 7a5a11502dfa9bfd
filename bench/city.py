"""City scale: 50,000 gateways heartbeating every 30 s, plus their alarms, against two `dispatchd
serve` processes on one PostgreSQL.

    python -m bench.city [--quick] [--gateways 50000] [--duration 300] [--alarm-rate 20]

A fresh PostgreSQL database (created and dropped), two real `dispatchd serve` processes on
loopback. The gateways are stored with dispatch's own schema and secret sealing (as enrollment
stores them; enrolling 50,000 through the API would take longer than the run), then every request
is signed with the gateway's secret just before it is sent, as a gateway signs it.

Load is open-loop: gateway *i* heartbeats at ``i * interval / gateways`` and every ``interval``
after, whether or not the servers kept up, so a slow server shows as latency (measured from the
instant the heartbeat was due, queueing in the client included) rather than as a lower offered
rate. Gateways are split between the processes as a load balancer would (by gateway). Alarms (one
SOS event per batch, each from a different gateway) go over connections of their own, as a
gateway sends an alarm at once; their latency is until dispatch's reply, which it gives once the
event and its incident are durable.

**The day is compressed for alarms only.** One alarm per gateway per day is 50,000 a day, a mean
of 0.58/s; the run sends ``--alarm-rate`` (default 20/s, 35x the mean) so a run of minutes holds
thousands of them. Each alarm is an independent request and transaction for a household with no
open incident, so what it costs dispatch does not depend on how far apart alarms arrive: the
compressed rate is the day's alarm work at a higher density, a pessimistic stand-in for the
busiest hour. Heartbeats are periodic and not compressed: 50,000 / 30 s is their real rate.

Measured: heartbeat and alarm latency percentiles; CPU per dispatchd process, for PostgreSQL's
backends serving the run's database and for its background processes; the database's growth
per table, turned into growth per simulated day (alarm tables: bytes per alarm x alarms per day;
heartbeat tables: bounded, reported at their steady size); WAL written; errors (any reply but 200,
connection failures, a gateway marked offline although it kept heartbeating). The limit beside
the rates is the offered rate. The client's own CPU is reported so that it can be seen not to be
the bottleneck. Then the sizing of a city of 500,000 homes from these figures (see
:mod:`bench.city_sizing`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.city_db import PgProbe, proc_cpu_s, store_gateways
from bench.city_sizing import sizing
from bench.common import Report, percentile
from bench.harness import (
    DispatchServer,
    pg_available,
    pg_database,
    signed_request,
    start_dispatch,
)
from contract.wire import Event, EventKind, Heartbeat, IngestBatch, Lane, new_event_id

HEARTBEAT_PATH = "/api/v1/gateway/heartbeat"
EVENTS_PATH = "/api/v1/gateway/events"
DAY_S = 86_400.0
_DEPTH = {Lane.ALARM: 0, Lane.TROUBLE: 0, Lane.TELEMETRY: 0}


@dataclass(frozen=True)
class Gateway:
    gateway_id: str
    secret: str
    port: int


@dataclass
class Tally:
    """What one kind of request saw during the measured window."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    sample_error: str = ""

    def record(self, status: int, body: bytes, latency_ms: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(latency_ms)
        if status != 200 and not self.sample_error:
            self.sample_error = f"{status}: {body[:300]!r}"

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200) + self.connection_errors


def _request(gateway: Gateway, path: str, body: bytes) -> bytes:
    return signed_request(gateway, path, body, gateway.port)


def heartbeat_request(gateway: Gateway, interval_s: float, uptime_s: float) -> bytes:
    body = Heartbeat(
        gateway_id=gateway.gateway_id,
        sent_at=datetime.now(UTC),
        uptime_s=uptime_s,
        version="city",
        interval_s=interval_s,
        buffer_depth=_DEPTH,
    ).model_dump_json()
    return _request(gateway, HEARTBEAT_PATH, body.encode())


def alarm_request(gateway: Gateway) -> bytes:
    at = datetime.now(UTC)
    event = Event(
        id=new_event_id(at),
        gateway_id=gateway.gateway_id,
        seq=0,
        kind=EventKind.SOS,
        priority=EventKind.SOS.priority,
        device_id="button-1",
        at=at,
        payload={"condition": "sos:button-1", "room": "bedroom"},
    )
    body = IngestBatch(gateway_id=gateway.gateway_id, events=[event]).model_dump_json()
    return _request(gateway, EVENTS_PATH, body.encode())


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    at = head.lower().find(b"content-length:")
    if at >= 0:
        length = int(head[at + 15 : head.index(b"\r\n", at)])
    return status, await reader.readexactly(length) if length else b""


Job = tuple[float, Gateway, bytes | None]


class Load:
    """Open-loop senders: a queue per server port, a pool of keep-alive connections on each."""

    def __init__(self, ports: list[int], connections: int, t0: float, *, by_reply: bool) -> None:
        self.queues: dict[int, asyncio.Queue[Job]] = {p: asyncio.Queue() for p in ports}
        self.by_reply = by_reply
        self.connections = connections
        self.t0 = t0
        self.window: tuple[float, float] = (0.0, 0.0)
        self.tally = Tally()

    def measured(self, due: float) -> bool:
        """Heartbeats count when answered in the window (a server that falls behind still has
        its rate and latency measured); alarms when due in it (each one is waited for)."""
        at = time.monotonic() if self.by_reply else due
        return self.window[0] <= at < self.window[1]

    def waiting(self) -> int:
        return sum(q.qsize() for q in self.queues.values())

    async def worker(self, port: int, make: Any) -> None:
        queue = self.queues[port]
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            due, gateway, prepared = await queue.get()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                writer.write(prepared if prepared is not None else make(gateway, due))
                status, body = await _read_reply(reader)
                if self.measured(due):
                    self.tally.record(status, body, (time.monotonic() - due) * 1000)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if self.measured(due):
                    self.tally.connection_errors += 1
                    self.tally.sample_error = self.tally.sample_error or repr(exc)
                if writer is not None:
                    writer.close()
                reader = writer = None
            finally:
                queue.task_done()

    def start(self, make: Any) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.worker(port, make))
            for port in self.queues
            for _ in range(self.connections)
        ]


async def heartbeats(load: Load, gateways: list[Gateway], interval_s: float, until: float) -> None:
    """Enqueue each gateway's heartbeat when it is due, every ``interval_s``, until ``until``."""
    n, k = len(gateways), 0
    step = interval_s / n
    while True:
        due = load.t0 + k * step
        if due >= until:
            return
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(max(0.002, due - now))
            continue
        while k * step + load.t0 <= now and load.t0 + k * step < until:
            gateway = gateways[k % n]
            load.queues[gateway.port].put_nowait((load.t0 + k * step, gateway, None))
            k += 1


async def alarms(load: Load, gateways: list[Gateway], rate: float, until: float) -> int:
    """One alarm every ``1 / rate`` s, each from the next gateway; returns how many."""
    k = 0
    start = time.monotonic()
    while k < len(gateways):
        due = start + k / rate
        if due >= until:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        gateway = gateways[k]
        # Signed when due, not when a connection frees: an alarm is sent at once.
        load.queues[gateway.port].put_nowait((due, gateway, alarm_request(gateway)))
        k += 1
    return k


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Outcome:
    heartbeats: Tally
    alarms: Tally
    offered_heartbeats_per_s: float
    alarms_sent: int
    #: Heartbeats due but not yet sent when the window closed (the servers fell behind).
    heartbeats_waiting: int
    alarms_unanswered: int
    window_s: float
    cpu: dict[str, float]
    db: dict[str, Any]


async def run_load(
    servers: list[DispatchServer],
    gateways: list[Gateway],
    probe: PgProbe,
    *,
    interval_s: float,
    warmup_s: float,
    duration_s: float,
    alarm_rate: float,
    connections: int,
) -> Outcome:
    ports = [s.port for s in servers]
    t0 = time.monotonic() + 0.5
    start, end = t0 + warmup_s, t0 + warmup_s + duration_s
    beats = Load(ports, connections, t0, by_reply=True)
    beats.window = (start, end)
    alarm_load = Load(ports, 4, t0, by_reply=False)
    alarm_load.window = (start, end)
    uptime0 = time.time()

    def make_heartbeat(gateway: Gateway, due: float) -> bytes:
        return heartbeat_request(gateway, interval_s, max(0.0, time.time() - uptime0))

    tasks = beats.start(make_heartbeat) + alarm_load.start(None)
    feeder = asyncio.create_task(heartbeats(beats, gateways, interval_s, end))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    pids = {f"dispatchd {i + 1}": s.process.pid for i, s in enumerate(servers) if s.process}
    cpu0 = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    client0 = client_cpu_s()
    pg0 = probe.cpu()
    db0 = probe.sizes()
    t_start = time.monotonic()
    # Alarms come from the gateways in reverse order: none of them is warming up a cache.
    sent = await alarms(alarm_load, gateways[::-1], alarm_rate, end)
    await feeder
    window_s = time.monotonic() - t_start
    backlog = beats.waiting()
    cpu = {name: proc_cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
    cpu["client (this process)"] = client_cpu_s() - client0
    pg1 = probe.cpu()
    pg = probe.cpu_between(pg0, pg1)
    cpu["PostgreSQL backends"] = pg["backends"]
    cpu["PostgreSQL background (whole server)"] = pg["background"]
    db1 = probe.sizes()
    # Every alarm sent is waited for (bounded): one never answered is an error, not a gap.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            for q in alarm_load.queues.values():
                await q.join()
    tally = alarm_load.tally
    unanswered = sent - len(tally.latencies_ms) - tally.connection_errors
    for task in [*tasks, feeder]:
        task.cancel()
    await asyncio.gather(*tasks, feeder, return_exceptions=True)
    return Outcome(
        heartbeats=beats.tally,
        alarms=alarm_load.tally,
        offered_heartbeats_per_s=len(gateways) / interval_s,
        alarms_sent=sent,
        heartbeats_waiting=backlog,
        alarms_unanswered=unanswered,
        window_s=window_s,
        cpu={name: 100 * s / window_s for name, s in cpu.items()},
        db={"before": db0, "after": db1},
    )


def report(args: argparse.Namespace, out: Outcome, probe: PgProbe) -> Report:
    rep = Report("city")
    hb, al = out.heartbeats, out.alarms
    answered = hb.statuses.get(200, 0) / out.window_s
    rep.add(
        "heartbeats answered/s",
        answered,
        "heartbeats/s",
        out.offered_heartbeats_per_s,
        "offered (gateways / interval)",
        goal="= offered",
    )
    for name, tally in (("heartbeat", hb), ("alarm", al)):
        for p in (50, 95, 99):
            rep.add(f"{name} latency p{p}", percentile(tally.latencies_ms, p), "ms")
        rep.add(f"{name} latency max", max(tally.latencies_ms, default=float("nan")), "ms")
    rep.add(
        "alarms stored/s",
        al.statuses.get(200, 0) / out.window_s,
        "alarms/s",
        args.alarm_rate,
        "offered",
    )
    for name, pct in out.cpu.items():
        rep.add(f"CPU {name}", pct, "% of a core")
    growth = probe.growth(out.db["before"], out.db["after"])
    alarms_ok = max(1, al.statuses.get(200, 0))
    beats_ok = max(1, hb.statuses.get(200, 0))
    per_alarm = growth["alarm_bytes"] / alarms_ok
    per_day = per_alarm * args.gateways  # one alarm per gateway per day
    rep.add("database bytes per alarm", per_alarm, "bytes")
    rep.add("database growth per simulated day", per_day / 2**20, "MiB/day")
    rep.add("heartbeat tables (bounded)", growth["heartbeat_tables_bytes"] / 2**20, "MiB")
    rep.add("WAL per heartbeat (whole server)", growth["wal_bytes"] / beats_ok, "bytes")
    rep.add(
        "heartbeats due, not yet sent, at the end",
        float(out.heartbeats_waiting),
        "count",
        goal="about 0",
    )
    rep.add("alarms unanswered after 30 s", float(out.alarms_unanswered), "count", goal="0")
    errors = hb.errors + al.errors + growth["false_offline"] + out.alarms_unanswered
    rep.add("errors", float(errors), "count", goal="0")
    if answered < 0.98 * out.offered_heartbeats_per_s:
        rep.notes.append(
            f"GOAL MISSED: {answered:,.0f} heartbeats/s answered of "
            f"{out.offered_heartbeats_per_s:,.0f} offered"
        )
    if errors:
        rep.notes.append(
            f"GOAL MISSED: {errors} errors: heartbeats {dict(hb.statuses)} + "
            f"{hb.connection_errors} connection; alarms {dict(al.statuses)} + "
            f"{al.connection_errors} connection, {out.alarms_unanswered} unanswered; "
            f"{growth['false_offline']} gateways marked "
            f"offline; first: {hb.sample_error or al.sample_error}"
        )
    rep.notes.append(
        f"{args.gateways:,} gateways every {args.interval:g} s over 2 dispatchd processes, "
        f"{args.connections} connections each; {args.duration:g} s measured after "
        f"{args.warmup:g} s; {out.alarms_sent:,} alarms at {args.alarm_rate:g}/s "
        f"({args.alarm_rate / (args.gateways / DAY_S):.1f}x one per gateway per day)"
    )
    rep.notes.append("growth by table: " + json.dumps(growth["tables"]))
    rep.notes += sizing(
        gateways=args.gateways,
        interval_s=args.interval,
        window_s=out.window_s,
        heartbeats_ok=hb.statuses.get(200, 0),
        cpu=out.cpu,
        bytes_per_day=per_day,
        heartbeat_tables_bytes=growth["heartbeat_tables_bytes"],
        nonce_bytes=growth["nonce_bytes"],
        gateway_rows_bytes=growth["gateway_rows_bytes"],
        wal_bytes_per_heartbeat=growth["wal_bytes"] / beats_ok,
    )
    return rep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 s measured, not 300 s")
    parser.add_argument("--gateways", type=int, default=50_000)
    parser.add_argument("--interval", type=float, default=30.0, help="heartbeat interval, s")
    parser.add_argument(
        "--warmup", type=float, default=None, help="s before measuring (default: one interval)"
    )
    parser.add_argument("--duration", type=float, default=None, help="s measured")
    parser.add_argument("--alarm-rate", type=float, default=20.0, help="alarms/s")
    parser.add_argument("--connections", type=int, default=64, help="per dispatchd process")
    args = parser.parse_args(argv)
    args.warmup = args.interval if args.warmup is None else args.warmup
    args.duration = args.duration or (60.0 if args.quick else 300.0)
    if args.gateways < 1 or args.interval <= 0 or args.alarm_rate <= 0:
        parser.error("--gateways, --interval and --alarm-rate must be positive")
    if not pg_available():
        raise SystemExit("PostgreSQL is not answering on 127.0.0.1:5432: the city bench needs it")
    with tempfile.TemporaryDirectory(prefix="bench-city-") as tmp, pg_database("city") as url:
        workdir = Path(tmp)
        servers: list[DispatchServer] = []
        try:
            servers.append(start_dispatch(url, workdir))
            servers.append(start_dispatch(url, workdir))
            t = time.monotonic()
            stored = store_gateways(
                url,
                servers[0].secrets_key_file,
                args.gateways,
                offline_grace_s=args.warmup + args.duration + 120,
            )
            print(f"stored {len(stored):,} gateways in {time.monotonic() - t:.1f} s", flush=True)
            ports = [s.port for s in servers]
            gateways = [Gateway(g, s, ports[i % 2]) for i, (g, s) in enumerate(stored)]
            with PgProbe(url) as probe:
                out = asyncio.run(
                    run_load(
                        servers,
                        gateways,
                        probe,
                        interval_s=args.interval,
                        warmup_s=args.warmup,
                        duration_s=args.duration,
                        alarm_rate=args.alarm_rate,
                        connections=args.connections,
                    )
                )
                rep = report(args, out, probe)
        finally:
            for server in servers:
                server.stop()
                server.close()
    rep.print()


if __name__ == "__main__":
    main()
