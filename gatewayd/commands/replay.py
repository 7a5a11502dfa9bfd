"""`gatewayd replay`: a recorded trace through the same parsers and rules, on a virtual clock.

    gatewayd replay trace.jsonl.gz --config home.toml                  # decisions to stdout
    gatewayd replay trace.jsonl.gz --config home.toml --expect expected.jsonl
    gatewayd replay trace.jsonl.gz --config home.toml --speed 60 --forward

Exit status: 0 done (and matching ``--expect``), 1 the decisions differ from ``--expect`` or the
replay failed, 2 bad flags, 3 the config or rules have problems.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.markup import escape

from gatewayd.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE
from gatewayd.commands.daemon_options import load_home_config, log_level_option
from replay.engine import (
    Comparison,
    DecidedLike,
    RealTimePacer,
    Replay,
    ReplayError,
    ReplaySummary,
    build_decider,
    build_restart,
    canonical_decision,
    canonical_line,
    compare,
    describe,
    read_expected,
)
from replay.trace import TraceError, TraceProblem, TraceReader, iso_utc
from runtime.cli import fail
from runtime.logs import configure_logging

#: Problems printed one by one; past this only counted.
MAX_PROBLEMS_SHOWN = 20
PROGRESS_LOG_INTERVAL_S = 5.0


def logs_to_stderr(level: str) -> None:
    """The project's log format, on stderr: stdout may be carrying the decisions."""
    configure_logging(level=level, json=not sys.stderr.isatty())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def _parse_until(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--until {value!r} is not an ISO 8601 time (e.g. 2026-03-09T06:00Z)", EXIT_USAGE)
    if at.tzinfo is None:
        fail(f"--until {value!r} needs a time zone (Z or +01:00)", EXIT_USAGE)
    return at.astimezone(UTC)


class _Progress:
    """A rich progress bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, reader: TraceReader, *, tty: bool, console: Console) -> None:
        self.reader = reader
        self.tty = tty
        self.console = console
        self._bar: Any = None
        self._task: Any = None
        self._last_log = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("replaying"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[frames]} frames  {task.fields[virtual]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "replay", total=self.reader.total_bytes or None, frames=0, virtual=""
            )
        return self

    def __call__(self, replay: Replay) -> None:
        virtual = iso_utc(replay.now) if replay.now else ""
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.reader.bytes_read,
                frames=replay.summary.frames,
                virtual=virtual,
            )
            return
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_LOG_INTERVAL_S:
            self._last_log = now
            total = self.reader.total_bytes
            percent = f"{100 * self.reader.bytes_read / total:.0f}%" if total else "?"
            rate = replay.summary.frames / max(now - self._started, 1e-9)
            self.console.print(
                f"replay: {percent} read, {replay.summary.frames} frames, "
                f"{replay.summary.decisions} decisions, virtual time {virtual}, "
                f"{rate:,.0f} frames/s",
                markup=False,
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _open_out(out: str | None, expect: Path | None) -> tuple[IO[str] | None, bool]:
    """Where decisions go: a file, stdout (``-`` or by default without --expect), or nowhere."""
    if out is None:
        return (None, False) if expect is not None else (sys.stdout, False)
    if out == "-":
        return sys.stdout, False
    try:
        path = Path(out)
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8", newline="\n"), True
    except OSError as exc:
        fail(f"--out {out}: cannot write: {exc.strerror or exc}", EXIT_FAILURE)


@click.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The home config whose drivers and rules the trace is replayed through.",
)
@click.option("--speed", type=float, default=None, help="Pace the replay N times real time.")
@click.option("--fast", is_flag=True, help="As fast as possible (the default).")
@click.option(
    "--out", default=None, help="Write the decisions here ('-': stdout; default without --expect)."
)
@click.option(
    "--expect",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Compare the decisions with this file; exit 1 with a diff when they differ.",
)
@click.option(
    "--until",
    default=None,
    help="Replay up to this time (ISO 8601) and keep the clock running to it after the last frame.",
)
@click.option(
    "--tick-grid",
    type=float,
    default=None,
    help="Also tick the rules every S virtual seconds (as the live gateway does every second).",
)
@click.option(
    "--forward",
    default=None,
    is_flag=False,
    flag_value="",
    help="Send the replayed events to dispatch (a URL, or alone: the credential's URL).",
)
@click.option(
    "--credential",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The enrolled gateway credential for --forward (default: <state_dir>/credential.json).",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Allow --forward to a plain http:// dispatch URL (a loopback demo or test only).",
)
@click.option(
    "--summary",
    "summary_format",
    type=click.Choice(["text", "json", "none"]),
    default="text",
    show_default=True,
    help="The summary printed to stderr at the end.",
)
@click.option("--progress/--no-progress", default=True, help="Progress on stderr while replaying.")
@log_level_option("WARNING", "How much to log (to stderr).")
def replay(
    traces: tuple[Path, ...],
    config_path: Path,
    speed: float | None,
    fast: bool,
    out: str | None,
    expect: Path | None,
    until: str | None,
    tick_grid: float | None,
    forward: str | None,
    credential: Path | None,
    insecure_http: bool,
    summary_format: str,
    progress: bool,
    log_level: str,
) -> None:
    """Replay TRACE files (in order) through the home's parsers and rules; print decisions."""
    err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)
    logs_to_stderr(log_level)
    if speed is not None and fast:
        fail("--speed and --fast exclude each other", EXIT_USAGE)
    if speed is not None and not speed > 0:
        fail(f"--speed must be positive, got {speed}", EXIT_USAGE)
    if tick_grid is not None and not tick_grid > 0:
        fail(f"--tick-grid must be positive, got {tick_grid}", EXIT_USAGE)
    until_at = _parse_until(until)
    config = load_home_config(config_path)
    rules_text = config_path.read_text(encoding="utf-8")
    try:
        decider = build_decider(config, rules_text=rules_text, source=str(config_path))
    except ReplayError as exc:
        fail(str(exc), EXIT_CONFIG)
    expected: list[str] | None = None
    if expect is not None:
        try:
            expected = read_expected(
                expect.read_text(encoding="utf-8").splitlines(), source=str(expect)
            )
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--expect {expect}: cannot read: {exc}", EXIT_FAILURE)
        except ReplayError as exc:
            fail(f"--expect: {exc}", EXIT_FAILURE)

    shown = 0

    def on_problem(problem: TraceProblem) -> None:
        nonlocal shown
        shown += 1
        if shown <= MAX_PROBLEMS_SHOWN:
            err.print(f"[yellow]skipped[/] {escape(str(problem))}")
        elif shown == MAX_PROBLEMS_SHOWN + 1:
            err.print("[yellow]skipped[/] ... (more bad lines: counted in the summary)")

    try:
        reader = TraceReader(*traces, on_problem=on_problem)
    except TraceError as exc:
        fail(str(exc), EXIT_FAILURE)

    sink, close_sink = _open_out(out, expect)
    lines: list[str] = []

    def write_line(decided: DecidedLike) -> None:
        line = canonical_line(canonical_decision(decided))
        lines.append(line)
        if sink is not None:
            sink.write(line + "\n")
            if speed is not None:
                sink.flush()

    on_decided: Callable[[DecidedLike], None] = write_line
    forwarder = None
    if forward is not None:
        from replay.forward import ForwardError, ReplayForwarder

        try:
            forwarder = ReplayForwarder.start(
                config,
                url=forward or None,
                credential_path=credential,
                insecure_http=insecure_http,
            )
        except ForwardError as exc:
            fail(str(exc), EXIT_FAILURE)
        on_decided = _tee(on_decided, forwarder.submit)

    tty = progress and sys.stderr.isatty()
    tracker = _Progress(reader, tty=tty, console=err)
    engine = Replay(
        decider,
        until=until_at,
        tick_grid=tick_grid,
        on_decided=on_decided,
        pace=RealTimePacer(speed) if speed is not None else None,
        on_progress=tracker if progress else None,
        progress_every=1000 if speed is None else 1,
        restart=build_restart(config, rules_text=rules_text, source=str(config_path)),
    )
    try:
        with tracker:
            summary = engine.run(reader.inputs(sessions=True))
    except TraceError as exc:
        fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        summary = engine.summary
        err.print("[yellow]interrupted[/]: the decisions so far were written")
    finally:
        if close_sink and sink is not None:
            sink.close()
        elif sink is not None:
            sink.flush()
    forwarded: dict[str, Any] | None = None
    if forwarder is not None:
        forwarded = forwarder.finish()

    comparison: Comparison | None = None
    if expected is not None:
        comparison = compare(expected, lines, expected_name=str(expect), actual_name="replayed")
    _report(
        err,
        summary,
        reader,
        decider,
        comparison=comparison,
        fmt=summary_format,
        forwarded=forwarded,
    )
    if comparison is not None and not comparison.ok:
        sys.exit(EXIT_FAILURE)


