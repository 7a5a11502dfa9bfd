"""Wristbands: one dispatchd holding 10,000 JT/T 808 connections that report every 60 s.

    python -m bench.wristbands [--quick] [--wristbands N] [--interval S] [--window S]

A real `dispatchd serve` on SQLite with its JT/T 808 port open; N wristbands (each bound to a
household of its own, authenticated) each send a location report and a heartbeat every interval,
their phases spread evenly; every 2 s one of them presses SOS (and releases it at its next report).
Figures over the measurement window: connections held, the server's resident memory per
connection (RSS with them less RSS before), its CPU (% of one core), frames answered per second,
and the alarm latency (SOS frame sent → its answer, which comes only once the incident is
durable), p50/p99/max; every SOS is then checked to have an incident.

The limit is a bare asyncio TCP echo server in a process of its own, given the same connections
and the same frames by the same load generator (its answer is the frame echoed back). Every
phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Report, percentile
from bench.harness import free_port, start_dispatch
from contract import jt808
from contract.jt808 import AlarmBit, MsgId, Result, StatusBit
from runtime.timeouts import within

AUTH = "benchcode"
ECHO = """
import asyncio, sys
async def echo(reader, writer):
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phone(i: int) -> str:
    return f"1380{i:07d}"


def setup_database(db_url: str, count: int) -> None:
    """Households and bound, registered wristbands, written directly (a CLI call each would
    take longer than the benchmark)."""
    from dispatch import schema
    from dispatch.db import Database
    from dispatch.migrations import migrate
    from dispatch.tx import transaction

    async def main() -> None:
        db = Database(db_url)
        await migrate(db)
        now = datetime.now(UTC)
        async with transaction(db) as tx:
            await tx.conn.execute(
                schema.households.insert(),
                [
                    {
                        "id": f"hh-wb-{h:05d}",
                        "name": f"Household {h}",
                        "residents": [],
                        "emergency_contacts": [],
                        "devices": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for h in range(count)
                ],
            )
            await tx.conn.execute(
                schema.wristbands.insert(),
                [
                    {
                        "terminal": phone(i),
                        "household_id": f"hh-wb-{i:05d}",
                        "resident": f"resident {i}",
                        "auth_code": AUTH,
                        "created_at": now,
                        "registered_at": now,
                        "bound_at": now,
                    }
                    for i in range(count)
                ],
            )
        await db.dispose()

    asyncio.run(main())


@dataclass
class Load:
    port: int
    count: int
    interval: float
    window: float
    connected: int = 0
    answered: int = 0
    errors: int = 0
    alarm_ms: list[float] = field(default_factory=list)
    sos_sent: list[str] = field(default_factory=list)
    _sos: dict[int, asyncio.Event] = field(default_factory=dict)
    _all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        splitter: jt808.Splitter,
        frame: Callable[[int, bytes], bytes],
    ) -> None:
        """Until the platform's answer; its commands on the way (the heartbeat interval, 0x8103)
        are answered as a terminal does."""
        while True:
            data = await reader.read(4096)
            if not data:
                raise ConnectionError("closed")
            answered = False
            for raw in splitter.feed(data):
                if raw[1:3] != b"\x81\x03":
                    answered = True
                    continue
                serial = jt808.decode_frame(raw).header.serial
                body = jt808.encode_general_response(serial, MsgId.SET_PARAMS, Result.SUCCESS)
                writer.write(frame(MsgId.TERMINAL_RESPONSE, body))
            if answered:
                self.answered += 1
                return

    async def terminal(self, i: int, gate: asyncio.Semaphore, start: float) -> None:
        number = phone(i)
        serial = 0
        splitter = jt808.Splitter()

        def frame(msg_id: int, body: bytes = b"") -> bytes:
            nonlocal serial
            serial += 1
            return jt808.encode_frame(msg_id, number, serial, body)

        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(frame(MsgId.AUTHENTICATE, AUTH.encode()))
            await self._answer(reader, writer, splitter, frame)
        self.connected += 1
        if self.connected == self.count:
            self._all_connected.set()
        await self._all_connected.wait()
        sos = self._sos.setdefault(i, asyncio.Event())
        alarm = 0
        lat, lon = 31.2 + (i % 100) / 1000, 121.4 + (i // 100) / 10000
        next_at = start + (i / self.count) * self.interval
        try:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await within(sos.wait(), delay)
                if self._stop.is_set():
                    break
                pressed = sos.is_set()
                sos.clear()
                alarm = 1 << AlarmBit.EMERGENCY if pressed else 0
                loc = jt808.Location(
                    alarm,
                    1 << StatusBit.FIX,
                    lat,
                    lon,
                    10,
                    3.0,
                    0,
                    datetime.now(UTC).replace(microsecond=0),
                    {0x30: b"\x19", 0x31: b"\x08", 0xFE: b"\x50"},
                )
                sent = time.perf_counter()
                writer.write(frame(MsgId.LOCATION, jt808.encode_location(loc)))
                await self._answer(reader, writer, splitter, frame)
                if pressed:
                    self.alarm_ms.append((time.perf_counter() - sent) * 1000)
                    self.sos_sent.append(number)
                    continue  # the next regular report releases it
                writer.write(frame(MsgId.HEARTBEAT))
                await self._answer(reader, writer, splitter, frame)
                next_at += self.interval
        except (ConnectionError, OSError):
            self.errors += 1
        finally:
            writer.close()

    async def presser(self) -> None:
        await self._all_connected.wait()
        rng = random.Random(808)
        while not self._stop.is_set():
            await asyncio.sleep(2.0)
            self._sos[rng.randrange(self.count)].set()

    async def run(self, pid: int, report: dict[str, float]) -> None:
        gate = asyncio.Semaphore(200)
        start_at = time.monotonic() + 5
        report["rss_before_kib"] = rss_kib(pid)
        tasks = [asyncio.create_task(self.terminal(i, gate, start_at)) for i in range(self.count)]
        pressing = asyncio.create_task(self.presser())
        try:
            await within(self._all_connected.wait(), 120)
        except TimeoutError:
            raise RuntimeError(
                f"only {self.connected} of {self.count} connected in 120 s"
            ) from None
        report["connect_s"] = time.monotonic() - (start_at - 5)
        # Measure over the window, after one full cycle has run.
        await asyncio.sleep(max(0.0, start_at - time.monotonic()) + self.interval)
        answered, cpu0, t0 = self.answered, cpu_s(pid), time.monotonic()
        self.alarm_ms.clear()
        await asyncio.sleep(self.window)
        elapsed = time.monotonic() - t0
        report["cpu_pct"] = (cpu_s(pid) - cpu0) / elapsed * 100
        report["answers_per_s"] = (self.answered - answered) / elapsed
        report["rss_after_kib"] = rss_kib(pid)
        report["connections"] = self.connected
        self._stop.set()
        for sos in self._sos.values():
            sos.set()
        pressing.cancel()
        await asyncio.wait(tasks, timeout=30)
        for task in tasks:
            task.cancel()


def measure(port: int, pid: int, args: argparse.Namespace) -> tuple[dict[str, float], Load]:
    figures: dict[str, float] = {}
    load = Load(port, args.wristbands, args.interval, args.window)
    asyncio.run(load.run(pid, figures))
    return figures, load


def run_echo(args: argparse.Namespace) -> tuple[dict[str, float], Load]:
    port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo server did not start")
        return measure(port, echo.pid, args)
    finally:
        echo.terminate()
        echo.wait(10)


def run_dispatch(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, float], Load, int]:
    db_url = f"sqlite:///{workdir / 'dispatch.db'}"
    setup_database(db_url, args.wristbands)
    port = free_port()
    server = start_dispatch(
        db_url,
        workdir,
        "--jt808-port",
        str(port),
        "--jt808-host",
        "127.0.0.1",
        "--jt808-heartbeat",
        str(max(args.interval * 2, 60)),
        "--log-level",
        "WARNING",
    )
    try:
        assert server.process is not None
        figures, load = measure(port, server.process.pid, args)
        client = server.operator_client()
        sos = [
            i
            for page in range(0, 10_000, 500)
            for i in client.get(
                "/api/v1/incidents",
                params={"state": "all", "category": "alarm", "limit": 500, "offset": page},
            ).json()["items"]
        ]
        opened = {i["position"]["terminal"] for i in sos if i["kind"] == "sos" and i["position"]}
        missing = len(set(load.sos_sent) - opened)
        return figures, load, missing
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 wristbands every 10 s")
    parser.add_argument("--wristbands", type=int, default=None)
    parser.add_argument("--interval", type=float, default=None, help="seconds between reports")
    parser.add_argument("--window", type=float, default=None, help="seconds measured")
    args = parser.parse_args()
    args.wristbands = args.wristbands or (1_000 if args.quick else 10_000)
    args.interval = args.interval or (10.0 if args.quick else 60.0)
    args.window = args.window or (20.0 if args.quick else 120.0)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="bench-wristbands-") as tmp:
        served, load, missing = run_dispatch(args, Path(tmp))
    bare, bare_load = run_echo(args)
    n = args.wristbands
    report = Report("wristbands")
    per_conn = (served["rss_after_kib"] - served["rss_before_kib"]) / n
    bare_per_conn = (bare["rss_after_kib"] - bare["rss_before_kib"]) / n
    report.add(f"connections held (of {n})", served["connections"], "", bare["connections"], "echo")
    report.add("memory per connection", per_conn, "KiB RSS", bare_per_conn, "echo")
    report.add("dispatchd RSS with all connected", served["rss_after_kib"] / 1024, "MiB")
    report.add("CPU", served["cpu_pct"], "% of a core", bare["cpu_pct"], "echo")
    report.add("frames answered", served["answers_per_s"], "/s", bare["answers_per_s"], "echo")
    for p in (50, 99):
        report.add(
            f"alarm latency p{p}",
            percentile(load.alarm_ms, p),
            "ms",
            percentile(bare_load.alarm_ms, p) if bare_load.alarm_ms else None,
            "echo round trip",
            goal="p99 < 250 ms" if p == 99 else "",
        )
    report.add("alarm latency max", max(load.alarm_ms, default=float("nan")), "ms")
    report.add("SOS without an incident", missing, f"of {len(load.sos_sent)}", goal="0")
    report.notes.append(
        f"{n} wristbands every {args.interval:.0f} s, window {args.window:.0f} s, "
        f"connected in {served['connect_s']:.1f} s; link errors {load.errors}"
    )
    if missing:
        report.notes.append(f"GOAL MISSED: {missing} SOS presses have no incident")
    if load.alarm_ms and percentile(load.alarm_ms, 99) >= 250:
        report.notes.append("GOAL MISSED: alarm latency p99 >= 250 ms")
    report.print()


if __name__ == "__main__":
    main()
