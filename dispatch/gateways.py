"""Gateways: enrollment codes, enrollment, request authentication, heartbeats, supervision state.

A gateway authenticates every request with :mod:`contract.signing` (HMAC over method, path,
timestamp, nonce and body hash). Seen nonces are kept in the database until their timestamp can no
longer pass the freshness check, so a captured request cannot be replayed to any process.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exists, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.signing import (
    HEADER_TIMESTAMP,
    MAX_SKEW_S,
    SignatureError,
    SignedHeaders,
    new_secret,
    parse_headers,
    verify_request,
)
from contract.wire import DeviceHealth, DriverHealth, Heartbeat, Priority
from dispatch import enrollment, incidents, schema
from dispatch.errors import BadRequest, Conflict, Forbidden, NotFound, Problem, Unauthorized
from dispatch.gateway_cache import CachedGateway, GatewayCache, GatewayRow
from dispatch.models import EnrollReply, GatewayOut, IncidentState
from dispatch.sealing import SealError, SecretBox
from dispatch.settings import Settings
from dispatch.tx import Tx

__all__ = [
    "authenticate",
    "enroll",
    "gateway_model",
    "gateway_select",
    "hash_code",
    "make_enroll_code",
]

log = structlog.get_logger(__name__)

_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read over the phone


def hash_code(code: str) -> str:
    normalised = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def insert_ignore(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for either backend."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def make_enroll_code(tx: Tx, *, household_id: str, ttl_s: float, actor: str) -> str:
    """A one-time code (about 60 bits, grouped for reading aloud) that enrolls one gateway."""
    exists = (
        await tx.conn.execute(
            select(schema.households.c.id).where(schema.households.c.id == household_id)
        )
    ).first()
    if exists is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    code = "-".join(raw[i : i + 4] for i in range(0, 12, 4))
    expires = tx.now + timedelta(seconds=ttl_s)
    await tx.conn.execute(
        insert(schema.enroll_codes).values(
            code_hash=hash_code(code),
            household_id=household_id,
            created_at=tx.now,
            expires_at=expires,
        )
    )
    tx.audit(actor, "enroll_code.created", "household", household_id, {"expires_at": str(expires)})
    return code


async def enroll(
    tx: Tx, settings: Settings, box: SecretBox, *, code: str, gateway_id: str, version: str
) -> EnrollReply:
    c = schema.enroll_codes
    row = (
        (await tx.conn.execute(select(c).where(c.c.code_hash == hash_code(code)).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise Unauthorized("unknown enrollment code", detail="no enrollment code matches")
    if row["used_at"] is not None:
        raise Unauthorized(
            "enrollment code already used",
            detail="a code enrolls one gateway once; make a new one with dispatchd enroll-code",
        )
    if row["expires_at"] <= tx.now:
        raise Unauthorized(
            "enrollment code expired",
            detail=f"the code expired at {row['expires_at'].isoformat()}; make a new one",
        )
    household_id = row["household_id"]
    g = schema.gateways
    existing = (
        (await tx.conn.execute(select(g).where(g.c.id == gateway_id).with_for_update()))
        .mappings()
        .first()
    )
    secret = new_secret()
    offline_after = tx.now + timedelta(seconds=30 * settings.heartbeat_misses)
    if existing is not None:
        if existing["household_id"] != household_id:
            raise Conflict(
                "gateway enrolled to another household",
                detail=f"gateway {gateway_id!r} belongs to another household; revoke and "
                "remove it there first",
            )
        # Same household: only with a supervisor's one-use permission (a leaked household code
        # must not take over a working gateway's identity or lift its revocation).
        await enrollment.take_reenroll_allowance(tx, gateway_id)
        await tx.conn.execute(
            update(g)
            .where(g.c.id == gateway_id)
            .values(
                secret=box.seal(secret, gateway_id=gateway_id), version=version, revoked_at=None
            )
        )
        action = "gateway.reenrolled"
    else:
        await tx.conn.execute(
            insert(g).values(
                id=gateway_id,
                household_id=household_id,
                secret=box.seal(secret, gateway_id=gateway_id),
                version=version,
                enrolled_at=tx.now,
                online=True,
                offline_after=offline_after,
                status_changed_at=tx.now,
                interval_s=30.0,
            )
        )
        action = "gateway.enrolled"
    await tx.conn.execute(
        update(c)
        .where(c.c.code_hash == row["code_hash"])
        .values(used_at=tx.now, used_by=gateway_id)
    )
    tx.audit(f"gateway:{gateway_id}", action, "gateway", gateway_id, {"household": household_id})
    tx.change("gateway", action, gateway_id, {"household_id": household_id})
    log.info("gateway enrolled", gateway=gateway_id, household=household_id)
    return EnrollReply(gateway_id=gateway_id, household_id=household_id, secret=secret)


def read_signature(headers: Mapping[str, str]) -> SignedHeaders:
    try:
        return parse_headers(headers)
    except SignatureError as exc:
        raise Unauthorized("request not signed", detail=str(exc)) from exc


def _check_gateway(gateway: GatewayRow | None, signed: SignedHeaders, now: datetime) -> None:
    """Known, not revoked, and a fresh timestamp."""
    if gateway is None:
        raise Unauthorized(
            "unknown gateway", detail=f"gateway {signed.gateway_id!r} is not enrolled here"
        )
    if gateway["revoked_at"] is not None:
        raise Forbidden(
            "gateway revoked",
            slug="gateway-revoked",
            detail=f"gateway {signed.gateway_id!r} was revoked at "
            f"{gateway['revoked_at'].isoformat()}; re-enroll it with a new code",
        )
    clock = now.timestamp()
    if abs(clock - signed.timestamp) > MAX_SKEW_S:
        raise Unauthorized(
            "stale request timestamp",
            slug="clock-skew",
            detail=f"{HEADER_TIMESTAMP} is {int(signed.timestamp - clock)} s from the server "
            f"clock; at most {MAX_SKEW_S} s of clock skew is accepted (check the gateway's clock)",
            extra={"server_time": now.isoformat()},
        )


def _verify(
    signed: SignedHeaders, secret: str, *, now: datetime, method: str, path: str, body: bytes
) -> None:
    try:
        verify_request(
            signed, secret=secret, method=method, path=path, body=body, now=now.timestamp()
        )
    except SignatureError as exc:
        raise Unauthorized("bad signature", detail=str(exc)) from exc


def open_secret(box: SecretBox, gateway: GatewayRow) -> str:
    try:
        return box.open(gateway["secret"], gateway_id=gateway["id"])
    except SealError as exc:
        # The centre's fault, not the gateway's: a 5xx, so the gateway keeps its events.
        log.error("gateway secret does not open", gateway=gateway["id"], error=str(exc))
        raise Problem(
            "gateway secret unreadable at dispatch",
            slug="secret-unreadable",
            detail="the centre's secrets key does not open this gateway's secret; the centre "
            "must restore its key (the gateway keeps its events and retries)",
            status=500,
        ) from exc


def check_signature(
    gateway: RowMapping | None,
    signed: SignedHeaders,
    *,
    box: SecretBox,
    now: datetime,
    method: str,
    path: str,
    body: bytes,
) -> tuple[RowMapping, str]:
    """Everything about a signed request but its nonce: known, not revoked, fresh, authentic.

    Returns the gateway's row and its opened secret (which signs the reply)."""
    _check_gateway(gateway, signed, now)
    assert gateway is not None
    secret = open_secret(box, gateway)
    _verify(signed, secret, now=now, method=method, path=path, body=body)
    return gateway, secret


