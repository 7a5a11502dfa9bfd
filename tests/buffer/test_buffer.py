from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from buffer.store import (
    SCHEMA_VERSION,
    BufferLocked,
    BufferSchemaTooNew,
    EventBuffer,
    EventBufferError,
)
from contract.wire import MAX_PAYLOAD_BYTES, AckStatus, EventAck, EventKind, Lane
from tests.buffer.helpers import T0, alarm, copy_as_killed, draft, later, trouble


@pytest.fixture
def buf(tmp_path: Path) -> EventBuffer:
    buffer = EventBuffer.open(tmp_path / "buffer.db", gateway_id="gw-1", clock=lambda: T0)
    yield buffer
    buffer.close()


def test_append_assigns_ids_and_consecutive_seqs(buf: EventBuffer) -> None:
    first = buf.append([draft(), draft()])
    second = buf.append([alarm()])
    assert [e.seq for e in first + second] == [0, 1, 2]
    assert len({e.id for e in first + second}) == 3
    assert all(e.gateway_id == "gw-1" for e in first + second)
    assert second[0].priority == EventKind.SOS.priority


def test_pending_goes_by_lane_then_seq(buf: EventBuffer) -> None:
    buf.append([draft(), trouble(), alarm("a")])
    buf.append([draft(), alarm("b"), trouble("s2"), alarm("a", restore=True)])
    kinds = [(e.lane, e.seq) for e in buf.pending()]
    assert kinds == [
        (Lane.ALARM, 2),
        (Lane.ALARM, 4),
        (Lane.ALARM, 6),
        (Lane.TROUBLE, 1),
        (Lane.TROUBLE, 5),
        (Lane.TELEMETRY, 0),
        (Lane.TELEMETRY, 3),
    ]


def test_pending_bounded_by_count_and_bytes(buf: EventBuffer) -> None:
    buf.append([draft(text="x" * 1000) for _ in range(20)])
    assert len(buf.pending(max_events=7)) == 7
    by_bytes = buf.pending(max_events=500, max_bytes=5000)
    assert 3 <= len(by_bytes) <= 4
    # The first event always fits, whatever its size.
    assert len(buf.pending(max_events=500, max_bytes=10)) == 1


