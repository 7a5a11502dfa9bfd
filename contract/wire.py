"""The event contract shared by the gateway and the dispatch server.

Both ends import this module, so a field means the same thing on either side of the wire.

- :class:`RawFrame` is one frame exactly as a driver's transport received it (what traces record).
- :class:`Reading` is what a driver's parser made of one frame: device, property, value, when.
- :class:`Event` is what the gateway buffers and forwards, and what dispatch stores.
- :class:`IngestBatch` / :class:`IngestReply` and :class:`Heartbeat` / :class:`HeartbeatReply`
  are the gateway ↔ dispatch wire messages.

Every wire message carries ``v`` (:data:`CONTRACT_VERSION`); a message of another version is
refused with :class:`UnsupportedVersion`, never guessed at.
"""

from __future__ import annotations

import enum
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

__all__ = [
    "CONTRACT_VERSION",
    "MAX_BATCH_EVENTS",
    "MAX_PAYLOAD_BYTES",
    "AckStatus",
    "ContractError",
    "DeviceHealth",
    "DriverHealth",
    "Event",
    "EventAck",
    "EventDraft",
    "EventKind",
    "Heartbeat",
    "HeartbeatReply",
    "IncidentRef",
    "IngestBatch",
    "IngestReply",
    "Lane",
    "Priority",
    "RawFrame",
    "Reading",
    "UnsupportedVersion",
    "new_event_id",
    "parse_message",
]

CONTRACT_VERSION: Final = 1
#: A batch larger than this is refused by dispatch (and never built by the forwarder).
MAX_BATCH_EVENTS: Final = 1000
#: An event payload is small by design: the reading that caused it, the room, a few numbers.
MAX_PAYLOAD_BYTES: Final = 4096

M = TypeVar("M", bound=BaseModel)
JsonScalar = str | int | float | bool | None
ReadingValue = str | int | float | bool | None


class ContractError(ValueError):
    """A message does not satisfy the contract."""


class UnsupportedVersion(ContractError):
    """A message carries a contract version this side does not speak."""

    def __init__(self, got: object) -> None:
        super().__init__(
            f"unsupported contract version {got!r}: this side speaks version {CONTRACT_VERSION}"
        )
        self.got = got


class Lane(enum.StrEnum):
    """Forwarding lanes: everything in ``alarm`` goes before ``trouble``, before ``telemetry``."""

    ALARM = "alarm"
    TROUBLE = "trouble"
    TELEMETRY = "telemetry"

    @property
    def rank(self) -> int:
        return _LANE_RANK[self]


_LANE_RANK = {Lane.ALARM: 0, Lane.TROUBLE: 1, Lane.TELEMETRY: 2}


class Priority(enum.IntEnum):
    """Lower is more urgent. Dispatch orders its queue by priority, then age."""

    LIFE_SAFETY = 1
    HIGH = 2
    TROUBLE = 3
    INFO = 4


