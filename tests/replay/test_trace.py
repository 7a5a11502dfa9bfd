"""The trace format: round trips, sessions, crash damage, and bad lines reported by number."""

from __future__ import annotations

import contextlib
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.wire import RawFrame
from replay.trace import (
    FORMAT,
    VERSION,
    TraceControl,
    TraceError,
    TraceHeader,
    TraceReader,
    TraceWriter,
    decode_line,
    encode_frame,
    read_frames,
)

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def frame(i: int, payload: bytes = b'{"occupancy":true}', **kw: object) -> RawFrame:
    return RawFrame(
        driver=str(kw.pop("driver", "zigbee")),
        source=str(kw.pop("source", "zigbee2mqtt/motion-hall")),
        payload=payload,
        wall_time=T0 + timedelta(seconds=i, microseconds=250_000),
        mono_time=1000.0 + i + 0.25,
        **kw,  # type: ignore[arg-type]
    )


def sample_frames(n: int = 50) -> list[RawFrame]:
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append(frame(i, bytes([0xFF, 0x00, i % 256, 0x0A])))  # not UTF-8: base64
        elif i % 7 == 0:
            out.append(frame(i, b"down:broker gone", kind="link", source=""))
        elif i % 3 == 0:
            out.append(frame(i, '{"name":"Küche ☕\\n"}'.encode(), retained=True))
        else:
            out.append(frame(i))
    return out


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    frames = sample_frames()
    with TraceWriter.open(tmp_path / name, gateway_id="gw-1", started=T0, mono=999.0) as w:
        for f in frames:
            w.write(f)
    reader = TraceReader(tmp_path / name)
    items = list(reader)
    assert isinstance(items[0], TraceHeader)
    assert items[0].gateway_id == "gw-1"
    assert items[0].started == T0
    assert items[0].line == 1
    assert items[1:] == frames
    assert reader.stats.frames == len(frames)
    assert reader.stats.skipped == 0
    if name.endswith(".gz"):
        # Really gzip, readable by any gzip tool.
        assert gzip.decompress((tmp_path / name).read_bytes()).count(b"\n") == len(frames) + 1


def test_line_format_is_documented_shape() -> None:
    text = json.loads(encode_frame(frame(1, b'{"smoke":true}', retained=True)))
    assert text == {
        "t": "frame",
        "wall": "2026-03-02T05:00:01.250000Z",
        "mono": 1001.25,
        "driver": "zigbee",
        "source": "zigbee2mqtt/motion-hall",
        "kind": "data",
        "retained": True,
        "text": '{"smoke":true}',
    }
    binary = json.loads(encode_frame(frame(1, b"\xff\x00")))
    assert binary["b64"] == "/wA="
    assert "text" not in binary


