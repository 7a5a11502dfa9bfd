"""The gateway's status: one typed model the daemon produces, the control socket serialises and
`gatewayd status` (tables, ``--json``, ``--metrics``) and the walk test read.

The daemon builds a :class:`GatewayStatus` directly, so a wrong type there is a bug that raises.
A reader parses what came over the socket with :func:`parse_status`, which is lenient on
purpose: a daemon of another version may leave fields out (their defaults apply), add fields
(kept as extras, so ``--json`` passes them on) or send a value of the wrong type. Such a value is
replaced by the field's default (unknown), and the problem is named in
:attr:`ParsedStatus.problems` instead of failing the whole status: an installer checking a home
still sees everything that could be read.

The JSON shape is documented in docs/operations.md ("The status object").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

__all__ = [
    "LANES",
    "BufferDepth",
    "BufferStatus",
    "DeviceStatus",
    "DriverStatus",
    "ForwarderStatus",
    "GatewayStatus",
    "ParsedStatus",
    "PipelineStatus",
    "Trouble",
    "describe_detail",
    "one_line_summary",
    "parse_status",
]

#: The buffer's lanes, most urgent first.
LANES: Final = ("alarm", "trouble", "telemetry")
#: Problems named at most per parse; a status that is all wrong needs no thousand lines.
MAX_PROBLEMS: Final = 20


def _problems(info: ValidationInfo) -> list[str] | None:
    context = info.context
    problems = context.get("problems") if isinstance(context, dict) else None
    return problems if isinstance(problems, list) else None


def _note(problems: list[str], text: str) -> None:
    if len(problems) < MAX_PROBLEMS:
        problems.append(text)


def _no_number(value: Any) -> Any:
    # On the wire a time is ISO 8601 text; pydantic would also take a number as a Unix time.
    if not isinstance(value, str | datetime):
        raise ValueError("a time must be ISO 8601 text")
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


#: A finite number; ``true`` is not one.
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Count = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Time = Annotated[datetime, BeforeValidator(_no_number), AfterValidator(_utc)]


def _objects_only(value: Any, info: ValidationInfo) -> Any:
    """For a reader: drop the entries of a list that are not objects, naming them, and keep
    the rest. (The daemon's own entries are models, and a wrong one raises.)"""
    problems = _problems(info)
    if problems is None or not isinstance(value, list):
        return value
    kept = [item for item in value if isinstance(item, dict | BaseModel)]
    if len(kept) != len(value):
        _note(problems, f"{info.field_name}: {len(value) - len(kept)} entries are not objects")
    return kept


class _Part(BaseModel):
    """A part of the status. Fields another version adds are kept; when a reader parses
    (a ``problems`` list in the validation context), a value it cannot read becomes the
    field's default and is named there."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @field_validator("*", mode="wrap")
    @classmethod
    def _default_when_unreadable(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            problems = _problems(info)
            name = info.field_name
            if problems is None or name is None:
                raise  # the daemon built it: a bug to see, not to hide
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (name, *first["loc"]))
            _note(problems, f"{cls._label()}{where}: {first['msg']} (got {_short(value)})")
            return cls.model_fields[name].get_default(call_default_factory=True)

    @classmethod
    def _label(cls) -> str:
        return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class DriverStatus(_Part):
    id: Text | None = None
    type: Text | None = None
    #: ``starting``, ``running``, ``degraded``, ``failed`` or ``stopped``.
    state: Text | None = None
    detail: Text | None = None
    restarts: Count | None = None
    link_down_since: Time | None = None
    #: What the driver itself reports (broker, connection, outages): its own shape.
    driver_status: dict[str, Any] | None = None

    @classmethod
    def _label(cls) -> str:
        return "drivers."


class DeviceStatus(_Part):
    id: Text | None = None
    driver: Text | None = None
    role: Text | None = None
    room: Text | None = None
    #: False for a device heard on the air that is not in the home's config.
    known: Flag | None = None
    last_seen: Time | None = None
    battery: Number | None = None
    signal: Number | None = None
    online: Flag | None = None

    @classmethod
    def _label(cls) -> str:
        return "devices."


class BufferDepth(_Part):
    """Unsent events per lane."""

    alarm: Count = 0
    trouble: Count = 0
    telemetry: Count = 0

    @property
    def total(self) -> int:
        return self.alarm + self.trouble + self.telemetry

    @classmethod
    def _label(cls) -> str:
        return "buffer.depth."


class BufferStatus(_Part):
    depth: BufferDepth = Field(default_factory=BufferDepth)
    oldest_unsent_age_s: Number | None = None
    evicted_total: Count | None = None
    size_bytes: Count | None = None
    #: The disk is full (``buffer_full``): telemetry is refused, alarms use the reserve.
    full: Flag | None = None
    #: Events (counted in ``depth``) held in memory because the disk refused them.
    not_durable: Count | None = None

    @classmethod
    def _label(cls) -> str:
        return "buffer."


class ForwarderStatus(_Part):
    enrolled: Flag | None = None
    #: None until the first attempt to reach dispatch.
    reachable: Flag | None = None
    last_success_at: Time | None = None
    consecutive_failures: Count | None = None
    last_error: Text | None = None
    sent_total: Count | None = None

    @classmethod
    def _label(cls) -> str:
        return "forwarder."


class Dc09LinkStatus(_Part):
    """Reporting to DC-09 receivers (docs/dc09.md); absent when none is configured."""

    #: The receiver in use (the primary, or a backup after a failover).
    receiver: Text | None = None
    reachable: Flag | None = None
    last_success_at: Time | None = None
    last_error: Text | None = None
    sent_total: Count | None = None
    #: Answered DUH: set aside for DC-09, never retried.
    refused_total: Count | None = None
    failovers: Count | None = None
    nulls_sent: Count | None = None

    @classmethod
    def _label(cls) -> str:
        return "dc09."


class Trouble(_Part):
    kind: Text | None = None
    device_id: Text | None = None
    condition: Text | None = None
    since: Time | None = None
    detail: Text | dict[str, Any] | None = None

    @classmethod
    def _label(cls) -> str:
        return "troubles."


class PipelineStatus(_Part):
    frames: Count = 0
    readings: Count = 0
    events: Count = 0
    alarms: Count = 0
    backlog: Count = 0
    engine_errors: Count = 0
    mode: Text | None = None

    @classmethod
    def _label(cls) -> str:
        return "pipeline."


class GatewayStatus(_Part):
    """A snapshot of the running gateway's health."""

    gateway_id: Text | None = None
    household: Text | None = None
    version: Text | None = None
    uptime_s: Number | None = None
    #: ``normal``, ``away``, ``test``; ``starting`` before the pipeline runs.
    mode: Text | None = None
    healthy: Flag | None = None
    drivers: Annotated[list[DriverStatus], BeforeValidator(_objects_only)] = Field(
        default_factory=list
    )
    devices: Annotated[list[DeviceStatus], BeforeValidator(_objects_only)] = Field(
        default_factory=list
    )
    buffer: BufferStatus = Field(default_factory=BufferStatus)
    forwarder: ForwarderStatus = Field(default_factory=ForwarderStatus)
    dc09: Dc09LinkStatus | None = None
    troubles: Annotated[list[Trouble], BeforeValidator(_objects_only)] = Field(default_factory=list)
    pipeline: PipelineStatus | None = None

    def to_json(self) -> dict[str, Any]:
        """What the control socket sends: fields left at their defaults by a parse of an older
        daemon's status are left out again, so ``--json`` shows what the daemon said."""
        return self.model_dump(mode="json", exclude_unset=True)

    def device(self, device_id: str) -> DeviceStatus | None:
        return next((d for d in self.devices if d.id == device_id), None)


#: Detail keys shown elsewhere (the device column) or that say nothing to a reader.
_UNSAID: Final = frozenset({"device_name", "role", "driver", "property", "value"})


def describe_detail(detail: Mapping[str, Any]) -> str:
    """A condition's detail as the text an installer reads, not the rule engine's mapping.

    ``{"driver": "zigbee", "property": "link", "value": False, "reason": "refused"}`` is
    ``zigbee link down: refused``; other details are their fields in words
    (``room kitchen, threshold 20``), reason first.
    """
    if detail.get("property") == "link":
        driver = detail.get("driver") or "driver"
        reason = detail.get("reason")
        state = "up" if detail.get("value") is True else "down"
        return f"{driver} link {state}" + (f": {reason}" if reason else "")
    parts: list[str] = []
    if detail.get("reason"):
        parts.append(str(detail["reason"]))
    if "property" in detail and "value" in detail:
        parts.append(f"{detail['property']} {_word(detail['value'])}")
    parts.extend(
        f"{key.replace('_', ' ')} {_word(value)}"
        for key, value in detail.items()
        if key not in _UNSAID and key != "reason" and value is not None
    )
    return ", ".join(parts)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "/".join(_word(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class ParsedStatus:
    """A status as a reader got it, and what in it could not be read."""

    status: GatewayStatus
    problems: list[str] = field(default_factory=list)


def parse_status(raw: GatewayStatus | Mapping[str, Any] | object) -> ParsedStatus:
    """Read a status snapshot from the control socket; never raises (see the module doc)."""
    if isinstance(raw, GatewayStatus):
        return ParsedStatus(raw)
    if not isinstance(raw, Mapping):
        return ParsedStatus(GatewayStatus(), [f"the status is {type(raw).__name__}, not an object"])
    problems: list[str] = []
    try:
        status = GatewayStatus.model_validate(dict(raw), context={"problems": problems})
    except ValidationError as exc:  # only a key pydantic cannot take as an extra field
        return ParsedStatus(GatewayStatus(), [f"the status cannot be read: {exc}"])
    return ParsedStatus(status, problems)


def one_line_summary(status: GatewayStatus | Mapping[str, Any]) -> str:
    """A status snapshot in one line, for systemd's ``STATUS=`` (`systemctl status gatewayd`).

    ``mode normal, drivers 1/2 up, devices 2/3 online, unsent 1 alarm 255 total, dispatch down``
    """
    snapshot = parse_status(status).status
    drivers, devices = snapshot.drivers, snapshot.devices
    depth = snapshot.buffer.depth
    troubles = len(snapshot.troubles)
    parts = [
        f"mode {snapshot.mode or '?'}",
        f"drivers {sum(d.state == 'running' for d in drivers)}/{len(drivers)} up",
        f"devices {sum(bool(d.online) for d in devices)}/{len(devices)} online",
        f"unsent {depth.alarm} alarm {depth.total} total",
        "dispatch reachable" if snapshot.forwarder.reachable else "dispatch down",
    ]
    if snapshot.buffer.full:
        parts.append(f"BUFFER FULL, {snapshot.buffer.not_durable or 0} not durable")
    if troubles:
        parts.append(f"{troubles} trouble{'s' if troubles != 1 else ''}")
    return ", ".join(parts)