class EventKind(enum.StrEnum):
    """Every kind of event the gateway can send.

    Alarm and trouble kinds have a ``*_restore`` twin that closes the condition.
    """

    # Alarms
    SOS = "sos"
    SMOKE = "smoke"
    GAS = "gas"
    CARBON_MONOXIDE = "carbon_monoxide"
    WATER_LEAK = "water_leak"
    INACTIVITY = "inactivity"
    FALL = "fall"
    INTRUSION = "intrusion"
    LEFT_OPEN = "left_open"
    SOS_RESTORE = "sos_restore"
    SMOKE_RESTORE = "smoke_restore"
    GAS_RESTORE = "gas_restore"
    CARBON_MONOXIDE_RESTORE = "carbon_monoxide_restore"
    WATER_LEAK_RESTORE = "water_leak_restore"
    INACTIVITY_RESTORE = "inactivity_restore"
    FALL_RESTORE = "fall_restore"
    INTRUSION_RESTORE = "intrusion_restore"
    LEFT_OPEN_RESTORE = "left_open_restore"
    # Troubles
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    DEVICE_OFFLINE = "device_offline"
    GATEWAY_POWER = "gateway_power"
    DRIVER_FAULT = "driver_fault"
    FLAPPING = "flapping"
    BUFFER_EVICTED = "buffer_evicted"
    ESCALATION = "escalation"
    LOW_BATTERY_RESTORE = "low_battery_restore"
    TAMPER_RESTORE = "tamper_restore"
    DEVICE_OFFLINE_RESTORE = "device_offline_restore"
    GATEWAY_POWER_RESTORE = "gateway_power_restore"
    DRIVER_FAULT_RESTORE = "driver_fault_restore"
    FLAPPING_RESTORE = "flapping_restore"
    # Telemetry
    MOTION = "motion"
    CONTACT = "contact"
    BATTERY = "battery"
    HEARTBEAT = "heartbeat"
    SIGNAL = "signal"
    TEST = "test"

    # What each kind is, worked out once (below): these are asked several times per event.

    @property
    def is_restore(self) -> bool:
        return _IS_RESTORE[self]

    @property
    def condition(self) -> EventKind:
        """The alarm or trouble kind this event opens or closes (itself unless a restore)."""
        return _CONDITION[self]

    @property
    def restore(self) -> EventKind | None:
        """The restore twin of an alarm or trouble kind, if it has one."""
        try:
            return EventKind(f"{self.condition.value}_restore")
        except ValueError:
            return None

    @property
    def lane(self) -> Lane:
        return _LANE[self]

    @property
    def priority(self) -> Priority:
        return _PRIORITY[self]

    @property
    def is_alarm(self) -> bool:
        return _IS_ALARM[self]

    @property
    def contact_id(self) -> ContactId | None:
        """The Ademco Contact ID code for this kind, for standard alarm receivers."""
        code = _KIND_INFO[self.condition][2]
        if code is None:
            return None
        # Qualifier 1 opens an event, 3 restores it (SIA DC-05).
        return ContactId(qualifier=3 if self.is_restore else 1, code=code)


class ContactId(BaseModel):
    """An Ademco Contact ID event code with its qualifier (1 new event, 3 restore)."""

    model_config = ConfigDict(frozen=True)

    qualifier: Literal[1, 3, 6]
    code: int = Field(ge=100, le=999)

    def __str__(self) -> str:
        return f"{self.qualifier}{self.code:03d}"


# condition kind -> (lane, priority, Contact ID code)
_KIND_INFO: Final[dict[EventKind, tuple[Lane, Priority, int | None]]] = {
    EventKind.SOS: (Lane.ALARM, Priority.LIFE_SAFETY, 101),  # personal emergency (pendant)
    EventKind.FALL: (Lane.ALARM, Priority.LIFE_SAFETY, 100),  # medical
    EventKind.SMOKE: (Lane.ALARM, Priority.LIFE_SAFETY, 111),
    EventKind.GAS: (Lane.ALARM, Priority.LIFE_SAFETY, 151),
    EventKind.CARBON_MONOXIDE: (Lane.ALARM, Priority.LIFE_SAFETY, 162),
    EventKind.WATER_LEAK: (Lane.ALARM, Priority.HIGH, 154),
    EventKind.INACTIVITY: (Lane.ALARM, Priority.HIGH, 102),  # fail to report in
    EventKind.INTRUSION: (Lane.ALARM, Priority.HIGH, 130),  # burglary
    EventKind.LEFT_OPEN: (Lane.ALARM, Priority.HIGH, 426),  # door propped open
    EventKind.LOW_BATTERY: (Lane.TROUBLE, Priority.TROUBLE, 384),  # RF low battery
    EventKind.TAMPER: (Lane.TROUBLE, Priority.TROUBLE, 383),  # sensor tamper
    EventKind.DEVICE_OFFLINE: (Lane.TROUBLE, Priority.TROUBLE, 381),  # RF supervision loss
    EventKind.GATEWAY_POWER: (Lane.TROUBLE, Priority.TROUBLE, 301),  # AC loss
    EventKind.DRIVER_FAULT: (Lane.TROUBLE, Priority.TROUBLE, 330),  # system peripheral trouble
    EventKind.FLAPPING: (Lane.TROUBLE, Priority.TROUBLE, 380),  # sensor trouble
    EventKind.BUFFER_EVICTED: (Lane.TROUBLE, Priority.TROUBLE, 354),  # failure to communicate
    EventKind.ESCALATION: (Lane.TROUBLE, Priority.TROUBLE, None),
    EventKind.MOTION: (Lane.TELEMETRY, Priority.INFO, None),
    EventKind.CONTACT: (Lane.TELEMETRY, Priority.INFO, None),
    EventKind.BATTERY: (Lane.TELEMETRY, Priority.INFO, None),
    EventKind.SIGNAL: (Lane.TELEMETRY, Priority.INFO, None),
    EventKind.HEARTBEAT: (Lane.TELEMETRY, Priority.INFO, 602),  # periodic test report
    EventKind.TEST: (Lane.TELEMETRY, Priority.INFO, 601),  # manual trigger test report
}
_IS_RESTORE: Final = {k: k.value.endswith("_restore") for k in EventKind}
_CONDITION: Final = {
    k: EventKind(k.value.removesuffix("_restore")) if _IS_RESTORE[k] else k for k in EventKind
}
_LANE: Final = {k: _KIND_INFO[c][0] for k, c in _CONDITION.items()}
_PRIORITY: Final = {k: _KIND_INFO[c][1] for k, c in _CONDITION.items()}
_IS_ALARM: Final = {k: _LANE[k] is Lane.ALARM and not _IS_RESTORE[k] for k in EventKind}


