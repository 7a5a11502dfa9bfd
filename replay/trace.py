"""Sensor traces: every raw frame exactly as the drivers received it, one JSON object a line.

A trace is what a developer replays to debug a false or missed alarm, and what new rules are
tried against before they ship. The format (``gatewayd-trace`` version 1, see docs/traces.md)::

    {"t":"header","format":"gatewayd-trace","v":1,"gateway":"gw-1","started":"2026-03-02T05:00:00Z","mono":1234.5}
    {"t":"frame","wall":"2026-03-02T05:00:01.250000Z","mono":1235.75,"driver":"zigbee","source":"zigbee2mqtt/hall","kind":"data","retained":false,"text":"{\\"occupancy\\":true}"}
    {"t":"frame",...,"b64":"AAECAw=="}

- A header line starts every recording session, so a file appended to across restarts says
  where each session began: a restart of the daemon, which replay reproduces. A rotated file
  starts with a header too; it carries the same ``session`` as the file before it, so it is no
  restart (a header without ``session`` is identified by its gateway and ``started``).
- The payload is ``text`` when it is valid UTF-8, else ``b64`` (base64): exact bytes either way.
- Files ending in ``.gz`` are gzip, read and written transparently. A gzip file may hold several
  members (one per session), as gzip allows.
- Appending is safe after a crash: a torn last line of a plain file is closed off with a newline
  (the reader reports it and skips it); a gzip file whose last member was cut off is rewritten
  with what it holds intact before appending.

The reader never raises on content: a line that is not JSON, not a known record, or of a version
it does not speak is reported with its file and line number (:class:`TraceProblem`) and skipped.
Only an unreadable file (missing, no permission) raises :class:`TraceError`.

Exceptions::

    TraceError          the trace file cannot be opened, read or written
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gzip
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

from contract.trusted import constructor
from contract.wire import RawFrame
from runtime import files

__all__ = [
    "FORMAT",
    "VERSION",
    "TraceControl",
    "TraceError",
    "TraceHeader",
    "TraceItem",
    "TraceProblem",
    "TraceReader",
    "TraceStats",
    "TraceWriter",
    "decode_line",
    "encode_control",
    "encode_frame",
    "encode_header",
    "iso_utc",
    "iter_lines",
    "read_frames",
]

FORMAT: Final = "gatewayd-trace"
VERSION: Final = 1

_CHUNK = 1 << 16
#: A line longer than this is not ours (a frame's payload is at most 1 MiB, 4/3 of it in base64).
MAX_LINE_BYTES: Final = 2 * 1024 * 1024
#: Problems kept in memory; the count goes on past it.
MAX_PROBLEMS_KEPT: Final = 1000


class TraceError(Exception):
    """The trace file cannot be opened, read or written."""


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """The first line of a recording session."""

    gateway_id: str
    started: datetime
    mono: float | None = None
    version: int = VERSION
    line: int = 0
    #: The recording session (one daemon run); None in traces written before it was recorded.
    session: str | None = None

    @property
    def session_key(self) -> str:
        """What tells one daemon run from another (see the module doc)."""
        return self.session or f"{self.gateway_id}@{iso_utc(self.started)}"


@dataclass(frozen=True, slots=True)
class TraceControl:
    """What reached the rules besides frames: dispatch acknowledged an alarm, the mode changed.

    ``what`` is ``ack`` (``value`` the condition key) or ``mode`` (``value`` normal, away, test).
    """

    what: str
    value: str
    at: datetime


TraceItem = TraceHeader | RawFrame | TraceControl


@dataclass(frozen=True, slots=True)
class TraceProblem:
    """A line of a trace that was skipped, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class TraceStats:
    lines: int = 0
    frames: int = 0
    headers: int = 0
    skipped: int = 0
    problems: list[TraceProblem] = field(default_factory=list)

    def add_problem(self, problem: TraceProblem) -> None:
        self.skipped += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)


def iso_utc(at: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: the one time format of traces and decisions."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def encode_header(
    gateway_id: str, started: datetime, mono: float | None = None, session: str | None = None
) -> bytes:
    record: dict[str, Any] = {
        "t": "header",
        "format": FORMAT,
        "v": VERSION,
        "gateway": gateway_id,
        "started": iso_utc(started),
    }
    if mono is not None:
        record["mono"] = mono
    if session is not None:
        record["session"] = session
    return _json_line(record)


def encode_control(control: TraceControl) -> bytes:
    """One trace line for an acknowledgement or a mode change."""
    key = "condition" if control.what == "ack" else "mode"
    return _json_line({"t": control.what, "wall": iso_utc(control.at), key: control.value})


