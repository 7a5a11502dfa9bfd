"""The scenario library: scripted homes, each rendered into ``<name>/`` beside this file.

Each scenario folder holds what replay needs, committed so a test or a developer can replay it
without rendering anything:

- ``trace.jsonl.gz``: the rendered trace;
- ``home.toml``: the home config that reads it;
- ``expected.jsonl``: the decisions the rules are expected to take (``gatewayd replay --expect``).

Re-render after changing a scenario (and review the expected decisions' diff before committing)::

    python -m firmware_sim.scenarios render week_alone            # trace and config
    python -m firmware_sim.scenarios render week_alone --expected # and expected.jsonl by replay
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from firmware_sim.scenario import KitDevice, Scenario, default_kit, resident_routine

__all__ = ["LIBRARY", "folder", "kitchen_gas", "rf_smoke_hall", "sos_at_night", "week_alone"]

HERE = Path(__file__).parent


def folder(name: str) -> Path:
    """Where the rendered files of scenario ``name`` live."""
    if name not in LIBRARY:
        raise KeyError(f"no scenario {name!r}; the library has {', '.join(sorted(LIBRARY))}")
    return HERE / name


def week_alone() -> Scenario:
    """A week in the life of a resident living alone, from Monday 2 March 2026, 06:00.

    An ordinary week (a seeded daily pattern) with four things in it that dispatch must hear of:

    - Monday on: the kitchen smoke detector's battery runs down from 100 % to 10 % over 5 days;
    - Thursday 10:41: a fall in the bedroom, then no movement for the rest of the day;
    - Friday 18:05: smoke in the kitchen for 3 minutes (dispatch acknowledges after 90 s);
    - Saturday 13:00: the front door sensor drops off the network and is never heard again.
    """
    home = Scenario(
        start="2026-03-02T06:00",
        tz="Europe/Berlin",
        kit=default_kit(),
        days=7,
        seed=20260302,
        gateway_id="gw-week-alone",
        household="hh-week-alone",
    )
    home.every_day(resident_routine)
    home.day(0).at("06:00").battery_drain("smoke-kitchen", from_=100, to=10, over="5d")
    home.day(3).at("10:41").fall_then_still("bedroom", for_="13h")
    home.day(4).at("18:05").smoke("kitchen", for_="3m").after("90s").acknowledge(
        "smoke:smoke-kitchen"
    )
    home.day(5).at("13:00").device_drops("door-front")
    return home


def sos_at_night() -> Scenario:
    """One night: asleep at 22:30, an SOS press at 02:14, pressed again (held) at 02:16.

    Dispatch acknowledges each alarm within a minute and a half, so escalation stops.
    """
    home = Scenario(
        start="2026-03-10T20:00",
        tz="Europe/Berlin",
        kit=default_kit(),
        days=0.5,
        seed=3,
        gateway_id="gw-sos-night",
        household="hh-sos-night",
    )
    home.at("20:30").motion("living").after("1h").motion("living")
    home.at("22:05").motion("bathroom").after("20m").motion("bedroom")
    home.day(1).at("02:14").sos("sos-button").after("90s").acknowledge("sos:sos-button")
    home.at("02:16").sos("sos-button", action="hold").after("70s").acknowledge("sos:sos-button")
    home.at("02:25").motion("bedroom")
    return home


def kitchen_gas() -> Scenario:
    """An afternoon: cooking, a gas leak for 6 minutes (dispatch acknowledges it after 2), later
    a leak under the bathroom sink."""
    home = Scenario(
        start="2026-03-12T14:00",
        tz="Europe/Berlin",
        kit=default_kit(),
        days=0.25,
        seed=5,
        gateway_id="gw-kitchen-gas",
        household="hh-kitchen-gas",
    )

    def afternoon(h: Scenario, rng: random.Random) -> None:
        for minute in range(0, 300, 20):
            h.at("14:00").after(f"{minute + rng.randint(0, 9)}m").motion(
                rng.choice(["kitchen", "living"])
            )

    afternoon(home, random.Random(5))
    home.at("16:40").gas("kitchen", for_="6m").after("2m").acknowledge("gas:gas-kitchen")
    home.at("17:30").leak("bathroom", for_="25m")
    return home


def rf_smoke_hall() -> Scenario:
    """An evening with 433 MHz devices: an RFLink smoke alarm in the hall, a pendant press.

    Dispatch acknowledges both alarms within a minute and a half.
    """
    kit = [
        *default_kit(),
        KitDevice(
            "rf-smoke-hall", "SmokeAlert", "smoke", "hall", "Smoke alarm, hall", rf_id="0A1B2C"
        ),
        KitDevice("rf-pendant", "EV1527", "pendant", "bedroom", "Pendant", rf_id="5E3F1"),
    ]
    home = Scenario(
        start="2026-03-14T17:00",
        tz="Europe/Berlin",
        kit=kit,
        days=0.25,
        seed=11,
        gateway_id="gw-rf-smoke",
        household="hh-rf-smoke",
    )
    home.at("17:20").motion("kitchen").after("10m").motion("living")
    home.at("19:02").smoke("rf-smoke-hall", for_="4m").after("80s").acknowledge(
        "smoke:rf-smoke-hall"
    )
    home.at("19:03").motion("hall").after("30s").sos("rf-pendant")
    home.after("50s").acknowledge("sos:rf-pendant")
    home.at("19:40").motion("living")
    return home


LIBRARY: dict[str, Callable[[], Scenario]] = {
    "week_alone": week_alone,
    "sos_at_night": sos_at_night,
    "kitchen_gas": kitchen_gas,
    "rf_smoke_hall": rf_smoke_hall,
}
