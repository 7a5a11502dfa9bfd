"""`gatewayd devices`: the home's devices, and pairing new ones from the command line.

::

    gatewayd devices list [--live] [--json]
    gatewayd devices pair --driver zigbee2mqtt [--timeout 120] [--room R --role ROLE --id ID]
    gatewayd devices pair --driver rflink --address SmokeAlert:123456 [--room R --role ROLE]
    gatewayd devices pair --driver modbus --address tcp://HOST:502/1 --option profile=NAME
    gatewayd devices pair --driver ble [--address MAC] [--scan-seconds 10] [--option bind_key=K]
    gatewayd devices remove ID [--config-only] [--force] [--yes]
    gatewayd devices rename ID NEW_ID [--config-only]

``pair`` opens the Zigbee network (Zigbee2MQTT ``permit_join``) with a live countdown, waits
for a device to join and pass its interview, closes the network, shows what the device is and
exposes, asks for its room and role (or takes them as flags) and writes it into the home
config, comments kept. Pairing a device again updates its entry, never duplicates it.
RFLink and Modbus devices join no network: they are added by ``--address``, checked by their
driver as the daemon will check them. BLE devices are picked from a short scan listing the
BTHome devices heard (or given by ``--address``).
``remove`` and ``rename`` ask the bridge first and edit the config only when it agreed.

Exit codes: 0 done; 1 the bridge refused or the interview failed; 2 a bad flag or answer;
3 the config cannot be read or the edit would make it invalid; 4 the broker or bridge does not
answer (or the BLE scanner cannot start); 5 nothing joined (or was heard) in time. Nothing is
written unless everything before it succeeded.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import tomlkit
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.prompt import Prompt
from rich.table import Table

from contract.devices import ROLES, DriverEntry
from contract.home import ConfigError, HomeConfig, parse_config
from drivers.zigbee2mqtt.bridge import IEEE_ADDRESS, BridgeDevice, BridgeEvent
from drivers.zigbee2mqtt.options import BrokerAddress, Zigbee2MqttOptions
from drivers.zigbee2mqtt.pairing import (
    MAX_PERMIT_JOIN,
    BridgeError,
    BridgeNoAnswer,
    BridgeRequestFailed,
    BridgeSession,
    BridgeUnreachable,
    InterviewFailed,
    PairingTimeout,
    pair_device,
)
from gatewayd.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from gatewayd.commands.address_pairing import (
    ADDRESS_DRIVERS,
    AddressPairingError,
    HeardDevice,
    ScanFailed,
    check_driver_devices,
    parse_option,
    scan_bthome,
    scanner_for,
)
from gatewayd.commands.daemon_options import config_option, fail
from gatewayd.homeconfig_edit import (
    HomeConfigEditError,
    load_document,
    remove_device,
    rename_device,
    save_document,
    suggest_device_id,
    upsert_device,
)

__all__ = ["devices", "guess_role"]

T = TypeVar("T")
ZIGBEE = "zigbee2mqtt"
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

#: Exposed property -> the role a device with it most likely plays, in order of preference.
_ROLE_HINTS = (
    ("smoke", "smoke"),
    ("gas", "gas"),
    ("carbon_monoxide", "co"),
    ("water_leak", "water_leak"),
    ("warning", "siren"),
    ("contact", "door"),
    ("occupancy", "motion"),
    ("presence", "motion"),
    ("sos", "sos_button"),
    ("action", "sos_button"),
)


#: What a [[drivers]] table of each built-in type looks like, for the error that one is missing.
_DRIVER_EXAMPLES = {
    ZIGBEE: '[[drivers]]\nid = "zigbee"\ntype = "zigbee2mqtt"\nurl = "mqtt://127.0.0.1:1883"',
    "rflink": '[[drivers]]\nid = "rflink"\ntype = "rflink"\nport = "/dev/ttyUSB0"',
    "modbus": '[[drivers]]\nid = "modbus"\ntype = "modbus"',
    "ble": '[[drivers]]\nid = "ble"\ntype = "ble"',
}


def guess_role(exposes: list[str]) -> str:
    """The likeliest role for a device exposing these properties (``other`` if none fits)."""
    return next((role for prop, role in _ROLE_HINTS if prop in exposes), "other")


def _console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _load(config_path: Path) -> tuple[Any, HomeConfig]:
    try:
        return load_document(config_path)
    except ConfigError as exc:
        fail("\n".join(exc.problems), EXIT_CONFIG)


def _save(config_path: Path, doc: Any) -> None:
    try:
        save_document(config_path, doc)
    except ConfigError as exc:
        problems = "\n".join(exc.problems)
        fail(f"the edit would make the config invalid; nothing written:\n{problems}", EXIT_CONFIG)
    except OSError as exc:
        fail(f"cannot write {config_path}: {exc}", EXIT_CONFIG)


def _driver_entry(config: HomeConfig, ref: str) -> DriverEntry:
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
    example = _DRIVER_EXAMPLES.get(ref, "")
    fail(
        f"no [[drivers]] entry with id or type {ref!r}; configured: {known}. "
        + (f"Add one to the config first, e.g.:\n{example}" if example else ""),
        EXIT_USAGE,
    )


def _zigbee(entry: DriverEntry) -> tuple[BrokerAddress, str]:
    try:
        options = Zigbee2MqttOptions.model_validate(entry.options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"driver {entry.id!r}: {problems}", EXIT_CONFIG)
    return options.broker(), options.base_topic


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run the async part; the bridge's errors become clear messages and exit codes."""
    try:
        return asyncio.run(_call(make))
    except PairingTimeout as exc:
        fail(
            f"{exc}; joining is closed again. Retry with the device in pairing mode.", EXIT_TIMEOUT
        )
    except InterviewFailed as exc:
        fail(f"{exc}. Nothing was written.", EXIT_FAILURE)
    except BridgeRequestFailed as exc:
        fail(str(exc), EXIT_FAILURE)
    except (BridgeUnreachable, BridgeNoAnswer) as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except BridgeError as exc:
        fail(str(exc), EXIT_FAILURE)


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


