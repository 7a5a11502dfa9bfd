"""Gateways as this process last read them, with their secrets already opened.

Authenticating a gateway's request needs its row (household, revocation, clock offset) and its
opened secret (an AES-GCM decryption). Both change only on revocation and re-enrollment, so they
are kept here: a request is checked against the cached entry without touching the database.

An entry is never trusted blindly. Every use that makes something durable checks it in the same
statement (the nonce is inserted only while the row is still unrevoked with the same sealed
secret: :func:`dispatch.gateways.authenticate`), and heartbeats' group writes re-read the rows
they write. A revocation or re-enrollment in this process evicts the entry at once; one in
another process is noticed by the next such check, and any refusal of a cached entry is retried
against the row as stored before it is answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import RowMapping

from dispatch.sealing import SecretBox

__all__ = ["CachedGateway", "GatewayCache", "GatewayRow"]

#: A gateway's row as read, or as cached.
GatewayRow = RowMapping | Mapping[str, Any]


@dataclass
class CachedGateway:
    #: The gateway's row as last read (or written by this process's heartbeats).
    row: dict[str, Any]
    #: The opened secret (signs the replies).
    secret: str = field(repr=False)

    @property
    def sealed(self) -> str:
        return str(self.row["secret"])


class GatewayCache:
    def __init__(self, box: SecretBox, *, max_entries: int = 200_000) -> None:
        self.box = box
        self.max_entries = max_entries
        self._entries: dict[str, CachedGateway] = {}

    def get(self, gateway_id: str) -> CachedGateway | None:
        return self._entries.get(gateway_id)

    def put(self, row: GatewayRow, secret: str | None = None) -> CachedGateway:
        """Cache a row as read; its secret is opened unless given (or unchanged)."""
        old = self._entries.get(row["id"])
        if secret is None:
            if old is not None and old.sealed == row["secret"]:
                secret = old.secret
            else:
                secret = self.box.open(row["secret"], gateway_id=row["id"])
        if len(self._entries) >= self.max_entries and row["id"] not in self._entries:
            # Bounded: a centre with more gateways than this re-reads the coldest ones.
            self._entries.pop(next(iter(self._entries)))
        entry = CachedGateway(dict(row), secret)
        self._entries[row["id"]] = entry
        return entry

    def update(self, gateway_id: str, values: Mapping[str, Any]) -> None:
        """Columns this process just wrote (heartbeats)."""
        entry = self._entries.get(gateway_id)
        if entry is not None:
            entry.row.update(values)

    def evict(self, gateway_id: str) -> None:
        self._entries.pop(gateway_id, None)

    def __len__(self) -> int:
        return len(self._entries)
