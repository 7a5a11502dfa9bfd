"""What dispatchd does with one DC-09 frame, and the answer it gives (ACK, NAK, DUH or none).

- A frame whose framing, length or CRC is wrong gets no answer (the standard: the transmitter
  times out and sends again); one whose header cannot be read gets a NAK.
- An unknown account, an encrypted frame that does not decrypt with the account's key, a frame in
  the clear for an account that has a key, or a timestamp outside the window (-40 s/+20 s by
  default) gets a NAK carrying our clock, so a transmitter with a wrong clock can correct it.
- Data we cannot read, or a code we have no event kind for, gets a DUH.
- A repeat of a message already accepted (same account, sequence number and content, within the
  incident window) is acknowledged again and stored once: replay protection.
- An event is stored, and routed to the household's incidents exactly like a gateway's, before
  its ACK goes out; if it cannot be stored there is no answer, and the transmitter retries.
- ``NULL`` supervises the transmitter: it counts as a heartbeat of its gateway row.

Every rejection is counted (:attr:`Dc09Intake.rejections`) and logged with its reason.
"""

from __future__ import annotations

import collections
import hashlib
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from contract.dc09 import (
    REASONS,
    ContactIdData,
    Dc09Error,
    Dc09Message,
    decode,
    encode,
    kind_for,
    parse_content,
)
from contract.wire import Event, EventKind, IngestBatch, new_event_id
from dispatch import gateways, schema
from dispatch.db import Database
from dispatch.dc09.accounts import UNSUPERVISED_UNTIL, Dc09Account, load_accounts
from dispatch.ingest import ingest_batch
from dispatch.settings import Settings
from dispatch.tx import ChangeFeed, Tx, transaction

__all__ = ["REJECTION_REASONS", "Dc09Intake"]

log = structlog.get_logger(__name__)

#: Rejections answered with nothing: the frame may not even be for us as it reads.
_SILENT = frozenset({"framing", "length", "crc", "encoding"})
#: Every reason the intake rejects a frame for, in the order the centre reads them: the codec's,
#: then the account's, the content's, and storage.
REJECTION_REASONS: tuple[str, ...] = (
    *REASONS,
    "unknown_account",
    "not_encrypted",
    "unknown_code",
    "storage",
)
#: Accounts are read again when an unknown one shows up (a new account), at most this often...
_RELOAD_S = 1.0
#: ...and at least this often, so that a removed account or a changed key takes effect.
ACCOUNTS_TTL_S = 10.0


