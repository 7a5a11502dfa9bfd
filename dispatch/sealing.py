"""Gateway secrets sealed at rest: AES-256-GCM with a key kept outside the database.

A stolen database (a backup, a replica, a dump handed to support) must not let anyone sign as a
gateway or forge dispatch's replies to it. Each secret is stored as ``sealed:v1:`` + base64 of a
random 96-bit nonce and the ciphertext with its tag; the gateway id is the associated data, so a
sealed secret copied onto another gateway's row does not open.

The key (32 random bytes, URL-safe base64) comes from ``DISPATCHD_SECRETS_KEY``, else from the file
``DISPATCHD_SECRETS_KEY_FILE``, else (SQLite only) from the file beside the database
(``dispatch.db`` -> ``dispatch.db.key``). A key file that does not exist is generated (mode 0600)
only while the database holds no sealed secret: a lost key is reported, never silently replaced.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from dispatch import schema
from dispatch.db import Database
from dispatch.errors import ConfigError
from dispatch.settings import Settings, env_var

__all__ = [
    "SEALED_PREFIX",
    "NoSecretsKey",
    "SealError",
    "SecretBox",
    "is_sealed",
    "load_secret_box",
    "seal_plaintext_secrets",
]

log = structlog.get_logger(__name__)

SEALED_PREFIX: Final = "sealed:v1:"
_NONCE_BYTES: Final = 12


class SealError(ConfigError):
    """The secrets key is missing, malformed, or not the key the secrets were sealed with."""


class NoSecretsKey(SealError):
    """No key is configured at all (PostgreSQL without either setting)."""


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


@dataclass(frozen=True)
class SecretBox:
    """Seals and opens gateway secrets with one key; ``source`` says where the key came from."""

    key: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise SealError(
                f"the secrets key from {self.source} is {len(self.key)} bytes; it must be 32 "
                "(URL-safe base64 of 32 random bytes)"
            )

    def seal(self, secret: str, *, gateway_id: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, secret.encode(), gateway_id.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, *, gateway_id: str) -> str:
        if not is_sealed(stored):
            raise SealError(
                f"gateway {gateway_id!r}'s secret is not sealed; run `dispatchd migrate` with "
                "the secrets key to seal it"
            )
        try:
            raw = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX) :])
            plain = AESGCM(self.key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], gateway_id.encode()
            )
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SealError(
                f"gateway {gateway_id!r}'s secret does not open with the secrets key from "
                f"{self.source}: the key is not the one it was sealed with (or the row is "
                "damaged)"
            ) from exc
        return plain.decode()


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(text: str, source: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, binascii.Error) as exc:
        raise SealError(
            f"the secrets key from {source} is not URL-safe base64 of 32 bytes"
        ) from exc


def key_file_of(settings: Settings, db: Database) -> Path | None:
    """The key file to use: the configured one, else the one beside an SQLite database."""
    if settings.secrets_key_file is not None:
        return Path(settings.secrets_key_file).expanduser()
    if db.is_sqlite and db.url.database:
        database = Path(db.url.database).expanduser().resolve()
        return database.with_name(database.name + ".key")
    return None


async def _any_sealed(db: Database) -> bool:
    g = schema.gateways
    async with db.read() as conn:
        rows = (await conn.execute(select(g.c.secret))).scalars()
        return any(is_sealed(s) for s in rows)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of several processes starting at once, one writes the key and the rest read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(new_key() + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.warning("secrets key file created", path=str(path), mode="0600")


async def load_secret_box(db: Database, settings: Settings) -> SecretBox:
    """The key from the settings; a key file is generated while no secret is sealed yet."""
    if settings.secrets_key is not None:
        source = env_var("secrets_key")
        return SecretBox(_decode_key(settings.secrets_key, source), source)
    path = key_file_of(settings, db)
    if path is None:
        raise NoSecretsKey(
            f"no secrets key: set {env_var('secrets_key_file')} (a file dispatchd creates on "
            f"first start) or {env_var('secrets_key')}; gateway secrets are sealed with it"
        )
    if not path.exists():
        if await _any_sealed(db):
            raise SealError(
                f"the secrets key file {path} is missing, but the database holds sealed gateway "
                f"secrets: restore the key file (or set {env_var('secrets_key')}); a new key "
                "would not open them"
            )
        _create_key_file(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SealError(f"cannot read the secrets key file {path}: {exc}") from exc
    if path.stat().st_mode & 0o077:
        log.warning("secrets key file readable by others", path=str(path))
    return SecretBox(_decode_key(text, str(path)), str(path))


async def seal_plaintext_secrets(db: Database, box: SecretBox) -> int:
    """Seal every gateway secret still stored in plaintext (from before sealing existed), and
    check one sealed secret opens with this key; return how many were sealed."""
    g = schema.gateways
    async with db.write() as conn:
        rows = (await conn.execute(select(g.c.id, g.c.secret).with_for_update())).all()
        sealed = 0
        checked = False
        for gateway_id, stored in rows:
            if is_sealed(stored):
                if not checked:
                    box.open(stored, gateway_id=gateway_id)  # the wrong key fails here, loudly
                    checked = True
                continue
            await conn.execute(
                update(g)
                .where(g.c.id == gateway_id)
                .values(secret=box.seal(stored, gateway_id=gateway_id))
            )
            sealed += 1
    if sealed:
        log.info("gateway secrets sealed", count=sealed, key=box.source)
    return sealed
