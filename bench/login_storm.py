"""Queue latency while password guessers hammer the login: does guessing slow the alarm queue?

    python -m bench.login_storm [--quick] [--guessers 8] [-- SERVE ARGS]

A real `dispatchd serve` (SQLite) on loopback. An operator reads the queue (GET /api/v1/incidents)
ten times a second, first alone, then while ``--guessers`` threads post wrong passwords to
/api/v1/auth/login as fast as they are answered (each to a fresh username, all from one
address). Figures: the queue read's p50 and p95 alone and under the storm, and the storm's
answers by status (401: a password was checked; 429: refused before any check).

Extra arguments after ``--`` go to `dispatchd serve` (e.g. ``--login-failures-per-address
1000000`` to see the password checks alone, without the throttle).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import Report, percentile
from bench.harness import start_dispatch

READ_EVERY_S = 0.1


def queue_latencies_ms(client: httpx.Client, seconds: float) -> list[float]:
    out: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        client.get("/api/v1/incidents").raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
        time.sleep(READ_EVERY_S)
    return out


def guess(url: str, stop: threading.Event, answers: Counter[int], name: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        while not stop.is_set():
            n += 1
            reply = client.post(
                "/api/v1/auth/login", json={"username": f"{name}-{n}", "password": "guess"}
            )
            answers[reply.status_code] += 1


def measure(seconds: float, guessers: int, serve_args: list[str]) -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        workdir = Path(tmp)
        server = start_dispatch(
            f"sqlite:///{workdir / 'dispatch.db'}",
            workdir,
            "--log-level",
            "WARNING",
            *serve_args,
        )
        try:
            client = server.operator_client()
            alone = queue_latencies_ms(client, seconds)
            stop = threading.Event()
            answers: Counter[int] = Counter()
            threads = [
                threading.Thread(target=guess, args=(server.url, stop, answers, f"g{i}"))
                for i in range(guessers)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # the storm under way
            started = time.monotonic()
            stormed = queue_latencies_ms(client, seconds)
            elapsed = time.monotonic() - started + 1.0
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            server.close()
    report = Report("login_storm")
    for name, values in (("alone", alone), (f"{guessers} guessers", stormed)):
        for p in (50, 95):
            report.add(f"queue read p{p}, {name}", percentile(values, p), "ms")
    for status, count in sorted(answers.items()):
        report.add(f"login answers {status}", count / elapsed, "/s")
    report.notes.append(
        f"SQLite, {seconds:.0f} s per phase, queue read every {READ_EVERY_S} s; "
        f"serve args: {' '.join(serve_args) or '(defaults)'}"
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per phase instead of 20")
    parser.add_argument("--guessers", type=int, default=8)
    parser.add_argument("serve_args", nargs="*", help="after --: arguments for dispatchd serve")
    args = parser.parse_args(argv)
    measure(5.0 if args.quick else 20.0, args.guessers, args.serve_args).print()


if __name__ == "__main__":
    main()