def test_acknowledge_removes_only_acked_ids(buf: EventBuffer) -> None:
    events = buf.append([draft(), draft(), alarm()])
    acked = buf.acknowledge([EventAck(id=events[0].id, status=AckStatus.STORED)])
    assert acked == 1
    assert [e.id for e in buf.pending()] == [events[2].id, events[1].id]
    assert buf.acknowledge([events[0].id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"]) == 0
    stats = buf.stats(later(60))
    assert stats.depth == {Lane.ALARM: 1, Lane.TROUBLE: 0, Lane.TELEMETRY: 1}
    assert stats.oldest_unsent_age_s == 60


def test_seq_never_goes_back_after_everything_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        events = buffer.append([draft() for _ in range(5)])
        buffer.acknowledge([e.id for e in events])
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        assert buffer.pending() == []
        assert buffer.append([draft()])[0].seq == 5


def test_alarm_transactions_use_full_sync(buf: EventBuffer) -> None:
    buf.append([draft()])
    assert buf._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    buf.append([draft(), alarm()])
    assert buf._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert buf._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_group_append_isolates_a_bad_group(buf: EventBuffer) -> None:
    bad = draft()
    object.__setattr__(bad, "at", "yesterday")
    results = buf.append_groups([[draft()], [bad], [alarm()]])
    assert isinstance(results[1], EventBufferError)
    assert [len(r) for r in (results[0], results[2]) if isinstance(r, list)] == [1, 1]
    assert buf.commits == 1
    assert {e.seq for e in buf.pending()} == {0, 1}


def test_oversized_payload_is_shrunk_not_refused(buf: EventBuffer) -> None:
    with capture_logs() as logs:
        [event] = buf.append([alarm(note="x" * (MAX_PAYLOAD_BYTES + 10))])
    assert event.payload["truncated"] is True
    assert event.payload["condition"] == "sos:btn-1"
    assert any(entry["event"] == "event_payload_truncated" for entry in logs)
    assert buf.pending()[0].id == event.id


def test_bad_device_id_is_sanitised(buf: EventBuffer) -> None:
    [event] = buf.append([draft(device_id="kitchen smoke/1")])
    assert event.device_id == "kitchen_smoke_1"


def test_active_conditions_follow_the_latest_event(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        events = buffer.append([alarm("a"), alarm("b"), trouble("s"), draft()])
        buffer.append([alarm("a", restore=True)])
        # Delivery does not close a condition: only a restore does.
        buffer.acknowledge([e.id for e in events])
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        active = buffer.active_conditions()
    assert [(r.condition, r.kind, r.device_id) for r in active] == [
        ("sos:b", EventKind.SOS, "b"),
        ("low_battery:s", EventKind.LOW_BATTERY, "s"),
    ]


def test_second_process_cannot_open_the_same_buffer(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with (
        EventBuffer.open(path, gateway_id="gw-1"),
        pytest.raises(BufferLocked, match="in use by another process"),
    ):
        EventBuffer.open(path, gateway_id="gw-1")
    EventBuffer.open(path, gateway_id="gw-1").close()


def test_closed_buffer_refuses_work(tmp_path: Path) -> None:
    buffer = EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1")
    buffer.close()
    buffer.close()
    with pytest.raises(EventBufferError, match="closed"):
        buffer.append([draft()])


def test_schema_version_and_newer_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    EventBuffer.open(path, gateway_id="gw-1").close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BufferSchemaTooNew, match="newer gatewayd"):
        EventBuffer.open(path, gateway_id="gw-1")
    # Refused, not quarantined: the file is still where it was.
    assert path.exists()
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_corrupt_file_is_quarantined_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    path.write_bytes(b"this is not an SQLite database, it is garbage" * 100)
    with capture_logs() as logs:
        buffer = EventBuffer.open(path, gateway_id="gw-1", clock=lambda: T0)
    try:
        moved = list(tmp_path.glob("buffer.db.corrupt-*"))
        assert [p.name for p in moved] == ["buffer.db.corrupt-20261129T083000.000000Z"]
        assert moved[0].read_bytes().startswith(b"this is not")
        assert any(
            e["event"] == "buffer_corrupt_quarantined" and e["log_level"] == "error" for e in logs
        )
        stats = buffer.stats(T0)
        assert stats.quarantined_files == tuple(moved)
        [report] = buffer.pending()
        assert report.kind is EventKind.BUFFER_EVICTED
        assert report.payload["reason"] == "corrupt"
        assert report.payload["quarantined_file"] == moved[0].name
    finally:
        buffer.close()


def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        written = {e.id for e in buffer.append([draft(text="y" * 500) for _ in range(400)])}
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    # Scribble over an interior page (not the header): only an integrity check notices.
    data[5 * 4096 : 6 * 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        assert len(buffer.stats(T0).quarantined_files) == 1
        # The report first (a trouble), then the telemetry that could still be read.
        [report, *recovered] = buffer.pending(max_events=500, max_bytes=2**30)
        assert report.kind is EventKind.BUFFER_EVICTED
        assert report.payload["reason"] == "corrupt"
        assert len(recovered) == report.payload["recovered"]
        assert {e.id for e in recovered} <= written


def test_reopen_after_kill_keeps_every_committed_event(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    buffer = EventBuffer.open(path, gateway_id="gw-1")
    events = buffer.append([draft(), alarm()])
    buffer.acknowledge([events[0].id])
    more = buffer.append([trouble()])
    copy = copy_as_killed(path, tmp_path / "after-kill" / "live.db")
    buffer.close()
    with EventBuffer.open(copy, gateway_id="gw-1") as reopened:
        assert [e.id for e in reopened.pending()] == [events[1].id, more[0].id]
        assert reopened.append([draft()])[0].seq == 3


def test_inspectable_with_the_sqlite_utils_cli(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        buffer.append([alarm(), draft()])
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sqlite_utils",
                "query",
                str(path),
                "select kind, lane, json_extract(payload, '$.condition') as condition "
                "from events order by seq",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    assert json.loads(out) == [
        {"kind": "sos", "lane": 0, "condition": "sos:btn-1"},
        {"kind": "motion", "lane": 2, "condition": None},
    ]


# -- disk budget ----------------------------------------------------------------------------

BUDGET = 256 * 1024


def test_budget_evicts_oldest_telemetry_and_reports_it(tmp_path: Path) -> None:
    with (
        capture_logs() as logs,
        EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1", disk_budget_bytes=BUDGET) as buffer,
    ):
        alarms = buffer.append([alarm(f"a{i}") for i in range(20)])
        for i in range(60):
            buffer.append([draft(at=later(i), n=i, text="t" * 400) for _ in range(20)])
        stats = buffer.stats(later(100))
        assert stats.used_bytes <= BUDGET
        assert stats.evicted[Lane.TELEMETRY] > 0
        assert stats.evicted[Lane.ALARM] == 0
        pending = buffer.pending(max_events=1000, max_bytes=10**9)
        assert [e.id for e in pending[:20]] == [e.id for e in alarms]
        telemetry = [e for e in pending if e.lane is Lane.TELEMETRY]
        # The oldest went: what is left is the newest, in order, up to the last appended.
        assert telemetry[-1].payload["n"] == 59
        assert telemetry[0].payload["n"] > 0
        assert [e.seq for e in telemetry] == sorted(e.seq for e in telemetry)
        reports = [e for e in pending if e.kind is EventKind.BUFFER_EVICTED]
        assert reports
        assert sum(r.payload["evicted"]["telemetry"] for r in reports) == stats.evicted_total
        rounds = buffer.db["evictions"].count
        assert rounds == len(reports)
    assert any(e["event"] == "buffer_evicted" and e["log_level"] == "error" for e in logs)


def test_budget_evicts_troubles_after_telemetry_and_never_alarms(tmp_path: Path) -> None:
    with EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1", disk_budget_bytes=BUDGET) as buf:
        buf.append([draft(text="t" * 400) for _ in range(50)])
        for i in range(250):
            buf.append([alarm(f"a{i}", text="a" * 300), trouble(f"s{i}"), trouble(f"s{i}")])
        stats = buf.stats(T0)
        assert stats.evicted[Lane.TELEMETRY] == 50
        assert stats.evicted[Lane.TROUBLE] > 0
        assert stats.evicted[Lane.ALARM] == 0
        assert stats.depth[Lane.ALARM] == 250
        pending = buf.pending(max_events=1000, max_bytes=10**9)
        assert sum(e.kind is EventKind.SOS for e in pending) == 250
        # Eviction reports are themselves never evicted.
        reports = [e for e in pending if e.kind is EventKind.BUFFER_EVICTED]
        assert len(reports) == buf.db["evictions"].count


def test_budget_full_of_alarms_keeps_them_all(tmp_path: Path) -> None:
    with (
        capture_logs() as logs,
        EventBuffer.open(tmp_path / "b.db", gateway_id="gw-1", disk_budget_bytes=128 * 1024) as buf,
    ):
        for i in range(300):
            buf.append([alarm(f"a{i}", text="a" * 400)])
        assert buf.stats(T0).depth[Lane.ALARM] == 300
        assert buf.stats(T0).evicted_total == 0
    assert any(e["event"] == "buffer_over_budget" for e in logs)


def test_eviction_counts_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with EventBuffer.open(path, gateway_id="gw-1", disk_budget_bytes=BUDGET) as buf:
        for _ in range(40):
            buf.append([draft(text="t" * 400) for _ in range(20)])
        evicted = buf.stats(T0).evicted
    assert evicted[Lane.TELEMETRY] > 0
    with EventBuffer.open(path, gateway_id="gw-1", disk_budget_bytes=BUDGET) as buf:
        assert buf.stats(T0 + timedelta(seconds=1)).evicted == evicted


def test_a_new_migration_brings_an_old_file_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from buffer import files as bufferfile

    path = tmp_path / "b.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        [event] = buffer.append([alarm()])
    step = "ALTER TABLE events ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated';"
    monkeypatch.setattr(bufferfile, "MIGRATIONS", (*bufferfile.MIGRATIONS, step))
    monkeypatch.setattr(bufferfile, "SCHEMA_VERSION", len(bufferfile.MIGRATIONS))
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        assert buffer.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert [e.id for e in buffer.pending()] == [event.id]
        assert [r["note"] for r in buffer.db.query("select note from events")] == ["migrated"]


def test_a_second_corruption_never_overwrites_the_first(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    for garbage in (b"first" * 400, b"second" * 400):
        path.write_bytes(garbage)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        EventBuffer.open(path, gateway_id="gw-1", clock=lambda: T0).close()
    moved = sorted(tmp_path.glob("buffer.db.corrupt-*[!lm]"))
    assert sorted(p.read_bytes()[:5] for p in moved) == [b"first", b"secon"]


def test_walk_test_events_open_no_condition(buf: EventBuffer) -> None:
    test_alarm = alarm("t")
    object.__setattr__(test_alarm, "test", True)
    buf.append([test_alarm, alarm("real")])
    assert [tuple(r)[:3] for r in buf.active_conditions()] == [("sos:real", EventKind.SOS, "real")]
    assert buf.active_conditions()[0].at is not None


def test_an_unreadable_row_is_set_aside_not_blocking(buf: EventBuffer) -> None:
    events = buf.append([alarm("a"), alarm("b")])
    buf.db.execute("UPDATE events SET kind = 'no-such-kind' WHERE id = ?", [events[0].id])
    assert [e.id for e in buf.pending()] == [events[1].id]
    assert buf.stats(T0).quarantined_events == 1
    [row] = buf.db.query("select id, reason from quarantine")
    assert row["id"] == events[0].id
    assert "unreadable" in row["reason"]
