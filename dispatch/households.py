"""Household administration: search text, archive, away / in hospital, operators' notes, history.

Households keep residents, contacts and devices as JSON lists (read and written whole), so search
reads one lower-cased text column written with every change instead of JSON, which the two
databases store and escape differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import incidents, schema
from dispatch.errors import BadRequest, Conflict, NotFound
from dispatch.models import AwayRequest, Household, HouseholdIn, HouseholdNote, Incident
from dispatch.tx import Tx

__all__ = [
    "MAX_AWAY",
    "add_note",
    "archive",
    "away_until_for",
    "backfill_search_text",
    "clear_away",
    "history",
    "household",
    "household_values",
    "notes",
    "restore",
    "search_filter",
    "search_text",
    "set_away",
]

#: The longest absence one can enter: a longer one is more likely a typo than a plan.
MAX_AWAY = timedelta(days=366)
_NOT_DIGIT = re.compile(r"[^0-9]")


def household_values(body: HouseholdIn) -> dict[str, Any]:
    """The columns a household's edit writes (not its id), search text included: one place for
    the API and the CLI, so neither can forget a column."""
    values = body.model_dump(mode="json", exclude={"id", "expected_updated_at"})
    values["search_text"] = search_text(values)
    return values


def search_text(values: Mapping[str, Any]) -> str:
    """What search looks through: names, phones (as typed and digits only), addresses, device
    ids, contacts' relations, one value a line, lower-cased."""
    parts: list[str] = [
        str(values.get(k) or "") for k in ("id", "name", "address", "community", "phone")
    ]
    phones: list[str] = [str(values.get("phone") or "")]
    for resident in values.get("residents") or []:
        parts.append(str(resident.get("name", "")))
        phones += [str(p) for p in resident.get("phones") or []]
    for contact in values.get("emergency_contacts") or []:
        parts += [str(contact.get("name", "")), str(contact.get("relation", ""))]
        phones += [str(p) for p in contact.get("phones") or []]
    for device in values.get("devices") or []:
        parts += [str(device.get("id", "")), str(device.get("label", ""))]
    parts += phones
    parts += [_NOT_DIGIT.sub("", p) for p in phones]
    return "\n".join(p.lower() for p in parts if p)


def search_filter(q: str) -> ColumnElement[bool]:
    """Every word of ``q`` appears (a phone number's digits match however it was typed)."""
    h = schema.households
    terms = []
    for word in q.lower().split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        term: ColumnElement[bool] = h.c.search_text.like(f"%{escaped}%", escape="\\")
        digits = _NOT_DIGIT.sub("", word)
        if len(digits) >= 3 and digits != word:
            term = or_(term, h.c.search_text.like(f"%{digits}%"))
        terms.append(term)
    return and_(*terms)


async def backfill_search_text(conn: AsyncConnection) -> None:
    """Write the search text of every household (a migration's step)."""
    h = schema.households
    rows = (await conn.execute(select(h))).mappings().all()
    for row in rows:
        await conn.execute(
            update(h).where(h.c.id == row["id"]).values(search_text=search_text(dict(row)))
        )


async def household(conn: AsyncConnection, household_id: str) -> Household:
    h = schema.households
    row = (await conn.execute(select(h).where(h.c.id == household_id))).mappings().first()
    if row is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    return Household.model_validate(dict(row))