@click.group("devices")
def devices() -> None:
    """List, pair, remove and rename the home's devices."""


# -- list -------------------------------------------------------------------------------------


def _inventory_rows(entry: DriverEntry, config: HomeConfig) -> list[dict[str, Any]]:
    broker, base = _zigbee(entry)

    async def fetch() -> dict[str, BridgeDevice]:
        async with BridgeSession(broker, base, answer_timeout=5.0) as session:
            return await session.fetch_inventory(wait=5.0)

    inventory = _run(fetch)
    configured = {d.address.lower(): d.id for d in config.devices if d.driver == entry.id}
    return [
        {
            "ieee_address": d.ieee_address,
            "friendly_name": d.friendly_name,
            "model": d.model,
            "vendor": d.vendor,
            "description": d.description,
            "interviewed": d.interview_completed,
            "exposes": d.exposed_properties,
            "configured_as": configured.get(d.ieee_address)
            or configured.get(d.friendly_name.lower()),
        }
        for d in sorted(inventory.values(), key=lambda d: d.friendly_name)
    ]


@devices.command("list")
@config_option
@click.option("--live", is_flag=True, help="Also ask each Zigbee2MQTT bridge what is paired.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def list_devices(config_path: Path, live: bool, as_json: bool) -> None:
    """The configured devices of every driver (and, with --live, each bridge's inventory)."""
    _, config = _load(config_path)
    bridges = {
        entry.id: _inventory_rows(entry, config)
        for entry in config.drivers
        if live and entry.type == ZIGBEE and entry.enabled
    }
    if as_json:
        click.echo(
            json.dumps(
                {"devices": [d.model_dump() for d in config.devices], "bridges": bridges}, indent=2
            )
        )
        return
    console = Console(soft_wrap=True, highlight=False)
    table = Table(title=f"Devices in {config_path}")
    for column in ("id", "driver", "role", "room", "address", "model", "name"):
        table.add_column(column)
    for d in config.devices:
        table.add_row(d.id, d.driver, d.role, d.room, d.address, d.model, d.name)
    console.print(table if config.devices else "No devices configured.")
    for driver_id, rows in bridges.items():
        live_table = Table(title=f"Paired with bridge {driver_id!r}")
        for column in ("friendly name", "IEEE address", "model", "vendor", "configured as"):
            live_table.add_column(column)
        for row in rows:
            live_table.add_row(
                row["friendly_name"],
                row["ieee_address"],
                row["model"] or ("interview failed" if not row["interviewed"] else "?"),
                row["vendor"],
                row["configured_as"] or "[yellow]not configured[/]",
            )
        console.print(live_table if rows else f"Bridge {driver_id!r}: nothing paired.")


# -- pair -------------------------------------------------------------------------------------


async def _pair_with_countdown(
    broker: BrokerAddress, base: str, seconds: int, console: Console
) -> tuple[BridgeEvent, BridgeDevice | None]:
    async with BridgeSession(broker, base) as session:
        progress = Progress(
            TextColumn("[bold]Joining open[/]"),
            BarColumn(),
            TextColumn("{task.fields[left]:>4} s left  {task.fields[status]}"),
            console=console,
            transient=True,
        )
        task = progress.add_task("join", total=seconds, left=seconds, status="waiting for a device")
        started = time.monotonic()

        def on_event(event: BridgeEvent) -> None:
            status = {
                "device_joined": f"{event.ieee_address} joined",
                "device_announce": f"{event.ieee_address} announced itself",
                "device_interview": f"interview of {event.ieee_address}: {event.status}",
                "device_leave": f"{event.ieee_address} left",
            }.get(event.type, event.type)
            progress.update(task, status=status)
            progress.console.print(f"  {status}")

        async def tick() -> None:
            while True:
                elapsed = time.monotonic() - started
                progress.update(task, completed=elapsed, left=max(0, round(seconds - elapsed)))
                await asyncio.sleep(0.25)

        with progress:
            ticker = asyncio.create_task(tick())
            try:
                interview = await pair_device(session, seconds=seconds, on_event=on_event)
            finally:
                ticker.cancel()
        # The bridge republishes bridge/devices right after the interview.
        known = None
        for _ in range(20):
            if session.inventory and interview.ieee_address in session.inventory:
                known = session.inventory[interview.ieee_address]
                break
            await asyncio.sleep(0.05)
        return interview, known


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
            _ask(console, "Id", default=default_id, check=_check_id) if interactive else default_id
        )
    return role, room, device_id


