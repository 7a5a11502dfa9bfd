"""`gatewayd devices pair`: the same steps for every driver, built-in or plug-in.

::

    gatewayd devices pair --driver ID_OR_TYPE [--address A] [--option KEY=VALUE ...]
                          [--timeout SECONDS] [--room R --role ROLE --id ID] [--no-input]

The driver's :class:`~drivers.pairing.Pairing` finds the device (it joins the driver's network,
or it is heard in a scan and picked from a list) or checks the address the installer typed, and
says what the device is. This command shows that, asks for what the flags left out (the device
to pick, what the driver needs such as a bind key, the role, room and id) and writes the
``[[devices]]`` entry, comments kept. Pairing a device again updates its entry (same driver and
address), never duplicates it.

Exit codes: 0 done; 1 the device or its bridge refused, or identification failed; 2 a bad flag,
answer, address or option; 3 the config cannot be read or the edit would make it invalid; 4 the
bridge, receiver or radio cannot be reached; 5 nothing joined or was heard in time. Nothing is
written unless everything before it succeeded.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import tomlkit
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.prompt import Prompt
from rich.table import Table

from contract.devices import ROLES, DriverEntry
from contract.home import ConfigError, parse_config
from drivers.base import DriverConfigError
from drivers.pairing import Candidate, Identified, Pairing
from gatewayd.cli import EXIT_TIMEOUT, EXIT_USAGE
from gatewayd.commands.daemon_options import config_option
from gatewayd.commands.device_drivers import (
    check_id,
    driver_class,
    driver_entry,
    fail_invalid_edit,
    load,
    pairing_of,
    run_pairing,
    save,
    stderr_console,
)
from gatewayd.homeconfig_edit import HomeConfigEditError, suggest_device_id, upsert_device
from runtime.cli import fail

__all__ = ["OptionError", "pair", "parse_option"]


class OptionError(ValueError):
    """An ``--option`` that is not ``KEY=VALUE``."""


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (key, value); the value is read as TOML (``5``, ``true``, ``["01"]``)
    when it is valid TOML, else kept as the text (``combustible_gas``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not key.replace("_", "").isalnum():
        raise OptionError(
            f"--option must be KEY=VALUE (like profile=combustible_gas), got {text!r}"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# -- prompts ------------------------------------------------------------------------------------


def _ask(console: Console, prompt: str, *, default: str | None, check: Callable[[str], Any]) -> Any:
    """Ask until ``check`` accepts the answer (it raises click.BadParameter or ValueError)."""
    while True:
        try:
            if default is None:
                answer = Prompt.ask(prompt, console=console)
            else:
                answer = Prompt.ask(prompt, console=console, default=default)
        except EOFError:
            fail(f"no answer to {prompt!r} (input ended); give it as a flag", EXIT_USAGE)
        try:
            return check(answer.strip())
        except click.BadParameter as exc:
            console.print(f"[red]{exc.message}[/]", markup=True)
        except ValueError as exc:
            console.print(f"[red]{exc}[/]", markup=True)


def _check_role(value: str) -> str:
    if value not in ROLES:
        raise click.BadParameter(f"role must be one of {', '.join(ROLES)}")
    return value


def _check_room(value: str) -> str:
    if len(value) > 64 or any(ord(c) < 32 for c in value):
        raise click.BadParameter("room must be one line of at most 64 characters")
    return value


def _check_address(value: str) -> str:
    if not value or len(value) > 256 or any(ord(c) < 32 for c in value):
        raise click.BadParameter("the address is one line, as the device or receiver shows it")
    return value


def _placement(
    console: Console,
    doc: Any,
    existing: Any,
    *,
    role: str | None,
    room: str | None,
    device_id: str | None,
    no_input: bool,
    role_guess: str,
) -> tuple[str, str, str]:
    """Role, room and id of a device being paired: the flags, else the installer's answers
    (defaults from the device already configured, or guessed). The id is asked for only when
    the installer is answering anyway."""
    interactive = not no_input and (role is None or room is None)
    if role is None:
        default_role = existing.role if existing else role_guess
        role = _ask(console, "Role", default=default_role, check=_check_role)
    if room is None:
        room = (
            (existing.room if existing else "")
            if no_input
            else _ask(console, "Room", default=existing.room if existing else "", check=_check_room)
        )
    if device_id is None:
        default_id = existing.id if existing else suggest_device_id(doc, role, room)
        device_id = (
            _ask(console, "Id", default=default_id, check=check_id) if interactive else default_id
        )
    return role, room, device_id


# -- discovery ----------------------------------------------------------------------------------


async def _discover(pairing: Pairing, seconds: float, console: Console) -> list[Candidate]:
    """Everything the pairing finds, with a countdown and its progress lines."""
    progress = Progress(
        TextColumn(f"[bold]{'Joining open' if pairing.discovery == 'join' else 'Listening'}[/]"),
        BarColumn(),
        TextColumn("{task.fields[left]:>4} s left  {task.fields[status]}"),
        console=console,
        transient=True,
    )
    task = progress.add_task("pair", total=seconds, left=round(seconds), status="waiting")
    started = time.monotonic()

    def report(status: str) -> None:
        progress.update(task, status=status)
        progress.console.print(f"  {status}", markup=False)

    async def tick() -> None:
        while True:
            elapsed = time.monotonic() - started
            progress.update(task, completed=elapsed, left=max(0, round(seconds - elapsed)))
            await asyncio.sleep(0.25)

    with progress:
        ticker = asyncio.create_task(tick())
        try:
            found = [candidate async for candidate in pairing.discover(seconds, report)]
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    return found


def _show_joined(console: Console, pairing: Pairing, device: Candidate) -> None:
    details = Table(show_header=False, box=None)
    details.add_row(pairing.address_kind, device.address)
    model = f"{device.model} ({device.vendor})" if device.vendor else device.model or "unknown"
    details.add_row("model", model)
    details.add_row("description", device.description)
    details.add_row("reports", ", ".join(device.reports) or "nothing known")
    details.add_row("supported", "yes" if device.supported else "[yellow]no[/]")
    console.print("[green]Paired:[/]")
    console.print(details)


def _pick(
    console: Console, pairing: Pairing, found: list[Candidate], configured: dict[str, str]
) -> Candidate:
    table = Table(title=f"Devices heard through {pairing.driver.id!r} (likeliest first)")
    for column in ("#", pairing.address_kind, "name", "signal", "reports", "configured as"):
        table.add_column(column)
    for number, device in enumerate(found, 1):
        needs = ", ".join(f"{n.reason} (needs --option {n.option}=...)" for n in device.needs)
        table.add_row(
            str(number),
            device.address,
            device.name,
            device.signal or "—",
            needs or ", ".join(device.reports) or "nothing known",
            configured.get(device.address.lower(), ""),
        )
    console.print(table)

    def check_pick(value: str) -> str:
        if not value.isdigit() or not 1 <= int(value) <= len(found):
            raise click.BadParameter(f"answer a number from 1 to {len(found)}")
        return value

    pick = _ask(console, "Which device", default="1" if len(found) == 1 else None, check=check_pick)
    return found[int(pick) - 1]


# -- the command --------------------------------------------------------------------------------


@click.command("pair")
@config_option
@click.option("--driver", "driver_ref", required=True, help="Id or type of the [[drivers]] entry.")
@click.option(
    "--timeout",
    "--scan-seconds",
    "seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="How long joining stays open or a scan listens, in seconds (default: the driver's; "
    "Zigbee 120, BLE 10).",
)
@click.option(
    "--address",
    help="The device's address as its driver names it: RFLink Protocol:ID (SmokeAlert:123456), "
    "Modbus tcp://HOST:PORT/UNIT or rtu://PORT/UNIT, BLE the MAC (default: found by the "
    "driver, by joining or a scan, or asked for).",
)
@click.option(
    "--option",
    "option_texts",
    multiple=True,
    metavar="KEY=VALUE",
    help="A device option (repeatable): profile=combustible_gas (Modbus), bind_key=HEX (BLE).",
)
@click.option("--room", help="The room the device is in.")
@click.option("--role", type=click.Choice(ROLES), help="What the device does in the kit.")
@click.option("--id", "device_id", help="The device's id in the config (default: role_room).")
@click.option("--name", default="", help="A name people see (optional).")
@click.option("--no-input", is_flag=True, help="Never prompt; --role is then required.")
def pair(
    config_path: Path,
    driver_ref: str,
    seconds: float | None,
    address: str | None,
    option_texts: tuple[str, ...],
    room: str | None,
    role: str | None,
    device_id: str | None,
    name: str,
    no_input: bool,
) -> None:
    """Pair a device and add it to the home config: found by its driver (Zigbee by opening the
    network, BLE by a scan to pick from) or given by --address (RFLink, Modbus, BLE)."""
    console = stderr_console()
    _, config = load(config_path)
    entry = driver_entry(config, driver_ref)
    pairing = pairing_of(entry)
    if device_id is not None:
        try:
            check_id(device_id)
        except click.BadParameter as exc:
            fail(exc.message, EXIT_USAGE)
    try:
        options = dict(parse_option(text) for text in option_texts)
    except OptionError as exc:
        fail(str(exc), EXIT_USAGE)
    if not pairing.by_address and (address is not None or options):
        how = "joining" if pairing.discovery == "join" else "a scan"
        fail(
            f"{entry.type} devices are paired by {how}, not by address: leave out --address "
            f"and --option and put the device in pairing mode when asked",
            EXIT_USAGE,
        )
    if no_input and pairing.by_address and (role is None or address is None):
        fail(
            f"--address ({pairing.address_example}) and --role are required with --no-input",
            EXIT_USAGE,
        )
    if no_input and role is None:
        fail("--role is required with --no-input", EXIT_USAGE)
    seconds = pairing.discovery_seconds if seconds is None else seconds
    if seconds > pairing.max_discovery_seconds:
        fail(
            f"--timeout: at most {pairing.max_discovery_seconds:g} s for {entry.type} devices",
            EXIT_USAGE,
        )

    target = _find(console, config, entry, pairing, address, seconds)
    if isinstance(target, Candidate):
        for need in target.needs:
            if need.option in options:
                continue
            if no_input:
                fail(
                    f"{target.address} is {need.reason}: give --option {need.option}=...",
                    EXIT_USAGE,
                )
            options[need.option] = _ask(console, need.prompt, default=None, check=need.check)

    async def identify(session: Pairing) -> Identified:
        return await session.identify(target, options)

    identified = run_pairing(pairing, identify)
    _write(
        console, config_path, entry, pairing, identified,
        role=role, room=room, device_id=device_id, name=name, no_input=no_input,
    )  # fmt: skip


def _find(
    console: Console,
    config: Any,
    entry: DriverEntry,
    pairing: Pairing,
    address: str | None,
    seconds: float,
) -> Candidate | str:
    """The device to identify: found by the driver, or the address given or asked for."""
    if address is not None:
        return address
    if pairing.discovery is None:
        return str(
            _ask(
                console,
                f"Address ({pairing.address_example})",
                default=None,
                check=_check_address,
            )
        )
    console.print(pairing.announce(seconds))

    async def discover(session: Pairing) -> list[Candidate]:
        return await _discover(session, seconds, console)

    hint = "--timeout for longer" + (", or pass --address" if pairing.by_address else "")
    found = run_pairing(pairing, discover, hint=hint)
    if pairing.discovery == "join":
        console.print("Joining closed.")
    if not found:  # a driver should say so itself; never pair nothing
        fail(f"nothing found through {entry.id!r} in {seconds:g} s ({hint})", EXIT_TIMEOUT)
    if pairing.discovery == "join":
        _show_joined(console, pairing, found[0])
        return found[0]
    configured = {d.address.lower(): d.id for d in config.devices if d.driver == entry.id}
    return _pick(console, pairing, found, configured)


def _write(
    console: Console,
    config_path: Path,
    entry: DriverEntry,
    pairing: Pairing,
    device: Identified,
    *,
    role: str | None,
    room: str | None,
    device_id: str | None,
    name: str,
    no_input: bool,
) -> None:
    """Ask what the flags left out and add or update the device's entry, checked by its driver
    as the daemon will check it."""
    # Edit the file as it is now, not as it was before discovery.
    doc, config = load(config_path)
    addresses = {a.lower() for a in (device.address, *device.aliases)}
    existing = next(
        (d for d in config.devices if d.driver == entry.id and d.address.lower() in addresses),
        None,
    )
    role, room, device_id = _placement(
        console, doc, existing, role=role, room=room, device_id=device_id, no_input=no_input,
        role_guess=device.role_guess,
    )  # fmt: skip
    kept = " (the device stays in the driver's network)" if pairing.has_network else ""
    try:
        outcome, device_id = upsert_device(
            doc, device_id=device_id, driver=entry.id, address=device.address, role=role,
            room=room, model=device.model, name=name, same_device=device.aliases,
        )  # fmt: skip
    except HomeConfigEditError as exc:
        fail(f"{exc}; nothing written{kept}", EXIT_USAGE)
    if device.options:
        _set_device_options(doc, device_id, dict(device.options))
    try:
        edited = parse_config(tomlkit.dumps(doc), str(config_path))
        devices = [d for d in edited.devices if d.driver == entry.id]
        driver_class(entry.type)(entry.id, entry.options, devices)
    except ConfigError as exc:
        fail_invalid_edit(exc)
    except DriverConfigError as exc:
        fail(f"{exc}; nothing written{kept}", EXIT_USAGE)
    save(config_path, doc)
    console.print(
        f"[green]{outcome.capitalize()}[/] device {device_id!r} ({role}"
        f"{', ' + room if room else ''}, {device.address}) in {config_path}. "
        f"Reload gatewayd to use it (systemctl reload gatewayd), then check it with "
        f"`gatewayd test`."
    )


def _set_device_options(doc: Any, device_id: str, options: dict[str, Any]) -> None:
    """Merge ``options`` into the device's ``options`` table (kept inline, as people write it)."""
    for table in doc.get("devices", []):
        if table.get("id") != device_id:
            continue
        merged = tomlkit.inline_table()
        merged.update({**dict(table.get("options", {})), **options})
        table["options"] = merged
        return