def check_cached(
    entry: CachedGateway,
    signed: SignedHeaders,
    *,
    now: datetime,
    method: str,
    path: str,
    body: bytes,
) -> None:
    """:func:`check_signature` against a cached gateway (a refusal may be a stale entry: the
    caller decides on the stored row before refusing)."""
    _check_gateway(entry.row, signed, now)
    _verify(signed, entry.secret, now=now, method=method, path=path, body=body)


def nonce_row(signed: SignedHeaders) -> dict[str, Any]:
    return {
        "gateway_id": signed.gateway_id,
        "nonce": signed.nonce,
        # After this the timestamp check refuses the request anyway.
        "expires_at": datetime.fromtimestamp(signed.timestamp + MAX_SKEW_S + 60, UTC),
    }


def replayed(signed: SignedHeaders) -> Conflict:
    return Conflict(
        "replayed request",
        slug="replayed-nonce",
        detail=f"nonce {signed.nonce!r} was already used by gateway {signed.gateway_id!r}; "
        "every request needs a fresh nonce",
    )


async def _burn_nonce_if_current(tx: Tx, signed: SignedHeaders, sealed: str) -> bool:
    """Insert the request's nonce only while the gateway is still unrevoked with this sealed
    secret: one statement both burns the nonce and confirms a cached entry."""
    n, g = schema.gateway_nonces, schema.gateways
    row = nonce_row(signed)
    source = select(
        literal(row["gateway_id"], n.c.gateway_id.type),
        literal(row["nonce"], n.c.nonce.type),
        literal(row["expires_at"], n.c.expires_at.type),
    ).where(
        exists().where(g.c.id == signed.gateway_id, g.c.revoked_at.is_(None), g.c.secret == sealed)
    )
    inserted = await tx.conn.execute(
        insert_ignore(tx.dialect, n)
        .from_select(["gateway_id", "nonce", "expires_at"], source)
        .returning(n.c.nonce)
    )
    return inserted.first() is not None