def _ask(console: Console, prompt: str, *, default: str | None, check: Callable[[str], str]) -> str:
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
            console.print(f"[red]{exc.message}[/]")


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


def _check_bind_key(value: str) -> str:
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", value):
        raise click.BadParameter("a bind key is 32 hex digits (16 bytes)")
    return value.lower()


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise click.BadParameter("id must be 1-64 letters, digits, '_', '.' or '-'")
    return value


@devices.command("pair")
@config_option
@click.option("--driver", "driver_ref", required=True, help="Id or type of the [[drivers]] entry.")
@click.option(
    "--timeout",
    "seconds",
    type=click.IntRange(1, MAX_PERMIT_JOIN),
    default=120,
    show_default=True,
    help="Zigbee: how long joining stays open, in seconds.",
)
@click.option(
    "--address",
    help="RFLink: Protocol:ID (SmokeAlert:123456); Modbus: tcp://HOST:PORT/UNIT or "
    "rtu://PORT/UNIT; BLE: the MAC (default: pick from a scan).",
)
@click.option(
    "--option",
    "option_texts",
    multiple=True,
    metavar="KEY=VALUE",
    help="A device option (repeatable): profile=combustible_gas (Modbus), bind_key=HEX (BLE).",
)
@click.option(
    "--scan-seconds",
    type=click.FloatRange(1, 300),
    default=10,
    show_default=True,
    help="BLE: how long to listen for BTHome devices before listing them.",
)
@click.option("--room", help="The room the device is in.")
@click.option("--role", type=click.Choice(ROLES), help="What the device does in the kit.")
@click.option("--id", "device_id", help="The device's id in the config (default: role_room).")
@click.option("--name", default="", help="A name people see (optional).")
@click.option("--no-input", is_flag=True, help="Never prompt; --role is then required.")
def pair(
    config_path: Path,
    driver_ref: str,
    seconds: int,
    address: str | None,
    option_texts: tuple[str, ...],
    scan_seconds: float,
    room: str | None,
    role: str | None,
    device_id: str | None,
    name: str,
    no_input: bool,
) -> None:
    """Pair a device and add it to the home config: Zigbee by opening the network
    (permit-join), BLE by a scan to pick from (or --address), RFLink and Modbus by --address."""
    console = _console()
    _, config = _load(config_path)
    entry = _driver_entry(config, driver_ref)
    if entry.type not in (ZIGBEE, *ADDRESS_DRIVERS):
        fail(
            f"driver {entry.id!r} is of type {entry.type!r}; devices can be paired for "
            f"{', '.join((ZIGBEE, *ADDRESS_DRIVERS))} drivers",
            EXIT_USAGE,
        )
    if device_id is not None:
        try:
            _check_id(device_id)
        except click.BadParameter as exc:
            fail(exc.message, EXIT_USAGE)
    if entry.type != ZIGBEE:
        _pair_by_address(
            console,
            config_path,
            entry,
            address=address,
            option_texts=option_texts,
            scan_seconds=scan_seconds,
            room=room,
            role=role,
            device_id=device_id,
            name=name,
            no_input=no_input,
        )
        return
    if address is not None or option_texts:
        fail(
            "Zigbee devices are paired by joining, not by address: leave out --address and "
            "--option and put the device in pairing mode when asked",
            EXIT_USAGE,
        )
    if no_input and role is None:
        fail("--role is required with --no-input", EXIT_USAGE)
    broker, base = _zigbee(entry)
    console.print(
        f"Opening the Zigbee network of {entry.id!r} ({broker.url}, {base}/) for {seconds} s. "
        f"Put the device in pairing mode now."
    )
    interview, known = _run(lambda: _pair_with_countdown(broker, base, seconds, console))
    console.print("Joining closed.")

    exposes = known.exposed_properties if known else []
    model = interview.model or (known.model if known else "")
    vendor = interview.vendor or (known.vendor if known else "")
    friendly = known.friendly_name if known else interview.friendly_name
    details = Table(show_header=False, box=None)
    details.add_row("IEEE address", interview.ieee_address)
    details.add_row("model", f"{model} ({vendor})" if vendor else model or "unknown")
    details.add_row("description", interview.description or (known.description if known else ""))
    details.add_row("exposes", ", ".join(exposes) or "nothing known")
    details.add_row("supported", "yes" if interview.supported else "[yellow]no[/]")
    console.print("[green]Paired:[/]")
    console.print(details)

    # Edit the file as it is now, not as it was two minutes ago.
    doc, config = _load(config_path)
    existing = next(
        (
            d
            for d in config.devices
            if d.driver == entry.id
            and d.address.lower() in (interview.ieee_address, friendly.lower())
        ),
        None,
    )
    # Ask only for what the flags left out; the id too when the installer is answering anyway.
    role, room, device_id = _placement(
        console,
        doc,
        existing,
        role=role,
        room=room,
        device_id=device_id,
        no_input=no_input,
        role_guess=guess_role(exposes),
    )
    try:
        outcome, device_id = upsert_device(
            doc,
            device_id=device_id,
            driver=entry.id,
            address=interview.ieee_address,
            role=role,
            room=room,
            model=model,
            name=name,
            same_device=[friendly],
        )
    except HomeConfigEditError as exc:
        fail(f"{exc}; nothing written (the device stays paired with the bridge)", EXIT_USAGE)
    _save(config_path, doc)
    console.print(
        f"[green]{outcome.capitalize()}[/] device {device_id!r} ({role}"
        f"{', ' + room if room else ''}) in {config_path}. "
        f"Reload gatewayd to use it, then check it with `gatewayd test`."
    )