#: Crockford's base32, which ULIDs are written in.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MAX_RANDOM: Final = (1 << 80) - 1
_MAX_MS: Final = (1 << 48) - 1


#: Random bytes drawn from the OS at once, for this many ids.
_POOL_IDS: Final = 512


class _UlidSource:
    """ULIDs as python-ulid's default generator makes them (the same millisecond: the random
    part plus one, so ids of one instant sort in the order made), in a fraction of its time:
    the buffer gives every event one, thousands a second.

    The random bits come from ``os.urandom`` as before, drawn for many ids at once: each call
    lets go of the GIL, and the buffer's commit thread, which makes the ids, then waits for the
    busy event loop to hand it back (up to a switch interval, 5 ms) once per event."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # A fresh lock too: a child forked while another thread held it would wait forever.
        self._lock = threading.Lock()
        self._ms = -1
        self._random = 0
        self._prefix = ""
        self._pool = b""
        self._taken = 0

    def _fresh(self) -> int:
        if self._taken >= len(self._pool):
            self._pool = os.urandom(10 * _POOL_IDS)
            self._taken = 0
        start = self._taken
        self._taken = start + 10
        return int.from_bytes(self._pool[start : start + 10], "big")

    def new(self, at: datetime | None) -> str:
        ms = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
        if not 0 <= ms <= _MAX_MS:
            raise ValueError(f"a ULID's time must be within 1970..10889, not {at!r}")
        with self._lock:
            if ms == self._ms and self._random < _MAX_RANDOM:
                self._random += 1
            else:
                self._random = self._fresh()
            if ms != self._ms:
                self._ms = ms
                # 48 bits right-aligned in 80: the last 10 of 16 characters are the timestamp's.
                self._prefix = _b32(ms)[6:]
            prefix, random = self._prefix, self._random
        return prefix + _b32(random)


#: Every 10-bit number as its two characters of Crockford's base32.
_PAIRS: Final = [a + b for a in _ALPHABET for b in _ALPHABET]


def _b32(value: int) -> str:
    """An 80-bit number as 16 characters of Crockford's base32."""
    pairs = _PAIRS
    return (
        pairs[value >> 70]
        + pairs[(value >> 60) & 1023]
        + pairs[(value >> 50) & 1023]
        + pairs[(value >> 40) & 1023]
        + pairs[(value >> 30) & 1023]
        + pairs[(value >> 20) & 1023]
        + pairs[(value >> 10) & 1023]
        + pairs[value & 1023]
    )


