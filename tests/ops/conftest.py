"""Fixtures of the operations tests: short socket paths (sun_path holds 107 bytes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A fresh directory with a short path, for Unix sockets."""
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Keep the server's log lines out of the command output CliRunner captures."""
    import structlog

    with structlog.testing.capture_logs():
        yield
