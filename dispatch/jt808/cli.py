"""`dispatchd wristband`: bind JT/T 808 wristbands to residents, list them, remove one, and set a
household's place (for a fix's distance from home)."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select, update

from dispatch.settings import Settings, env_var

__all__ = ["wristband"]

_db_option = click.option(
    "--db",
    "db_url",
    envvar=env_var("db"),
    default=Settings.model_fields["db"].get_default(),
    show_default=True,
    metavar="URL",
    help=f"{Settings.model_fields['db'].description} (env {env_var('db')})",
)


def _terminal(value: str) -> str:
    from contract.jt808 import normalise_phone

    try:
        return normalise_phone(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--terminal") from exc


@click.group()
def wristband() -> None:
    """JT/T 808 wristbands: bind them to residents, list them (unbound ones too), remove one."""


@wristband.command("add")
@_db_option
@click.option("--household", "household_id", required=True, help="The household's id.")
@click.option("--resident", default="", help="Who wears it, as operators will see it.")
@click.option(
    "--terminal", required=True, help="The wristband's phone number (its SIM's), e.g. 13912345678."
)
def wristband_add(db_url: str, household_id: str, resident: str, terminal: str) -> None:
    """Bind a wristband to a resident of a household (before or after it first registers)."""
    from dispatch.cli import _run
    from dispatch.jt808 import store
    from dispatch.tx import transaction

    number = _terminal(terminal)

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            await store.bind(
                tx, terminal=number, household_id=household_id, resident=resident, actor="cli"
            )

    _run(db_url, action)
    click.echo(
        f"wristband {number} bound to {household_id}" + (f" ({resident})" if resident else "")
    )


@wristband.command("list")
@_db_option
@click.option("--unbound", is_flag=True, help="Only those that registered and are not bound yet.")
def wristband_list(db_url: str, unbound: bool) -> None:
    """List wristbands: terminal, household, resident, online, last seen, battery, model."""
    from dispatch.cli import _run
    from dispatch.jt808.views import list_wristbands

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            return await list_wristbands(conn, False if unbound else None)

    for w in _run(db_url, action):
        seen = w.last_seen_at.isoformat() if w.last_seen_at else "-"
        state = "online" if w.online else "offline"
        battery = f"{w.battery}%" if w.battery is not None else "-"
        click.echo(
            f"{w.terminal}\t{w.household_id or 'UNBOUND'}\t{w.resident or '-'}\t{state}\t{seen}"
            f"\t{battery}\t{w.model or '-'}"
        )


@wristband.command("remove")
@_db_option
@click.option("--terminal", required=True, help="The wristband's phone number.")
def wristband_remove(db_url: str, terminal: str) -> None:
    """Remove a wristband (if it reports again, it is listed as unbound)."""
    from dispatch.cli import _run
    from dispatch.jt808 import store
    from dispatch.tx import transaction

    number = _terminal(terminal)

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            await store.unbind(tx, terminal=number, actor="cli")

    _run(db_url, action)
    click.echo(f"wristband {number} removed")


@wristband.command("place")
@_db_option
@click.option("--household", "household_id", required=True, help="The household's id.")
@click.option("--lat", type=click.FloatRange(-90, 90), required=True, help="Latitude, degrees.")
@click.option("--lon", type=click.FloatRange(-180, 180), required=True, help="Longitude, degrees.")
def wristband_place(db_url: str, household_id: str, lat: float, lon: float) -> None:
    """Set where a household's home is: the console shows a fix's distance from it."""
    from dispatch import schema
    from dispatch.cli import _run
    from dispatch.errors import NotFound
    from dispatch.gateways import insert_ignore
    from dispatch.tx import transaction

    async def action(db: Any) -> None:
        h, p = schema.households, schema.household_places
        async with transaction(db) as tx:
            if (
                await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))
            ).first() is None:
                raise NotFound(
                    "no such household", detail=f"household {household_id!r} does not exist"
                )
            values = {"lat": lat, "lon": lon, "updated_at": tx.now}
            await tx.conn.execute(
                insert_ignore(tx.dialect, p).values(household_id=household_id, **values)
            )
            await tx.conn.execute(update(p).where(p.c.household_id == household_id).values(values))
            tx.audit("cli", "household.place", "household", household_id, {"lat": lat, "lon": lon})

    _run(db_url, action)
    click.echo(f"household {household_id} is at {lat:.6f}, {lon:.6f}")
