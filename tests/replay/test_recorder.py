"""The recorder: a tap that never blocks, flushed every second and at close, bounded on disk."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.wire import RawFrame
from replay.recorder import Recorder, rotated_path
from replay.trace import TraceError, TraceReader, read_frames
from tests.fixtures.waiting import wait_until

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def frame(i: int, size: int = 20) -> RawFrame:
    return RawFrame(
        driver="zigbee",
        source="zigbee2mqtt/motion-hall",
        payload=(f'{{"n":{i},"pad":"' + "x" * size + '"}').encode(),
        wall_time=T0 + timedelta(milliseconds=i),
        mono_time=float(i),
    )


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
def test_frames_reach_the_file_within_the_flush_interval(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    recorder = Recorder.open(path, gateway_id="gw-1", flush_interval=0.2)
    try:
        frames = [frame(i) for i in range(100)]
        for f in frames:
            recorder.tap(f)
        # Not closed: a reader sees the frames anyway (gzip: a sync point per flush).
        wait_until(
            lambda: len(read_frames(path)), 5, f"100 frames in {path}", check=lambda n: n == 100
        )
        assert read_frames(path) == frames
    finally:
        recorder.close()
    assert recorder.stats.written == 100
    assert recorder.stats.dropped == 0


def test_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = Recorder.open(path, gateway_id="gw-1", flush_interval=3600)
    frames = [frame(i) for i in range(1000)]
    for f in frames:
        recorder.tap(f)
    recorder.close()
    assert read_frames(path) == frames
    recorder.close()  # idempotent
    recorder.tap(frame(1))  # after close: counted as dropped, no exception
    assert recorder.stats.dropped == 1


def test_tap_from_many_threads_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = Recorder.open(path, gateway_id="gw-1", flush_interval=0.05)

    def produce(offset: int) -> None:
        for i in range(2000):
            recorder.tap(frame(offset + i))

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    got = read_frames(path)
    assert len(got) == 8000
    assert {f.mono_time for f in got} == {
        float(k * 10_000 + i) for k in range(4) for i in range(2000)
    }


def test_restart_appends_a_new_session(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    for run in range(3):
        with Recorder.open(path, gateway_id="gw-1") as recorder:
            recorder.tap(frame(run))
    reader = TraceReader(path)
    assert [f.mono_time for f in reader.frames()] == [0.0, 1.0, 2.0]
    assert reader.stats.headers == 3


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
def test_rotation_bounds_the_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    recorder = Recorder.open(path, gateway_id="gw-1", max_bytes=8192, keep=2, flush_interval=0.05)
    frames = [frame(i, size=200 + (i * 7919) % 300) for i in range(3000)]
    for i, f in enumerate(frames):
        recorder.tap(f)
        if i % 100 == 99:
            recorder.flush()
    recorder.close()
    files = sorted(tmp_path.iterdir())
    assert files == sorted([path, rotated_path(path, 1), rotated_path(path, 2)])
    for f in files:
        # A batch may overshoot the bound a little before the size is looked at.
        assert f.stat().st_size < 8192 + 2048
    assert recorder.stats.rotations >= 3
    # The newest frames are kept, oldest file first, each file a complete trace of its own.
    kept = read_frames(rotated_path(path, 2), rotated_path(path, 1), path)
    assert kept == frames[-len(kept) :]
    for f in files:
        assert TraceReader(f).stats.skipped == 0


def test_rotated_names() -> None:
    assert rotated_path(Path("a/trace.jsonl.gz"), 1) == Path("a/trace.1.jsonl.gz")
    assert rotated_path(Path("trace.jsonl"), 3) == Path("trace.3.jsonl")
    assert rotated_path(Path("trace.log"), 2) == Path("trace.log.2")


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    recorder = Recorder.open(
        tmp_path / "rec.jsonl", gateway_id="gw", max_pending=10, flush_interval=3600
    )
    try:
        for i in range(25):
            recorder.tap(frame(i))
        assert recorder.stats.dropped == 15
    finally:
        recorder.close()
    assert len(read_frames(tmp_path / "rec.jsonl")) == 10


def test_unopenable_path_is_an_error_at_open(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TraceError, match="cannot write"):
        Recorder.open(tmp_path / "file" / "rec.jsonl", gateway_id="gw")


def test_disk_trouble_later_never_raises_and_recording_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    path = folder / "rec.jsonl"
    recorder = Recorder.open(path, gateway_id="gw", flush_interval=3600, max_bytes=4096, keep=1)
    try:
        recorder.tap(frame(0))
        recorder.flush()
        # The folder vanishes and a file takes its place: the next rotation cannot open a file.
        path.unlink()
        folder.rmdir()
        folder.write_text("in the way")
        for i in range(1, 200):
            recorder.tap(frame(i, size=100))
        recorder.flush()  # must not raise
        assert recorder.stats.write_errors >= 1
        assert recorder.stats.dropped > 0
        folder.unlink()
        folder.mkdir()
        recorder.tap(frame(999))
        recorder.flush()
    finally:
        recorder.close()
    assert frame(999) in read_frames(*sorted(folder.iterdir()))


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Recorder.open(tmp_path / "r.jsonl", max_bytes=10)
    with pytest.raises(ValueError, match="flush_interval"):
        Recorder.open(tmp_path / "r.jsonl", flush_interval=0)


def test_from_config_follows_the_record_section(tmp_path: Path) -> None:
    from contract.home import parse_config

    base = f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path / "state"}"\n'
    assert Recorder.from_config(parse_config(base)) is None
    on = Recorder.from_config(parse_config(base + "[record]\nenabled = true\n"))
    assert on is not None
    on.tap(frame(1))
    on.close()
    assert read_frames(tmp_path / "state" / "traces" / "trace.jsonl.gz") == [frame(1)]
    path = tmp_path / "elsewhere.jsonl"
    chosen = Recorder.from_config(
        parse_config(base + f'[record]\nenabled = true\npath = "{path}"\n')
    )
    assert chosen is not None
    chosen.close()
    assert len(list(TraceReader(path))) == 1  # the session's header
    (tmp_path / "blocked").write_text("")
    blocked = parse_config(
        base + f'[record]\nenabled = true\npath = "{tmp_path}/blocked/t.jsonl"\n'
    )
    assert Recorder.from_config(blocked) is None  # logged; the gateway runs without recording


def test_an_idle_recorder_does_not_grow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    recorder = Recorder.open(path, gateway_id="gw", flush_interval=0.02)
    recorder.tap(frame(1))
    recorder.flush()
    size = path.stat().st_size
    time.sleep(0.3)  # some fifteen idle flush rounds
    assert path.stat().st_size == size
    recorder.close()


def test_acknowledgements_and_mode_changes_are_recorded_in_order(tmp_path: Path) -> None:
    from replay.trace import TraceControl

    path = tmp_path / "rec.jsonl"
    recorder = Recorder.open(path, gateway_id="gw")
    recorder.tap(frame(1))
    recorder.note_ack("smoke:smoke-kitchen", T0)
    recorder.note_mode("away", T0 + timedelta(seconds=1))
    recorder.tap(frame(2))
    recorder.close()
    assert list(TraceReader(path).inputs()) == [
        frame(1),
        TraceControl("ack", "smoke:smoke-kitchen", T0),
        TraceControl("mode", "away", T0 + timedelta(seconds=1)),
        frame(2),
    ]
