"""Backlog drain: a gateway's buffer of 1,000,000 events forwarded to dispatch after an outage.

    python -m bench.drain [--quick] [--events N]

The backlog: events appended to a real :class:`~buffer.store.EventBuffer` on disk while
dispatch is down, in time order: 98% ``contact`` telemetry, 1% ``low_battery`` troubles and
their restores, 1% smoke alarms and their restores, interleaved. The real
:class:`~forwarder.delivery.Forwarder` (with the real :class:`~forwarder.client.
DispatchClient`, signed requests over HTTP) first fails against the dead address and backs off;
then `dispatchd serve` starts on SQLite, the forwarder is woken, and the clock runs until the
buffer is empty. Checked afterwards, in dispatch's own database: every event stored once, and
every alarm received before any trouble, every trouble before any telemetry.

The limit, measured in the same run on the same server: dispatch's raw ingest rate, posting
pre-signed batches of the same size and mix (500 events) directly over as many connections as the
forwarder keeps batches in flight (``PIPELINE_DEPTH``; and over one, for reference). Goals: the
whole backlog in under 60 s, and at least 0.9 of that limit.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Report
from bench.dispatch_ingest import EVENTS_PATH, make_batches
from bench.harness import DispatchServer, post_all, signed_request, start_dispatch
from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer, EventDraft
from contract.wire import EventKind, Lane
from forwarder.client import Credential, DispatchClient
from forwarder.delivery import Forwarder

GOAL_S = 60.0
RATIO_GOAL = 0.9
#: Batches the forwarder keeps in flight (its default), and the limit's connections.
PIPELINE_DEPTH = 4
GATEWAY = "gw-bench-drain"
HOUSEHOLD = "hh-bench-drain"
GROUP = 5_000

ALARM_KINDS = [k.value for k in EventKind if k.lane is Lane.ALARM]
TROUBLE_KINDS = [k.value for k in EventKind if k.lane is Lane.TROUBLE]


def fill(path: Path, total: int) -> dict[Lane, int]:
    """The backlog: ``total`` events appended while dispatch is away."""
    buffer = EventBuffer.open(path, gateway_id=GATEWAY, disk_budget_bytes=16 * 2**30)
    counts = dict.fromkeys(Lane, 0)
    start = datetime.now(UTC) - timedelta(hours=6)
    try:
        drafts: list[EventDraft] = []
        for n in range(total):
            at = start + timedelta(milliseconds=n)
            if n % 100 == 50:
                on = (n // 100) % 2 == 0
                kind = EventKind.SMOKE if on else EventKind.SMOKE_RESTORE
                device = f"smoke-{(n // 200) % 20:02d}"
                payload: dict[str, Any] = {"condition": f"smoke:{device}"}
            elif n % 100 == 75:
                on = (n // 100) % 2 == 0
                kind = EventKind.LOW_BATTERY if on else EventKind.LOW_BATTERY_RESTORE
                device = f"door-{(n // 200) % 50:02d}"
                payload = {"condition": f"low_battery:{device}", "battery": 9 if on else 80}
            else:
                kind = EventKind.CONTACT
                device = f"door-{n % 50:02d}"
                payload = {"condition": f"contact:{device}", "contact_open": n % 2 == 0}
            drafts.append(EventDraft(kind=kind, at=at, device_id=device, payload=payload))
            counts[kind.lane] += 1
            if len(drafts) >= GROUP:
                buffer.append(drafts)
                drafts = []
        if drafts:
            buffer.append(drafts)
    finally:
        buffer.close()
    return counts


async def drain(buffer_path: Path, dispatch: DispatchServer, secret: str) -> dict[str, float]:
    raw = EventBuffer.open(buffer_path, gateway_id=GATEWAY, disk_budget_bytes=16 * 2**30)
    buffer = AsyncEventBuffer(raw)
    await buffer.start()
    credential = Credential(GATEWAY, HOUSEHOLD, secret, dispatch.url)
    client = DispatchClient(dispatch.url, credential=credential, timeout=30, insecure_http=True)
    forwarder = Forwarder(
        buffer, client, backoff_initial=30.0, backoff_max=60.0, pipeline_depth=PIPELINE_DEPTH
    )
    dispatch.stop()  # the outage
    task = asyncio.create_task(forwarder.run())
    try:
        while forwarder.status.reachable is not False:  # noqa: ASYNC110 (a status, no event)
            await asyncio.sleep(0.01)
        await asyncio.to_thread(dispatch.start, 60)
        t0 = time.perf_counter()
        forwarder.wake()
        while raw.stats(datetime.now(UTC)).pending_total:
            await asyncio.sleep(0.01)
            if time.perf_counter() - t0 > 1800:
                raise SystemExit("the backlog did not drain within 30 minutes")
        elapsed = time.perf_counter() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await buffer.aclose()
    return {
        "elapsed_s": elapsed,
        "requests": forwarder.requests,
        "sent": forwarder.status.sent_total,
        "failures": forwarder.status.consecutive_failures,
    }


def check_order(db_path: Path) -> dict[str, Any]:
    """From dispatch's database: counts, and whether each lane arrived before the next."""
    conn = sqlite3.connect(db_path)
    try:

        def span(kinds: list[str]) -> tuple[Any, Any, int]:
            marks = ",".join("?" * len(kinds))
            row = conn.execute(
                f"SELECT MIN(received_at), MAX(received_at), COUNT(*) FROM events "
                f"WHERE gateway_id = ? AND kind IN ({marks})",
                (GATEWAY, *kinds),
            ).fetchone()
            return row[0], row[1], int(row[2])

        alarms = span(ALARM_KINDS)
        troubles = span(TROUBLE_KINDS)
        telemetry = span(["contact"])
        distinct = conn.execute(
            "SELECT COUNT(DISTINCT id) FROM events WHERE gateway_id = ?", (GATEWAY,)
        ).fetchone()[0]
    finally:
        conn.close()
    ordered = alarms[1] <= troubles[0] and troubles[1] <= telemetry[0]
    return {
        "alarms": alarms[2],
        "troubles": troubles[2],
        "telemetry": telemetry[2],
        "distinct": distinct,
        "ordered": ordered,
    }


