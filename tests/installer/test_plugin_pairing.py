"""A third-party driver pairs through `gatewayd devices pair` without any change to the CLI:
its plug-in is registered in the ``gatewayd.drivers`` entry-point group, as an installed
package's would be, and its pairing is all the CLI uses."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from contract.parsing import FrameParser
from drivers import registry
from drivers.base import Driver, FrameSink
from drivers.pairing import (
    Candidate,
    Identified,
    InvalidDevice,
    Needed,
    NothingFound,
    Pairing,
    ProgressSink,
    address_of,
)
from gatewayd.cli import cli
from tests.fixtures.gateway import home_toml

METER = "WM-0042"


def check_pin(value: str) -> str:
    if not re.fullmatch(r"\d{4}", value):
        raise ValueError("a PIN is 4 digits")
    return value


class MeterPairing(Pairing):
    """Water meters on a made-up bus: a scan, a PIN for locked meters, or a meter number."""

    discovery = "scan"
    address_example = "the meter number, like WM-0042"
    address_kind = "meter number"
    discovery_seconds = 1.0
    heard: tuple[Candidate, ...] = (
        Candidate(
            METER, name="bathroom meter", reports=("water_leak", "flow"), signal="-60 dBm",
            role_guess="water_leak",
            needs=(Needed("pin", "locked", "Its PIN (4 digits, on the lid)", check_pin),),
        ),
        Candidate("WM-0007", name="kitchen meter", reports=("flow",)),
    )  # fmt: skip

    async def discover(self, seconds: float, progress: ProgressSink) -> AsyncIterator[Candidate]:
        if not self.heard:
            raise NothingFound(f"no meter answered in {seconds:g} s")
        progress(f"{len(self.heard)} meters answered")
        for candidate in self.heard:
            yield candidate

    async def identify(self, target: Candidate | str, options: Mapping[str, Any]) -> Identified:
        address = address_of(target).upper()
        if not re.fullmatch(r"WM-\d{4}", address):
            raise InvalidDevice(f"{address!r} is not a meter number (WM- and 4 digits)")
        return Identified(
            address=address, model="AquaStop 3", options=dict(options), role_guess="water_leak"
        )


class MeterDriver(Driver):
    type_name = "acme_meter"

    def create_parser(self) -> FrameParser:
        raise NotImplementedError("only pairing is exercised here")

    async def run(self, emit: FrameSink) -> None:
        raise NotImplementedError("only pairing is exercised here")

    def pairing(self) -> Pairing:
        return MeterPairing(self)


class SilentDriver(MeterDriver):
    """A plug-in that pairs nothing: its devices are written by hand."""

    type_name = "acme_silent"

    def pairing(self) -> None:  # type: ignore[override]
        return None


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = [
        EntryPoint("acme_meter", f"{__name__}:MeterDriver", registry.ENTRY_POINT_GROUP),
        EntryPoint("acme_silent", f"{__name__}:SilentDriver", registry.ENTRY_POINT_GROUP),
    ]
    group = registry.ENTRY_POINT_GROUP

    def entry_points(**selection: str) -> list[EntryPoint]:
        return installed if selection == {"group": group} else []

    monkeypatch.setattr(registry, "entry_points", entry_points)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    drivers = (
        '[[drivers]]\nid = "meters"\ntype = "acme_meter"\n\n'
        '[[drivers]]\nid = "silent"\ntype = "acme_silent"\n'
    )
    path = tmp_path / "home.toml"
    path.write_text(home_toml(tmp_path / "state", drivers=drivers))
    return path


def pair(config: Path, *args: str, input: str = "") -> Result:
    return CliRunner().invoke(
        cli, ["devices", "pair", "--config", str(config), *args], input=input,
        env={"COLUMNS": "200"},
    )  # fmt: skip


def devices_of(path: Path) -> list[dict[str, Any]]:
    return list(tomllib.loads(path.read_text()).get("devices", []))


def test_a_plugin_device_is_picked_from_its_scan_and_paired_again_by_address(
    config: Path,
) -> None:
    # Pick the first meter, a wrong PIN then the right one, accept the role, answer the room,
    # keep the id.
    result = pair(config, "--driver", "acme_meter", input="1\n12\n0815\n\nbathroom\n\n")
    assert result.exit_code == 0, result.output
    assert "2 meters answered" in result.output, "the driver's progress is shown"
    assert "bathroom meter" in result.output
    assert "locked (needs --option pin=...)" in result.output
    assert "a PIN is 4 digits" in result.output, "a wrong answer is named and asked again"
    assert devices_of(config) == [
        {
            "id": "water_leak_bathroom",
            "driver": "meters",
            "address": METER,
            "role": "water_leak",
            "room": "bathroom",
            "model": "AquaStop 3",
            "options": {"pin": "0815"},
        }
    ]

    # The same meter again, by its number and flags: updated in place, never duplicated.
    result = pair(
        config, "--driver", "meters", "--address", "wm-0042", "--option", "pin=0815",
        "--role", "water_leak", "--room", "hall", "--no-input",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Updated" in result.output
    [device] = devices_of(config)
    assert (device["id"], device["room"], device["address"]) == (
        "water_leak_bathroom",
        "hall",
        METER,
    )


def test_a_plugin_refusal_is_named_and_nothing_is_written(config: Path) -> None:
    before = config.read_text()
    result = pair(
        config, "--driver", "meters", "--address", "42", "--role", "water_leak", "--no-input"
    )
    assert result.exit_code == 2, result.output
    assert "'42' is not a meter number" in result.output
    assert "nothing written" in result.output
    assert config.read_text() == before


def test_a_plugin_that_hears_nothing_ends_with_the_timeout_code(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MeterPairing, "heard", ())
    result = pair(config, "--driver", "meters", "--role", "water_leak")
    assert result.exit_code == 5, result.output
    assert "no meter answered in 1 s" in result.output
    assert "--address" in result.output, "the way around a scan is named"
    assert devices_of(config) == []


def test_a_plugin_that_pairs_nothing_says_so(config: Path) -> None:
    result = pair(config, "--driver", "silent", "--address", "x", "--role", "other", "--no-input")
    assert result.exit_code == 2, result.output
    assert "does not pair devices" in result.output
    assert devices_of(config) == []


def test_what_a_plugin_reports_is_checked_where_it_is_made() -> None:
    with pytest.raises(ValueError, match="role_guess 'boiler' is not one of"):
        Candidate(METER, role_guess="boiler")
    with pytest.raises(ValueError, match="needs its address"):
        Candidate("  ")
    with pytest.raises(ValueError, match="needs its address"):
        Identified(address="")
