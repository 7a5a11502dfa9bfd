"""The home config: one TOML file per home, validated before anything starts.

Errors name the file, the key, the line where it can be found, and the problem::

    home.toml:23: devices[1].role: Input should be 'smoke', 'gas', ... (got 'smok')

A daemon refuses to start with a bad file; on reload it keeps the last good config.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.dc09.config import Dc09Config
from contract.devices import ROLES, DeviceSpec, DriverEntry

__all__ = [
    "INSECURE_FLAG",
    "INSECURE_KEY",
    "BufferConfig",
    "ConfigError",
    "DispatchConfig",
    "GatewaySection",
    "HomeConfig",
    "insecure_url_problem",
    "line_of",
    "load_config",
    "parse_config",
    "read_config_text",
    "reference_problems",
]

DEFAULT_STATE_DIR = Path("/var/lib/gatewayd")


class ConfigError(ValueError):
    """The home config is wrong. ``problems`` lists each as ``file:line: key: message``."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")
    household: str = Field(default="", max_length=128)
    state_dir: Path = DEFAULT_STATE_DIR
    timezone: str = "UTC"
    #: The pipeline counts as wedged (and the systemd watchdog goes unfed) when a commit or a
    #: round of the rules takes longer than this.
    stall_after_s: float = Field(default=10.0, ge=0.5, le=600)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class DispatchConfig(_Section):
    url: str = ""
    ca_file: Path | None = None
    heartbeat_interval: float = Field(default=30.0, gt=0, le=3600)
    timeout: float = Field(default=10.0, gt=0, le=300)
    batch_max_events: int = Field(default=500, ge=1, le=1000)
    batch_max_bytes: int = Field(default=512 * 1024, ge=4096, le=8 * 1024 * 1024)
    backoff_max: float = Field(default=60.0, gt=0, le=3600)
    #: Plain http:// to dispatch carries alarms, acknowledgements and the enrolment secret
    #: unprotected: allowed only when said explicitly (a loopback demo or test).
    insecure_http: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"dispatch url must start with https:// or http://, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> DispatchConfig:
        problem = insecure_url_problem(self.url, allowed=self.insecure_http, option=INSECURE_KEY)
        if problem:
            raise ValueError(problem)
        return self


#: The config key and the command-line flag that allow a plain http:// dispatch URL.
INSECURE_KEY = "insecure_http = true in [dispatch]"
INSECURE_FLAG = "--insecure-http"


def insecure_url_problem(url: str, *, allowed: bool, option: str) -> str | None:
    """Why a dispatch URL may not be used, or None: plain http needs an explicit ``option``."""
    if allowed or urlparse(url).scheme != "http":
        return None
    return (
        f"dispatch url {url!r} is plain http://: alarms, acknowledgements and the enrolment "
        f"secret would cross the network unprotected; use https://, or set {option} to allow "
        "it (a loopback demo or test only)"
    )


class BufferConfig(_Section):
    disk_budget_mib: float = Field(default=256, gt=0)


class StatusConfig(_Section):
    #: Unix socket for `gatewayd status`; empty means ``<state_dir>/status.sock``.
    socket: Path | None = None


class RecordConfig(_Section):
    enabled: bool = False
    path: Path | None = None


class ActionsConfig(_Section):
    #: A command run with the escalation as JSON on stdin: the secondary alarm channel
    #: (an SMS modem script, a phone dialler). Empty: escalation is logged and sent to dispatch.
    notify_command: list[str] = Field(default_factory=list)


class HomeConfig(_Section):
    gateway: GatewaySection
    dispatch: DispatchConfig = DispatchConfig()
    buffer: BufferConfig = BufferConfig()
    status: StatusConfig = StatusConfig()
    record: RecordConfig = RecordConfig()
    actions: ActionsConfig = ActionsConfig()
    #: Reporting to standard alarm receivers over SIA DC-09 (docs/dc09.md); none when absent.
    dc09: Dc09Config | None = None
    drivers: list[DriverEntry] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(default_factory=list)
    #: The rule pack and its settings; validated by :mod:`rules`.
    rules: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> HomeConfig:
        problems = reference_problems(self.drivers, self.devices)
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        return self

    def device(self, device_id: str) -> DeviceSpec | None:
        return next((d for d in self.devices if d.id == device_id), None)

    @property
    def status_socket(self) -> Path:
        return self.status.socket or self.gateway.state_dir / "status.sock"


