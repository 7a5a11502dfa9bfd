"""Recording the raw frames of a running gateway into a trace, without ever getting in its way.

The pipeline calls :meth:`Recorder.tap` for every frame. The tap only appends the frame to an
in-memory queue (it never touches the disk, never blocks, never raises); a writer thread writes
the queue out at least every ``flush_interval`` seconds and at :meth:`Recorder.close`. The file
is bounded: past ``max_bytes`` it is rotated (``trace.jsonl`` → ``trace.1.jsonl`` → ...), and
only ``keep`` rotated files are kept. If the disk fails, frames are counted as dropped, the
trouble is logged once, and the recorder tries again at the next flush: a recording is a
debugging aid, and losing some of it must never cost the alarm path anything.

Usage::

    recorder = Recorder.from_config(config)       # None unless [record] enabled = true
    gateway = Gateway(config, recorder=recorder)
    ...
    if recorder:
        recorder.close()
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from contract.wire import RawFrame
from replay.trace import TraceControl, TraceError, TraceWriter, iso_utc

if TYPE_CHECKING:
    from contract.home import HomeConfig

__all__ = ["Recorder", "RecorderStats", "rotated_path"]

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 5


def rotated_path(path: Path, index: int) -> Path:
    """The name of the ``index``-th older file: ``trace.jsonl.gz`` → ``trace.1.jsonl.gz``."""
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".gz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return path.with_name(f"{name[: -len(suffix)]}.{index}{suffix}")
    return path.with_name(f"{name}.{index}")


@dataclass
class RecorderStats:
    #: frames handed to the tap
    frames: int = 0
    #: frames written to a file
    written: int = 0
    #: frames lost: queue full or the disk failed
    dropped: int = 0
    rotations: int = 0
    write_errors: int = 0


class Recorder:
    """A frame tap that records into a rotating trace file. Thread-safe; see the module doc."""

    def __init__(
        self,
        path: Path,
        *,
        gateway_id: str,
        max_bytes: int,
        keep: int,
        flush_interval: float,
        max_pending: int,
        fsync: bool,
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.max_bytes = max_bytes
        self.keep = keep
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.fsync = fsync
        self.stats = RecorderStats()
        #: This daemon run: every file it writes (rotations too) carries it in its header.
        self.session = f"{gateway_id}@{iso_utc(datetime.now(UTC))}#{uuid.uuid4().hex[:8]}"
        self._pending: collections.deque[RawFrame | TraceControl] = collections.deque()
        self._writer: TraceWriter | None = None
        self._lock = threading.Lock()  # serialises flushes (the thread, flush(), close())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_logged = False
        self._drop_logged = False
        self.closed = False

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        gateway_id: str = "gateway",
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        fsync: bool = False,
    ) -> Recorder:
        """Open (append to) the trace at ``path`` and start the writer thread.

        Raises :class:`TraceError` when the file cannot be opened: the caller decides whether to
        run without recording. Later disk trouble never raises.
        """
        if max_bytes < 4096:
            raise ValueError(f"max_bytes must be at least 4096, got {max_bytes}")
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval}")
        recorder = cls(
            Path(path),
            gateway_id=gateway_id,
            max_bytes=max_bytes,
            keep=keep,
            flush_interval=flush_interval,
            max_pending=max_pending,
            fsync=fsync,
        )
        recorder._writer = recorder._open_writer()
        recorder._writer.flush()
        recorder._thread = threading.Thread(
            target=recorder._run, name=f"trace-recorder:{recorder.path.name}", daemon=True
        )
        recorder._thread.start()
        log.info("recording", path=str(recorder.path), max_bytes=max_bytes, keep=keep)
        return recorder

    @classmethod
    def from_config(cls, config: HomeConfig) -> Recorder | None:
        """The recorder the ``[record]`` section asks for, or None when recording is off.

        ``path`` defaults to ``<state_dir>/traces/trace.jsonl.gz``. A file that cannot be
        opened is logged and recording stays off: the gateway runs without it.
        """
        if not config.record.enabled:
            return None
        path = config.record.path or config.gateway.state_dir / "traces" / "trace.jsonl.gz"
        try:
            return cls.open(path, gateway_id=config.gateway.id)
        except TraceError as exc:
            log.error("recording_unavailable", path=str(path), error=str(exc))
            return None

    # -- the tap --------------------------------------------------------------------------

    def tap(self, frame: RawFrame) -> None:
        """Queue a frame for the trace. O(1); never blocks, never raises."""
        try:
            self.stats.frames += 1
            if self.closed or len(self._pending) >= self.max_pending:
                self.stats.dropped += 1
                if not self._drop_logged and not self.closed:
                    self._drop_logged = True
                    log.warning("trace_queue_full", path=str(self.path), pending=self.max_pending)
                return
            self._pending.append(frame)
        except Exception:  # pragma: no cover - the tap must never hurt the pipeline
            self.stats.dropped += 1

    __call__ = tap

    def note_ack(self, condition: str, at: datetime | None = None) -> None:
        """Record that dispatch acknowledged ``condition`` (replay acknowledges it too)."""
        self._note(TraceControl("ack", condition, at or datetime.now(UTC)))

    def note_mode(self, mode: str, at: datetime | None = None) -> None:
        """Record a mode change (normal, away, test), so replay changes mode at that time."""
        self._note(TraceControl("mode", mode, at or datetime.now(UTC)))

    def _note(self, control: TraceControl) -> None:
        if not self.closed and len(self._pending) < self.max_pending:
            self._pending.append(control)
        else:
            self.stats.dropped += 1

    # -- writing --------------------------------------------------------------------------

    def _open_writer(self) -> TraceWriter:
        return TraceWriter.open(
            self.path,
            gateway_id=self.gateway_id,
            started=datetime.now(UTC),
            mono=time.monotonic(),
            session=self.session,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write out everything queued now. Never raises (disk errors are counted and logged)."""
        with self._lock:
            try:
                self._flush_locked()
            except Exception as exc:  # the writer thread must survive anything
                self.stats.write_errors += 1
                log.exception("trace_flush_failed", path=str(self.path), error=str(exc))

    def _flush_locked(self) -> None:
        batch: list[RawFrame | TraceControl] = []
        pending = self._pending
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return  # an idle second writes nothing (a gzip sync point costs bytes)
        if self._writer is None:
            try:
                self._writer = self._open_writer()
            except TraceError as exc:
                self._failed(exc, len(batch))
                return
        writer = self._writer
        done = 0
        try:
            for item in batch:
                writer.write(item)
                done += 1
                if writer.estimated_size >= self.max_bytes:
                    writer.flush()
                    if writer.size >= self.max_bytes:
                        writer = self._rotate()
            writer.flush(fsync=self.fsync)
            if writer.size >= self.max_bytes:
                self._rotate()
        except TraceError as exc:
            self.stats.written += done
            self._failed(exc, len(batch) - done)
            self._discard_writer()
            return
        self.stats.written += done
        if self._error_logged:
            self._error_logged = False
            log.info("trace_writing_again", path=str(self.path))

    def _rotate(self) -> TraceWriter:
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        try:
            if self.keep == 0:
                self.path.unlink(missing_ok=True)
            else:
                rotated_path(self.path, self.keep).unlink(missing_ok=True)
                for index in range(self.keep - 1, 0, -1):
                    older = rotated_path(self.path, index)
                    if older.exists():
                        older.replace(rotated_path(self.path, index + 1))
                self.path.replace(rotated_path(self.path, 1))
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot rotate the trace: {exc}") from exc
        self.stats.rotations += 1
        log.info("trace_rotated", path=str(self.path), keep=self.keep)
        self._writer = self._open_writer()
        return self._writer

    def _discard_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(TraceError):
                self._writer.close()
            self._writer = None

    def _failed(self, exc: Exception, lost: int) -> None:
        self.stats.write_errors += 1
        self.stats.dropped += lost
        if not self._error_logged:
            self._error_logged = True
            log.error("trace_write_failed", path=str(self.path), error=str(exc), lost=lost)

    # -- closing --------------------------------------------------------------------------

    def close(self, *, timeout: float = 5.0) -> None:
        """Write out what is queued and close the file. Idempotent; never raises."""
        if self.closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            try:
                self._flush_locked()
            except Exception as exc:
                self.stats.write_errors += 1
                log.exception("trace_flush_failed", path=str(self.path), error=str(exc))
            self.closed = True
            self._discard_writer()
        log.info(
            "recording_stopped",
            path=str(self.path),
            frames=self.stats.frames,
            written=self.stats.written,
            dropped=self.stats.dropped,
        )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