async def _locked(tx: Tx, household_id: str) -> RowMapping:
    h = schema.households
    row = (
        (await tx.conn.execute(select(h).where(h.c.id == household_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no such household", detail=f"household {household_id!r} does not exist")
    return row


async def archive(tx: Tx, household_id: str, *, actor: str) -> Household:
    """Archive a household that nobody needs to answer for any more.

    Refused while it has an open incident (someone must finish it) or an enrolled gateway (its
    alarms would come from a home the lists no longer show): revoke the gateway first.
    """
    row = await _locked(tx, household_id)
    if row["archived_at"] is not None:
        raise Conflict("household archived", detail=f"household {household_id!r} is archived")
    i, g = schema.incidents, schema.gateways
    open_count = (
        await tx.conn.execute(
            select(func.count())
            .select_from(i)
            .where(i.c.household_id == household_id, incidents.open_filter())
        )
    ).scalar_one()
    if open_count:
        raise Conflict(
            "household has open incidents",
            detail=f"household {household_id!r} has {open_count} open incident(s); "
            "resolve them before archiving",
        )
    live = (
        (
            await tx.conn.execute(
                select(g.c.id).where(g.c.household_id == household_id, g.c.revoked_at.is_(None))
            )
        )
        .scalars()
        .all()
    )
    if live:
        raise Conflict(
            "household has an enrolled gateway",
            detail=f"gateway {', '.join(live)} still reports for household {household_id!r}; "
            "revoke it before archiving",
        )
    h = schema.households
    await tx.conn.execute(update(h).where(h.c.id == household_id).values(archived_at=tx.now))
    tx.audit(actor, "household.archived", "household", household_id)
    return _changed(tx, "household.archived", await household(tx.conn, household_id))


def _changed(tx: Tx, kind: str, record: Household) -> Household:
    """Put the household's new record on the live stream: a page showing it redraws from it."""
    tx.change("household", kind, record.id, record.model_dump(mode="json"))
    return record


async def restore(tx: Tx, household_id: str, *, actor: str) -> Household:
    row = await _locked(tx, household_id)
    if row["archived_at"] is None:
        raise Conflict("household not archived", detail=f"household {household_id!r} is active")
    h = schema.households
    await tx.conn.execute(update(h).where(h.c.id == household_id).values(archived_at=None))
    tx.audit(actor, "household.restored", "household", household_id)
    return _changed(tx, "household.restored", await household(tx.conn, household_id))


async def set_away(tx: Tx, household_id: str, body: AwayRequest, *, actor: str) -> Household:
    """Away or in hospital until ``body.until``: the gateway's inactivity rule rests until then
    (it learns so with its next heartbeat reply)."""
    if body.until <= tx.now:
        raise BadRequest(
            "away end in the past",
            detail=f"until ({body.until.isoformat()}) must be in the future",
            status=422,
        )
    if body.until - tx.now > MAX_AWAY:
        raise BadRequest(
            "away too long",
            detail=f"until is more than {MAX_AWAY.days} days away; enter the expected return",
            status=422,
        )
    await _locked(tx, household_id)
    h = schema.households
    await tx.conn.execute(
        update(h)
        .where(h.c.id == household_id)
        .values(away_until=body.until, away_reason=body.reason, away_note=body.note)
    )
    detail = {"until": body.until.isoformat(), "reason": body.reason}
    tx.audit(actor, "household.away", "household", household_id, detail)
    return _changed(tx, "household.away", await household(tx.conn, household_id))


async def clear_away(tx: Tx, household_id: str, *, actor: str) -> Household:
    """Back home: inactivity is watched again from the gateway's next heartbeat."""
    row = await _locked(tx, household_id)
    if row["away_until"] is not None:
        h = schema.households
        await tx.conn.execute(
            update(h)
            .where(h.c.id == household_id)
            .values(away_until=None, away_reason="", away_note="")
        )
        tx.audit(actor, "household.back", "household", household_id)
        return _changed(tx, "household.back", await household(tx.conn, household_id))
    return await household(tx.conn, household_id)


async def away_until_for(
    conn: AsyncConnection, gateway_ids: Iterable[str] | None, now: datetime
) -> dict[str, datetime]:
    """Per gateway (every one whose household is away when ``gateway_ids`` is None), the end of
    its household's absence (only absences still under way)."""
    h, g = schema.households, schema.gateways
    query = (
        select(g.c.id, h.c.away_until)
        .select_from(g.join(h, h.c.id == g.c.household_id))
        .where(h.c.away_until > now)
    )
    if gateway_ids is not None:
        query = query.where(g.c.id.in_(list(gateway_ids)))
    rows = await conn.execute(query)
    return {gateway_id: until for gateway_id, until in rows}


async def add_note(tx: Tx, household_id: str, text: str, *, author: str) -> HouseholdNote:
    await household(tx.conn, household_id)
    n = schema.household_notes
    result = await tx.conn.execute(
        insert(n)
        .values(household_id=household_id, at=tx.now, author=author, text=text)
        .returning(n.c.id)
    )
    note_id = result.scalar_one()
    tx.audit(author, "household.note_added", "household", household_id, {"note_id": note_id})
    tx.change("household", "household.note_added", household_id, {"note_id": note_id})
    return HouseholdNote(id=note_id, household_id=household_id, at=tx.now, author=author, text=text)


async def notes(conn: AsyncConnection, household_id: str, limit: int) -> list[HouseholdNote]:
    await household(conn, household_id)
    n = schema.household_notes
    rows = await conn.execute(
        select(n).where(n.c.household_id == household_id).order_by(n.c.id.desc()).limit(limit)
    )
    return [HouseholdNote.model_validate(dict(r)) for r in rows.mappings()]


async def history(
    conn: AsyncConnection, household_id: str, limit: int, now: datetime
) -> list[Incident]:
    """The household's latest incidents, newest first (open and resolved)."""
    await household(conn, household_id)
    i = schema.incidents
    rows = await conn.execute(
        incidents.incident_select()
        .where(i.c.household_id == household_id)
        .order_by(i.c.opened_at.desc(), i.c.id.desc())
        .limit(limit)
    )
    return [incidents.to_model(r, now) for r in rows.mappings()]
