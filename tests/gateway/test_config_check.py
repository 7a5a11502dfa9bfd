"""One check of a home config names every problem: schema, references, drivers and rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.devices import ROLES
from contract.home import ConfigError
from gatewayd.config_check import checked_config, config_problems

GOOD = """[gateway]
id = "gw-1"
household = "hh-1"
state_dir = "{state}"

[[drivers]]
id = "rf"
type = "rflink"
port = "/dev/null"

[[devices]]
id = "door-1"
driver = "rf"
address = "NewKaku:1a2"
role = "door"
"""


def test_a_good_config_has_no_problems(tmp_path: Path) -> None:
    config, problems = config_problems(GOOD.format(state=tmp_path), "home.toml")
    assert problems == []
    assert config is not None
    assert [d.id for d in config.devices] == ["door-1"]


def test_an_invalid_entry_does_not_hide_or_shift_the_next_ones_problems(tmp_path: Path) -> None:
    text = (
        GOOD.format(state=tmp_path)
        + """
[[devices]]
id = "bad id!"
driver = "rf"
address = "NewKaku:1a3"
role = "door"

[[devices]]
id = "smoke-1"
driver = "rf"
address = "not an rflink address"
role = "smok"

[rules]
escalate_after_s = "never"
"""
    )
    config, problems = config_problems(text, "home.toml")
    assert config is None
    joined = "\n".join(problems)
    # The schema's problem, then those of the entries that did validate, under their own index.
    assert "devices[1].id" in joined
    assert "bad id!" in joined
    role = next(p for p in problems if "'smok'" in p)
    assert "devices[2] (smoke-1)" in role
    smok_line = text.splitlines().index('role = "smok"') + 1
    assert role.startswith(f"home.toml:{smok_line}:")
    assert any("not an rflink address" in p and p.startswith("home.toml:") for p in problems)
    assert any("escalate_after_s" in p for p in problems)


def test_references_are_named_with_the_schema_problems(tmp_path: Path) -> None:
    text = (
        GOOD.format(state=tmp_path).replace('household = "hh-1"', "stall_after_s = -5")
        + """
[[devices]]
id = "door-1"
driver = "zb"
address = "NewKaku:1a4"
role = "door"
"""
    )
    _, problems = config_problems(text, "home.toml")
    joined = "\n".join(problems)
    assert "gateway.stall_after_s" in joined
    assert "device ids must be unique; repeated: door-1" in joined
    assert "names driver 'zb'" in joined


def test_reference_problems_alone_are_named_on_their_lines(tmp_path: Path) -> None:
    text = GOOD.format(state=tmp_path).replace('role = "door"', 'role = "dor"')
    _, problems = config_problems(text, "home.toml")
    line = text.splitlines().index('role = "dor"') + 1
    assert [p for p in problems if "'dor'" in p] == [
        f"home.toml:{line}: devices[0] (door-1) has role 'dor'; expected one of " + ", ".join(ROLES)
    ]


def test_not_toml_and_no_file_are_one_problem_each(tmp_path: Path) -> None:
    assert config_problems("[gateway\n", "home.toml")[1][0].startswith("home.toml: not valid TOML")
    with pytest.raises(ConfigError, match="no such file"):
        checked_config(tmp_path / "absent.toml")
