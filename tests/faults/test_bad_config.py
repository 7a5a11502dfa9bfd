"""Scenario 7c: a home config with every kind of mistake: `gatewayd run` exits 3 naming them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.procs import run_module

pytestmark = pytest.mark.slow

EXIT_CONFIG = 3


@dataclass(frozen=True)
class Mistake:
    name: str
    bad: str
    good: str
    #: Words the error output must contain when it names this mistake.
    named_by: tuple[str, ...]


MISTAKES = [
    Mistake("gateway id", 'id = "gw bad id!"', 'id = "gw-1"', ("gateway.id", "gw bad id!")),
    Mistake("timezone", 'timezone = "Mars/Olympus"', 'timezone = "UTC"', ("Mars/Olympus",)),
    Mistake("stall", "stall_after_s = -5", "stall_after_s = 5", ("stall_after_s",)),
    Mistake("unknown key", 'colour = "blue"', "", ("colour", "unknown key")),
    Mistake("url scheme", 'url = "ftp://x"', 'url = "https://x"', ("dispatch.url", "ftp://x")),
    Mistake("heartbeat", "heartbeat_interval = 0", "heartbeat_interval = 5", ("heartbeat",)),
    Mistake("wrong type", 'timeout = "soon"', "timeout = 5", ("dispatch.timeout", "soon")),
    Mistake("budget", "disk_budget_mib = -1", "disk_budget_mib = 1", ("disk_budget_mib",)),
    Mistake(
        "duplicate driver",
        'id = "rf"\ntype = "zigbee2mqtt"',
        'id = "zb"\ntype = "zigbee2mqtt"',
        ("driver ids must be unique", "rf"),
    ),
    Mistake(
        "duplicate device",
        'id = "smoke-1"\ndriver = "zb"',
        'id = "smoke-2"\ndriver = "zb"',
        ("device ids must be unique", "smoke-1"),
    ),
    Mistake("role", 'role = "smok"', 'role = "smoke"', ("'smok'",)),
    Mistake(
        "driver type",
        'type = "no_such_driver"',
        'type = "rflink"\nport = "/dev/null"',
        ("no_such_driver",),
    ),
    Mistake(
        "rflink address",
        'address = "not an rflink address"',
        'address = "SmokeAlert:1"',
        ("not an rflink address",),
    ),
    Mistake(
        "rule value", 'escalate_after_s = "never"', "escalate_after_s = 600", ("escalate_after_s",)
    ),
]

TEMPLATE = """[gateway]
{gateway id}
household = "hh-1"
state_dir = "{STATE}"
{timezone}
{stall}
{unknown key}

[dispatch]
{url scheme}
{heartbeat}
{wrong type}

[buffer]
{budget}

[rules]
{rule value}

[[drivers]]
id = "rf"
type = "rflink"
port = "/dev/null"

[[drivers]]
{duplicate driver}

[[drivers]]
id = "ghost"
{driver type}

[[devices]]
id = "smoke-1"
driver = "rf"
{rflink address}
{role}

[[devices]]
{duplicate device}
address = "kitchen_smoke"
role = "smoke"
"""


def render(state: Path, fixed: set[str]) -> str:
    text = TEMPLATE.replace("{STATE}", str(state))
    for m in MISTAKES:
        text = text.replace("{" + m.name + "}", m.good if m.name in fixed else m.bad)
    return text


def test_every_mistake_is_named_and_the_gateway_never_starts(tmp_path: Path) -> None:
    """Each run of ``gatewayd run --config bad.toml`` exits 3 and names problems (file, line
    where known, key, bad value); the ones named are fixed and it is run again, until every
    mistake was named. No run may start the gateway or crash with a traceback."""
    config = tmp_path / "home.toml"
    fixed: set[str] = set()
    runs: list[list[str]] = []
    while len(fixed) < len(MISTAKES):
        config.write_text(render(tmp_path / "state", fixed))
        result = run_module("gatewayd", "run", "--config", str(config), timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == EXIT_CONFIG, output
        assert "Traceback" not in output, output
        named = {
            m.name for m in MISTAKES if m.name not in fixed and all(w in output for w in m.named_by)
        }
        assert named, f"exit 3 without naming any remaining mistake:\n{output}"
        runs.append(sorted(named))
        fixed |= named
        assert len(runs) <= len(MISTAKES)
    assert not (tmp_path / "state" / "buffer.db").exists(), "a refused config touched the state"
    print(f"\nbad config: {len(MISTAKES)} mistakes named over {len(runs)} runs: {runs}")


def test_every_mistake_is_named_in_one_run(tmp_path: Path) -> None:
    config = tmp_path / "home.toml"
    config.write_text(render(tmp_path / "state", set()))
    result = run_module("gatewayd", "run", "--config", str(config), timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG
    unnamed = [m.name for m in MISTAKES if not all(w in output for w in m.named_by)]
    assert not unnamed, f"not named in the first run: {unnamed}"
