"""Door and window contacts: intrusion in away mode, left open, flapping; and the contract's
examples of these kinds are what the engine really produces."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.wire import EventKind
from rules import EmitEvent, RuleConfigError, RuleEngine, load_rules
from rules.decider import draft_of
from tests.rules.builders import dev, events, feed, kinds, s

DOORS = (dev("door-front", "door", room="hall"), dev("door-1", "door", room="kitchen"))
EVENING = datetime(2026, 1, 5, 21, 50, tzinfo=UTC)
FLAPPING = {"contacts": {"flapping_changes": 20}}


def doors(rules: dict[str, Any] | None = None, devices: Any = DOORS) -> RuleEngine:
    table: dict[str, Any] = {"inactivity": {"enabled": False}, "supervision": {"default_s": 0}}
    table.update(rules or {})
    return RuleEngine(load_rules(table, devices=devices), devices, timezone="UTC")


def of(kind: str, decisions: list[Any]) -> list[EmitEvent]:
    return [x for x in events(decisions) if x.kind.value == kind]


# -- intrusion ----------------------------------------------------------------------------------


def test_away_opening_is_an_intrusion_after_the_entry_delay() -> None:
    e = doors()
    t = EVENING
    e.set_mode("away", t)
    out = feed(e, "door-1", "contact_open", True, t + s(1))
    assert kinds(out) == ["contact"]
    assert e.next_deadline() == t + s(31)
    assert e.tick(t + s(30)) == []
    (alarm,) = of("intrusion", e.tick(t + s(31)))
    assert alarm.condition == "intrusion:door-1"
    assert alarm.payload["due_at"] == (t + s(31)).isoformat()
    assert alarm.payload["entry_delay_s"] == 30
    # Closing the door restores it; opening again is a new intrusion.
    assert kinds(feed(e, "door-1", "contact_open", False, t + s(40))) == [
        "contact",
        "intrusion_restore",
    ]
    feed(e, "door-1", "contact_open", True, t + s(50))
    assert kinds(e.tick(t + s(80))) == ["intrusion"]


def test_disarming_within_the_entry_delay_raises_nothing() -> None:
    e = doors()
    e.set_mode("away", EVENING)
    feed(e, "door-front", "contact_open", True, EVENING + s(1))
    assert e.set_mode("normal", EVENING + s(20)) == []
    assert of("intrusion", e.tick(EVENING + s(3600))) == []


def test_disarming_after_an_intrusion_restores_it() -> None:
    e = doors({"contacts": {"entry_delay_s": 0}})
    e.set_mode("away", EVENING)
    assert kinds(feed(e, "door-1", "contact_open", True, EVENING + s(1))) == [
        "contact",
        "intrusion",
    ]
    (restore,) = events(e.set_mode("normal", EVENING + s(60)))
    assert restore.kind is EventKind.INTRUSION_RESTORE
    assert restore.payload["reason"] == "disarmed"


def test_no_intrusion_in_normal_mode_nor_for_a_door_open_when_leaving() -> None:
    e = doors()
    feed(e, "door-1", "contact_open", True, EVENING)
    e.set_mode("away", EVENING + s(10))  # leaving through the open door
    assert of("intrusion", e.tick(EVENING + s(600))) == []
    feed(e, "door-1", "contact_open", False, EVENING + s(20))
    assert of("intrusion", e.tick(EVENING + s(600))) == []


def test_an_entry_delay_is_per_device() -> None:
    e = doors({"devices": {"door-1": {"entry_delay_s": 5}}})
    e.set_mode("away", EVENING)
    feed(e, "door-1", "contact_open", True, EVENING + s(1))
    assert kinds(e.tick(EVENING + s(6))) == ["intrusion"]


# -- left open ----------------------------------------------------------------------------------


def test_left_open_is_off_by_default_except_the_packs_front_door_at_night() -> None:
    e = doors()
    noon = EVENING.replace(hour=12)
    feed(e, "door-1", "contact_open", True, noon)
    feed(e, "door-front", "contact_open", True, noon)
    # The front door is watched from 22:00 (open since noon: it is left open then).
    out = e.tick(EVENING + s(24 * 3600))
    (alarm,) = of("left_open", out)
    assert alarm.condition == "left_open:door-front"
    assert alarm.payload["due_at"] == EVENING.replace(hour=22, minute=0).isoformat()
    assert alarm.payload["open_since"] == noon.isoformat()
    (restore,) = of(
        "left_open_restore", feed(e, "door-front", "contact_open", False, noon + s(86400))
    )
    assert restore.payload["value"] is False


def test_left_open_counts_from_the_opening() -> None:
    e = doors()
    t = EVENING.replace(hour=22, minute=30)
    feed(e, "door-front", "contact_open", True, t)
    assert e.next_deadline() == t + s(600)
    feed(e, "door-front", "contact_open", False, t + s(300))
    feed(e, "door-front", "contact_open", True, t + s(400))
    assert e.next_deadline() == t + s(1000)
    assert kinds(e.tick(t + s(1000))) == ["left_open"]


def test_left_open_configured_for_every_door_and_per_device() -> None:
    e = doors(
        {
            "contacts": {"left_open_after_s": 60, "front_door": {"device": "door-front"}},
            "devices": {"door-front": {"left_open_after_s": 0}},
        }
    )
    feed(e, "door-1", "contact_open", True, EVENING)
    feed(e, "door-front", "contact_open", True, EVENING)
    assert [x.condition for x in of("left_open", e.tick(EVENING + s(7200)))] == ["left_open:door-1"]


# -- flapping -----------------------------------------------------------------------------------


def test_a_flapping_contact_is_a_trouble_and_its_telemetry_is_held_back() -> None:
    e = doors(FLAPPING)
    out: list[Any] = []
    for i in range(30):
        out += feed(e, "door-1", "contact_open", i % 2 == 0, EVENING + s(i))
    (flapping,) = of("flapping", out)
    assert flapping.condition == "flapping:door-1"
    assert flapping.payload["changes"] == 21
    assert len(of("contact", out)) == 20
    # Quiet for a window: restored, and the contact's state now is reported.
    end = e.tick(EVENING + s(29 + 60))
    assert kinds(end) == ["flapping_restore", "contact"]
    assert of("contact", end)[0].payload["open"] is False


def test_contact_flapping_is_off_in_the_pack() -> None:
    e = doors()
    out: list[Any] = []
    for i in range(30):
        out += feed(e, "door-1", "contact_open", i % 2 == 0, EVENING + s(i))
    assert kinds(out) == ["contact"] * 30


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"contacts": {"entry_delay_s": -1}}, "rules.contacts.entry_delay_s"),
        ({"contacts": {"left_open_hours": "22:00"}}, "rules.contacts.left_open_hours"),
        ({"contacts": {"front_door": {"left_open_hours": "7-9"}}}, "front_door.left_open_hours"),
        ({"contacts": {"flapping_changes": -1}}, "rules.contacts.flapping_changes"),
        ({"contacts": {"nonsense": 1}}, "rules.contacts.nonsense"),
        ({"devices": {"door-1": {"left_open_hours": "25:00-07:00"}}}, "door-1.left_open_hours"),
        ({"devices": {"pir": {"entry_delay_s": 5}}}, "applies to door and window contacts"),
        ({"contacts": {"front_door": {"device": "pir"}}}, "is a motion device"),
        ({"contacts": {"front_door": {"device": "gone"}}}, "no [[devices]] entry"),
    ],
)
def test_contact_rules_are_validated(table: dict[str, Any], problem: str) -> None:
    devices = (*DOORS, dev("pir", "motion"))
    with pytest.raises(RuleConfigError, match=re.escape(problem)):
        load_rules(table, devices=devices)


def test_a_home_without_the_packs_front_door_loads() -> None:
    devices = (dev("door-back", "door"),)
    rules = load_rules({}, devices=devices)
    assert rules.contacts.front_door.device == "door-front"
    RuleEngine(rules, devices)


# -- the contract's examples --------------------------------------------------------------------

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def documented() -> dict[str, dict[str, Any]]:
    blocks = re.findall(r"### `([a-z_]+)`\n\n```json\n(.*?)\n```", CONTRACT.read_text(), re.S)
    return {name: json.loads(body) for name, body in blocks}


def produced() -> dict[str, EmitEvent]:
    """Every door kind, as the engine raises it with the elderly-care pack (and flapping on)."""
    e = doors(FLAPPING)
    out: list[Any] = []
    e.set_mode("away", EVENING)
    out += feed(e, "door-1", "contact_open", True, EVENING + s(1))
    out += e.tick(EVENING + s(31))
    out += feed(e, "door-1", "contact_open", False, EVENING + s(40))
    out += e.set_mode("normal", EVENING + s(50))
    out += feed(e, "door-front", "contact_open", True, EVENING + s(60))
    out += e.tick(EVENING + s(660))
    out += feed(e, "door-front", "contact_open", False, EVENING + s(700))
    for i in range(21):
        out += feed(e, "door-1", "contact_open", i % 2 == 0, EVENING + s(800 + i))
    out += e.tick(EVENING + s(900))
    first: dict[str, EmitEvent] = {}
    for x in events(out):
        first.setdefault(x.kind.value, x)
    return first


@pytest.mark.parametrize(
    "kind",
    [
        "contact",
        "intrusion",
        "intrusion_restore",
        "left_open",
        "left_open_restore",
        "flapping",
        "flapping_restore",
    ],
)
def test_the_contracts_door_examples_are_what_the_engine_produces(kind: str) -> None:
    example = documented()[kind]
    event = produced()[kind]
    draft = draft_of(event, EVENING + timedelta(0))
    assert example["kind"] == draft.kind.value
    assert example["device_id"] == draft.device_id
    assert example["payload"]["condition"] == draft.payload["condition"]
    assert sorted(example["payload"]) == sorted(draft.payload)
    assert example["priority"] == int(draft.kind.priority)
