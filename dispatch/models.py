"""The operator API's request and response models (the gateway side uses contract.wire)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from contract.wire import DeviceHealth, DriverHealth, Identifier

__all__ = [
    "ActionResult",
    "AuditEntry",
    "AwayRequest",
    "BreakRequest",
    "CallbackOutcome",
    "CallbackRequest",
    "Change",
    "Contact",
    "Deadlines",
    "Device",
    "DispatchRequest",
    "EnrollReply",
    "EnrollRequest",
    "GatewayOut",
    "Household",
    "HouseholdIn",
    "HouseholdNote",
    "Incident",
    "IncidentChange",
    "IncidentDetail",
    "IncidentState",
    "LoginReply",
    "LoginRequest",
    "NoteRequest",
    "Operator",
    "OperatorIn",
    "OperatorPatch",
    "OperatorPresence",
    "Outcome",
    "Page",
    "Resident",
    "ResolveRequest",
    "Role",
    "StoredEvent",
    "TimelineEntry",
]

T = TypeVar("T")


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it at the edge rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class _NoNulInSchema:
    """Says "no NUL" in the JSON schema too (a pattern), so the OpenAPI document tells clients."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("pattern", "^[^\\x00]*$")
        return schema


Str = Annotated[str, AfterValidator(_no_nul), _NoNulInSchema()]
OverdueStep = Literal["acknowledge", "callback", "on_scene"]
Short = Annotated[Str, Field(max_length=200)]
Long = Annotated[Str, Field(max_length=4000)]
# Patterns before the NUL check: pydantic leaves a pattern checked after a validator out of the
# JSON schema (these patterns admit no NUL anyway).
Phone = Annotated[
    str,
    Field(min_length=3, max_length=32, pattern=r"^\+?[0-9 ()\-]{3,32}$"),
    AfterValidator(_no_nul),
]
Username = Annotated[
    str,
    Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@\-]+$"),
    AfterValidator(_no_nul),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(enum.StrEnum):
    # A rescuer's account opens only the rescuer's own endpoints (dispatch/api/rescuer.py).
    RESCUER = "rescuer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"rescuer": -1, "operator": 0, "supervisor": 1, "admin": 2}[self.value]