def test_header_line(tmp_path: Path) -> None:
    with TraceWriter.open(tmp_path / "t.jsonl", gateway_id="gw-9", started=T0):
        pass
    header = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert header["t"] == "header"
    assert header["format"] == FORMAT
    assert header["v"] == VERSION
    assert header["gateway"] == "gw-9"
    assert header["started"] == "2026-03-02T05:00:00Z"


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_appending_sessions_keeps_both(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    frames = sample_frames(20)
    with TraceWriter.open(path, gateway_id="gw-1") as w:
        for f in frames[:10]:
            w.write(f)
    with TraceWriter.open(path, gateway_id="gw-1") as w:
        for f in frames[10:]:
            w.write(f)
    reader = TraceReader(path)
    items = list(reader)
    assert reader.stats.headers == 2
    assert [i for i in items if isinstance(i, RawFrame)] == frames
    assert reader.stats.skipped == 0


def test_torn_last_line_is_reported_and_append_after_crash_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    frames = sample_frames(30)
    with TraceWriter.open(path, gateway_id="gw-1") as w:
        for f in frames:
            w.write(f)
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # a crash in the middle of the last line
    reader = TraceReader(path)
    assert list(reader.frames()) == frames[:-1]
    [problem] = reader.stats.problems
    assert problem.line == 31  # header + 30 frames
    assert "truncated last line" in problem.reason

    with TraceWriter.open(path, gateway_id="gw-1") as w:
        w.write(frames[0])
    reader = TraceReader(path)
    got = list(reader.frames())
    assert got == [*frames[:-1], frames[0]]
    # The torn line is still there (evidence), reported once, and everything after it is read.
    assert [p.line for p in reader.stats.problems] == [31]
    assert reader.stats.headers == 2


def test_cut_off_gzip_yields_what_is_there_and_is_repaired_before_appending(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl.gz"
    frames = sample_frames(400)
    writer = TraceWriter.open(path, gateway_id="gw-1")
    for f in frames[:300]:
        writer.write(f)
    writer.flush()  # a sync point, as the recorder makes every second
    for f in frames[300:]:
        writer.write(f)
    writer.flush()
    # Killed now: the file is as it is at this instant, the gzip member without its trailer.
    at_kill = path.read_bytes()
    writer.close()
    path.write_bytes(at_kill)
    reader = TraceReader(path)
    assert list(reader.frames()) == frames  # everything up to the last sync point
    assert any("ends early" in p.reason for p in reader.stats.problems)

    with TraceWriter.open(path, gateway_id="gw-1") as w:
        w.write(frames[0])
    reader = TraceReader(path)
    again = list(reader.frames())
    assert again[-1] == frames[0]
    assert again[:300] == frames[:300]
    assert not any("ends early" in p.reason for p in reader.stats.problems)


def test_bad_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = [encode_frame(f) for f in sample_frames(6)]
    bad = {
        3: b"this is not json\n",
        5: b'{"t":"frame","driver":"zigbee"}\n',
        6: b"[1,2,3]\n",
        8: b'{"t":"mystery"}\n',
        9: b"\n",
        10: b'{"t":"frame","wall":"yesterday","mono":1,"driver":"z","source":"s","text":""}\n',
        11: b'{"t":"frame","wall":"2026-03-02T05:00:00","mono":1,"driver":"z","source":"s",'
        b'"text":""}\n',
        12: b'{"t":"frame","wall":"2026-03-02T05:00:00Z","mono":1,"driver":"z","source":"s",'
        b'"b64":"!!"}\n',
    }
    lines: list[bytes] = []
    it = iter(good)
    for number in range(1, 16):
        lines.append(bad.get(number) or next(it, b""))
    path.write_bytes(b"".join(line for line in lines if line))
    reader = TraceReader(path)
    frames = list(reader.frames())
    assert frames == sample_frames(6)
    assert [p.line for p in reader.stats.problems] == sorted(bad)
    assert reader.stats.skipped == len(bad)
    by_line = {p.line: p.reason for p in reader.stats.problems}
    assert "not JSON" in by_line[3]
    assert "'wall'" in by_line[5] or "'mono'" in by_line[5] or "'source'" in by_line[5]
    assert "time zone" in by_line[11]
    assert "base64" in by_line[12]
    assert str(reader.stats.problems[0]).startswith(f"{path}:3: ")


def test_session_of_a_newer_version_is_skipped_with_a_report(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter.open(path, gateway_id="gw-1") as w:
        w.write(frame(1))
    future = {
        "t": "header",
        "format": FORMAT,
        "v": VERSION + 1,
        "gateway": "gw-1",
        "started": "2026-03-02T05:00:00Z",
    }
    with path.open("ab") as f:
        f.write(json.dumps(future).encode() + b"\n")
        f.write(encode_frame(frame(2)))
    with TraceWriter.open(path, gateway_id="gw-1") as w:
        w.write(frame(3))
    reader = TraceReader(path)
    assert list(reader.frames()) == [frame(1), frame(3)]
    [problem] = reader.stats.problems
    assert problem.line == 3
    assert f"version {VERSION + 1}" in problem.reason


def test_several_files_are_read_in_order(tmp_path: Path) -> None:
    frames = sample_frames(10)
    for i, name in enumerate(("a.jsonl", "b.jsonl.gz")):
        with TraceWriter.open(tmp_path / name, gateway_id="gw") as w:
            for f in frames[i * 5 : i * 5 + 5]:
                w.write(f)
    assert read_frames(tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz") == frames


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        TraceReader(tmp_path / "nope.jsonl")


def test_a_gz_name_on_plain_text_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(encode_frame(frame(1)))
    reader = TraceReader(path)
    assert list(reader) == []
    assert any("gzip" in p.reason for p in reader.stats.problems)


# -- properties ---------------------------------------------------------------------------

frames_st = st.builds(
    RawFrame,
    driver=st.from_regex(r"[A-Za-z0-9_.:@\-]{1,20}", fullmatch=True),
    source=st.text(max_size=60),
    payload=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    kind=st.sampled_from(["data", "link"]),
    retained=st.booleans(),
    wall_time=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    mono_time=st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@given(st.lists(frames_st, max_size=20), st.booleans())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_frames_round_trip(tmp_path: Path, frames: list[RawFrame], gz: bool) -> None:
    path = tmp_path / ("t.jsonl.gz" if gz else "t.jsonl")
    path.unlink(missing_ok=True)
    with TraceWriter.open(path, gateway_id="gw") as w:
        for f in frames:
            w.write(f)
    reader = TraceReader(path)
    assert list(reader.frames()) == frames
    assert reader.stats.skipped == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"t": st.sampled_from(["frame", "header", "ack", "mode", "x"])},
    optional={
        "wall": st.text(max_size=30) | st.just("2026-03-02T05:00:00Z") | json_values,
        "started": st.just("2026-03-02T05:00:00+01:00") | json_values,
        "mono": json_values,
        "driver": st.text(max_size=140) | json_values,
        "source": st.text(max_size=600) | json_values,
        "kind": st.sampled_from(["data", "link", "other"]) | json_values,
        "retained": json_values,
        "text": st.text(max_size=30) | json_values,
        "b64": st.text(max_size=30) | json_values,
        "format": st.just(FORMAT) | json_values,
        "v": st.integers() | json_values,
        "condition": st.text(max_size=300) | json_values,
        "mode": st.sampled_from(["away", ""]) | json_values,
    },
)
any_line = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode())
    | frame_like.map(lambda v: json.dumps(v).encode())
)


@given(st.lists(any_line, max_size=30), st.booleans())
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_arbitrary_lines_never_raise(
    tmp_path: Path, lines: list[bytes], final_newline: bool
) -> None:
    path = tmp_path / "t.jsonl"
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.write_bytes(data)
    reader = TraceReader(path)
    items = list(reader)
    for item in items:
        assert isinstance(item, RawFrame | TraceHeader | TraceControl)
    assert len(items) <= reader.stats.lines
    assert reader.stats.frames == sum(isinstance(i, RawFrame) for i in items)
    for line in lines:
        with contextlib.suppress(ValueError):
            decode_line(line)


@given(st.binary(max_size=2000))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_arbitrary_bytes_as_gzip_never_raise(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(data)[: len(data) // 2 + 10] + data[:50])
    list(TraceReader(path))


def test_progress_counts_bytes_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter.open(path, gateway_id="gw") as w:
        for i in range(2000):
            w.write(frame(i))
    reader = TraceReader(path)
    assert reader.bytes_read == 0
    seen = []
    for i, _ in enumerate(reader.frames()):
        if i % 500 == 0:
            seen.append(reader.bytes_read)
    assert seen == sorted(seen)
    assert 0 < seen[1] < reader.total_bytes
    assert reader.bytes_read == reader.total_bytes == path.stat().st_size


def test_acknowledgements_and_mode_changes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    items = [
        frame(1),
        TraceControl("ack", "smoke:smoke-kitchen", T0 + timedelta(seconds=2)),
        TraceControl("mode", "away", T0 + timedelta(seconds=3)),
        frame(4),
    ]
    with TraceWriter.open(path, gateway_id="gw") as w:
        for item in items:
            w.write(item)
    reader = TraceReader(path)
    assert list(reader.inputs()) == items
    assert list(TraceReader(path).frames()) == [frame(1), frame(4)]
    assert reader.stats.frames == 2
    assert decode_line(b'{"t":"ack","wall":"2026-03-02T05:00:00Z","condition":"sos:x"}') == (
        TraceControl("ack", "sos:x", T0)
    )
    with pytest.raises(ValueError, match="'mode'"):
        decode_line(b'{"t":"mode","wall":"2026-03-02T05:00:00Z"}')
