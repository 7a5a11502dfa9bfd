"""Editing [[devices]] keeps comments, is idempotent by IEEE address, and never half-writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import tomlkit
from click.testing import CliRunner

from contract.home import ConfigError, load_config
from gatewayd.cli import cli
from gatewayd.homeconfig_edit import (
    DeviceIdTaken,
    NoSuchDevice,
    load_document,
    remove_device,
    rename_device,
    save_document,
    suggest_device_id,
    upsert_device,
)

HOME = """\
# Home of Mrs. K. -- keep this comment.
[gateway]
id = "gw-1"  # as registered

[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "mqtt://127.0.0.1:1883"

[[devices]]
# Bedside button, installed 2026-03-01.
id = "sos_bed"
driver = "zigbee"
address = "0x00158d0001a2b301"
role = "sos_button"
room = "bedroom"
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home.toml"
    path.write_text(HOME)
    return path


def test_add_then_update_keeps_comments_and_never_duplicates(home: Path) -> None:
    doc, _ = load_document(home)
    assert upsert_device(
        doc,
        device_id="smoke_kitchen",
        driver="zigbee",
        address="0x00158d0001a2b302",
        role="smoke",
        room="kitchen",
        model="HS1SA",
    ) == ("added", "smoke_kitchen")
    save_document(home, doc)
    doc, _ = load_document(home)
    # The same device by IEEE address (any case): the entry is updated in place.
    assert upsert_device(
        doc,
        device_id="smoke_kitchen",
        driver="zigbee",
        address="0x00158D0001A2B302",
        role="smoke",
        room="hall",
    ) == ("updated", "smoke_kitchen")
    config = save_document(home, doc)
    assert [(d.id, d.room) for d in config.devices] == [
        ("sos_bed", "bedroom"),
        ("smoke_kitchen", "hall"),
    ]
    text = home.read_text()
    for comment in ("# Home of Mrs. K.", "# as registered", "# Bedside button, installed"):
        assert comment in text
    assert (home.parent / "home.toml.bak").exists()


def test_same_device_known_by_its_friendly_name(home: Path) -> None:
    home.write_text(HOME.replace("0x00158d0001a2b301", "bedside_button"))
    doc, _ = load_document(home)
    outcome = upsert_device(
        doc,
        device_id="sos_bed",
        driver="zigbee",
        address="0x00158d0001a2b301",
        role="sos_button",
        same_device=["bedside_button"],
    )
    assert outcome == ("updated", "sos_bed")
    [device] = save_document(home, doc).devices
    assert (device.address, device.room) == ("0x00158d0001a2b301", "bedroom")


def test_an_id_of_another_device_is_refused(home: Path) -> None:
    doc, _ = load_document(home)
    with pytest.raises(DeviceIdTaken):
        upsert_device(doc, device_id="sos_bed", driver="zigbee", address="0x1", role="smoke")
    assert suggest_device_id(doc, "sos_button", "bed") == "sos_button_bed"
    upsert_device(doc, device_id="sos_button_bed", driver="zigbee", address="a", role="pendant")
    assert suggest_device_id(doc, "sos_button", "bed") == "sos_button_bed_2"


def test_an_invalid_edit_writes_nothing(home: Path) -> None:
    doc, _ = load_document(home)
    upsert_device(doc, device_id="x", driver="nowhere", address="a", role="smoke")
    with pytest.raises(ConfigError, match="nowhere"):
        save_document(home, doc)
    assert home.read_text() == HOME
    assert not (home.parent / "home.toml.bak").exists()


def test_remove_and_rename(home: Path) -> None:
    doc, _ = load_document(home)
    rename_device(doc, "sos_bed", "sos_bedroom")
    with pytest.raises(NoSuchDevice):
        rename_device(doc, "sos_bed", "y")
    assert remove_device(doc, "sos_bedroom")["room"] == "bedroom"
    with pytest.raises(NoSuchDevice):
        remove_device(doc, "sos_bedroom")
    save_document(home, doc)
    assert load_config(home).devices == []
    assert "devices" not in tomlkit.parse(home.read_text())
    assert "# Home of Mrs. K." in home.read_text()


def test_cli_list_and_config_only_edits(home: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["devices", "list", "--config", str(home)])
    assert listed.exit_code == 0, listed.output
    assert "sos_bed" in listed.output
    assert "bedroom" in listed.output
    renamed = runner.invoke(
        cli, ["devices", "rename", "--config", str(home), "sos_bed", "sos_1", "--config-only"]
    )
    assert renamed.exit_code == 0, renamed.output
    assert [d.id for d in load_config(home).devices] == ["sos_1"]
    bad = runner.invoke(
        cli, ["devices", "rename", "--config", str(home), "sos_1", "bad id", "--config-only"]
    )
    assert bad.exit_code == 2
    removed = runner.invoke(
        cli, ["devices", "remove", "--config", str(home), "sos_1", "--config-only"], input="n\n"
    )
    assert removed.exit_code == 2  # not confirmed
    assert [d.id for d in load_config(home).devices] == ["sos_1"]
    removed = runner.invoke(
        cli, ["devices", "remove", "--config", str(home), "sos_1", "--config-only"], input="y\n"
    )
    assert removed.exit_code == 0, removed.output
    assert load_config(home).devices == []
    assert "# Bedside button" not in home.read_text()
    assert "# Home of Mrs. K." in home.read_text()


def test_an_edit_keeps_the_files_mode(home: Path) -> None:
    home.chmod(0o644)
    doc, _ = load_document(home)
    rename_device(doc, "sos_bed", "sos_bedroom")
    save_document(home, doc)
    assert stat.S_IMODE(home.stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_an_edit_as_root_keeps_the_file_readable_by_the_service_user(home: Path) -> None:
    # Installed as root:gatewayd 0640 (root writes, the daemon reads); `sudo gatewayd devices
    # pair` must not hand the edited file to root's group, or the daemon can no longer read it.
    service_uid, service_gid = 65534, 65534
    os.chown(home, service_uid, service_gid)
    home.chmod(0o640)
    doc, _ = load_document(home)
    rename_device(doc, "sos_bed", "sos_bedroom")
    save_document(home, doc)
    edited = home.stat()
    assert (edited.st_uid, edited.st_gid) == (service_uid, service_gid)
    assert stat.S_IMODE(edited.st_mode) == 0o640
    assert [d.id for d in load_config(home).devices] == ["sos_bedroom"]
