"""`dispatchd`: serve the dispatch API, migrate the schema, and administer from the shell.

Exit codes: 0 done, 1 failure, 2 usage, 3 bad configuration (URL, option), 4 database
unreachable or unmigratable, 5 not found, 6 conflict (exists already, already revoked).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import structlog
from sqlalchemy import insert, select

from dispatch import __version__
from dispatch.jt808.cli import wristband
from dispatch.serve_flags import given_settings, settings_options
from dispatch.settings import Settings, env_var
from runtime.cli import fail

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_NOT_FOUND = 5
EXIT_CONFLICT = 6

T = TypeVar("T")

# The administrative commands take the database the way serve does: the same flag and variable.
db_option = click.option(
    "--db",
    "db_url",
    envvar=env_var("db"),
    default=Settings.model_fields["db"].get_default(),
    show_default=True,
    metavar="URL",
    help=f"{Settings.model_fields['db'].description} (env {env_var('db')})",
)


_fail = functools.partial(fail, prefix="dispatchd:")


def _refuse_missing_database(db_url: str, *, create: bool = False) -> None:
    """Exit 3 naming the file when an SQLite database does not exist (and was not asked to
    be created): a mistyped path must not become a new, empty database."""
    from dispatch.db import missing_sqlite_file
    from dispatch.errors import ConfigError

    try:
        missing = missing_sqlite_file(db_url)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    if missing is not None and not create:
        _fail(
            f"no database at {missing}: check the path, or create it with "
            f"`dispatchd migrate --db {db_url}` (or `dispatchd serve --create`)",
            EXIT_CONFIG,
        )


def read_password(from_stdin: bool, command: str) -> str:
    """A new account's password: from standard input, or asked twice on the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        # getpass would fall back to echoing stdin with a warning, then abort on its end.
        _fail(
            "no terminal to ask for the password: give it on standard input with "
            f'--password-stdin (echo "$PASSWORD" | {command} --password-stdin)',
            EXIT_USAGE,
        )
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        _fail("the passwords differ", EXIT_FAILURE)
    return password


def validation_problems(exc: Any) -> str:
    """A pydantic ValidationError as one line naming each bad field."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _run(db_url: str, action: Callable[[Any], Awaitable[T]]) -> T:
    """Open and migrate the database, run ``action(db)``, map our errors to exit codes."""
    from dispatch.db import Database
    from dispatch.errors import ConfigError, Conflict, NotFound, Problem, StorageError
    from dispatch.migrations import migrate

    _refuse_missing_database(db_url)

    async def main() -> T:
        db = Database(db_url)
        try:
            await db.check()
            await migrate(db)
            return await action(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except StorageError as exc:
        _fail(str(exc), EXIT_DATABASE)
    except NotFound as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except Conflict as exc:
        _fail(str(exc), EXIT_CONFLICT)
    except Problem as exc:
        _fail(str(exc), EXIT_FAILURE)
    raise AssertionError("unreachable")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dispatchd")
def cli() -> None:
    """The dispatch centre's server: gateway ingest, incidents, operators, live stream."""
    # Administrative commands print their results on stdout; only warnings go to stderr.
    # (serve configures logging for the daemon itself.)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


@cli.command()
@settings_options
@click.option(
    "--create",
    is_flag=True,
    help="Create the SQLite database if its file does not exist (else that is refused).",
)
def serve(create: bool, **options: Any) -> None:
    """Migrate the database forward and serve the API.

    Every option may also be set by its environment variable (DISPATCHD_ and the setting's
    name, e.g. DISPATCHD_DB, DISPATCHD_SLA_ACK_S); an option on the command line wins.
    An SQLite database must exist (``dispatchd migrate`` creates it) unless --create is given.
    """

    from dispatch.api.app import create_app
    from dispatch.db import Database
    from dispatch.errors import ConfigError, StorageError
    from dispatch.migrations import migrate
    from dispatch.sealing import load_secret_box, seal_plaintext_secrets
    from runtime import sdnotify
    from runtime.logs import configure_logging

    try:
        settings = Settings.load(given_settings(options))
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    _refuse_missing_database(settings.db, create=create)
    db = Database(settings.db)
    configure_logging(level=settings.log_level)
    host, port = settings.host, settings.port

    async def main() -> None:
        try:
            await db.check()
            await migrate(db)
            # Before listening: a missing or wrong secrets key is a clear error, not a 500.
            await seal_plaintext_secrets(db, await load_secret_box(db, settings))
        except StorageError as exc:
            await db.dispose()
            _fail(str(exc), EXIT_DATABASE)
        except ConfigError as exc:
            await db.dispose()
            _fail(str(exc), EXIT_CONFIG)
        structlog.get_logger("dispatch").info("database_opened", db=db.where, dialect=db.dialect)
        server = _notifying_server_class()(server_config(create_app(db, settings), settings))
        serving = asyncio.create_task(server.serve())
        # systemd (Type=notify): READY once the socket accepts, the watchdog fed only while
        # the server is up and the event loop turns.
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers only a flag)
            await asyncio.sleep(0.05)
        watchdog: asyncio.Task[None] | None = None
        if server.started:
            sdnotify.ready(f"serving on {host}:{port}")
            interval = sdnotify.watchdog_interval()
            if interval:
                watchdog = asyncio.create_task(
                    sdnotify.run_watchdog(
                        lambda: server.started and not server.should_exit, interval
                    )
                )
        try:
            await serving
        finally:
            if watchdog is not None:
                watchdog.cancel()

    asyncio.run(main())