class IncidentState(enum.StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    CALLBACK_MADE = "callback_made"
    RESPONDER_DISPATCHED = "responder_dispatched"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"


class Outcome(enum.StrEnum):
    REAL_EMERGENCY = "real_emergency"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    NO_ANSWER = "no_answer"
    TECHNICAL = "technical"
    DUPLICATE = "duplicate"
    OTHER = "other"


class CallbackOutcome(enum.StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    OTHER = "other"


# -- operators and sessions ---------------------------------------------------------------------


class LoginRequest(_In):
    username: Annotated[Str, Field(min_length=1, max_length=64)]
    password: Annotated[Str, Field(min_length=1, max_length=256)]


class Operator(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    disabled: bool
    created_at: datetime


class LoginReply(BaseModel):
    operator: Operator
    expires_at: datetime
    token: str = Field(description="the session token (also set as the session cookie)")


class OperatorIn(_In):
    username: Username
    display_name: Short = ""
    role: Role = Role.OPERATOR
    password: Annotated[Str, Field(min_length=8, max_length=256)]


class OperatorPatch(_In):
    display_name: Short | None = None
    role: Role | None = None
    disabled: bool | None = None
    password: Annotated[Str, Field(min_length=8, max_length=256)] | None = None


# -- households ---------------------------------------------------------------------------------


class Resident(_In):
    name: Annotated[Str, Field(min_length=1, max_length=200)]
    birth_year: Annotated[int, Field(ge=1890, le=2100)] | None = None
    birth_date: date | None = Field(default=None, description="sets birth_year when given")
    phones: list[Phone] = Field(default_factory=list, max_length=8)
    medical_notes: Long = ""
    language: Short = Field(default="", description="the language to call the resident in")
    medications: Long = ""
    allergies: Long = ""
    doctor: Short = Field(default="", description="family doctor or hospital, with a phone")
    advance_care: Long = Field(default="", description="advance-care wishes, DNR")

    @model_validator(mode="after")
    def _year_from_date(self) -> Resident:
        if self.birth_date is not None:
            if not 1890 <= self.birth_date.year <= 2100:
                raise ValueError("birth_date: year must be between 1890 and 2100")
            if self.birth_year is not None and self.birth_year != self.birth_date.year:
                raise ValueError("birth_year differs from birth_date's year")
            self.birth_year = self.birth_date.year
        return self


class Contact(_In):
    name: Annotated[Str, Field(min_length=1, max_length=200)]
    relation: Short = ""
    phones: list[Phone] = Field(default_factory=list, max_length=8)
    has_key: bool = False
    priority: Annotated[int, Field(ge=1, le=99)] = 1


class Device(_In):
    id: Identifier
    room: Short = ""
    kind: Short = ""
    label: Short = ""


class HouseholdIn(_In):
    id: Identifier | None = Field(default=None, description="chosen id; generated when absent")
    name: Annotated[Str, Field(min_length=1, max_length=200)]
    address: Annotated[Str, Field(max_length=500)] = ""
    community: Short = Field(default="", description="community or street, for reports")
    phone: Annotated[Str, Field(max_length=32)] = ""
    key_safe: Annotated[Str, Field(max_length=500)] = ""
    access_notes: Long = ""
    notes: Long = ""
    residents: list[Resident] = Field(default_factory=list, max_length=16)
    emergency_contacts: list[Contact] = Field(default_factory=list, max_length=16)
    devices: list[Device] = Field(default_factory=list, max_length=256)
    expected_updated_at: AwareDatetime | None = Field(
        default=None,
        description="on update: the updated_at the editor read; if the household changed since, "
        "the update is refused (409) instead of overwriting the other change",
    )


class Household(BaseModel):
    id: str
    name: str
    address: str
    community: str
    phone: str
    key_safe: str
    access_notes: str
    notes: str
    residents: list[Resident]
    emergency_contacts: list[Contact]
    devices: list[Device]
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    away_until: datetime | None = Field(
        default=None, description="away or in hospital until then (inactivity alarms rest)"
    )
    away_reason: Literal["", "away", "hospital"] = ""
    away_note: str = ""


AwayReason = Literal["away", "hospital"]


class AwayRequest(_In):
    until: AwareDatetime = Field(description="when the resident is expected back (in the future)")
    reason: AwayReason
    note: Annotated[Str, Field(max_length=500)] = ""


class HouseholdNote(BaseModel):
    id: int
    household_id: str
    at: datetime
    author: str
    text: str


# -- gateways -----------------------------------------------------------------------------------


class EnrollRequest(_In):
    code: Annotated[Str, Field(min_length=1, max_length=64)]
    gateway_id: Identifier
    version: Annotated[Str, Field(max_length=64)] = ""


class EnrollReply(BaseModel):
    gateway_id: str
    household_id: str
    secret: str


class GatewayOut(BaseModel):
    id: str
    household_id: str
    online: bool
    revoked: bool
    version: str
    enrolled_at: datetime
    last_heartbeat_at: datetime | None
    status_changed_at: datetime
    interval_s: float
    buffer_depth: dict[str, int]
    oldest_unsent_age_s: float | None
    evicted_total: int
    clock_offset_s: float | None = Field(description="gateway clock minus server clock, seconds")
    household_name: str | None = None
    devices: list[DeviceHealth] = Field(
        default_factory=list, description="each device's health from the last heartbeat"
    )
    drivers: list[DriverHealth] = Field(default_factory=list)


# -- incidents ----------------------------------------------------------------------------------


class Deadlines(BaseModel):
    acknowledge: datetime | None
    callback: datetime | None
    on_scene: datetime | None


class Position(BaseModel):
    """Where a wristband was: its latest fix while the incident is open."""

    terminal: str = Field(description="the wristband's terminal phone number")
    lat: float
    lon: float
    fix: bool = Field(description="a real GNSS fix (False: the terminal's last known position)")
    fix_at: datetime = Field(description="the time of the position, the terminal's own")
    verified: bool = Field(
        default=True, description="False: read from a frame whose check code or length was wrong"
    )


class Incident(BaseModel):
    id: str
    household_id: str
    household_name: str | None = None
    community: str | None = None
    gateway_id: str | None
    kind: str
    category: Literal["alarm", "trouble", "gateway_offline"]
    priority: int
    state: IncidentState
    operator: str | None
    operator_presence: Literal["on_duty", "on_break", "gone"] | None = Field(
        default=None, description="whether the holder is there (None: nobody holds it)"
    )
    opened_at: datetime
    alarm_at: datetime = Field(
        description="when the alarm happened: the gateway's time, its clock offset taken out; "
        "service-level timers run from here"
    )
    received_at: datetime = Field(description="when dispatch received the alarm")
    first_seen_at: datetime | None = Field(
        default=None, description="when a console first showed the incident"
    )
    late: bool = Field(default=False, description="the alarm reached dispatch late (buffered)")
    realerted_at: datetime | None = Field(
        default=None,
        description="a new alarm event joined after acknowledgement and nobody acknowledged it yet",
    )
    last_event_at: datetime
    last_action_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    callback_at: datetime | None
    dispatched_at: datetime | None
    on_scene_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    outcome: str | None
    event_count: int
    requeue_count: int
    deadlines: Deadlines
    overdue: list[OverdueStep]
    summary: dict[str, Any]
    position: Position | None = Field(
        default=None, description="where the alarm is, for a wristband's (dispatch.jt808)"
    )


class TimelineEntry(BaseModel):
    at: datetime
    type: Literal["event", "action"]
    name: str = Field(description="the event kind or the action")
    actor: str | None = None
    event_id: str | None = None
    device_id: str | None = None
    room: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class IncidentDetail(Incident):
    household: Household | None
    timeline: list[TimelineEntry]


class IncidentChange(Incident):
    """The ``data`` of an incident change on the live stream: the incident as it now is, and
    what the change added to its timeline (oldest first)."""

    timeline_added: list[TimelineEntry] = Field(
        default_factory=list,
        description="the timeline entries this change added; an event's room is not filled in",
    )


class ActionResult(BaseModel):
    incident: Incident
    took_over_from: str | None = Field(
        default=None, description="set when the claim took the incident from another operator"
    )
    warning: str | None = None


class AcknowledgeRequest(_In):
    note: Long = ""
    takeover: bool = Field(
        default=False, description="take the incident from the operator who claimed it"
    )
    reason: Short = Field(default="", description="why (required for a take-over)")

    @model_validator(mode="after")
    def _takeover_has_reason(self) -> AcknowledgeRequest:
        if self.takeover and not self.reason.strip():
            raise ValueError("a take-over needs a reason")
        return self


#: Something besides spaces, and no NUL.
_SOME_TEXT = r"^[^\x00]*\S[^\x00]*$"


class AssignRequest(_In):
    # A name and a reason of spaces alone are refused by the schema itself; the pattern also says
    # "no NUL" (a field's own pattern replaces the one its type would give).
    operator: Short = Field(pattern=_SOME_TEXT, description="the username of an operator on duty")
    reason: Short = Field(pattern=_SOME_TEXT, description="why this operator (required)")


class BreakRequest(_In):
    on_break: bool = Field(description="true: on break (nothing is assigned); false: back")


class OperatorPresence(BaseModel):
    operator_id: int
    username: str
    display_name: str
    status: Literal["on_duty", "on_break", "gone"]
    seen_at: datetime | None = Field(description="the console stream or an action, last seen")
    changed_at: datetime | None
    reason: str | None
    held: int = Field(description="open incidents the operator holds")


class CallbackRequest(_In):
    outcome: CallbackOutcome
    number: Annotated[Str, Field(max_length=32)] = ""
    note: Long = ""


class DispatchRequest(_In):
    responder: Annotated[Str, Field(min_length=1, max_length=200)]
    note: Long = ""


class OnSceneRequest(_In):
    note: Long = ""


class ResolveRequest(_In):
    outcome: Outcome
    note: Long = ""
    no_call_reason: Short = Field(
        default="",
        description="why the incident is resolved with no call to the household recorded "
        "(e.g. 'false alarm confirmed on site', 'duplicate of …'); required when none is",
    )
    on_scene_handover: Short = Field(
        default="",
        description="what the rescuer on scene handed over (e.g. 'Wang: resident fine, daughter "
        "with her'); required while a rescuer is on scene and has not pressed Done",
    )


class NoteRequest(_In):
    text: Annotated[Str, Field(min_length=1, max_length=4000)]


class StoredEvent(BaseModel):
    """An event as dispatch stored it (test events and telemetry included)."""

    id: str
    gateway_id: str
    household_id: str
    seq: int
    kind: str
    priority: int
    device_id: str | None
    at: datetime = Field(description="the gateway's clock")
    received_at: datetime
    test: bool
    payload: dict[str, Any]
    incident_id: str | None


# -- audit, stream, pages -----------------------------------------------------------------------


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    detail: dict[str, Any]


class Change(BaseModel):
    """One item of the live stream (its SSE id is ``id``)."""

    id: int
    at: datetime
    topic: str
    kind: str
    entity_id: str
    data: dict[str, Any]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
