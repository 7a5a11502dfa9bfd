"""Kill a real process that is writing to the buffer, then reopen: nothing it was told is lost."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from buffer.store import EventBuffer
from tests.buffer.helpers import draft
from tests.fixtures.procs import REPO_ROOT, module_cmd, project_env

# A line the writer printed whole (the last one may be cut by the kill; logs are other lines).
LINE = re.compile(r"^(\d+) ([0-9A-HJKMNP-TV-Z]{26})$")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("after", [300, 2500])
def test_sigkill_mid_stream_loses_nothing_that_was_returned(
    tmp_path: Path, mode: str, after: int
) -> None:
    path = tmp_path / "buffer.db"
    proc = subprocess.Popen(
        module_cmd("tests.buffer.crash_writer", str(path), mode),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=project_env(),
        cwd=REPO_ROOT,
        text=True,
    )
    returned: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := LINE.match(line.strip()):
                returned[m[2]] = int(m[1])
            if len(returned) >= after:
                break
        # Killed while it is still appending.
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in rest.splitlines():
        if m := LINE.match(line):
            returned[m[2]] = int(m[1])
    assert proc.returncode == -signal.SIGKILL
    assert len(returned) >= after

    with EventBuffer.open(path, gateway_id="gw-crash") as buffer:
        stored = {}
        while batch := buffer.pending(max_events=1000, max_bytes=2**30):
            stored.update({e.id: e.seq for e in batch})
            buffer.acknowledge([e.id for e in batch])
        missing = {i: s for i, s in returned.items() if stored.get(i) != s}
        assert not missing, f"{len(missing)} returned events are gone or changed"
        # Seqs are gap-free from 0 (nothing was acknowledged before the kill) and continue.
        assert sorted(stored.values()) == list(range(len(stored)))
        [event] = buffer.append([draft()])
        assert event.seq == len(stored)