def server_config(app: Any, settings: Settings) -> Any:
    """uvicorn as ``serve`` runs it: our logging (not uvicorn's), no access log, three seconds
    for open answers at a stop, no Server header."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
        server_header=False,
    )


def _notifying_server_class() -> Any:
    import uvicorn

    from runtime import sdnotify

    class NotifyingServer(uvicorn.Server):
        """Tells systemd STOPPING=1 the moment a stop begins (uvicorn re-raises the signal at
        the end of serve(), so nothing after it would run)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            sdnotify.stopping()
            super().handle_exit(sig, frame)

    return NotifyingServer


@cli.command("migrate")
@db_option
def migrate_cmd(db_url: str) -> None:
    """Create the database if need be, and bring its schema forward (serve does this too)."""
    from dispatch.db import Database, missing_sqlite_file
    from dispatch.errors import ConfigError, StorageError
    from dispatch.migrations import MIGRATIONS, migrate
    from dispatch.sealing import NoSecretsKey, load_secret_box, seal_plaintext_secrets

    async def main() -> tuple[list[int], int | None]:
        db = Database(db_url)
        try:
            await db.check()
            applied = await migrate(db)
            # Secrets stored before sealing existed are sealed now, if the key is at hand.
            try:
                box = await load_secret_box(db, Settings.load({"db": db_url}))
            except NoSecretsKey:
                return applied, None
            return applied, await seal_plaintext_secrets(db, box)
        finally:
            await db.dispose()

    try:
        new_file = missing_sqlite_file(db_url)
        applied, sealed = asyncio.run(main())
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except StorageError as exc:
        _fail(str(exc), EXIT_DATABASE)
    if new_file is not None:
        click.echo(f"created a new database at {new_file}")
    if sealed:
        click.echo(f"sealed {sealed} gateway secret(s) stored in plaintext")
    elif sealed is None:
        click.echo(
            f"gateway secrets not sealed: no key ({env_var('secrets_key_file')} or "
            f"{env_var('secrets_key')}); `dispatchd serve` needs one"
        )
    latest = MIGRATIONS[-1].version
    if applied:
        click.echo(f"applied {', '.join(map(str, applied))}; schema at version {latest}")
    else:
        click.echo(f"schema up to date (version {latest})")


@cli.command("enroll-code")
@db_option
@click.option("--household", "household_id", required=True, help="The household's id.")
@click.option(
    "--ttl",
    type=click.IntRange(60, 7 * 86400),
    default=3600,
    show_default=True,
    help="Seconds the code stays valid.",
)
def enroll_code(db_url: str, household_id: str, ttl: int) -> None:
    """Print a one-time code that enrolls one gateway to a household."""
    from dispatch.gateways import make_enroll_code
    from dispatch.tx import transaction

    async def action(db: Any) -> str:
        async with transaction(db) as tx:
            return await make_enroll_code(tx, household_id=household_id, ttl_s=ttl, actor="cli")

    click.echo(_run(db_url, action))


# -- operators ----------------------------------------------------------------------------------


@cli.group()
def operator() -> None:
    """Operator accounts of the console: add, list, disable."""


@operator.command("add")
@db_option
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["operator", "supervisor", "admin"]),
    default="operator",
    show_default=True,
    help="What the account may do; each role may do all the one before it may, and more.",
)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def operator_add(
    db_url: str, username: str, role: str, display_name: str, password_stdin: bool
) -> None:
    """Create an operator account (prompts for the password unless --password-stdin)."""
    from pydantic import ValidationError

    from dispatch.models import OperatorIn, Role
    from dispatch.operators import create_operator, hash_password
    from dispatch.tx import transaction

    password = read_password(password_stdin, f"dispatchd operator add {username}")
    try:
        spec = OperatorIn(
            username=username, role=Role(role), display_name=display_name, password=password
        )
    except ValidationError as exc:
        _fail(validation_problems(exc), EXIT_FAILURE)

    async def action(db: Any) -> None:
        hashed = await hash_password(spec.password)
        async with transaction(db) as tx:
            await create_operator(
                tx,
                username=spec.username,
                password_hash=hashed,
                role=spec.role,
                display_name=spec.display_name,
                actor="cli",
            )

    _run(db_url, action)
    click.echo(f"operator {username} added ({role})")