async def authenticate(
    tx: Tx,
    box: SecretBox,
    *,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    cache: GatewayCache | None = None,
) -> tuple[GatewayRow, str]:
    """Verify a gateway's signed request and burn its nonce; return the gateway's row and its
    opened secret.

    With a cache, a known gateway costs one statement (the nonce, inserted only if the cached
    entry still matches the stored row); anything else (not cached, refused, replayed, revoked
    or re-keyed meanwhile) is decided on the stored row, locked."""
    signed = read_signature(headers)
    entry = cache.get(signed.gateway_id) if cache is not None else None
    if cache is not None and entry is not None:
        try:
            check_cached(entry, signed, now=tx.now, method=method, path=path, body=body)
        except Problem:
            pass
        else:
            if await _burn_nonce_if_current(tx, signed, entry.sealed):
                return entry.row, entry.secret
        cache.evict(signed.gateway_id)
    g = schema.gateways
    row = (
        (await tx.conn.execute(select(g).where(g.c.id == signed.gateway_id).with_for_update()))
        .mappings()
        .first()
    )
    gateway, secret = check_signature(
        row, signed, box=box, now=tx.now, method=method, path=path, body=body
    )
    n = schema.gateway_nonces
    inserted = await tx.conn.execute(
        insert_ignore(tx.dialect, n).values(nonce_row(signed)).returning(n.c.nonce)
    )
    if inserted.first() is None:
        raise replayed(signed)
    if cache is not None:
        cache.put(gateway, secret)
    return gateway, secret


def require_same_gateway(gateway: GatewayRow, claimed: str) -> None:
    if claimed != gateway["id"]:
        raise Forbidden(
            "gateway id mismatch",
            slug="wrong-gateway",
            detail=f"the request is signed by gateway {gateway['id']!r} but the body claims "
            f"{claimed!r}; a gateway can only write its own data",
        )


def heartbeat_problem(gateway: GatewayRow, heartbeat: Heartbeat) -> None:
    """Refuse a heartbeat for another gateway, or one the database cannot store."""
    require_same_gateway(gateway, heartbeat.gateway_id)
    if "\x00" in heartbeat.version:
        raise BadRequest("invalid Heartbeat", detail="version: must not contain NUL", status=422)