def encode_frame(frame: RawFrame) -> bytes:
    """One trace line (ending in a newline) for a frame."""
    record: dict[str, Any] = {
        "t": "frame",
        "wall": iso_utc(frame.wall_time),
        "mono": frame.mono_time,
        "driver": frame.driver,
        "source": frame.source,
        "kind": frame.kind,
        "retained": frame.retained,
    }
    try:
        record["text"] = frame.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["b64"] = base64.b64encode(frame.payload).decode("ascii")
    return _json_line(record)


class _BadLine(ValueError):
    pass


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise _BadLine(f"field {name!r} is missing or not a {_kind_name(kind)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _tuple(kind))


def _time(record: dict[str, Any], name: str) -> datetime:
    text = _field(record, name, str)
    try:
        at = datetime.fromisoformat(text)
        if at.tzinfo is None:
            raise _BadLine(f"field {name!r} has no time zone: {text[:40]!r}")
        return at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, _BadLine):
            raise
        raise _BadLine(f"field {name!r} is not an ISO 8601 time: {text[:40]!r}") from exc


def _frame_of(record: dict[str, Any]) -> RawFrame:
    driver = record.get("driver")
    if type(driver) is not str or not 0 < len(driver) <= 128:
        raise _BadLine("field 'driver' is missing, not a string, empty or too long")
    source = record.get("source")
    if type(source) is not str or len(source) > 512:
        raise _BadLine("field 'source' is missing, not a string or longer than 512 characters")
    kind = record.get("kind", "data")
    if kind != "data" and kind != "link":
        raise _BadLine(f"field 'kind' must be 'data' or 'link', not {str(kind)[:20]!r}")
    retained = record.get("retained", False)
    if type(retained) is not bool:
        raise _BadLine("field 'retained' is not a boolean")
    mono = record.get("mono")
    try:
        if type(mono) is int:
            mono = float(mono)
        if type(mono) is not float or not math.isfinite(mono):
            raise _BadLine("field 'mono' is missing or not a finite number")
    except OverflowError as exc:
        raise _BadLine("field 'mono' is out of range") from exc
    text = record.get("text")
    if type(text) is str:
        payload = text.encode("utf-8", "surrogatepass")
    elif "text" in record:
        raise _BadLine("field 'text' is not a string")
    elif "b64" in record:
        try:
            payload = base64.b64decode(_field(record, "b64", str), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadLine("field 'b64' is not valid base64") from exc
    else:
        raise _BadLine("frame has neither 'text' nor 'b64'")
    if len(payload) > 1_048_576:
        raise _BadLine("payload is larger than 1 MiB")
    # Every field was checked above, so skip pydantic's second validation (replay speed).
    return _construct(
        {
            "driver": driver,
            "source": source,
            "payload": payload,
            "kind": kind,
            "retained": retained,
            "wall_time": _time(record, "wall"),
            "mono_time": mono,
        },
        _FRAME_FIELDS,
    )


_FRAME_FIELDS = frozenset(RawFrame.model_fields)
_construct = constructor(
    RawFrame,
    {
        "driver": "d",
        "source": "s",
        "payload": b"p",
        "kind": "link",
        "retained": True,
        "wall_time": datetime(2026, 1, 1, tzinfo=UTC),
        "mono_time": 1.5,
    },
)


_decode_json = json.JSONDecoder().decode


def decode_line(line: bytes | str) -> TraceItem:
    """Decode one trace line; raises ValueError naming what is wrong with it."""
    try:
        if line[:2] == b'{"' and type(line) is bytes:
            # What json.loads does with these bytes (UTF-8, as detect_encoding finds for a
            # line starting so), without its per-call checks: this runs for every line.
            record = _decode_json(line.decode("utf-8", "surrogatepass"))
        else:
            record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _BadLine(f"not JSON ({type(exc).__name__})") from exc
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {type(record).__name__}")
    tag = record.get("t")
    if tag == "frame":
        return _frame_of(record)
    if tag == "header":
        if record.get("format") != FORMAT:
            raise _BadLine(f"header of another format: {str(record.get('format'))[:40]!r}")
        version = record.get("v")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _BadLine("header has no version number")
        mono = record.get("mono")
        session = record.get("session")
        if session is not None and (type(session) is not str or not 0 < len(session) <= 128):
            raise _BadLine("header field 'session' is not a short string")
        return TraceHeader(
            gateway_id=str(record.get("gateway", "")),
            started=_time(record, "started"),
            mono=float(mono)
            if isinstance(mono, int | float) and not isinstance(mono, bool)
            else None,
            version=version,
            session=session,
        )
    if tag == "ack" or tag == "mode":
        key = "condition" if tag == "ack" else "mode"
        value = record.get(key)
        if type(value) is not str or not 0 < len(value) <= 256:
            raise _BadLine(f"field {key!r} is missing or not a short string")
        return TraceControl(tag, value, _time(record, "wall"))
    raise _BadLine(f"unknown record type {str(tag)[:20]!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_gzip(path: Path) -> bool:
    return path.suffix == ".gz"


def iter_lines(
    stream: IO[bytes], *, gzipped: bool, on_damage: Callable[[str], None]
) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, complete)``; a last line without its newline comes with ``complete=False``.

    gzip is decoded here, member after member, so a file cut off in the middle of a member (the
    recorder was killed) still yields everything before the cut, and a corrupt member ends the
    read with a report instead of an exception.
    """
    pending = b""
    decomp = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzipped else None
    started_member = False
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except OSError as exc:
            on_damage(f"read failed: {exc}")
            break
        if not chunk:
            break
        if decomp is not None:
            data = b""
            try:
                while chunk:
                    data += decomp.decompress(chunk)
                    started_member = True
                    if decomp.eof:
                        chunk = decomp.unused_data
                        decomp = zlib.decompressobj(zlib.MAX_WBITS | 16)
                        started_member = False
                    else:
                        chunk = b""
            except zlib.error as exc:
                pending += data
                on_damage(f"gzip data is corrupt ({exc}); the rest of the file is skipped")
                decomp = None
                break
            chunk = data
        pending += chunk
        if b"\n" in pending:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line, True
        if len(pending) > MAX_LINE_BYTES:
            yield pending[:200], False
            pending = b""
            on_damage("a line longer than 2 MiB; the rest of the file is skipped")
            return
    if decomp is not None and started_member and not decomp.eof:
        pending += decomp.flush()
        on_damage("gzip stream ends early (the file was cut off, e.g. by a crash)")
    if pending:
        yield pending, False


class TraceReader:
    """Iterate the headers and frames of one or more trace files, in order, skipping bad lines.

    ``on_problem`` hears of each skipped line as it happens; :attr:`stats` counts everything.
    """

    def __init__(
        self,
        *paths: str | Path,
        on_problem: Callable[[TraceProblem], None] | None = None,
    ) -> None:
        if not paths:
            raise TraceError("no trace file given")
        self.paths = [Path(p) for p in paths]
        self.stats = TraceStats()
        self._on_problem = on_problem
        self._done_bytes = 0
        self._stream: IO[bytes] | None = None
        self.total_bytes = 0
        for path in self.paths:
            try:
                self.total_bytes += path.stat().st_size
            except OSError as exc:
                raise TraceError(f"{path}: cannot read the trace: {exc.strerror or exc}") from exc

    @property
    def bytes_read(self) -> int:
        """Bytes of the files (as stored: compressed for gzip) consumed so far, for progress."""
        stream = self._stream
        if stream is None:
            return self._done_bytes
        try:
            return self._done_bytes + stream.tell()
        except (OSError, ValueError):
            return self._done_bytes

    def _problem(self, path: Path, line: int, reason: str) -> None:
        problem = TraceProblem(str(path), line, reason)
        self.stats.add_problem(problem)
        if self._on_problem is not None:
            self._on_problem(problem)

    def __iter__(self) -> Iterator[TraceItem]:
        for path in self.paths:
            yield from self._read(path)

    def frames(self) -> Iterator[RawFrame]:
        for item in self:
            if isinstance(item, RawFrame):
                yield item

    def inputs(self, *, sessions: bool = False) -> Iterator[TraceItem]:
        """Everything the rules were given, in order: frames, acknowledgements, mode changes;
        with ``sessions`` also the session headers, where the daemon (re)started, which a
        replay must reproduce (:class:`replay.engine.Replay` with ``restart``)."""
        for item in self:
            if sessions or not isinstance(item, TraceHeader):
                yield item

    def _read(self, path: Path) -> Iterator[TraceItem]:
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise TraceError(f"{path}: cannot read the trace: {exc.strerror or exc}") from exc
        number = 0
        supported = True
        self._stream = stream
        with stream:
            damage: list[str] = []
            for raw, complete in iter_lines(
                stream, gzipped=_is_gzip(path), on_damage=damage.append
            ):
                number += 1
                self.stats.lines += 1
                if damage:
                    for reason in damage:
                        self._problem(path, number, reason)
                    damage.clear()
                stripped = raw.strip()
                if not stripped:
                    if not complete:
                        continue
                    self._problem(path, number, "empty line")
                    continue
                try:
                    item = decode_line(stripped)
                except Exception as exc:
                    # decode_line raises ValueError by design; anything else is a bug that
                    # must still not stop a replay of weeks of data over one line.
                    reason = str(exc) if isinstance(exc, ValueError) else repr(exc)
                    if not complete:
                        reason = f"truncated last line ({reason}), probably cut off by a crash"
                    self._problem(path, number, reason)
                    continue
                if isinstance(item, TraceHeader):
                    if item.version != VERSION:
                        supported = False
                        self._problem(
                            path,
                            number,
                            f"session of trace format version {item.version}; this reader "
                            f"speaks version {VERSION}, so the session's frames are skipped",
                        )
                        continue
                    supported = True
                    self.stats.headers += 1
                    yield dataclasses.replace(item, line=number)
                    continue
                if not supported:
                    self.stats.skipped += 1
                    continue
                if isinstance(item, RawFrame):
                    self.stats.frames += 1
                yield item
            for reason in damage:
                self._problem(path, number + 1, reason)
            self._done_bytes += stream.tell()
            self._stream = None


def read_frames(*paths: str | Path) -> list[RawFrame]:
    """Every frame of the given traces (bad lines skipped): a convenience for tests and tools."""
    return list(TraceReader(*paths).frames())


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class TraceWriter:
    """Write one trace file: a header line, then a line per frame. Not thread-safe.

    ``open`` appends to an existing file safely (see the module docstring). :attr:`size` is the
    file's size on disk (compressed, for gzip), which the recorder rotates on.
    """

    def __init__(self, path: Path, raw: IO[bytes], stream: _Sink, size: int) -> None:
        self.path = path
        self._raw = raw
        self._stream = stream
        self._size = size
        self._written = 0
        self._unflushed = 0
        self.closed = False

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        gateway_id: str,
        started: datetime | None = None,
        mono: float | None = None,
        compresslevel: int = 6,
        session: str | None = None,
    ) -> TraceWriter:
        p = Path(path)
        try:
            if p.parent != Path():
                p.parent.mkdir(parents=True, exist_ok=True)
            existing = p.stat().st_size if p.exists() else 0
            if existing and _is_gzip(p):
                _repair_gzip(p)
            elif existing:
                _close_torn_line(p)
            raw = p.open("ab")
        except OSError as exc:
            raise TraceError(f"{p}: cannot write the trace: {exc.strerror or exc}") from exc
        stream: _Sink
        if _is_gzip(p):
            stream = gzip.GzipFile(
                filename="", mode="ab", fileobj=raw, compresslevel=compresslevel, mtime=0
            )
        else:
            stream = raw
        writer = cls(p, raw, stream, raw.tell())
        writer.write_raw(encode_header(gateway_id, started or datetime.now(UTC), mono, session))
        return writer

    @property
    def size(self) -> int:
        """Bytes on disk now (for gzip, what has been flushed so far)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self._size

    @property
    def written(self) -> int:
        """Uncompressed bytes written by this writer."""
        return self._written

    def write(self, item: RawFrame | TraceControl) -> None:
        self.write_raw(encode_frame(item) if isinstance(item, RawFrame) else encode_control(item))

    def write_raw(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except (OSError, ValueError) as exc:
            raise TraceError(f"{self.path}: cannot write the trace: {exc}") from exc
        self._written += len(data)
        self._unflushed += len(data)

    @property
    def estimated_size(self) -> int:
        """The size on disk once what was written is flushed (a guess of 4:1 for gzip)."""
        pending = self._unflushed // 4 if self._stream is not self._raw else self._unflushed
        return self.size + pending

    def flush(self, *, fsync: bool = False) -> None:
        """Push what was written to the file (a gzip sync point: readable after a crash)."""
        try:
            self._stream.flush()
            if self._stream is not self._raw:
                self._raw.flush()
            if fsync:
                os.fsync(self._raw.fileno())
            self._unflushed = 0
        except (OSError, ValueError) as exc:
            raise TraceError(f"{self.path}: cannot write the trace: {exc}") from exc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._stream is not self._raw:
                self._stream.close()
            self._raw.close()
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot close the trace: {exc}") from exc

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _close_torn_line(path: Path) -> None:
    """End a plain trace's torn last line with a newline, so new lines start clean."""
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")


def _repair_gzip(path: Path) -> None:
    """If a gzip trace ends in a cut-off member, rewrite it with the complete lines it holds.

    Appending a new member after a cut-off one would make everything after the cut unreadable.
    """
    damage: list[str] = []
    with path.open("rb") as f:
        lines = [
            line
            for line, complete in iter_lines(f, gzipped=True, on_damage=damage.append)
            if complete
        ]
    if not damage:
        return
    with (
        files.atomic_writer(path) as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz,
    ):
        for line in lines:
            gz.write(line + b"\n")