@operator.command("list")
@db_option
def operator_list(db_url: str) -> None:
    """List operator accounts."""
    from dispatch import schema

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            o = schema.operators
            return list((await conn.execute(select(o).order_by(o.c.username))).mappings())

    for row in _run(db_url, action):
        state = "disabled" if row["disabled"] else "active"
        click.echo(f"{row['username']}\t{row['role']}\t{state}\t{row['display_name']}")


@operator.command("disable")
@db_option
@click.argument("username")
def operator_disable(db_url: str, username: str) -> None:
    """Disable an operator account and end its sessions."""
    from dispatch.models import OperatorPatch
    from dispatch.operators import update_operator
    from dispatch.tx import transaction

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            await update_operator(tx, username, OperatorPatch(disabled=True), actor="cli")

    _run(db_url, action)
    click.echo(f"operator {username} disabled")


# -- gateways -----------------------------------------------------------------------------------


@cli.group()
def gateway() -> None:
    """Enrolled gateways: list them, revoke one, allow one to be enrolled again."""


@gateway.command("list")
@db_option
def gateway_list(db_url: str) -> None:
    """List gateways: id, household, status, last heartbeat, version."""
    from dispatch import schema

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            g = schema.gateways
            return list((await conn.execute(select(g).order_by(g.c.id))).mappings())

    for row in _run(db_url, action):
        status = "revoked" if row["revoked_at"] else ("online" if row["online"] else "offline")
        last = row["last_heartbeat_at"].isoformat() if row["last_heartbeat_at"] else "-"
        click.echo(f"{row['id']}\t{row['household_id']}\t{status}\t{last}\t{row['version']}")


@gateway.command("allow-reenroll")
@db_option
@click.argument("gateway_id")
def gateway_allow_reenroll(db_url: str, gateway_id: str) -> None:
    """Allow one new enrollment of an existing (or revoked) gateway id, for a while (audited)."""
    from dispatch.enrollment import allow_reenroll
    from dispatch.tx import transaction

    async def action(db: Any) -> Any:
        async with transaction(db) as tx:
            return await allow_reenroll(tx, Settings.load({"db": db_url}), gateway_id, actor="cli")

    expires = _run(db_url, action)
    click.echo(
        f"gateway {gateway_id} may be enrolled again once, with a new code, until "
        f"{expires.isoformat(timespec='seconds')}"
    )


@gateway.command("revoke")
@db_option
@click.argument("gateway_id")
def gateway_revoke(db_url: str, gateway_id: str) -> None:
    """Revoke a gateway: its requests are refused from now on."""
    from dispatch.gateways import revoke
    from dispatch.tx import transaction

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            await revoke(tx, gateway_id, actor="cli")

    _run(db_url, action)
    click.echo(f"gateway {gateway_id} revoked")


# -- wristbands (their commands live with the JT/T 808 server) -----------------------------------

cli.add_command(wristband)

# -- households ---------------------------------------------------------------------------------


@cli.group()
def household() -> None:
    """Households the centre serves: add and list them."""


@household.command("add")
@db_option
@click.argument("household_id")
@click.option("--name", required=True, help="The name operators see.")
@click.option("--address", default="", help="Street address, for the crew.")
@click.option("--community", default="", help="Community or street, for reports.")
@click.option("--phone", default="", help="The household's phone, for call-backs.")
def household_add(
    db_url: str, household_id: str, name: str, address: str, community: str, phone: str
) -> None:
    """Create a household (residents, contacts and devices are edited in the console/API)."""
    from pydantic import ValidationError

    from dispatch import schema
    from dispatch.errors import Conflict
    from dispatch.households import household_values
    from dispatch.models import HouseholdIn
    from dispatch.tx import transaction

    try:
        spec = HouseholdIn(
            id=household_id, name=name, address=address, community=community, phone=phone
        )
    except ValidationError as exc:
        _fail(validation_problems(exc), EXIT_FAILURE)

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            h = schema.households
            if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first():
                raise Conflict("household exists", detail=f"household {household_id!r} exists")
            await tx.conn.execute(
                insert(h).values(
                    id=household_id,
                    created_at=tx.now,
                    updated_at=tx.now,
                    **household_values(spec),
                )
            )
            tx.audit("cli", "household.created", "household", household_id, {"name": name})

    _run(db_url, action)
    click.echo(f"household {household_id} added")


@household.command("list")
@db_option
def household_list(db_url: str) -> None:
    """List households: id, name, community, address."""
    from dispatch import schema

    async def action(db: Any) -> list[Any]:
        async with db.read() as conn:
            h = schema.households
            return list((await conn.execute(select(h).order_by(h.c.id))).mappings())

    for row in _run(db_url, action):
        click.echo(f"{row['id']}\t{row['name']}\t{row['community']}\t{row['address']}")


def main() -> None:
    cli(prog_name="dispatchd")


def _add_groups() -> None:
    # Imported here: the groups' modules use this one's helpers.
    from dispatch.dc09.cli import dc09
    from dispatch.rescue_cli import rescuer

    cli.add_command(dc09)
    cli.add_command(rescuer)


_add_groups()


__all__ = ["cli", "main"]
