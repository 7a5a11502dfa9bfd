"""What the API shows of wristbands: the list, and an incident's location with its track."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import schema
from dispatch.errors import NotFound
from dispatch.incidents import load_incident, position_of
from dispatch.models import Position

__all__ = [
    "Fix",
    "HomePlace",
    "IncidentLocation",
    "Wristband",
    "WristbandIn",
    "distance_m",
    "incident_location",
    "list_wristbands",
]

#: A terminal phone number: its digits (leading zeros are dropped when stored).
TERMINAL_PATTERN = r"^[0-9]{1,20}$"
#: How far back the console's track goes.
TRACK_S = 3600
_TRACK_MAX = 720


class WristbandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terminal: str = Field(
        pattern=TERMINAL_PATTERN, description="the terminal's phone number (its SIM's), digits"
    )
    household_id: str = Field(min_length=1, max_length=128)
    resident: str = Field(default="", max_length=200, description="who wears it")


class Wristband(BaseModel):
    terminal: str
    household_id: str | None = Field(description="None: registered, not bound yet")
    resident: str
    manufacturer: str
    model: str
    protocol: str = Field(description="2013 or 2019 header; empty before registration")
    registered_at: datetime | None
    bound_at: datetime | None
    last_seen_at: datetime | None
    online: bool
    battery: int | None
    signal: int | None
    satellites: int | None
    lat: float | None
    lon: float | None
    fix: bool | None
    fix_at: datetime | None
    last_alarm_at: datetime | None


class HomePlace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Fix(BaseModel):
    at: datetime
    lat: float
    lon: float
    fix: bool
    verified: bool


class IncidentLocation(BaseModel):
    incident_id: str
    terminal: str
    resident: str | None
    position: Position = Field(description="the incident's position (moves with the wristband)")
    latest: Fix | None = Field(description="the wristband's latest report")
    home: HomePlace | None = Field(description="the household's place, if a supervisor set it")
    distance_m: float | None = Field(description="from home to the latest position, metres")
    track: list[Fix] = Field(description="the last hour's reports, oldest first")
    map_url: str | None = Field(description="the centre's map link for the latest position")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def list_wristbands(conn: AsyncConnection, bound: bool | None) -> list[Wristband]:
    w = schema.wristbands
    query = select(w).order_by(w.c.terminal)
    if bound is True:
        query = query.where(w.c.household_id.is_not(None))
    elif bound is False:
        query = query.where(w.c.household_id.is_(None))
    rows = (await conn.execute(query.limit(5000))).mappings()
    return [Wristband.model_validate(dict(r)) for r in rows]


def map_link(template: str | None, lat: float, lon: float) -> str | None:
    if not template:
        return None
    return template.format(lat=f"{lat:.6f}", lon=f"{lon:.6f}")


async def incident_location(
    conn: AsyncConnection, incident_id: str, now: datetime, map_template: str | None
) -> IncidentLocation:
    row = await load_incident(conn, incident_id)
    position = position_of(row)
    if position is None:
        raise NotFound("no position", detail=f"incident {incident_id} has no wristband position")
    w, f, p = schema.wristbands, schema.wristband_fixes, schema.household_places
    band = (
        (await conn.execute(select(w).where(w.c.terminal == position.terminal))).mappings().first()
    )
    track_rows = (
        await conn.execute(
            select(f)
            .where(f.c.terminal == position.terminal, f.c.at >= now - timedelta(seconds=TRACK_S))
            .order_by(f.c.at.desc(), f.c.id.desc())
            .limit(_TRACK_MAX)
        )
    ).mappings()
    track = [
        Fix(at=r["at"], lat=r["lat"], lon=r["lon"], fix=r["fix"], verified=r["verified"])
        for r in track_rows
    ][::-1]
    latest = track[-1] if track else None
    if latest is None or latest.at < position.fix_at:
        latest = Fix(
            at=position.fix_at,
            lat=position.lat,
            lon=position.lon,
            fix=position.fix,
            verified=position.verified,
        )
    place = (
        (await conn.execute(select(p).where(p.c.household_id == row["household_id"])))
        .mappings()
        .first()
    )
    home = HomePlace(lat=place["lat"], lon=place["lon"]) if place is not None else None
    extra: dict[str, Any] = {}
    if home is not None:
        extra["distance_m"] = round(distance_m(home.lat, home.lon, latest.lat, latest.lon), 1)
    return IncidentLocation(
        incident_id=incident_id,
        terminal=position.terminal,
        resident=band["resident"] if band is not None else None,
        position=position,
        latest=latest,
        home=home,
        distance_m=extra.get("distance_m"),
        track=track,
        map_url=map_link(map_template, latest.lat, latest.lon),
    )
