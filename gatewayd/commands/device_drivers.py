"""What the `gatewayd devices` commands share: the home config, a device's driver and its
pairing, loaded from the driver registry, and the pairing's errors as messages and exit codes.

Nothing here knows any driver: what differs between them is in their
:class:`~drivers.pairing.Pairing`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from contract.devices import DriverEntry
from contract.home import ConfigError, HomeConfig
from drivers.base import Driver, DriverConfigError, DriverError
from drivers.pairing import (
    DeviceRefused,
    InvalidDevice,
    NothingFound,
    Pairing,
    PairingError,
    PairingUnreachable,
)
from drivers.registry import UnknownDriver, load_driver
from gatewayd.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE
from gatewayd.homeconfig_edit import load_document, save_document
from runtime.cli import fail

__all__ = [
    "check_id",
    "driver_class",
    "driver_entry",
    "fail_invalid_edit",
    "load",
    "network_of",
    "pairing_of",
    "run_pairing",
    "save",
    "stderr_console",
]

T = TypeVar("T")
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def load(config_path: Path) -> tuple[Any, HomeConfig]:
    try:
        return load_document(config_path)
    except ConfigError as exc:
        fail("\n".join(exc.problems), EXIT_CONFIG)


def fail_invalid_edit(exc: ConfigError) -> NoReturn:
    problems = "\n".join(exc.problems)
    fail(f"the edit would make the config invalid; nothing written:\n{problems}", EXIT_CONFIG)


def save(config_path: Path, doc: Any) -> None:
    try:
        save_document(config_path, doc)
    except ConfigError as exc:
        fail_invalid_edit(exc)
    except OSError as exc:
        fail(f"cannot write {config_path}: {exc}", EXIT_CONFIG)


def check_id(value: str) -> str:
    if not _ID.match(value):
        raise click.BadParameter("id must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def driver_class(type_name: str) -> type[Driver]:
    """The registered driver of this type; a clear error if there is none or it does not load."""
    try:
        return load_driver(type_name)
    except UnknownDriver as exc:
        fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # a broken plug-in: name it instead of a traceback
        fail(f"the driver of type {type_name!r} does not load: {exc!r}", EXIT_CONFIG)


def driver_entry(config: HomeConfig, ref: str) -> DriverEntry:
    """The ``[[drivers]]`` entry with this id, or the only one of this type."""
    by_id = [d for d in config.drivers if d.id == ref]
    if by_id:
        return by_id[0]
    by_type = [d for d in config.drivers if d.type == ref]
    if len(by_type) == 1:
        return by_type[0]
    if by_type:
        ids = ", ".join(d.id for d in by_type)
        fail(f"several drivers are of type {ref!r} ({ids}); name one by its id", EXIT_USAGE)
    known = ", ".join(f"{d.id} ({d.type})" for d in config.drivers) or "none"
    try:
        example = load_driver(ref).example(ref)
    except Exception:  # not a driver type (or a broken one): no example to show
        example = ""
    fail(
        f"no [[drivers]] entry with id or type {ref!r}; configured: {known}. "
        + (f"Add one to the config first, e.g.:\n{example}" if example else ""),
        EXIT_USAGE,
    )


def _pairing(entry: DriverEntry) -> Pairing | None:
    cls = driver_class(entry.type)
    try:
        return cls(entry.id, entry.options, []).pairing()
    except DriverConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except Exception as exc:  # a broken plug-in
        fail(f"driver {entry.id!r} (type {entry.type!r}) failed: {exc!r}", EXIT_FAILURE)


def network_of(entry: DriverEntry) -> Pairing | None:
    """The pairing of the entry's driver if the driver keeps a network of its own."""
    pairing = _pairing(entry)
    return pairing if pairing is not None and pairing.has_network else None


def pairing_of(entry: DriverEntry) -> Pairing:
    """The pairing of the entry's driver, built as the daemon builds it but with no devices."""
    pairing = _pairing(entry)
    if pairing is None:
        fail(
            f"driver {entry.id!r} (type {entry.type!r}) does not pair devices; add its devices "
            f"to the config as [[devices]] tables by hand",
            EXIT_USAGE,
        )
    return pairing


def run_pairing(pairing: Pairing, step: Callable[[Pairing], Awaitable[T]], *, hint: str = "") -> T:
    """Run one step in a session of ``pairing``; its errors become messages and exit codes.

    ``hint`` (what the installer can do instead, in flags) is added to a discovery's failure.
    """

    async def session() -> T:
        async with pairing:
            return await step(pairing)

    suffix = f" ({hint})" if hint else ""
    try:
        return asyncio.run(session())
    except NothingFound as exc:
        fail(f"{exc}{suffix}", EXIT_TIMEOUT)
    except PairingUnreachable as exc:
        fail(f"{exc}{suffix}", EXIT_UNREACHABLE)
    except InvalidDevice as exc:
        fail(f"{exc}; nothing written", EXIT_USAGE)
    except DeviceRefused as exc:
        fail(f"{exc}. Nothing was written.", EXIT_FAILURE)
    except PairingError as exc:
        fail(str(exc), EXIT_FAILURE)
    except DriverError as exc:  # the wire failed: the port, the broker, the radio
        fail(f"{exc}{suffix}", EXIT_UNREACHABLE)
    except Exception as exc:  # a plug-in's bug must not end in a traceback for the installer
        fail(f"driver {pairing.driver.id!r} failed: {exc!r}", EXIT_FAILURE)
