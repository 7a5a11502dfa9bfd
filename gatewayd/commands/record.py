"""`gatewayd record`: run the home's driver transports and write every raw frame to a trace.

    gatewayd record --config home.toml --out trace.jsonl.gz --duration 3600

Only the transports run: nothing is parsed, decided or forwarded, so recording can run beside
(or instead of) the daemon. Ctrl-C, SIGTERM or ``--duration`` end it cleanly: everything received
is written and the file closed. A transport that fails is restarted with back-off, and its
failure is recorded as a ``link`` frame, as the daemon would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import click
from rich.console import Console

from contract.wire import RawFrame
from drivers.base import Driver
from gatewayd.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE
from gatewayd.commands.daemon_options import config_option, load_home_config, log_level_option
from gatewayd.commands.replay import logs_to_stderr
from gatewayd.supervisor import DriverRunner, restart_backoff
from replay.recorder import DEFAULT_KEEP, DEFAULT_MAX_BYTES, Recorder
from replay.trace import TraceError
from runtime.cli import fail
from runtime.timeouts import within

__all__ = ["record", "record_drivers"]

#: Restarts of a failed transport wait at most this long (the daemon waits up to a minute).
BACKOFF_MAX_S = 30.0


async def record_drivers(
    drivers: Mapping[str, Driver],
    recorder: Recorder,
    *,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    backoff_initial: float = 1.0,
) -> None:
    """Run every driver's transport into ``recorder`` until ``duration`` passes or ``stop`` is set.

    The drivers are supervised as the daemon supervises them: a failed transport is restarted
    with back-off, and its failure recorded as a ``link`` frame. The recorder is not closed
    here: the caller owns it.
    """

    async def emit(frame: RawFrame) -> None:
        recorder.tap(frame)

    stop = stop or asyncio.Event()
    runners = [
        DriverRunner(driver, emit, backoff=restart_backoff(backoff_initial, BACKOFF_MAX_S))
        for driver in drivers.values()
    ]
    for runner in runners:
        runner.start()
    try:
        with contextlib.suppress(TimeoutError):
            await within(stop.wait(), duration)
    finally:
        for runner in runners:
            await runner.stop()


async def _record_main(
    drivers: Mapping[str, Driver], recorder: Recorder, duration: float | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await record_drivers(drivers, recorder, duration=duration, stop=stop)


@click.command()
@config_option
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The trace file (.jsonl, or .jsonl.gz for gzip); appended to if it exists.",
)
@click.option("--duration", type=float, default=None, help="Stop after S seconds.")
@click.option(
    "--max-bytes",
    type=int,
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Rotate the file past this size.",
)
@click.option(
    "--keep", type=int, default=DEFAULT_KEEP, show_default=True, help="Rotated files kept."
)
@log_level_option("WARNING", "How much to log (to stderr).")
def record(
    config_path: Path,
    out_path: Path,
    duration: float | None,
    max_bytes: int,
    keep: int,
    log_level: str,
) -> None:
    """Record every raw frame of the home's drivers into a trace until Ctrl-C or --duration."""
    logs_to_stderr(log_level)
    err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)
    if duration is not None and not duration > 0:
        fail(f"--duration must be positive, got {duration}", EXIT_USAGE)
    config = load_home_config(config_path)
    from gatewayd.daemon import GatewayError, build_drivers

    try:
        # Observers: beside a running daemon, never take over its MQTT session.
        drivers = build_drivers(config, observer=True)
    except GatewayError as exc:
        fail(str(exc), EXIT_CONFIG)
    if not drivers:
        fail(f"{config_path}: no enabled [[drivers]]: nothing to record", EXIT_CONFIG)
    try:
        recorder = Recorder.open(
            out_path, gateway_id=config.gateway.id, max_bytes=max_bytes, keep=keep
        )
    except (TraceError, ValueError) as exc:
        fail(str(exc), EXIT_FAILURE)
    err.print(
        f"recording {', '.join(sorted(drivers))} into {out_path}"
        + (f" for {duration:g} s" if duration else " until Ctrl-C")
    )
    try:
        asyncio.run(_record_main(drivers, recorder, duration))
    except KeyboardInterrupt:
        pass
    finally:
        recorder.close()
    stats = recorder.stats
    err.print(
        f"recorded {stats.written} frames into {out_path}"
        + (f" ({stats.dropped} dropped)" if stats.dropped else "")
        + (f", {stats.rotations} rotations" if stats.rotations else "")
    )
    if stats.write_errors:
        sys.exit(EXIT_FAILURE)
