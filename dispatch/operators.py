"""Operator accounts and sessions.

Passwords are hashed with argon2 (off the event loop: a hash takes tens of milliseconds). Session
tokens are random; only their SHA-256 is stored, in the database, so every process accepts them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import incidents, presence, schema
from dispatch.db import Database
from dispatch.errors import Conflict, NotFound, Unauthorized
from dispatch.models import LoginReply, Operator, OperatorPatch, Role
from dispatch.tx import Tx, transaction

__all__ = [
    "create_operator",
    "hash_password",
    "login",
    "logout",
    "operator_model",
    "session_operator",
    "update_operator",
]

log = structlog.get_logger(__name__)
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both failures take the same time.
    Made on first use (an argon2 hash takes a core for ~0.15 s: not in every CLI command);
    the server makes it at start (:func:`warm_up`), so no login pays for it."""
    return _hasher.hash("not-a-real-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


# Password checks run one at a time in a thread of their own: argon2 takes a whole core while it
# runs, and on a small server the other must stay with the event loop that serves the alarm
# queue. A burst of logins waits its turn here instead of slowing everything else.
_verifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")


def warm_up() -> None:
    """Make the unknown-user hash on the verifier's thread, ahead of the first login."""
    _verifier.submit(_dummy_hash)


async def _verify(hashed: str | None, password: str) -> bool:
    """``hashed`` None: an unknown user, checked against the dummy hash (always False)."""

    def check() -> bool:
        try:
            return _hasher.verify(hashed or _dummy_hash(), password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(_verifier, check)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def operator_model(row: RowMapping) -> Operator:
    return Operator(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


async def create_operator(
    tx: Tx,
    *,
    username: str,
    password_hash: str,
    role: Role,
    display_name: str = "",
    actor: str,
) -> Operator:
    o = schema.operators
    try:
        async with tx.conn.begin_nested():
            result = await tx.conn.execute(
                insert(o).values(
                    username=username,
                    display_name=display_name,
                    role=role.value,
                    password_hash=password_hash,
                    disabled=False,
                    created_at=tx.now,
                )
            )
    except IntegrityError as exc:
        raise Conflict("operator exists", detail=f"username {username!r} is taken") from exc
    new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    row = (await tx.conn.execute(select(o).where(o.c.id == new_id))).mappings().one()
    tx.audit(actor, "operator.created", "operator", username, {"role": role.value})
    return _changed(tx, "operator.created", operator_model(row))


async def update_operator(tx: Tx, username: str, patch: OperatorPatch, *, actor: str) -> Operator:
    o = schema.operators
    values: dict[str, object] = {}
    if patch.display_name is not None:
        values["display_name"] = patch.display_name
    if patch.role is not None:
        values["role"] = patch.role.value
    if patch.disabled is not None:
        values["disabled"] = patch.disabled
    if patch.password is not None:
        values["password_hash"] = await hash_password(patch.password)
    row = (await tx.conn.execute(select(o).where(o.c.username == username))).mappings().first()
    if row is None:
        raise NotFound("no such operator", detail=f"operator {username!r} does not exist")
    loses_admin = row["role"] == Role.ADMIN.value and (
        patch.disabled is True or (patch.role is not None and patch.role is not Role.ADMIN)
    )
    if loses_admin and not row["disabled"]:
        admins = (
            await tx.conn.execute(
                select(func.count())
                .select_from(o)
                .where(o.c.role == Role.ADMIN.value, o.c.disabled.is_(False))
            )
        ).scalar_one()
        if admins <= 1:
            raise Conflict(
                "last admin",
                detail=f"{username!r} is the only enabled admin; make another admin first, "
                "so that someone can still manage operators",
            )
    if values:
        await tx.conn.execute(update(o).where(o.c.id == row["id"]).values(values))
    if patch.disabled:
        # A disabled account loses its sessions, and what it held, at once.
        await tx.conn.execute(
            delete(schema.sessions).where(schema.sessions.c.operator_id == row["id"])
        )
        await incidents.operator_away(
            tx, row["id"], presence.PresenceStatus.GONE, "account disabled"
        )
    changed = sorted(k if k != "password_hash" else "password" for k in values)
    detail: dict[str, object] = {"changed": changed}
    if patch.role is not None:
        detail["role"] = patch.role.value
    if patch.disabled is not None:
        detail["disabled"] = patch.disabled
    tx.audit(actor, "operator.updated", "operator", username, detail)
    row = (await tx.conn.execute(select(o).where(o.c.id == row["id"]))).mappings().one()
    return _changed(tx, "operator.updated", operator_model(row))


def _changed(tx: Tx, kind: str, record: Operator) -> Operator:
    """The operators page of every supervisor and admin follows the stream: the new record."""
    tx.change(
        "operator", kind, record.username, record.model_dump(mode="json"), audience="supervisor"
    )
    return record


async def login(db: Database, *, username: str, password: str, ttl_s: float) -> LoginReply:
    """Check the password and open a session; a refusal is audited too (in its own commit)."""
    o = schema.operators
    async with db.read() as conn:
        row = (await conn.execute(select(o).where(o.c.username == username))).mappings().first()
    ok = await _verify(row["password_hash"] if row else None, password)
    if row is None or not ok or row["disabled"]:
        async with transaction(db, durable=False) as tx:
            tx.audit(username, "auth.login_failed", "operator", username)
        log.info("login refused", operator=username)
        raise Unauthorized(
            "login failed", detail="unknown user, wrong password or disabled account"
        )
    token = secrets.token_urlsafe(32)
    async with transaction(db) as tx:
        expires = tx.now + timedelta(seconds=ttl_s)
        await tx.conn.execute(
            insert(schema.sessions).values(
                token_hash=token_hash(token),
                operator_id=row["id"],
                created_at=tx.now,
                expires_at=expires,
            )
        )
        tx.audit(username, "auth.login", "operator", username)
    return LoginReply(operator=operator_model(row), expires_at=expires, token=token)


async def logout(tx: Tx, token: str, *, actor: str) -> None:
    """End the session; the operator is gone, and what they held returns to the queue."""
    s = schema.sessions
    ended = await tx.conn.execute(
        delete(s).where(s.c.token_hash == token_hash(token)).returning(s.c.operator_id)
    )
    operator_id = ended.scalar()
    tx.audit(actor, "auth.logout", "operator", actor)
    if operator_id is not None:
        await incidents.operator_away(tx, operator_id, presence.PresenceStatus.GONE, "logged out")


async def session_operator(conn: AsyncConnection, token: str, now: datetime) -> Operator | None:
    s, o = schema.sessions, schema.operators
    row = (
        (
            await conn.execute(
                select(o)
                .select_from(s.join(o, o.c.id == s.c.operator_id))
                .where(s.c.token_hash == token_hash(token), s.c.expires_at > now)
            )
        )
        .mappings()
        .first()
    )
    if row is None or row["disabled"]:
        return None
    return operator_model(row)