_ulids = _UlidSource()
# A forked child must not make the ids its parent's pool would make.
os.register_at_fork(after_in_child=_ulids.reset)


def new_event_id(at: datetime | None = None) -> str:
    """A globally unique, time-sortable id (a ULID: 48-bit ms timestamp + 80 random bits)."""
    return _ulids.new(at)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The largest frame payload a driver may hand on (a device message, not a file transfer).
MAX_FRAME_BYTES: Final = 1_048_576


class RawFrame(_Wire):
    """One frame exactly as a driver's transport received it.

    ``kind`` is ``data`` for a device's frame, ``link`` for the transport's own state changes
    (payload ``up`` or ``down`` plus a reason), so that a broker or port loss travels the same
    path as data, and replays the same way.
    """

    driver: Identifier
    source: str = Field(max_length=512, description="topic, port or address the frame came from")
    payload: bytes = Field(max_length=MAX_FRAME_BYTES)
    kind: Literal["data", "link"] = "data"
    retained: bool = False
    wall_time: UtcDatetime
    mono_time: float = Field(description="time.monotonic() of the receiving process, in seconds")


class Reading(_Wire):
    """One fact a parser read from one frame."""

    driver: Identifier
    device: str = Field(min_length=1, max_length=128, description="device id or native address")
    property: str = Field(min_length=1, max_length=64)
    value: ReadingValue
    at: UtcDatetime
    #: True when the frame was a retained state sync (MQTT) rather than a live change.
    retained: bool = False
    extra: dict[str, JsonScalar] = Field(default_factory=dict)


def _size_bound(value: dict[str, Any]) -> int | None:
    """An upper bound of a flat payload's compact JSON size (None when not flat): a character
    takes at most 12 (``\\uXXXX\\uXXXX`` beyond the BMP), a float or a constant at most 32, an
    integer its digits. Ingest validates thousands of small payloads a second; only one that
    might be near the limit is serialised to be measured."""
    size = 2
    for key, item in value.items():
        if not isinstance(key, str):
            return None
        size += 12 * len(key) + 4
        if isinstance(item, str):
            size += 12 * len(item) + 2
        elif item is None or isinstance(item, bool | float):
            size += 32
        elif isinstance(item, int):
            size += item.bit_length() // 3 + 2  # decimal digits < bits / 3, and a sign
        else:
            return None
    return size


def _bounded_payload(value: dict[str, Any]) -> dict[str, Any]:
    bound = _size_bound(value)
    if bound is not None and bound <= MAX_PAYLOAD_BYTES:
        return value
    size = len(json.dumps(value, separators=(",", ":"), default=str))
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return value


