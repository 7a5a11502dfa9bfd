"""Atomic writes: whole or not at all, mode and owner as asked, a backup without a gap."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gatewayd.commands.init import write_atomically as write_home_config
from runtime.files import atomic_writer, backup_path, write_atomically


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_text_and_bytes_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    assert write_atomically(path, "grüße\n") is None
    assert path.read_text(encoding="utf-8") == "grüße\n"
    write_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_a_new_file_is_private_unless_a_mode_is_given(tmp_path: Path) -> None:
    write_atomically(tmp_path / "secret", "s")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    write_atomically(tmp_path / "shared", "s", mode=0o640)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640


def test_a_replaced_file_keeps_its_mode_unless_one_is_given(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    write_atomically(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    write_atomically(path, "newer", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failure_inside_the_block_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")

    def write_half() -> None:
        with atomic_writer(path) as out:
            out.write(b"half")
            raise RuntimeError("half way")

    with pytest.raises(RuntimeError, match="half way"):
        write_half()
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_backup_keeps_the_replaced_file_and_replaces_an_older_backup(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    assert write_atomically(path, "one", backup=True) is None  # nothing to keep yet
    assert not backup_path(path).exists()
    assert write_atomically(path, "two", backup=True) == tmp_path / "home.toml.bak"
    assert write_atomically(path, "three", backup=True) == tmp_path / "home.toml.bak"
    assert path.read_text() == "three"
    assert backup_path(path).read_text() == "two"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", ["runtime", "init"])
def test_the_target_never_disappears_while_a_backup_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    # A crash (here: a failing rename) between keeping the backup and putting the new file in
    # place must leave the old file where the daemon looks for it, not only a .bak beside it.
    path = tmp_path / "home.toml"
    path.write_text("the installer's careful work")
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write = (
        (lambda: write_atomically(path, "new", backup=True))
        if writer == "runtime"
        else (lambda: write_home_config(path, "new", force=True))
    )
    with pytest.raises(OSError, match="No space left"):
        write()
    assert path.read_text() == "the installer's careful work"


def test_an_unwritable_folder_is_an_oserror_naming_it(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="nowhere"):
        write_atomically(tmp_path / "nowhere" / "f", "x")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_keep_owner_gives_the_new_file_the_old_owner(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    path.write_text("old")
    os.chown(path, 65534, 65534)
    write_atomically(path, "new", keep_owner=True)
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    write_atomically(path, "newer")  # without keep_owner the writer owns it
    assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid())
