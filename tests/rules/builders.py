"""Builders for rule engine tests: a small elderly-care home and readings at virtual times."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.wire import EventKind, Reading
from drivers.base import DeviceSpec
from rules import Decision, EmitEvent, LocalAction, RuleEngine, load_rules

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def dev(id: str, role: str, *, room: str = "", driver: str = "z2m", **options: Any) -> DeviceSpec:
    return DeviceSpec(
        id=id, driver=driver, address=f"addr-{id}", role=role, room=room, options=options
    )


HOME: tuple[DeviceSpec, ...] = (
    dev("sos-1", "sos_button", room="bedroom"),
    dev("band-1", "wristband"),
    dev("smoke-k", "smoke", room="kitchen"),
    dev("smoke-h", "smoke", room="hall"),
    dev("gas-k", "gas", room="kitchen"),
    dev("co-1", "co"),
    dev("leak-b", "water_leak", room="bath"),
    dev("leak-k", "water_leak", room="kitchen"),
    dev("pir-1", "motion", room="living"),
    dev("door-1", "door", room="hall"),
    dev("fall-1", "fall"),
    dev("siren-1", "siren"),
    dev("siren-2", "siren"),
)


def engine(
    rules: dict[str, Any] | None = None,
    devices: Sequence[DeviceSpec] = HOME,
    *,
    timezone: str = "UTC",
    inactivity: bool = False,
    supervision: bool = False,
) -> RuleEngine:
    """An engine over the test home; inactivity and supervision off unless asked for."""
    table: dict[str, Any] = dict(rules or {})
    if not inactivity:
        table.setdefault("inactivity", {}).setdefault("enabled", False)
    if not supervision:
        table.setdefault("supervision", {"default_s": 0, "siren": 0})
    return RuleEngine(load_rules(table), devices, timezone=timezone)


def rd(
    device: str,
    prop: str,
    value: Any,
    *,
    at: datetime = T0,
    retained: bool = False,
    driver: str = "z2m",
    **extra: Any,
) -> Reading:
    return Reading(
        driver=driver,
        device=device,
        property=prop,
        value=value,
        at=at,
        retained=retained,
        extra=extra,
    )


def feed(
    e: RuleEngine, device: str, prop: str, value: Any, at: datetime, **kw: Any
) -> list[Decision]:
    return e.feed(rd(device, prop, value, at=at, **kw), at)


def events(decisions: Iterable[Decision]) -> list[EmitEvent]:
    return [d for d in decisions if isinstance(d, EmitEvent)]


def actions(decisions: Iterable[Decision]) -> list[LocalAction]:
    return [d for d in decisions if isinstance(d, LocalAction)]


def kinds(decisions: Iterable[Decision]) -> list[str]:
    return [d.kind.value for d in events(decisions)]


def alarm_kinds(decisions: Iterable[Decision]) -> list[str]:
    """Kinds of alarm and trouble events and their restores (not telemetry, not escalations)."""
    return [
        d.kind.value for d in events(decisions) if d.kind.restore is not None or d.kind.is_restore
    ]


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


__all__ = [
    "HOME",
    "T0",
    "EventKind",
    "actions",
    "alarm_kinds",
    "dev",
    "engine",
    "events",
    "feed",
    "kinds",
    "rd",
    "s",
]