def reference_problems(
    drivers: list[DriverEntry],
    devices: list[DeviceSpec],
    *,
    driver_index: list[int] | None = None,
    device_index: list[int] | None = None,
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem between the entries (repeated ids, a device's unknown driver or role),
    each with the location of the entry it is about (for the line number). ``*_index`` give
    each entry's index in the file when some entries were left out."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    driver_at = driver_index or list(range(len(drivers)))
    device_at = device_index or list(range(len(devices)))
    driver_ids = [d.id for d in drivers]
    dupes = sorted({d for d in driver_ids if driver_ids.count(d) > 1})
    if dupes:
        where = ("drivers", driver_at[driver_ids.index(dupes[0])])
        problems.append((where, f"driver ids must be unique; repeated: {', '.join(dupes)}"))
    device_ids = [d.id for d in devices]
    dupes = sorted({d for d in device_ids if device_ids.count(d) > 1})
    if dupes:
        where = ("devices", device_at[device_ids.index(dupes[0])])
        problems.append((where, f"device ids must be unique; repeated: {', '.join(dupes)}"))
    for device, i in zip(devices, device_at, strict=True):
        if device.driver not in driver_ids:
            problems.append(
                (
                    ("devices", i, "driver"),
                    f"devices[{i}] ({device.id}) names driver {device.driver!r}, "
                    f"which no [[drivers]] entry defines",
                )
            )
        if device.role not in ROLES:
            problems.append(
                (
                    ("devices", i, "role"),
                    f"devices[{i}] ({device.id}) has role {device.role!r}; "
                    f"expected one of {', '.join(ROLES)}",
                )
            )
    return problems


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number of a key path in TOML text (1-based), for error messages."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    i = 0
    while i < len(loc):
        key = loc[i]
        if not isinstance(key, str):
            i += 1
            continue
        nxt_key = loc[i + 1] if i + 1 < len(loc) else None
        index = nxt_key if isinstance(nxt_key, int) else None
        found = None
        if index is not None:
            header = re.compile(rf"^\s*\[\[\s*{re.escape(key)}\s*\]\]")
            hits = [n for n in range(start, end) if header.match(lines[n])]
            if index < len(hits):
                found = hits[index]
                nxt = next(
                    (n for n in range(found + 1, end) if lines[n].lstrip().startswith("[")), end
                )
                start, end = found + 1, nxt
                i += 2
                if i >= len(loc):
                    return found + 1
                continue
        header = re.compile(rf"^\s*\[\s*{re.escape(key)}\s*\]")
        assign = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        for n in range(start, end):
            if header.match(lines[n]):
                found = n
                nxt = next((m for m in range(n + 1, end) if lines[m].lstrip().startswith("[")), end)
                start, end = n + 1, nxt
                break
            if assign.match(lines[n]):
                return n + 1
        if found is None:
            return None
        i += 1
    return start if start > 0 else None


def describe_validation(path: str, text: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ""
        for part in loc:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        line = line_of(text, loc)
        where = f"{path}:{line}" if line else path
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt?)"
        got = err.get("input")
        suffix = ""
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict | list):
            suffix = f" (got {got!r})"
        problems.append(f"{where}: {key or '(top level)'}: {msg}{suffix}")
    return problems


def parse_config(text: str, path: str = "<config>") -> HomeConfig:
    """Parse and validate home config text; raises :class:`ConfigError` naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: not valid TOML: {exc}"]) from exc
    try:
        config = HomeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, describe_validation(path, text, exc)) from exc
    return config


def read_config_text(path: str | Path) -> str:
    """The config file's text; ConfigError naming why it cannot be read."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(p), [f"{p}: no such file; create one with `gatewayd init`"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"{p}: cannot read: {exc}"]) from exc


def load_config(path: str | Path) -> HomeConfig:
    return parse_config(read_config_text(path), str(path))