# -- pair by address (RFLink, Modbus) or by a scan (BLE) --------------------------------------

_ADDRESS_EXAMPLES = {
    "rflink": "Protocol:ID as the receiver prints it, like SmokeAlert:123456",
    "modbus": "tcp://HOST:PORT/UNIT or rtu://PORT/UNIT, like tcp://192.168.1.40:502/1",
    "ble": "the Bluetooth MAC, like A4:C1:38:8D:18:B2",
}


def _scan_and_pick(
    console: Console, config: HomeConfig, entry: DriverEntry, scan_seconds: float
) -> HeardDevice:
    console.print(
        f"Listening for BTHome devices for {scan_seconds:g} s through {entry.id!r}. "
        f"Press the new device's button now (most BTHome devices advertise only when used)."
    )
    try:
        scanner = scanner_for(entry)
        heard = asyncio.run(scan_bthome(scanner, seconds=scan_seconds))
    except AddressPairingError as exc:
        fail(str(exc), EXIT_CONFIG)
    except ScanFailed as exc:
        fail(
            f"{exc}. Is Bluetooth on? (A simulator udp:// scanner can be listened to by one "
            f"process at a time: stop gatewayd for the scan, or pass --address.)",
            EXIT_UNREACHABLE,
        )
    if not heard:
        fail(
            f"no BTHome device heard in {scan_seconds:g} s; press the device's button and scan "
            f"again (--scan-seconds for longer), or pass --address",
            EXIT_TIMEOUT,
        )
    configured = {d.address.upper(): d.id for d in config.devices if d.driver == entry.id}
    table = Table(title="BTHome devices heard (strongest signal first)")
    for column in ("#", "address", "name", "signal", "reports", "configured as"):
        table.add_column(column)
    for number, device in enumerate(heard, 1):
        table.add_row(
            str(number),
            device.address,
            device.name or "",
            "—" if device.rssi is None else f"{device.rssi} dBm",
            "encrypted (needs --option bind_key=...)"
            if device.encrypted
            else ", ".join(sorted(device.reports)) or "nothing known",
            configured.get(device.address, ""),
        )
    console.print(table)

    def check_pick(value: str) -> str:
        if not value.isdigit() or not 1 <= int(value) <= len(heard):
            raise click.BadParameter(f"answer a number from 1 to {len(heard)}")
        return value

    pick = _ask(console, "Which device", default="1" if len(heard) == 1 else None, check=check_pick)
    return heard[int(pick) - 1]