def heartbeat_values(
    settings: Settings, now: datetime, gateway: GatewayRow, heartbeat: Heartbeat
) -> dict[str, Any]:
    """The gateway row's new health columns (and back online)."""
    return {
        "last_heartbeat_at": now,
        "interval_s": heartbeat.interval_s,
        "offline_after": now + timedelta(seconds=heartbeat.interval_s * settings.heartbeat_misses),
        "online": True,
        "status_changed_at": now if not gateway["online"] else gateway["status_changed_at"],
        "version": heartbeat.version,
        "uptime_s": heartbeat.uptime_s,
        "clock_offset_s": (heartbeat.sent_at - now).total_seconds(),
        "buffer_depth": {str(k): v for k, v in heartbeat.buffer_depth.items()},
        "oldest_unsent_age_s": heartbeat.oldest_unsent_age_s,
        "evicted_total": heartbeat.evicted_total,
        "health": {
            "drivers": [d.model_dump(mode="json") for d in heartbeat.drivers],
            "devices_offline": [d.id for d in heartbeat.devices if not d.online],
            "devices": [d.model_dump(mode="json") for d in heartbeat.devices],
        },
    }


async def acknowledged_alarms(
    conn: AsyncConnection, settings: Settings, now: datetime, gateway_ids: list[str] | None = None
) -> dict[str, list[str]]:
    """Per gateway (every gateway with one when ``gateway_ids`` is None), its alarm events a
    person acknowledged recently.

    Per event, not per incident: a press that joined an acknowledged incident later has not been
    seen by anyone, so the home's local escalation must go on until it is acknowledged too.
    """
    e = schema.events
    cutoff = now - timedelta(seconds=settings.ack_report_window_s)
    # Driven by the few recently acknowledged events (ix_events_acknowledged).
    query = select(e.c.gateway_id, e.c.id).where(e.c.acknowledged_at >= cutoff)
    if gateway_ids is not None:
        query = query.where(e.c.gateway_id.in_(gateway_ids))
    rows = await conn.execute(query.order_by(e.c.id.desc()))
    found: dict[str, list[str]] = {gid: [] for gid in gateway_ids or ()}
    for gateway_id, event_id in rows:
        listed = found.setdefault(gateway_id, [])
        if len(listed) < 500:
            listed.append(event_id)
    return found


async def gateway_back_online(tx: Tx, gateway: GatewayRow) -> None:
    """The gateway is heard again: its outage's incident resolves itself if nobody has taken
    it; one being worked (a call made, a rescuer on the way) is left to its operator, with the
    return on its timeline, since the equipment's return says nothing of the person."""
    i = schema.incidents
    key = f"gateway_offline:{gateway['id']}"
    found = (
        await tx.conn.execute(select(i.c.id, i.c.state, i.c.operator_id).where(i.c.open_key == key))
    ).first()
    tx.change("gateway", "gateway.online", gateway["id"], {"online": True})
    tx.audit("system", "gateway.online", "gateway", gateway["id"])
    log.info("gateway back online", gateway=gateway["id"])
    if found is None:
        return
    incident_id = found.id
    system = incidents.Actor(None, "system")
    if found.state != IncidentState.NEW.value or found.operator_id is not None:
        # Its next outage opens an incident of its own: an alert, not a line on this one. The
        # operator's own last action stays (a claim left idle is still handed back).
        await tx.conn.execute(
            update(i).where(i.c.id == incident_id).values(open_key=None, last_event_at=tx.now)
        )
        await incidents.add_action(tx, incident_id, system, "gateway_returned", {})
        await incidents.publish(tx, incident_id, "incident.updated")
        return
    await tx.conn.execute(
        update(i)
        .where(i.c.id == incident_id)
        .values(
            state=IncidentState.RESOLVED.value,
            resolved_at=tx.now,
            outcome="gateway_returned",
            open_key=None,
            last_action_at=tx.now,
            last_event_at=tx.now,
        )
    )
    await incidents.add_action(tx, incident_id, system, "resolved", {"reason": "gateway returned"})
    await incidents.publish(tx, incident_id, "incident.updated")


