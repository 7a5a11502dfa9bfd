"""The [rules] table: defaults from the pack, validation with lines, per-device overrides."""

from __future__ import annotations

import tomllib

import pytest

from contract.home import parse_config
from rules import RuleConfigError, RuleEngine, load_rules
from rules.config import RuleSet
from tests.rules.builders import HOME, dev

HOME_TOML = """\
[gateway]
id = "gw-1"

[rules]
pack = "elderly_care"
escalate_after_s = 90

[rules.inactivity]
after_s = 7200
active_hours = "07:00-25:00"

[rules.flapping]
max_alarms = 0

[rules.devices.nope]
delay_on_s = 5
"""


def test_empty_table_is_the_default_pack() -> None:
    rules = load_rules({})
    assert rules.pack == "elderly_care"
    assert rules.escalate_after_s == 60
    assert rules.escalate_every_s == 60
    assert rules.sos_collapse_s == 30
    assert rules.battery_low_percent == 15
    assert rules.inactivity.after_s == 4 * 3600
    assert rules.inactivity.active_hours == "07:00-22:00"
    assert rules.inactivity.not_up_by == "10:00"
    assert rules.flapping.max_alarms == 5
    assert rules.supervision == {"default_s": 10_800, "siren": 1800}
    # Every press the kit's buttons report (Zigbee2MQTT, BTHome, RFLink); not a release or "off".
    assert set(rules.sos_actions) == {
        *("emergency", "single", "double", "triple", "quadruple", "many", "hold"),
        *("long", "long_double", "long_triple", "on", "allon"),
    }


def test_the_models_default_is_the_packs() -> None:
    assert RuleSet().sos_actions == load_rules({}).sos_actions


def test_pack_key_accepted_and_overrides_merge() -> None:
    rules = load_rules({"pack": "elderly_care", "inactivity": {"after_s": 60}})
    assert rules.inactivity.after_s == 60
    assert rules.inactivity.active_hours == "07:00-22:00"  # the rest from the pack


def test_init_and_demo_tables_load() -> None:
    demo = tomllib.loads(
        '[rules]\npack = "elderly_care"\n[rules.inactivity]\nafter_s = 4\n'
        'active_hours = "00:00-24:00"\n'
    )
    rules = load_rules(demo["rules"])
    assert rules.inactivity.window()[1] is None


def test_errors_name_source_line_key_and_problem() -> None:
    config = parse_config(HOME_TOML, "home.toml")
    with pytest.raises(RuleConfigError) as info:
        load_rules(config.rules, source="home.toml", text=HOME_TOML, devices=HOME)
    problems = info.value.problems
    assert any(
        p.startswith("home.toml:10: rules.inactivity.active_hours:") and "25:00" in p
        for p in problems
    ), problems
    assert any(p.startswith("home.toml:13: rules.flapping.max_alarms:") for p in problems), problems


def test_unknown_device_in_overrides_refused() -> None:
    with pytest.raises(RuleConfigError, match=r"rules\.devices\.nope: no \[\[devices\]\]"):
        load_rules({"devices": {"nope": {"delay_on_s": 5}}}, devices=HOME)
    with pytest.raises(RuleConfigError, match="nope"):
        RuleEngine(load_rules({"devices": {"nope": {"delay_on_s": 5}}}), HOME)


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"pack": "burglary"}, "unknown rule pack 'burglary'"),
        ({"escalate_afterr_s": 5}, "unknown key"),
        ({"inactivity": {"not_up_by": "24:00"}}, "not a time of day"),
        ({"inactivity": {"night_end": "7am"}}, "HH:MM"),
        ({"inactivity": {"night_end": "11:00"}}, "must come before not_up_by"),
        ({"inactivity": {"active_hours": "08:00-08:00"}}, "empty"),
        ({"inactivity": {"active_hours": "08:00"}}, "HH:MM-HH:MM"),
        ({"supervision": {"smok": 5}}, "unknown role 'smok'"),
        ({"supervision": {"smoke": -1}}, ">= 0"),
        ({"delay_on": {"sos": 5}}, "delay_on applies to"),
        ({"escalate_after_s": 0}, "greater than 0"),
        ({"sos_actions": "single"}, "valid list"),
        ({"sos_actions": ["single", ""]}, "'' is not an action"),
        ({"sos_actions": [" hold"]}, "' hold' is not an action"),
        ({"devices": {"x": {"checkin": 3}}}, "unknown key"),
    ],
)
def test_bad_tables_refused(table: dict[str, object], fragment: str) -> None:
    with pytest.raises(RuleConfigError) as info:
        load_rules(table, source="home.toml")
    assert any(fragment in p for p in info.value.problems), info.value.problems
    assert all(p.startswith("home.toml") for p in info.value.problems)


def test_not_a_table() -> None:
    with pytest.raises(RuleConfigError, match="expected a table"):
        load_rules(["x"])  # type: ignore[arg-type]


def test_bad_checkin_option_refused() -> None:
    bad = [dev("pir", "motion", checkin_interval_s=-5)]
    with pytest.raises(RuleConfigError, match=r"devices\.pir\.options\.checkin_interval_s"):
        load_rules({}, devices=bad)
    with pytest.raises(RuleConfigError, match="checkin_interval_s"):
        RuleEngine(load_rules({}), [dev("pir", "motion", checkin_interval_s="often")])


def test_bad_timezone_refused_by_engine() -> None:
    with pytest.raises(RuleConfigError, match="unknown time zone"):
        RuleEngine(load_rules({}), HOME, timezone="Mars/Olympus")


def test_rules_are_frozen() -> None:
    rules = load_rules({})
    with pytest.raises(ValueError, match="frozen"):
        rules.escalate_after_s = 5  # type: ignore[misc]
