"""Every problem of a home config in one pass, for `gatewayd run` and a reload.

The schema (:class:`contract.home.HomeConfig`), the references between entries, each driver's
options and the rules are checked one after another; a problem in one does not hide the others,
so an installer fixing a file sees all of them at once. When the schema fails, the later checks
run on what did validate (each valid ``[[drivers]]`` and ``[[devices]]`` entry, the rules table).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from contract.devices import DeviceSpec, DriverEntry
from contract.home import (
    ConfigError,
    GatewaySection,
    HomeConfig,
    describe_validation,
    line_of,
    read_config_text,
    reference_problems,
)
from drivers.base import DriverConfigError
from drivers.registry import build_driver
from rules import RuleConfigError, load_rules

__all__ = ["checked_config", "config_problems"]

M = TypeVar("M", DriverEntry, DeviceSpec)

#: The gateway id drivers are bound to while checking a file whose own id is invalid.
_PLACEHOLDER_ID = "gateway"


def checked_config(path: str | Path) -> HomeConfig:
    """The home config at ``path``; ConfigError naming every problem it has."""
    text = read_config_text(path)
    config, problems = config_problems(text, str(path))
    if config is None:
        raise ConfigError(str(path), problems)
    return config


def config_problems(text: str, source: str = "<config>") -> tuple[HomeConfig | None, list[str]]:
    """The validated config (None if any problem) and every problem found, in file order of
    the checks: schema, references, drivers, rules."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{source}: not valid TOML: {exc}"]
    problems: list[str] = []
    config: HomeConfig | None = None
    try:
        config = HomeConfig.model_validate(data)
    except ValidationError as exc:
        # The model-level error is the references' check, named below entry by entry.
        described = zip(describe_validation(source, text, exc), exc.errors(), strict=True)
        problems += [problem for problem, err in described if err["loc"]]
    if config is not None:
        gateway_id = config.gateway.id
        drivers = list(enumerate(config.drivers))
        devices = config.devices
        rules_table: Any = config.rules
    else:
        gateway_id = _valid_gateway_id(data.get("gateway"))
        drivers = _valid_entries(data.get("drivers"), DriverEntry)
        valid_devices = _valid_entries(data.get("devices"), DeviceSpec)
        devices = [d for _, d in valid_devices]
        rules_table = data.get("rules", {})
        found = reference_problems(
            [d for _, d in drivers],
            [d for _, d in valid_devices],
            driver_index=[i for i, _ in drivers],
            device_index=[i for i, _ in valid_devices],
        )
        for loc, message in found:
            line = line_of(text, loc)
            problems.append(f"{source}:{line}: {message}" if line else f"{source}: {message}")
    problems += _driver_problems(drivers, devices, gateway_id, text, source)
    try:
        load_rules(rules_table, source=source, text=text, devices=devices)
    except RuleConfigError as exc:
        problems += exc.problems
    return (config if not problems else None), problems


def _valid_gateway_id(section: object) -> str:
    try:
        return GatewaySection.model_validate(section).id
    except ValidationError:
        return _PLACEHOLDER_ID


def _valid_entries(entries: object, model: type[M]) -> list[tuple[int, M]]:
    """The entries of a ``[[drivers]]``/``[[devices]]`` array that validate, with their index
    (the others' problems are already named by the schema check)."""
    if not isinstance(entries, list):
        return []
    valid = []
    for i, entry in enumerate(entries):
        try:
            valid.append((i, model.model_validate(entry)))
        except ValidationError:
            continue
    return valid


def _driver_problems(
    drivers: list[tuple[int, DriverEntry]],
    devices: list[DeviceSpec],
    gateway_id: str,
    text: str,
    source: str,
) -> list[str]:
    problems = []
    for i, entry in drivers:
        if not entry.enabled:
            continue
        try:
            build_driver(entry, devices, gateway_id=gateway_id)
        except DriverConfigError as exc:
            line = line_of(text, ("drivers", i))
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: drivers[{i}]: {exc}")
    return problems
