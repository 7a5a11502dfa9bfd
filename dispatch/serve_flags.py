"""`dispatchd serve`'s flags, generated from the fields of :class:`dispatch.settings.Settings`.

Each field becomes one option: its flag from :func:`flag_name`, its type and range from the
field's annotation and bounds (so a flag out of range is a usage error naming the flag, as click
reports it), its help from the field's description plus its default and environment variable.
Flags default to "not given", so the environment (read by the settings model) shows through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

import annotated_types
import click
from pydantic.fields import FieldInfo

from dispatch.settings import Settings, env_var, flag_name

__all__ = ["given_settings", "settings_options"]

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """Decorate a click command with one option per setting (keyword = the field's name)."""
    # click applies decorators bottom-up: reversed, so --help lists them in the model's order.
    for name, field in reversed(Settings.model_fields.items()):
        default = field.get_default()
        shown = f"; default: {default}" if default is not None else ""
        command = click.option(
            flag_name(name),
            name,
            type=_click_type(name, field),
            default=None,
            help=f"{field.description} [env: {env_var(name)}{shown}]",
        )(command)
    return command


def given_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The settings given as flags: the options click passed, less those left out."""
    return {
        name: value
        for name, value in options.items()
        if name in Settings.model_fields and value is not None
    }


def _click_type(name: str, field: FieldInfo) -> click.ParamType[Any]:
    bounds: dict[str, Any] = {}
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds["min"] = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            bounds.update(min=rule.gt, min_open=True)
        elif isinstance(rule, annotated_types.Le):
            bounds["max"] = rule.le
        elif isinstance(rule, annotated_types.Lt):
            bounds.update(max=rule.lt, max_open=True)
    if get_origin(field.annotation) is Literal:
        return click.Choice([str(choice) for choice in get_args(field.annotation)], False)
    if field.annotation is int:
        return click.IntRange(**bounds)
    if field.annotation is float:
        return click.FloatRange(**bounds)
    if field.annotation is bool:
        return click.BOOL
    if field.annotation in (str, str | None) and not bounds:
        return click.STRING
    if get_origin(field.annotation) is Literal:
        return click.Choice(get_args(field.annotation))
    # A new kind of setting needs its flag type here; failing at import beats a silent string.
    raise TypeError(f"setting {name!r}: no flag type for {field.annotation!r} with {bounds}")