def _tee(
    first: Callable[[DecidedLike], None], second: Callable[[DecidedLike], None]
) -> Callable[[DecidedLike], None]:
    def both(decided: DecidedLike) -> None:
        first(decided)
        second(decided)

    return both


def _parser_stats(decider: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for driver_id, parser in sorted(getattr(decider, "parsers", {}).items()):
        stats = getattr(parser, "stats", None)
        if stats is not None and hasattr(stats, "as_dict"):
            yield driver_id, stats.as_dict()


def _report(
    err: Console,
    summary: ReplaySummary,
    reader: TraceReader,
    decider: Any,
    *,
    comparison: Comparison | None,
    fmt: str,
    forwarded: dict[str, Any] | None,
) -> None:
    stats = reader.stats
    data: dict[str, Any] = {
        **summary.as_dict(),
        "trace_lines": stats.lines,
        "sessions": stats.headers,
        "skipped_lines": stats.skipped,
        "readings": getattr(decider, "readings", None),
        "unknown_driver_frames": getattr(decider, "unknown_driver_frames", None),
        "engine_errors": getattr(decider, "engine_errors", None),
        "parsers": dict(_parser_stats(decider)),
    }
    if comparison is not None:
        data["expect"] = {
            "ok": comparison.ok,
            "missing": len(comparison.missing),
            "extra": len(comparison.extra),
            "changed": len(comparison.changed),
        }
    if forwarded is not None:
        data["forwarded"] = forwarded
    if comparison is not None and not comparison.ok:
        err.out(comparison.diff, end="")
    if fmt == "json":
        err.out(json.dumps(data, sort_keys=True))
    elif fmt == "text":
        span = (
            f"{iso_utc(summary.first_at)} → {iso_utc(summary.last_at)}"
            if summary.first_at and summary.last_at
            else "no frames"
        )
        err.print(
            f"replayed {summary.frames} frames ({span}) in {summary.elapsed_s:.2f} s "
            f"({summary.frames_per_s:,.0f} frames/s): {summary.decisions} decisions, "
            f"{summary.alarms} alarms, {summary.actions} local actions"
        )
        if stats.skipped:
            err.print(f"[yellow]{stats.skipped} trace lines skipped[/] (bad or unsupported)")
        if data["engine_errors"]:
            err.print(f"[red]the rule engine raised {data['engine_errors']} times[/]")
        if forwarded is not None:
            err.print(f"forwarded to dispatch: {forwarded}")
    if comparison is not None:
        for line in describe(comparison):
            err.print(line, markup=False, style=None if comparison.ok else "red")


__all__ = ["replay"]
