"""Editing the home config's ``[[devices]]`` while keeping the installer's comments and layout.

The file is edited as a tomlkit document, checked with :func:`contract.home.parse_config`
before anything is written, and written atomically with its mode, owner and group (the old file
kept as ``.bak``): an edit either lands whole and valid, or the file is untouched.

Pairing is idempotent by IEEE address: :func:`upsert_device` updates the entry that already
names the device (by IEEE address or its friendly name) instead of adding a second one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from contract.home import ConfigError, HomeConfig, parse_config
from runtime.files import write_atomically

__all__ = [
    "DeviceIdTaken",
    "HomeConfigEditError",
    "NoSuchDevice",
    "load_document",
    "remove_device",
    "rename_device",
    "save_document",
    "suggest_device_id",
    "upsert_device",
]

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class HomeConfigEditError(ValueError):
    """An edit of the home config cannot be made as asked."""


class NoSuchDevice(HomeConfigEditError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device {device_id!r} in the home config")
        self.device_id = device_id


class DeviceIdTaken(HomeConfigEditError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"device id {device_id!r} is already used by another device")
        self.device_id = device_id


def load_document(path: Path) -> tuple[TOMLDocument, HomeConfig]:
    """The config as an editable document and as the validated model (ConfigError if bad)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        problem = f"{path}: no such file; create one with `gatewayd init`"
        raise ConfigError(str(path), [problem]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"{path}: cannot read: {exc}"]) from exc
    config = parse_config(text, str(path))
    try:
        return tomlkit.parse(text), config
    except TOMLKitError as exc:  # tomllib accepted it; tomlkit should too, but be sure
        raise ConfigError(str(path), [f"{path}: cannot edit: {exc}"]) from exc


def save_document(path: Path, doc: TOMLDocument) -> HomeConfig:
    """Validate the edited document, then write it atomically; returns the new config."""
    text = tomlkit.dumps(doc)
    config = parse_config(text, str(path))  # raises ConfigError; nothing is written then
    # Root edits a file the service user reads: it keeps its mode, owner and group.
    write_atomically(path, text, keep_owner=True, backup=True)
    return config


def _devices(doc: TOMLDocument) -> AoT | None:
    devices = doc.get("devices")
    if devices is None:
        return None
    if not isinstance(devices, AoT):
        raise HomeConfigEditError("devices in the home config is not a list of [[devices]] tables")
    return devices


def _find(doc: TOMLDocument, device_id: str) -> Table | None:
    devices = _devices(doc)
    for table in devices.body if devices is not None else []:
        if table.get("id") == device_id:
            return table
    return None


def suggest_device_id(doc: TOMLDocument, role: str, room: str = "") -> str:
    """``role_room`` made into a valid, unused id (``_2``, ``_3``... when taken)."""
    raw = f"{role}_{room}" if room else role
    base = re.sub(r"[^A-Za-z0-9_.\-]+", "_", raw.strip().lower()).strip("_")[:60] or "device"
    candidate, n = base, 2
    while _find(doc, candidate) is not None:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def upsert_device(
    doc: TOMLDocument,
    *,
    device_id: str,
    driver: str,
    address: str,
    role: str,
    room: str = "",
    model: str = "",
    name: str = "",
    same_device: Iterable[str] = (),
) -> tuple[Literal["added", "updated"], str]:
    """Add a ``[[devices]]`` entry, or update the one of the same device; returns which and id.

    An entry is the same device when it belongs to ``driver`` and its address is ``address``
    or one of ``same_device`` (e.g. the device's friendly name), compared without case.
    """
    if not _ID.match(device_id):
        raise HomeConfigEditError(
            f"device id {device_id!r} must be 1-64 letters, digits, '_', '.' or '-'"
        )
    addresses = {a.lower() for a in (address, *same_device) if a}
    devices = _devices(doc)
    existing = None
    for table in devices.body if devices is not None else []:
        if table.get("driver") == driver and str(table.get("address", "")).lower() in addresses:
            existing = table
            break
    holder = _find(doc, device_id)
    if holder is not None and holder is not existing:
        raise DeviceIdTaken(device_id)
    fields: dict[str, Any] = {"id": device_id, "driver": driver, "address": address, "role": role}
    optional = {"room": room, "model": model, "name": name}
    if existing is not None:
        for key, value in fields.items():
            existing[key] = value
        for key, value in optional.items():
            if value:
                existing[key] = value
        return "updated", device_id
    table = tomlkit.table()
    for key, value in {**fields, **{k: v for k, v in optional.items() if v}}.items():
        table.add(key, value)
    if devices is None:
        aot = tomlkit.aot()
        aot.append(table)
        doc.add("devices", aot)
    else:
        if devices.body:
            devices.body[-1].add(tomlkit.nl())
        devices.append(table)
    return "added", device_id


def remove_device(doc: TOMLDocument, device_id: str) -> dict[str, Any]:
    """Remove a device's entry; returns what it said."""
    devices = _devices(doc)
    table = _find(doc, device_id)
    if devices is None or table is None:
        raise NoSuchDevice(device_id)
    removed = table.unwrap()
    index = next(i for i, t in enumerate(devices.body) if t is table)
    del devices[index]
    if not devices.body:
        del doc["devices"]
    return removed


def rename_device(
    doc: TOMLDocument, old_id: str, new_id: str, *, address: str | None = None
) -> None:
    """Give a device a new id (and, for a device known by name, its new address)."""
    if not _ID.match(new_id):
        raise HomeConfigEditError(
            f"device id {new_id!r} must be 1-64 letters, digits, '_', '.' or '-'"
        )
    table = _find(doc, old_id)
    if table is None:
        raise NoSuchDevice(old_id)
    if new_id != old_id and _find(doc, new_id) is not None:
        raise DeviceIdTaken(new_id)
    table["id"] = new_id
    if address is not None:
        table["address"] = address