class Event(_Wire):
    """What the gateway buffers and forwards, and what dispatch stores."""

    v: Literal[1] = CONTRACT_VERSION
    id: Annotated[str, Field(min_length=26, max_length=26, pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")]
    gateway_id: Identifier
    seq: int = Field(ge=0, description="per-gateway monotonic sequence number")
    kind: EventKind
    priority: Priority
    device_id: Identifier | None = None
    at: UtcDatetime = Field(description="the gateway's wall-clock time of the event")
    test: bool = Field(default=False, description="raised during an installer's walk test")
    payload: Annotated[dict[str, Any], AfterValidator(_bounded_payload)] = Field(
        default_factory=dict
    )

    @property
    def lane(self) -> Lane:
        return self.kind.lane

    @classmethod
    def create(
        cls,
        *,
        gateway_id: str,
        seq: int,
        kind: EventKind,
        at: datetime,
        device_id: str | None = None,
        payload: dict[str, Any] | None = None,
        test: bool = False,
        priority: Priority | None = None,
    ) -> Event:
        """Build an event with a fresh id and the kind's default priority."""
        return cls(
            id=new_event_id(at),
            gateway_id=gateway_id,
            seq=seq,
            kind=kind,
            priority=priority if priority is not None else kind.priority,
            device_id=device_id,
            at=at,
            test=test,
            payload=payload or {},
        )


class IngestBatch(_Wire):
    """Gateway → dispatch: a batch of events, ordered by lane then sequence."""

    v: Literal[1] = CONTRACT_VERSION
    gateway_id: Identifier
    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)

    @field_validator("events")
    @classmethod
    def _same_gateway(cls, events: list[Event], info: Any) -> list[Event]:
        gateway = info.data.get("gateway_id")
        for event in events:
            if gateway is not None and event.gateway_id != gateway:
                raise ValueError(
                    f"event {event.id} belongs to gateway {event.gateway_id!r}, "
                    f"not to the batch's gateway {gateway!r}"
                )
        return events


class AckStatus(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


class IncidentRef(_Wire):
    """The state of the dispatch incident an event belongs to."""

    id: str
    state: str
    operator: str | None = None
    acknowledged: bool = Field(
        default=False, description="a person at dispatch has acknowledged the incident"
    )


class EventAck(_Wire):
    id: str
    status: AckStatus
    incident: IncidentRef | None = None


class IngestReply(_Wire):
    """Dispatch → gateway: one acknowledgement per event id of the batch."""

    v: Literal[1] = CONTRACT_VERSION
    acks: list[EventAck]


class DriverHealth(_Wire):
    name: str
    state: Literal["starting", "running", "degraded", "failed", "stopped"]
    detail: str = ""
    restarts: int = 0


class DeviceHealth(_Wire):
    id: str
    last_seen: UtcDatetime | None = None
    battery: float | None = None
    signal: float | None = None
    online: bool = True


class Heartbeat(_Wire):
    """Gateway → dispatch at a fixed interval: the gateway's health in one message."""

    v: Literal[1] = CONTRACT_VERSION
    gateway_id: Identifier
    sent_at: UtcDatetime = Field(description="the gateway's clock, so dispatch can see drift")
    uptime_s: float = Field(ge=0)
    version: str = Field(max_length=64)
    interval_s: float = Field(gt=0, le=86_400, default=30.0)
    buffer_depth: dict[Lane, int] = Field(default_factory=dict)
    oldest_unsent_age_s: float | None = Field(default=None, ge=0)
    evicted_total: int = Field(default=0, ge=0)
    #: The gateway's disk is full: alarms are stored from its reserve or held in memory.
    buffer_full: bool = False
    drivers: list[DriverHealth] = Field(default_factory=list, max_length=64)
    devices: list[DeviceHealth] = Field(default_factory=list, max_length=512)


class HeartbeatReply(_Wire):
    # Unknown fields are ignored, so a later dispatch may add to its reply without breaking
    # gateways of this version (fields a gateway must not ignore need a new contract version).
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = CONTRACT_VERSION
    server_time: UtcDatetime
    #: Incidents of this gateway's household that dispatch has acknowledged, by event id.
    acknowledged_events: list[str] = Field(default_factory=list)
    #: The household is away or in hospital until then: the home's inactivity rule rests until
    #: that instant. Absent (dispatch leaves it out) when nobody marked the household away, so
    #: gateways that predate the field never see it until a household is marked away.
    away_until: UtcDatetime | None = None


def parse_message(model: type[M], data: bytes | str | dict[str, Any]) -> M:
    """Validate a wire message, refusing an unknown contract version by name.

    Raises :class:`UnsupportedVersion` or :class:`ContractError` (with pydantic's description
    of every problem) instead of pydantic's own exception.
    """
    if isinstance(data, bytes | str):
        try:
            # The common case in one pass (pydantic parses the JSON itself); anything it refuses
            # takes the path below, which names the problem (an unknown version first).
            return model.model_validate_json(data)
        except ValidationError:
            pass
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("v", CONTRACT_VERSION)
    if version != CONTRACT_VERSION:
        raise UnsupportedVersion(version)
    events = data.get("events")
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict) and event.get("v", CONTRACT_VERSION) != CONTRACT_VERSION:
                raise UnsupportedVersion(event.get("v"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(str(exc)) from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event as the pipeline decides it; the buffer gives it its id and sequence number."""

    kind: EventKind
    at: datetime
    device_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    test: bool = False
    priority: Priority | None = None
