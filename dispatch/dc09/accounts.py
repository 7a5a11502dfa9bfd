"""DC-09 accounts: which household a transmitter's account reports for, and its AES key.

Adding an account also adds the gateway row it reports under (``dc09:<account>``), so its alarms
join the household's incident queue like a gateway's, the incident names the path it came by,
and the supervisor watches its NULL messages like heartbeats.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from contract.dc09 import parse_key
from dispatch import gateways, schema
from dispatch.errors import BadRequest, Conflict, NotFound
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = [
    "UNSUPERVISED_UNTIL",
    "Dc09Account",
    "add_account",
    "gateway_id_of",
    "list_accounts",
    "load_accounts",
    "remove_account",
]

_ACCOUNT = re.compile(r"^[0-9A-F]{3,16}$")
#: The "offline after" of a transmitter that sends no NULL messages: never.
UNSUPERVISED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Dc09Account:
    account: str
    household_id: str
    gateway_id: str
    key: bytes | None
    supervision_s: float


def gateway_id_of(account: str) -> str:
    return f"dc09:{account}"


def normalise(account: str) -> str:
    value = account.strip().upper()
    if not _ACCOUNT.match(value):
        raise BadRequest(
            "invalid DC-09 account", detail=f"an account is 3-16 hex digits, got {account!r}"
        )
    return value


async def add_account(
    tx: Tx,
    settings: Settings,
    *,
    household_id: str,
    account: str,
    key: str | None,
    supervision_s: float,
) -> Dc09Account:
    acct = normalise(account)
    key_bytes = None
    if key:
        try:
            key_bytes = parse_key(key)
        except ValueError as exc:
            raise BadRequest("invalid DC-09 key", detail=str(exc)) from exc
    if supervision_s < 0:
        raise BadRequest("invalid supervision", detail="seconds between NULL messages, or 0")
    h, a, g = schema.households, schema.dc09_accounts, schema.gateways
    if (await tx.conn.execute(select(h.c.id).where(h.c.id == household_id))).first() is None:
        raise NotFound("unknown household", detail=f"no household {household_id!r}")
    if (await tx.conn.execute(select(a.c.account).where(a.c.account == acct))).first():
        raise Conflict("account exists", detail=f"DC-09 account {acct} is already mapped")
    gateway_id = gateway_id_of(acct)
    if (await tx.conn.execute(select(g.c.id).where(g.c.id == gateway_id))).first() is not None:
        raise Conflict("gateway exists", detail=f"a gateway {gateway_id!r} exists already")
    offline_after = (
        tx.now + timedelta(seconds=supervision_s * settings.heartbeat_misses)
        if supervision_s
        else UNSUPERVISED_UNTIL
    )
    await tx.conn.execute(
        g.insert().values(
            id=gateway_id,
            household_id=household_id,
            # Never handed out: a DC-09 transmitter cannot use the gateway API.
            secret=secrets.token_hex(32),
            version="SIA DC-09",
            enrolled_at=tx.now,
            online=True,
            offline_after=offline_after,
            status_changed_at=tx.now,
            interval_s=supervision_s or 0.0,
        )
    )
    await tx.conn.execute(
        a.insert().values(
            account=acct,
            household_id=household_id,
            gateway_id=gateway_id,
            key=key_bytes.hex().upper() if key_bytes else None,
            supervision_s=supervision_s,
            created_at=tx.now,
        )
    )
    detail = {"household": household_id, "encrypted": key_bytes is not None}
    tx.audit("cli", "dc09.account.added", "dc09_account", acct, detail)
    tx.change("gateway", "gateway.enrolled", gateway_id, {"household_id": household_id})
    return Dc09Account(acct, household_id, gateway_id, key_bytes, supervision_s)


async def remove_account(tx: Tx, account: str) -> None:
    acct = normalise(account)
    a = schema.dc09_accounts
    row = (await tx.conn.execute(select(a).where(a.c.account == acct))).mappings().first()
    if row is None:
        raise NotFound("unknown account", detail=f"no DC-09 account {acct}")
    await tx.conn.execute(delete(a).where(a.c.account == acct))
    await tx.conn.execute(delete(schema.dc09_seen).where(schema.dc09_seen.c.account == acct))
    # Its gateway row stays (incidents name it), revoked and no longer supervised.
    await gateways.revoke(tx, row["gateway_id"], actor="cli")
    await tx.conn.execute(
        update(schema.gateways)
        .where(schema.gateways.c.id == row["gateway_id"])
        .values(offline_after=UNSUPERVISED_UNTIL)
    )
    tx.audit("cli", "dc09.account.removed", "dc09_account", acct)


async def list_accounts(tx: Tx) -> list[Dc09Account]:
    return list((await load_accounts(tx)).values())


async def load_accounts(tx: Tx) -> dict[str, Dc09Account]:
    a = schema.dc09_accounts
    rows = await tx.conn.execute(select(a).order_by(a.c.account))
    return {
        r["account"]: Dc09Account(
            r["account"],
            r["household_id"],
            r["gateway_id"],
            bytes.fromhex(r["key"]) if r["key"] else None,
            float(r["supervision_s"]),
        )
        for r in rows.mappings()
    }