async def mark_offline(tx: Tx, settings: Settings, gateway_id: str) -> bool:
    """Mark one lost gateway offline and open its trouble incident; False if another process
    (or a heartbeat) got there first.

    Lost only :func:`offline_grace` past its deadline: another process may hold a heartbeat it
    answered and has not written yet."""
    g = schema.gateways
    result = await tx.conn.execute(
        update(g)
        .where(
            g.c.id == gateway_id,
            g.c.online.is_(True),
            g.c.revoked_at.is_(None),
            g.c.offline_after < tx.now - offline_grace(settings),
        )
        .values(online=False, status_changed_at=tx.now)
        .returning(g.c.id)
    )
    if result.first() is None:
        return False
    gateway = (await tx.conn.execute(select(g).where(g.c.id == gateway_id))).mappings().one()
    tx.change("gateway", "gateway.offline", gateway_id, {"online": False})
    tx.audit("system", "gateway.offline", "gateway", gateway_id)
    log.warning(
        "gateway lost", gateway=gateway_id, last_heartbeat=str(gateway["last_heartbeat_at"])
    )
    key = f"gateway_offline:{gateway_id}"
    i = schema.incidents
    if (await tx.conn.execute(select(i.c.id).where(i.c.open_key == key))).first() is not None:
        return True
    incident_id = await incidents.open_incident(
        tx,
        settings,
        household_id=gateway["household_id"],
        gateway_id=gateway_id,
        kind="gateway_offline",
        category="gateway_offline",
        priority=int(Priority.TROUBLE),
        open_key=key,
        summary={
            "last_heartbeat_at": gateway["last_heartbeat_at"].isoformat()
            if gateway["last_heartbeat_at"]
            else None,
            "interval_s": gateway["interval_s"],
        },
    )
    await incidents.publish(tx, incident_id, "incident.opened")
    return True


def offline_grace(settings: Settings) -> timedelta:
    """How long after its deadline a gateway is declared lost: heartbeats are answered at once
    and written in groups every ``heartbeat_flush_s``, so a process's last answered heartbeat
    may reach the database that much later."""
    return timedelta(seconds=2 * settings.heartbeat_flush_s)


def gateway_model(row: RowMapping) -> GatewayOut:
    depth = row["buffer_depth"] or {}
    health = row["health"] or {}
    return GatewayOut(
        id=row["id"],
        household_id=row["household_id"],
        online=bool(row["online"]),
        revoked=row["revoked_at"] is not None,
        version=row["version"],
        enrolled_at=row["enrolled_at"],
        last_heartbeat_at=row["last_heartbeat_at"],
        status_changed_at=row["status_changed_at"],
        interval_s=row["interval_s"],
        buffer_depth={str(k): int(v) for k, v in depth.items()},
        oldest_unsent_age_s=row["oldest_unsent_age_s"],
        evicted_total=row["evicted_total"],
        clock_offset_s=row["clock_offset_s"],
        household_name=row.get("household_name"),
        devices=[DeviceHealth.model_validate(d) for d in health.get("devices") or []],
        drivers=[DriverHealth.model_validate(d) for d in health.get("drivers") or []],
    )


def gateway_select() -> Any:
    """Gateways with their household's name."""
    g, h = schema.gateways, schema.households
    return select(g, h.c.name.label("household_name")).select_from(
        g.outerjoin(h, h.c.id == g.c.household_id)
    )


async def revoke(tx: Tx, gateway_id: str, *, actor: str) -> None:
    g = schema.gateways
    result = await tx.conn.execute(
        update(g)
        .where(g.c.id == gateway_id, g.c.revoked_at.is_(None))
        .values(revoked_at=tx.now)
        .returning(g.c.id)
    )
    if result.first() is None:
        exists = (await tx.conn.execute(select(g.c.id).where(g.c.id == gateway_id))).first()
        if exists is None:
            raise NotFound("no such gateway", detail=f"gateway {gateway_id!r} is not enrolled")
        raise Conflict("gateway already revoked", detail=f"gateway {gateway_id!r} is revoked")
    tx.audit(actor, "gateway.revoked", "gateway", gateway_id)
    tx.change("gateway", "gateway.revoked", gateway_id, {"revoked": True})
