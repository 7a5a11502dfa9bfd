"""`dispatchd serve` speaks the systemd notify protocol (its unit is Type=notify)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.fixtures.broker import free_port
from tests.fixtures.gateway import NotifyListener
from tests.fixtures.procs import module_cmd, project_env
from tests.fixtures.waiting import wait_until


def test_ready_watchdog_and_stopping(tmp_path: Path, notify_listener: NotifyListener) -> None:
    db = f"sqlite:///{tmp_path / 'dispatch.db'}"
    proc = subprocess.Popen(
        module_cmd("dispatch", "serve", "--create", "--db", db, "--port", str(free_port())),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=project_env(NOTIFY_SOCKET=notify_listener.path, WATCHDOG_USEC="1000000"),
    )
    try:
        wait_until(lambda: notify_listener.seen("READY", "1"), 30)
        wait_until(lambda: notify_listener.seen("WATCHDOG", "1"), 5)
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the captured SIGTERM once it has shut down cleanly; systemd counts
        # an exit by SIGTERM after a stop request as a clean stop.
        assert proc.wait(15) in (0, -signal.SIGTERM)
        assert notify_listener.seen("STOPPING", "1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
