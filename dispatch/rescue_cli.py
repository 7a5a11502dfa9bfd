"""``dispatchd rescuer add|list|disable`` and ``dispatchd rescuer team add|list``: the roster of
rescuers in the field from the command line, as supervisors keep it on the console's Rescuers
page (a centre set up from a script, or before anyone can log in)."""

from __future__ import annotations

from typing import Any

import click

from dispatch.cli import (
    EXIT_FAILURE,
    EXIT_USAGE,
    _fail,
    _run,
    db_option,
    read_password,
    validation_problems,
)

__all__ = ["rescuer"]


@click.group()
def rescuer() -> None:
    """Rescuers in the field: add, list, disable; their teams."""


async def _team_id(conn: Any, name: str | None) -> int | None:
    from sqlalchemy import select

    from dispatch import schema
    from dispatch.errors import NotFound

    if name is None:
        return None
    t = schema.rescue_teams
    found = (await conn.execute(select(t.c.id).where(t.c.name == name))).scalar()
    if found is None:
        raise NotFound(
            "no such team",
            detail=f"no team is called {name!r}: add it with `dispatchd rescuer team add {name!r}`"
            " (see `dispatchd rescuer team list`)",
        )
    return int(found)


@rescuer.command("add")
@db_option
@click.argument("name")
@click.option("--phone", required=True, help="The rescuer's mobile number, as dialled.")
@click.option("--team", default=None, help="The team's name (see `dispatchd rescuer team list`).")
@click.option("--shift", default="", help="e.g. 'day 07:00-19:00'.")
@click.option(
    "--status",
    type=click.Choice(["available", "off_duty"]),
    required=True,
    help="Where they start: available (can be sent now) or off duty (they start their shift on "
    "their phone). Chosen, never assumed.",
)
@click.option(
    "--login",
    "username",
    default=None,
    help="A login for the rescuer's phone page (role rescuer); asks for its password.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the login's password from standard input."
)
def rescuer_add(
    db_url: str,
    name: str,
    phone: str,
    team: str | None,
    shift: str,
    status: str,
    username: str | None,
    password_stdin: bool,
) -> None:
    """Put a rescuer on the roster (with --login, the account their phone logs in with)."""
    from pydantic import ValidationError

    from dispatch.rescue import create_rescuer
    from dispatch.rescue_models import RescuerIn
    from dispatch.settings import Settings
    from dispatch.tx import transaction

    password = None
    if username is not None:
        password = read_password(
            password_stdin, f"dispatchd rescuer add {name!r} --login {username}"
        )
    elif password_stdin:
        _fail("--password-stdin is for a login: give --login USERNAME too", EXIT_USAGE)
    try:
        spec = RescuerIn(
            name=name,
            phone=phone,
            shift=shift,
            status=status,
            username=username,
            password=password,
        )
    except ValidationError as exc:
        _fail(validation_problems(exc), EXIT_FAILURE)

    async def action(db: Any) -> Any:
        async with transaction(db) as tx:
            team_id = await _team_id(tx.conn, team)
            return await create_rescuer(
                tx, Settings.load(), spec.model_copy(update={"team_id": team_id}), actor="cli"
            )

    made = _run(db_url, action)
    login = f", login {made.username}" if made.username else ""
    click.echo(f"rescuer {made.id} {made.name} added ({made.status.replace('_', ' ')}{login})")


@rescuer.command("list")
@db_option
def rescuer_list(db_url: str) -> None:
    """List the roster: id, name, team, status, phone, login, shift, open task's incident."""
    from datetime import UTC, datetime

    from dispatch.rescue import list_rescuers
    from dispatch.settings import Settings

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            return await list_rescuers(conn, Settings.load(), datetime.now(UTC))

    for r in _run(db_url, action):
        task = r.assignment.incident_id if r.assignment else "-"
        click.echo(
            f"{r.id}\t{r.name}\t{r.team or '-'}\t{r.status}\t{r.phone}\t{r.username or '-'}"
            f"\t{r.shift or '-'}\t{task}"
        )


@rescuer.command("disable")
@db_option
@click.argument("rescuer_id", type=click.IntRange(min=1), metavar="ID")
def rescuer_disable(db_url: str, rescuer_id: int) -> None:
    """Take a rescuer off duty and disable their login (ending its sessions). Refused while they
    have a task: reassign it or call it off first. They stay on the roster (their past tasks are
    in the reports)."""
    from dispatch import operators, rescue
    from dispatch.models import OperatorPatch
    from dispatch.rescue_models import RescuerPatch
    from dispatch.settings import Settings
    from dispatch.tx import transaction

    async def action(db: Any) -> Any:
        async with transaction(db) as tx:
            row = await rescue.load_rescuer(tx.conn, rescuer_id)
            model = await rescue.update_rescuer(
                tx, Settings.load(), rescuer_id, RescuerPatch(status="off_duty"), actor="cli"
            )
            if row["username"] is not None:
                await operators.update_operator(
                    tx, row["username"], OperatorPatch(disabled=True), actor="cli"
                )
            return model

    done = _run(db_url, action)
    login = f", login {done.username} disabled" if done.username else ""
    click.echo(f"rescuer {done.id} {done.name} off duty{login}")


@rescuer.group()
def team() -> None:
    """Rescue teams: add, list."""


@team.command("add")
@db_option
@click.argument("name")
def team_add(db_url: str, name: str) -> None:
    """Add a team (a whole team can be sent to an incident at once)."""
    from pydantic import ValidationError

    from dispatch.rescue import create_team
    from dispatch.rescue_models import TeamIn
    from dispatch.tx import transaction

    try:
        spec = TeamIn(name=name)
    except ValidationError as exc:
        _fail(validation_problems(exc), EXIT_FAILURE)

    async def action(db: Any) -> Any:
        async with transaction(db) as tx:
            return await create_team(tx, spec.name, actor="cli")

    made = _run(db_url, action)
    click.echo(f"team {made.id} {made.name} added")


@team.command("list")
@db_option
def team_list(db_url: str) -> None:
    """List teams: id, name, members."""
    from dispatch.rescue import list_teams

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            return await list_teams(conn)

    for t in _run(db_url, action):
        click.echo(f"{t.id}\t{t.name}\t{t.members}")
