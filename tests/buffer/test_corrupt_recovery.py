"""A corrupt buffer file: every unsent event that can still be read is carried into the fresh
buffer before the old file is quarantined."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from buffer.store import EventBuffer
from contract.wire import EventKind
from tests.buffer.helpers import alarm, draft

PAD = "p" * 300


def _corrupt_one_leaf_of_events(path: Path) -> int:
    """Overwrite one middle leaf page of the events table with garbage; the rows it held."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = conn.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' "
            "ORDER BY pageno"
        ).fetchall()
    finally:
        conn.close()
    assert len(leaves) >= 5, "the test needs a table of several pages"
    pageno, cells = leaves[len(leaves) // 2]
    with path.open("r+b") as f:
        f.seek((pageno - 1) * page_size)
        f.write(os.urandom(page_size))
    return int(cells)


def test_a_corrupt_buffer_gives_up_only_the_unreadable_rows(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with EventBuffer.open(path, gateway_id="gw-1") as buffer:
        written = buffer.append(
            [alarm(f"btn-{i}", pad=PAD) for i in range(60)]
            + [draft(n=i, pad=PAD) for i in range(60)]
        )
        buffer.acknowledge([e.id for e in written[:5]])  # sent: not to be recovered
    lost = _corrupt_one_leaf_of_events(path)

    with EventBuffer.open(path, gateway_id="gw-1") as fresh:
        pending = fresh.pending(max_events=500, max_bytes=2**30)
        [report] = [e for e in pending if e.kind is EventKind.BUFFER_EVICTED]
        recovered = {e.id: e for e in pending if e.kind is not EventKind.BUFFER_EVICTED}
        originals = {e.id: e for e in written[5:]}
        assert set(recovered) <= set(originals)
        assert len(recovered) == len(originals) - lost
        for event_id, event in recovered.items():
            assert event == originals[event_id]
        assert report.payload["reason"] == "corrupt"
        assert report.payload["recovered"] == len(recovered)
        assert report.seq > max(e.seq for e in recovered.values())
        # The alarms recovered are open conditions again, as before the corruption.
        open_conditions = {row.condition for row in fresh.active_conditions()}
        assert {e.payload["condition"] for e in recovered.values() if e.kind.is_alarm} <= (
            open_conditions
        )
        # New events continue the sequence; nothing recovered is sent twice under a new seq.
        [after] = fresh.append([alarm("btn-new")])
        assert after.seq > report.seq
    assert list(tmp_path.glob("buffer.db.corrupt-*"))
