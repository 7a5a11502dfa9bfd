"""The city bench's database side: gateways stored in bulk with dispatch's own schema and sealing,
and a probe of PostgreSQL's CPU, table sizes and WAL.

Enrolling 50,000 gateways through the API (an admin session, a code each, the enrollment) would
take longer than the run, and only the stored row matters to what is measured: the rows are the
ones :func:`dispatch.gateways.enroll` writes, the secret sealed with the servers' key.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import create_engine, insert

from contract.signing import new_secret
from dispatch import schema
from dispatch.db import normalise_url
from dispatch.households import household_values
from dispatch.models import HouseholdIn
from dispatch.sealing import SecretBox

__all__ = ["HEARTBEAT_TABLES", "PgProbe", "proc_cpu_s", "store_gateways"]

#: Tables heartbeats write; they do not grow with time (rows updated in place, nonces expire).
HEARTBEAT_TABLES = ("gateways", "gateway_nonces")
_CHUNK = 5_000


def store_gateways(
    url: str, key_file: Path, count: int, *, offline_grace_s: float
) -> list[tuple[str, str]]:
    """``count`` gateways, each in a household of its own; returns (gateway id, secret) pairs.

    ``offline_grace_s``: until a gateway's first heartbeat is due, supervision leaves it online,
    as it does a gateway just enrolled.
    """
    box = SecretBox(base64.urlsafe_b64decode(key_file.read_text().strip()), str(key_file))
    now = datetime.now(UTC)
    out: list[tuple[str, str]] = []
    engine = create_engine(normalise_url(url))
    try:
        for first in range(0, count, _CHUNK):
            homes, gateways = [], []
            for i in range(first, min(count, first + _CHUNK)):
                household_id, gateway_id = f"hh-city-{i:06d}", f"gw-city-{i:06d}"
                secret = new_secret()
                out.append((gateway_id, secret))
                homes.append(
                    household_values(HouseholdIn(name=f"City home {i}", community="city"))
                    | {"id": household_id, "created_at": now, "updated_at": now}
                )
                gateways.append(
                    {
                        "id": gateway_id,
                        "household_id": household_id,
                        "secret": box.seal(secret, gateway_id=gateway_id),
                        "version": "city",
                        "enrolled_at": now,
                        "online": True,
                        "offline_after": now + timedelta(seconds=offline_grace_s),
                        "status_changed_at": now,
                        "interval_s": 30.0,
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert(schema.households), homes)
                conn.execute(insert(schema.gateways), gateways)
    finally:
        engine.dispose()
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PgProbe:
    """Reads PostgreSQL's side of the run over one connection of its own."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def __enter__(self) -> PgProbe:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.conn.close()

    def cpu(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of the backends serving this database (ours excluded) and of the
        server's background processes (shared with every database on it)."""
        rows = self.conn.execute(
            "SELECT pid, backend_type = 'client backend' AND datname = current_database() "
            "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND (backend_type <> 'client backend' OR datname = current_database())"
        ).fetchall()
        snapshot: dict[str, dict[int, float]] = {"backends": {}, "background": {}}
        for pid, ours in rows:
            snapshot["backends" if ours else "background"][pid] = proc_cpu_s(pid)
        return snapshot

    @staticmethod
    def cpu_between(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
    ) -> dict[str, float]:
        """CPU seconds used between two snapshots (a process started between them: all of it)."""
        return {
            kind: sum(s - before[kind].get(pid, 0.0) for pid, s in after[kind].items())
            for kind in after
        }

    def sizes(self) -> dict[str, Any]:
        tables: dict[str, int] = dict(
            self.conn.execute(
                "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables"
            ).fetchall()
        )
        row = self.conn.execute(
            "SELECT pg_current_wal_lsn()::text, (SELECT count(*) FROM gateways WHERE NOT online)"
        ).fetchone()
        assert row is not None
        return {"tables": tables, "wal_lsn": row[0], "offline": int(row[1])}

    def growth(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (after["wal_lsn"], before["wal_lsn"])
        ).fetchone()
        assert row is not None
        deltas = {
            name: size - before["tables"].get(name, 0)
            for name, size in after["tables"].items()
            if size != before["tables"].get(name, 0)
        }
        return {
            "tables": deltas,
            "alarm_bytes": sum(d for n, d in deltas.items() if n not in HEARTBEAT_TABLES),
            "heartbeat_tables_bytes": sum(after["tables"].get(n, 0) for n in HEARTBEAT_TABLES),
            "nonce_bytes": deltas.get("gateway_nonces", 0),
            "gateway_rows_bytes": after["tables"].get("gateways", 0),
            "wal_bytes": float(row[0]),
            "false_offline": after["offline"],
        }