def raw_ingest_rate(dispatch: DispatchServer, events: int, connections: int) -> float:
    gateway = dispatch.enroll(f"hh-bench-limit-{connections}", f"gw-bench-limit-{connections}")
    batches = make_batches([gateway], events)
    requests = [
        (dispatch.port, signed_request(g, EVENTS_PATH, body, dispatch.port)) for g, body in batches
    ]
    result = asyncio.run(post_all(requests, connections=connections))
    if result.ok != len(requests):
        raise SystemExit(f"limit batches refused: {dict(result.statuses)} {result.sample_error}")
    return len(batches) * 500 / result.elapsed_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1,000,000")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args(argv)
    total = args.events or (100_000 if args.quick else 1_000_000)
    report = Report("drain")
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        counts = fill(workdir / "buffer.db", total)
        fill_s = time.perf_counter() - t0
        db_path = workdir / "dispatch.db"
        dispatch = start_dispatch(f"sqlite:///{db_path}", workdir)
        try:
            limit_events = min(total, 100_000)
            limit_1 = raw_ingest_rate(dispatch, limit_events, 1)
            limit_n = raw_ingest_rate(dispatch, limit_events, PIPELINE_DEPTH)
            enrolled = dispatch.enroll(HOUSEHOLD, GATEWAY)
            result = asyncio.run(drain(workdir / "buffer.db", dispatch, enrolled.secret))
        finally:
            dispatch.stop()
            dispatch.close()
        check = check_order(db_path)
    rate = total / result["elapsed_s"]
    report.add("drain time", result["elapsed_s"], "s", goal=f"< {GOAL_S:.0f} s")
    report.add(
        "drain rate",
        rate,
        "events/s",
        limit_n,
        f"raw ingest, pre-signed, {PIPELINE_DEPTH} connections",
        goal=f">= {RATIO_GOAL}x limit",
    )
    report.add("raw ingest, 1 connection", limit_1, "events/s")
    report.notes.append(
        f"{total:,} events (alarm lane {counts[Lane.ALARM]:,}, trouble {counts[Lane.TROUBLE]:,}, "
        f"telemetry {counts[Lane.TELEMETRY]:,}) buffered in {fill_s:.1f} s; "
        f"{result['requests']:.0f} requests, up to {PIPELINE_DEPTH} in flight; "
        f"dispatch stored {check['distinct']:,} distinct "
        f"(alarms {check['alarms']:,}, troubles {check['troubles']:,}, "
        f"telemetry {check['telemetry']:,}); lanes in order: {check['ordered']}"
    )
    if check["distinct"] != total:
        report.notes.append(f"LOST OR EXTRA EVENTS: {check['distinct']:,} stored of {total:,}")
    if not check["ordered"]:
        report.notes.append("ORDER BROKEN: an alarm arrived after a trouble or telemetry event")
    if rate < RATIO_GOAL * limit_n:
        report.notes.append(
            f"GOAL MISSED: drain {rate:,.0f} events/s < {RATIO_GOAL} x {limit_n:,.0f} "
            f"(raw ingest over {PIPELINE_DEPTH} connections)"
        )
    if result["elapsed_s"] >= GOAL_S * total / 1_000_000:
        report.notes.append(
            f"GOAL MISSED: {total:,} events took {result['elapsed_s']:.1f} s "
            f"(goal {GOAL_S * total / 1_000_000:.0f} s at this size)"
        )
    report.print()


if __name__ == "__main__":
    main()
