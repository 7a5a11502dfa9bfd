"""dispatchd's settings: one model, read from DISPATCHD_* variables and from serve's flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from dispatch.cli import cli, serve
from dispatch.errors import ConfigError
from dispatch.settings import Settings, env_var, flag_name

NUMERIC = [
    name for name, field in Settings.model_fields.items() if field.annotation in (int, float)
]


def test_every_setting_is_a_serve_flag_and_a_variable_named_in_the_help() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"], prog_name="dispatchd", terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, field in Settings.model_fields.items():
        assert flag_name(name) in result.output, name
        assert env_var(name) in result.output, name
        assert field.description, name
        assert field.description in result.output, name
    # The flags that always existed keep their names.
    for flag in ("--db", "--host", "--port", "--incident-window", "--ack-timeout", "--sla-ack"):
        assert flag in result.output
    assert [flag_name(n) for n in ("sla_on_scene_s", "supervise_every_s", "session_ttl_s")] == [
        "--sla-on-scene",
        "--supervise-every",
        "--session-ttl",
    ]


def test_variables_are_read_and_a_flag_wins() -> None:
    env = {
        "DISPATCHD_SLA_ACK_S": "45",
        "DISPATCHD_DB": "sqlite:///x.db",
        "DISPATCHD_TIMEZONE": "UTC",
    }
    with mock.patch.dict(os.environ, env):
        from_env = Settings.load()
        assert (from_env.sla_ack_s, from_env.db, from_env.timezone) == (
            45.0,
            "sqlite:///x.db",
            "UTC",
        )
        assert Settings.load({"sla_ack_s": 90}).sla_ack_s == 90.0
    assert Settings.load().sla_ack_s == 60.0  # the specified default


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ({"DISPATCHD_SLA_ACK_S": "0"}, {}, "DISPATCHD_SLA_ACK_S"),
        ({"DISPATCHD_SLA_ACK_S": "soon"}, {}, "DISPATCHD_SLA_ACK_S"),
        ({"DISPATCHD_TIMEZONE": "Mars/Olympus_Mons"}, {}, "DISPATCHD_TIMEZONE: unknown time zone"),
        ({"DISPATCHD_TIMEZONE": "Mars/Olympus_Mons"}, {"timezone": "Mars/X"}, "--timezone"),
        ({}, {"max_body_bytes": 10}, "--max-body-bytes"),
        ({"DISPATCHD_LOG_LEVEL": "chatty"}, {}, "DISPATCHD_LOG_LEVEL: unknown log level"),
        (
            {"DISPATCHD_MAP_TILE_URL_TEMPLATE": "https://tiles.example/{z}/{x}.png"},
            {},
            "DISPATCHD_MAP_TILE_URL_TEMPLATE: must contain {z}, {x} and {y}",
        ),
        (
            {},
            {"map_tile_url_template": "https://{s}.tiles.example/{z}/{x}/{y}.png"},
            "--map-tile-url-template: use only {z}, {x} and {y}",
        ),
        (
            {},
            {"map_tile_url_template": "file:///srv/tiles/{z}/{x}/{y}.png"},
            "--map-tile-url-template: must be an https:// (or http://) URL with a host",
        ),
        (
            {},
            {"map_tile_url_template": "https://centre:secret@tiles.example/{z}/{x}/{y}.png"},
            "--map-tile-url-template: must not carry a user name or password",
        ),
    ],
)
def test_a_bad_setting_is_named_with_where_it_came_from(
    env: dict[str, str], flags: dict[str, Any], named: str
) -> None:
    with mock.patch.dict(os.environ, env), pytest.raises(ConfigError) as error:
        Settings.load(flags)
    assert named in str(error.value)


def test_serve_refuses_a_bad_variable_with_exit_3_and_a_bad_flag_with_exit_2() -> None:
    runner = CliRunner()
    bad_env = runner.invoke(cli, ["serve"], env={"DISPATCHD_HEARTBEAT_MISSES": "0"})
    assert bad_env.exit_code == 3
    assert "DISPATCHD_HEARTBEAT_MISSES" in bad_env.output
    bad_flag = runner.invoke(cli, ["serve", "--heartbeat-misses", "0"])
    assert bad_flag.exit_code == 2
    assert "--heartbeat-misses" in bad_flag.output


def _accepted_by_flag(name: str, value: float) -> bool:
    [option] = [p for p in serve.params if p.name == name]
    try:
        option.type.convert(str(value), option, None)
    except click.BadParameter:
        return False
    return True


def _accepted_by_variable(name: str, value: float) -> bool:
    with mock.patch.dict(os.environ, {env_var(name): str(value)}):
        try:
            settings = Settings.load()
        except ConfigError as exc:
            refusal = str(exc)
        else:
            return bool(getattr(settings, name) == value)
    assert env_var(name) in refusal
    return False


@given(
    name=st.sampled_from(NUMERIC),
    value=st.one_of(
        st.integers(-(10**7), 10**7), st.floats(-1e7, 1e7, allow_nan=False), st.sampled_from([0, 1])
    ),
)
def test_a_flag_and_its_variable_accept_the_same_values(name: str, value: float) -> None:
    if Settings.model_fields[name].annotation is int and not float(value).is_integer():
        return  # "2.5" is no integer either way; click and pydantic word that differently
    value = int(value) if Settings.model_fields[name].annotation is int else float(value)
    assert _accepted_by_flag(name, value) == _accepted_by_variable(name, value)


def test_every_variable_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "dispatch-api.md").read_text()
    missing = [env_var(n) for n in Settings.model_fields if f"`{env_var(n)}`" not in doc]
    assert missing == []


def test_the_map_tiles_host_alone_is_added_to_the_content_security_policy() -> None:
    from dispatch.api.browser_security import content_security_policy
    from dispatch.settings import tile_origin

    template = "https://tiles.example.org:8443/osm/{z}/{x}/{y}.png?key=abc"
    assert Settings.load({"map_tile_url_template": template}).map_tile_url_template == template
    assert tile_origin(template) == "https://tiles.example.org:8443"
    assert tile_origin(None) is None
    assert tile_origin("http://[::1]:8080/{z}/{x}/{y}.png") == "http://[::1]:8080"
    assert tile_origin("https://Tiles.Example/{z}/{x}/{y}.png") == "https://tiles.example"
    policy = content_security_policy(("https://tiles.example.org:8443",))
    assert "img-src 'self' data: https://tiles.example.org:8443;" in policy
    assert "img-src 'self' data:;" in content_security_policy()