def _pair_by_address(
    console: Console,
    config_path: Path,
    entry: DriverEntry,
    *,
    address: str | None,
    option_texts: tuple[str, ...],
    scan_seconds: float,
    room: str | None,
    role: str | None,
    device_id: str | None,
    name: str,
    no_input: bool,
) -> None:
    try:
        options = dict(parse_option(text) for text in option_texts)
    except AddressPairingError as exc:
        fail(str(exc), EXIT_USAGE)
    if no_input and (role is None or address is None):
        fail(
            f"--address ({_ADDRESS_EXAMPLES[entry.type]}) and --role are required with --no-input",
            EXIT_USAGE,
        )
    _, config = _load(config_path)
    role_guess = "other"
    if address is None and entry.type == "ble":
        heard = _scan_and_pick(console, config, entry, scan_seconds)
        address, role_guess = heard.address, heard.role_guess
        if heard.encrypted and "bind_key" not in options:
            options["bind_key"] = _ask(
                console,
                f"{heard.address} sends encrypted BTHome. Its bind key (32 hex digits, from the "
                f"device's label or app)",
                default=None,
                check=_check_bind_key,
            )
    elif address is None:
        address = _ask(
            console,
            f"Address ({_ADDRESS_EXAMPLES[entry.type]})",
            default=None,
            check=_check_address,
        )
    address = address.strip()
    if entry.type == "ble":
        address = address.upper()

    doc, config = _load(config_path)
    existing = next(
        (
            d
            for d in config.devices
            if d.driver == entry.id and d.address.lower() == address.lower()
        ),
        None,
    )
    role, room, device_id = _placement(
        console,
        doc,
        existing,
        role=role,
        room=room,
        device_id=device_id,
        no_input=no_input,
        role_guess=role_guess,
    )
    try:
        outcome, device_id = upsert_device(
            doc,
            device_id=device_id,
            driver=entry.id,
            address=address,
            role=role,
            room=room,
            name=name,
        )
    except HomeConfigEditError as exc:
        fail(f"{exc}; nothing written", EXIT_USAGE)
    if options:
        _set_device_options(doc, device_id, options)
    # The driver checks the device as the daemon will at its next start or reload.
    try:
        edited = parse_config(tomlkit.dumps(doc), str(config_path))
        check_driver_devices(entry, [d for d in edited.devices if d.driver == entry.id])
    except ConfigError as exc:
        problems = "\n".join(exc.problems)
        fail(f"the edit would make the config invalid; nothing written:\n{problems}", EXIT_CONFIG)
    except AddressPairingError as exc:
        fail(f"{exc}; nothing written", EXIT_USAGE)
    _save(config_path, doc)
    console.print(
        f"[green]{outcome.capitalize()}[/] device {device_id!r} ({role}"
        f"{', ' + room if room else ''}, {address}) in {config_path}. "
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


# -- remove and rename --------------------------------------------------------------------------


def _bridge_name(address: str, inventory: dict[str, BridgeDevice] | None) -> str:
    if IEEE_ADDRESS.match(address) and inventory:
        known = inventory.get(address.lower())
        if known is not None:
            return known.friendly_name
    return address


@devices.command("remove")
@config_option
@click.argument("device_id")
@click.option("--config-only", is_flag=True, help="Only edit the config; leave the bridge alone.")
@click.option("--force", is_flag=True, help="Remove from the bridge even if the device is asleep.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(config_path: Path, device_id: str, config_only: bool, force: bool, yes: bool) -> None:
    """Remove a device from the config (and, for Zigbee, from the bridge's network)."""
    console = _console()
    doc, config = _load(config_path)
    device = config.device(device_id)
    if device is None:
        fail(f"no device {device_id!r} in {config_path}", EXIT_USAGE)
    if not yes and not click.confirm(f"Remove {device_id!r} ({device.role}, {device.address})?"):
        fail("not removed", EXIT_USAGE)
    entry = next(d for d in config.drivers if d.id == device.driver)
    if entry.type == ZIGBEE and not config_only:
        broker, base = _zigbee(entry)

        async def ask_bridge() -> None:
            async with BridgeSession(broker, base) as session:
                inventory = None
                if IEEE_ADDRESS.match(device.address):
                    try:
                        inventory = await session.fetch_inventory(wait=2.0)
                    except BridgeNoAnswer:
                        inventory = None
                await session.remove_device(_bridge_name(device.address, inventory), force=force)

        _run(ask_bridge)
        console.print(f"The bridge removed {device.address}.")
    try:
        remove_device(doc, device_id)
    except HomeConfigEditError as exc:
        fail(str(exc), EXIT_USAGE)
    _save(config_path, doc)
    console.print(f"[green]Removed[/] {device_id!r} from {config_path}.")


@devices.command("rename")
@config_option
@click.argument("device_id")
@click.argument("new_id")
@click.option("--config-only", is_flag=True, help="Only edit the config; leave the bridge alone.")
def rename(config_path: Path, device_id: str, new_id: str, config_only: bool) -> None:
    """Give a device a new id (for Zigbee also its friendly name on the bridge)."""
    console = _console()
    try:
        _check_id(new_id)
    except click.BadParameter as exc:
        fail(exc.message, EXIT_USAGE)
    doc, config = _load(config_path)
    device = config.device(device_id)
    if device is None:
        fail(f"no device {device_id!r} in {config_path}", EXIT_USAGE)
    if config.device(new_id) is not None and new_id != device_id:
        fail(f"device id {new_id!r} is already used", EXIT_USAGE)
    entry = next(d for d in config.drivers if d.id == device.driver)
    new_address = None
    if entry.type == ZIGBEE and not config_only:
        broker, base = _zigbee(entry)

        async def ask_bridge() -> None:
            async with BridgeSession(broker, base) as session:
                inventory = None
                if IEEE_ADDRESS.match(device.address):
                    try:
                        inventory = await session.fetch_inventory(wait=2.0)
                    except BridgeNoAnswer:
                        inventory = None
                await session.rename_device(_bridge_name(device.address, inventory), new_id)

        _run(ask_bridge)
        if not IEEE_ADDRESS.match(device.address):
            new_address = new_id  # known by its friendly name, which is now the new id
        console.print(f"The bridge renamed {device.address} to {new_id!r}.")
    try:
        rename_device(doc, device_id, new_id, address=new_address)
    except HomeConfigEditError as exc:
        fail(str(exc), EXIT_USAGE)
    _save(config_path, doc)
    console.print(f"[green]Renamed[/] {device_id!r} to {new_id!r} in {config_path}.")