class Dc09Intake:
    def __init__(self, db: Database, settings: Settings, feed: ChangeFeed | None = None) -> None:
        self.db = db
        self.settings = settings
        self.feed = feed
        self.accounts: dict[str, Dc09Account] = {}
        self._loaded_at = float("-inf")
        #: Rejections by reason, since start.
        self.rejections: collections.Counter[str] = collections.Counter()
        #: Messages acknowledged, by type (``ADM-CID``, ``SIA-DCS``, ``NULL``, ``repeat``).
        self.accepted: collections.Counter[str] = collections.Counter()

    async def reload(self) -> None:
        async with transaction(self.db, durable=False) as tx:
            self.accounts = await load_accounts(tx)
        self._loaded_at = time.monotonic()

    async def _account(self, account: str) -> Dc09Account | None:
        age = time.monotonic() - self._loaded_at
        if age > ACCOUNTS_TTL_S or (account not in self.accounts and age > _RELOAD_S):
            await self.reload()
        return self.accounts.get(account)

    def _key(self, account: str) -> bytes | None:
        found = self.accounts.get(account)
        return found.key if found is not None else None

    async def handle(self, frame: bytes, *, transport: str, peer: str) -> bytes | None:
        """The answer to one frame, or None for no answer."""
        try:
            message = decode(frame, keys=self._key)
        except Dc09Error as exc:
            if exc.reason == "no_key":
                # Perhaps an account added since we last looked.
                await self._account(_account_of(frame))
                try:
                    message = decode(frame, keys=self._key)
                except Dc09Error as again:
                    return self._reject(again.reason, str(again), frame, peer)
            else:
                return self._reject(exc.reason, str(exc), frame, peer)
        account = await self._account(message.account)
        if account is None:
            return self._reject("unknown_account", f"account {message.account!r}", frame, peer)
        if account.key is not None and not message.encrypted:
            return self._reject("not_encrypted", "the account has a key", frame, peer, message)
        if message.type not in ("ADM-CID", "SIA-DCS", "NULL"):
            return self._reject("content", f"{message.type} is an answer", frame, peer, message)
        now = datetime.now().astimezone()
        if message.timestamp is None:
            if message.encrypted:
                return self._reject("timestamp", "encrypted, without timestamp", frame, peer)
        else:
            skew = (message.timestamp - now).total_seconds()
            if not -self.settings.dc09_window_past_s <= skew <= self.settings.dc09_window_future_s:
                return self._reject("timestamp", f"{skew:+.0f} s off", frame, peer, message)
        if message.type == "NULL":
            return await self._null(message, account, peer)
        try:
            content = parse_content(message.type, message.data)
        except Dc09Error as exc:
            return self._reject("content", str(exc), frame, peer, message)
        kind = kind_for(content)
        if kind is None:
            return self._reject("unknown_code", message.data, frame, peer, message)
        return await self._event(message, account, kind, content, transport, peer)

    # -- answers --------------------------------------------------------------------------

    def _ack(self, message: Dc09Message, account: Dc09Account) -> bytes:
        answer = Dc09Message(
            "ACK",
            message.sequence,
            message.account,
            line=message.line,
            receiver=message.receiver,
            timestamp=datetime.now().astimezone() if message.encrypted else None,
        )
        return encode(answer, key=account.key if message.encrypted else None)

    def _reject(
        self,
        reason: str,
        detail: str,
        frame: bytes,
        peer: str,
        message: Dc09Message | None = None,
    ) -> bytes | None:
        self.rejections[reason] += 1
        log.warning(
            "dc09_rejected",
            reason=reason,
            detail=detail[:200],
            peer=peer,
            frame=frame[:120].decode("ascii", "replace"),
        )
        if reason in _SILENT:
            return None
        if reason in ("content", "unknown_code") and message is not None:
            return encode(
                Dc09Message(
                    "DUH",
                    message.sequence,
                    message.account,
                    line=message.line,
                    receiver=message.receiver,
                )
            )
        # NAK: our clock, so a transmitter whose clock is off can re-stamp (DC-09 5.5.2).
        return encode(
            Dc09Message(
                "NAK", 0, "0", line="0", receiver="0", timestamp=datetime.now().astimezone()
            )
        )

    # -- storing --------------------------------------------------------------------------

    async def _null(self, message: Dc09Message, account: Dc09Account, peer: str) -> bytes | None:
        try:
            async with transaction(self.db, feed=self.feed, durable=False) as tx:
                await _heartbeat(tx, self.settings, account, message)
        except (SQLAlchemyError, OSError) as exc:
            self._storage_failed(exc, peer)
            return None
        self.accepted["NULL"] += 1
        return self._ack(message, account)

    async def _event(
        self,
        message: Dc09Message,
        account: Dc09Account,
        kind: EventKind,
        content: Any,
        transport: str,
        peer: str,
    ) -> bytes | None:
        digest = hashlib.sha256(f"{message.type}|{message.data}".encode()).hexdigest()
        zone = content.zone
        try:
            async with transaction(self.db, feed=self.feed) as tx:
                if await _seen(tx, self.settings, message, digest):
                    self.accepted["repeat"] += 1
                    log.info("dc09_repeat", account=account.account, seq=message.sequence)
                    return self._ack(message, account)
                g = schema.gateways
                gateway = (
                    (await tx.conn.execute(select(g).where(g.c.id == account.gateway_id)))
                    .mappings()
                    .one()
                )
                at = message.timestamp or tx.now
                event = Event(
                    id=new_event_id(at),
                    gateway_id=account.gateway_id,
                    seq=message.sequence,
                    kind=kind,
                    priority=kind.priority,
                    device_id=f"zone-{zone:03d}" if zone else None,
                    at=at,
                    test=kind in (EventKind.TEST,),
                    payload={
                        "source": "dc09",
                        "account": account.account,
                        "sequence": message.sequence,
                        "data": message.data[:200],
                        "transport": transport,
                        "encrypted": message.encrypted,
                        "condition": f"{kind.condition.value}:zone-{zone:03d}",
                        **(
                            {"qualifier": content.qualifier, "code": content.code}
                            if isinstance(content, ContactIdData)
                            else {"sia_code": content.code}
                        ),
                    },
                )
                await ingest_batch(
                    tx,
                    self.settings,
                    gateway,
                    IngestBatch(gateway_id=account.gateway_id, events=[event]),
                )
        except (SQLAlchemyError, OSError) as exc:
            self._storage_failed(exc, peer)
            return None
        self.accepted[message.type] += 1
        log.info(
            "dc09_event",
            account=account.account,
            kind=kind.value,
            seq=message.sequence,
            household=account.household_id,
        )
        return self._ack(message, account)

    def _storage_failed(self, exc: Exception, peer: str) -> None:
        self.rejections["storage"] += 1
        log.error("dc09_not_stored", error=str(exc)[:300], peer=peer, answer="none; it retries")
        return None


async def _seen(tx: Tx, settings: Settings, message: Dc09Message, digest: str) -> bool:
    """True for a repeat within the window; else records this message as the latest."""
    s = schema.dc09_seen
    row = (
        (
            await tx.conn.execute(
                select(s).where(s.c.account == message.account, s.c.sequence == message.sequence)
            )
        )
        .mappings()
        .first()
    )
    window = timedelta(seconds=settings.incident_window_s)
    if row is not None and row["digest"] == digest and tx.now - row["seen_at"] < window:
        return True
    values = {"digest": digest, "seen_at": tx.now}
    if row is None:
        await tx.conn.execute(
            s.insert().values(account=message.account, sequence=message.sequence, **values)
        )
    else:
        await tx.conn.execute(
            s.update()
            .where(s.c.account == message.account, s.c.sequence == message.sequence)
            .values(values)
        )
    return False


async def _heartbeat(
    tx: Tx, settings: Settings, account: Dc09Account, message: Dc09Message
) -> None:
    g = schema.gateways
    row = (await tx.conn.execute(select(g).where(g.c.id == account.gateway_id))).mappings().one()
    supervised = account.supervision_s > 0
    offline_after = (
        tx.now + timedelta(seconds=account.supervision_s * settings.heartbeat_misses)
        if supervised
        else UNSUPERVISED_UNTIL
    )
    await tx.conn.execute(
        g.update()
        .where(g.c.id == account.gateway_id)
        .values(
            last_heartbeat_at=tx.now,
            offline_after=offline_after,
            online=True,
            status_changed_at=tx.now if not row["online"] else row["status_changed_at"],
            clock_offset_s=(message.timestamp - tx.now).total_seconds()
            if message.timestamp
            else None,
        )
    )
    if not row["online"]:
        await gateways.gateway_back_online(tx, row)


def _account_of(frame: bytes) -> str:
    text = frame.decode("ascii", "replace")
    start = text.find("#")
    end = text.find("[", start)
    return text[start + 1 : end].upper() if 0 <= start < end else ""
