"""`gatewayd devices`: the home's devices, and pairing new ones from the command line.

::

    gatewayd devices list [--live] [--json]
    gatewayd devices pair --driver ID_OR_TYPE [...]        (see gatewayd.commands.pair)
    gatewayd devices remove ID [--config-only] [--force] [--yes]
    gatewayd devices rename ID NEW_ID [--config-only]

Every driver is reached through its :class:`~drivers.pairing.Pairing`, loaded from the driver
registry, so a plug-in driver's devices are listed, paired, removed and renamed like the
built-ins'. For a driver with a network of its own (a Zigbee2MQTT bridge), ``list --live`` shows
what the network knows, and ``remove`` and ``rename`` ask the network first and edit the config
only when it agreed.

Exit codes: 0 done; 1 the bridge refused; 2 a bad flag or answer; 3 the config cannot be read or
the edit would make it invalid; 4 the broker or bridge does not answer. Nothing is written
unless everything before it succeeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from contract.home import HomeConfig
from drivers.pairing import KnownDevice, Pairing
from gatewayd.cli import EXIT_USAGE
from gatewayd.commands.daemon_options import config_option
from gatewayd.commands.device_drivers import (
    check_id,
    load,
    network_of,
    run_pairing,
    save,
    stderr_console,
)
from gatewayd.commands.pair import pair
from gatewayd.homeconfig_edit import HomeConfigEditError, remove_device, rename_device
from runtime.cli import fail

__all__ = ["devices"]


@click.group("devices")
def devices() -> None:
    """List, pair, remove and rename the home's devices."""


devices.add_command(pair)


# -- list -------------------------------------------------------------------------------------


async def _inventory(session: Pairing) -> list[KnownDevice]:
    return await session.inventory()


def _inventory_rows(
    driver_id: str, network: Pairing, config: HomeConfig
) -> list[tuple[KnownDevice, str | None]]:
    """What the network knows, each with the id of the configured device it is (or None)."""
    configured = {d.address.lower(): d.id for d in config.devices if d.driver == driver_id}
    return [
        (known, configured.get(known.address.lower()) or configured.get(known.name.lower()))
        for known in run_pairing(network, _inventory)
    ]


@devices.command("list")
@config_option
@click.option("--live", is_flag=True, help="Also ask each driver's own network what is paired.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def list_devices(config_path: Path, live: bool, as_json: bool) -> None:
    """The configured devices of every driver (and, with --live, each network's inventory)."""
    _, config = load(config_path)
    networks: dict[str, tuple[Pairing, list[tuple[KnownDevice, str | None]]]] = {}
    for entry in config.drivers if live else []:
        network = network_of(entry) if entry.enabled else None
        if network is not None:
            networks[entry.id] = (network, _inventory_rows(entry.id, network, config))
    if as_json:
        bridges = {
            driver_id: [{**known.details, "configured_as": as_id} for known, as_id in rows]
            for driver_id, (_, rows) in networks.items()
        }
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
    for driver_id, (network, rows) in networks.items():
        live_table = Table(title=f"Paired with {driver_id!r}")
        for column in ("name", network.address_kind, "model", "vendor", "configured as"):
            live_table.add_column(column)
        for known, as_id in rows:
            live_table.add_row(
                known.name,
                known.address,
                known.model or ("not identified" if not known.identified else "?"),
                known.vendor,
                as_id or "[yellow]not configured[/]",
            )
        console.print(live_table if rows else f"{driver_id!r}: nothing paired.")


# -- remove and rename --------------------------------------------------------------------------


@devices.command("remove")
@config_option
@click.argument("device_id")
@click.option("--config-only", is_flag=True, help="Only edit the config; leave the bridge alone.")
@click.option("--force", is_flag=True, help="Remove from the bridge even if the device is asleep.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(config_path: Path, device_id: str, config_only: bool, force: bool, yes: bool) -> None:
    """Remove a device from the config (and from its driver's network, such as Zigbee's)."""
    console = stderr_console()
    doc, config = load(config_path)
    device = config.device(device_id)
    if device is None:
        fail(f"no device {device_id!r} in {config_path}", EXIT_USAGE)
    if not yes and not click.confirm(f"Remove {device_id!r} ({device.role}, {device.address})?"):
        fail("not removed", EXIT_USAGE)
    entry = next(d for d in config.drivers if d.id == device.driver)
    network = None if config_only else network_of(entry)
    if network is not None:

        async def unpair(session: Pairing) -> None:
            await session.unpair(device.address, force=force)

        run_pairing(network, unpair)
        console.print(f"{entry.id!r} removed {device.address} from its network.", markup=False)
    try:
        remove_device(doc, device_id)
    except HomeConfigEditError as exc:
        fail(str(exc), EXIT_USAGE)
    save(config_path, doc)
    console.print(f"[green]Removed[/] {device_id!r} from {config_path}.")


@devices.command("rename")
@config_option
@click.argument("device_id")
@click.argument("new_id")
@click.option("--config-only", is_flag=True, help="Only edit the config; leave the bridge alone.")
def rename(config_path: Path, device_id: str, new_id: str, config_only: bool) -> None:
    """Give a device a new id (and its name in its driver's network, such as Zigbee's)."""
    console = stderr_console()
    try:
        check_id(new_id)
    except click.BadParameter as exc:
        fail(exc.message, EXIT_USAGE)
    doc, config = load(config_path)
    device = config.device(device_id)
    if device is None:
        fail(f"no device {device_id!r} in {config_path}", EXIT_USAGE)
    if config.device(new_id) is not None and new_id != device_id:
        fail(f"device id {new_id!r} is already used", EXIT_USAGE)
    entry = next(d for d in config.drivers if d.id == device.driver)
    network = None if config_only else network_of(entry)
    new_address = None
    if network is not None:

        async def rename_in_network(session: Pairing) -> str:
            return await session.rename(device.address, new_id)

        known_as = run_pairing(network, rename_in_network)
        if known_as != device.address:
            new_address = known_as  # known by its name in the network, which is now the new one
        console.print(f"{entry.id!r} renamed {device.address} to {new_id!r}.", markup=False)
    try:
        rename_device(doc, device_id, new_id, address=new_address)
    except HomeConfigEditError as exc:
        fail(str(exc), EXIT_USAGE)
    save(config_path, doc)
    console.print(f"[green]Renamed[/] {device_id!r} to {new_id!r} in {config_path}.")
