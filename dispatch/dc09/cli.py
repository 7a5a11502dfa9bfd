"""``dispatchd dc09 account add|list|remove``: map DC-09 accounts to households."""

from __future__ import annotations

from typing import Any

import click

from dispatch.cli import _run, db_option

__all__ = ["dc09"]


@click.group()
def dc09() -> None:
    """SIA DC-09 transmitters (panels, telecare units) reporting into dispatchd."""


@dc09.group()
def account() -> None:
    """DC-09 accounts: add, list, remove."""


@account.command("add")
@db_option
@click.option("--household", "household_id", required=True, help="The household it reports for.")
@click.option("--account", "account_id", required=True, help="The account: 3-16 hex digits.")
@click.option(
    "--key",
    default=None,
    help="AES key as 32, 48 or 64 hex digits (AES-128/192/256); the account must then encrypt.",
)
@click.option(
    "--supervision",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds between the transmitter's NULL messages (0: not supervised).",
)
def account_add(
    db_url: str, household_id: str, account_id: str, key: str | None, supervision: float
) -> None:
    """Map an account to a household; its alarms open incidents there."""
    from dispatch.dc09.accounts import add_account
    from dispatch.settings import Settings
    from dispatch.tx import transaction

    async def action(db: Any) -> Any:
        async with transaction(db) as tx:
            return await add_account(
                tx,
                Settings(),
                household_id=household_id,
                account=account_id,
                key=key,
                supervision_s=supervision,
            )

    added = _run(db_url, action)
    how = "encrypted (AES)" if added.key else "in the clear"
    click.echo(f"account {added.account} reports for {added.household_id} {how}")


@account.command("list")
@db_option
def account_list(db_url: str) -> None:
    """List accounts: account, household, encryption, supervision."""
    from dispatch.dc09.accounts import list_accounts
    from dispatch.tx import transaction

    async def action(db: Any) -> Any:
        async with transaction(db, durable=False) as tx:
            return await list_accounts(tx)

    for row in _run(db_url, action):
        aes = f"AES-{len(row.key) * 8}" if row.key else "clear"
        supervision = f"{row.supervision_s:g}s" if row.supervision_s else "-"
        click.echo(f"{row.account}\t{row.household_id}\t{aes}\t{supervision}")


@account.command("remove")
@db_option
@click.option("--account", "account_id", required=True, help="The account to remove.")
def account_remove(db_url: str, account_id: str) -> None:
    """Remove an account: its messages are refused (NAK) from now on."""
    from dispatch.dc09.accounts import remove_account
    from dispatch.tx import transaction

    async def action(db: Any) -> None:
        async with transaction(db) as tx:
            await remove_account(tx, account_id)

    _run(db_url, action)
    click.echo(f"account {account_id.upper()} removed")
