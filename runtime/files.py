"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The content goes to a temporary file in the target's own folder (a rename is atomic only within
one file system), is fsync'd, renamed over the target with :func:`os.replace`, and the folder
is fsync'd so the rename itself survives a power cut. On any failure the temporary file is
removed and the target is untouched.

Mode and ownership are the caller's choice: an explicit ``mode`` (a credential is 0600), or the
replaced file's mode; ``keep_owner`` gives the new file the replaced file's owner and group (a
config that root edits and the service user reads must stay readable by it). ``backup`` keeps
the replaced file as ``<name>.bak``: it is hard-linked, not moved, so the target never
disappears, not even for an instant.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "backup_path", "fsync_folder", "write_atomically"]

#: A new file that gets no explicit mode is private, as :func:`tempfile.mkstemp` makes it.
NEW_FILE_MODE = 0o600


def backup_path(path: Path) -> Path:
    """Where ``backup=True`` keeps the replaced file."""
    return path.with_name(path.name + ".bak")


def fsync_folder(folder: Path) -> None:
    """Make renames and new names in ``folder`` durable (raises OSError)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, mode: int | None = None, keep_owner: bool = False, backup: bool = False
) -> Iterator[BinaryIO]:
    """Write ``path`` through the yielded binary file; it is put in place when the block ends.

    Raises OSError when the file cannot be written; then ``path`` is untouched.
    """
    path = Path(path)
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            # Mode and owner are set before any byte is written: a secret is never readable
            # by others, not even while it is being written.
            _set_mode_and_owner(handle.fileno(), old, mode=mode, keep_owner=keep_owner)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if backup and old is not None:
            _keep_backup(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The new file is in place; a folder that cannot be fsync'd (some network file systems)
    # does not make the write a failure.
    with contextlib.suppress(OSError):
        fsync_folder(path.parent)


def write_atomically(
    path: Path,
    data: bytes | str,
    *,
    mode: int | None = None,
    keep_owner: bool = False,
    backup: bool = False,
) -> Path | None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the backup, if one was kept.

    Raises OSError when the file cannot be written; then ``path`` is untouched.
    """
    path = Path(path)
    had_file = path.exists()
    with atomic_writer(path, mode=mode, keep_owner=keep_owner, backup=backup) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return backup_path(path) if backup and had_file else None


def _set_mode_and_owner(
    fd: int, old: os.stat_result | None, *, mode: int | None, keep_owner: bool
) -> None:
    if keep_owner and old is not None:
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
            os.fchown(fd, old.st_uid, old.st_gid)
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old is not None else NEW_FILE_MODE
    os.fchmod(fd, mode)


def _keep_backup(path: Path) -> None:
    """Link (or, where links are not possible, copy) ``path`` to its backup, replacing it."""
    target = backup_path(path)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staged)
        except OSError:
            shutil.copy2(path, staged)
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
