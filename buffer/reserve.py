"""Disk space kept back for the alarm lane: a preallocated file beside the buffer.

When another file fills the disk, every SQLite write fails, and an alarm would have nowhere to
go. The reserve is a file of real, allocated blocks (``posix_fallocate``, not a sparse file)
that the buffer deletes only when a commit holding an alarm or a trouble finds the disk full;
the space it gives back is then the alarm lane's, because the buffer refuses telemetry until
the reserve could be made again (after dispatch acknowledged events and space came back).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

import structlog

from runtime.files import fsync_folder

__all__ = ["DEFAULT_RESERVE_BYTES", "SpaceReserve"]

log = structlog.get_logger(__name__)

#: Room for a few thousand alarms and the WAL pages their commits need.
DEFAULT_RESERVE_BYTES: Final = 2 * 2**20


class SpaceReserve:
    """A file of ``size`` allocated bytes at ``path``: made with :meth:`ensure`, given back
    to the disk with :meth:`release`. Neither raises: a reserve that cannot be made is logged
    and reported by :attr:`held`."""

    def __init__(self, path: Path, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a space reserve needs a positive size, got {size}")
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_blocks * 512 >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Make the reserve if it is not there; True if it is held afterwards."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_folder(self.path.parent)
        except OSError as exc:
            # A half-made reserve would hold space that nobody can use: give it back.
            with contextlib.suppress(OSError):
                self.path.unlink()
            log.warning("buffer_reserve_unavailable", path=str(self.path), error=str(exc))
            return False
        return True

    def release(self) -> bool:
        """Give the reserved space back to the disk; True if there was any to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("buffer_reserve_release_failed", path=str(self.path), error=str(exc))
            return False
        return True
