"""The rescuer API's request and response models: roster, assignments, presses, the phone's task."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from dispatch.models import Contact, Long, Phone, Resident, Short, Str, Username, _In

__all__ = [
    "ASSIGNMENT_STATES",
    "RESCUER_STATUSES",
    "Assignment",
    "AssignmentState",
    "CancelRequest",
    "HomeLocation",
    "PressAction",
    "PressRequest",
    "PressResult",
    "ReassignRequest",
    "RescueDispatchRequest",
    "RescueDispatchResult",
    "Rescuer",
    "RescuerIn",
    "RescuerPatch",
    "RescuerStatus",
    "RescuerStatusRequest",
    "RescuerTask",
    "RowId",
    "TaskHousehold",
    "TaskIncident",
    "Team",
    "TeamIn",
]

RescuerStatus = Literal["available", "assigned", "en_route", "on_scene", "returning", "off_duty"]
RESCUER_STATUSES: tuple[str, ...] = (
    "available",
    "returning",
    "assigned",
    "en_route",
    "on_scene",
    "off_duty",
)
AssignmentState = Literal[
    "assigned", "accepted", "en_route", "on_scene", "handed_over", "done", "cancelled", "reassigned"
]
ASSIGNMENT_STATES: tuple[str, ...] = (
    "assigned",
    "accepted",
    "en_route",
    "on_scene",
    "handed_over",
    "done",
    "cancelled",
    "reassigned",
)
PressAction = Literal["accept", "en_route", "on_scene", "need_help", "handed_over", "done"]
RescueOutcome = Literal[
    "treated_on_site", "taken_to_hospital", "handed_to_family", "false_alarm", "no_access", "other"
]
#: Row ids as the API takes them (the database's integer columns are 32-bit on PostgreSQL).
RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class TeamIn(_In):
    name: Annotated[Str, Field(min_length=1, max_length=200)]


class Team(BaseModel):
    id: int
    name: str
    members: int


class RescuerIn(_In):
    name: Annotated[Str, Field(min_length=1, max_length=200)]
    phone: Phone
    team_id: RowId | None = None
    shift: Short = Field(default="", description="e.g. 'day 07:00-19:00'")
    username: Username | None = Field(
        default=None, description="a login for the rescuer's phone page (role rescuer)"
    )
    password: Annotated[Str, Field(min_length=8, max_length=256)] | None = None
    status: Literal["available", "off_duty"] = "off_duty"

    @model_validator(mode="after")
    def _login_has_password(self) -> RescuerIn:
        if (self.username is None) != (self.password is None):
            raise ValueError("a rescuer's login needs both username and password")
        return self


class RescuerPatch(_In):
    name: Annotated[Str, Field(min_length=1, max_length=200)] | None = None
    phone: Phone | None = None
    team_id: RowId | None = None
    shift: Short | None = None
    status: Literal["available", "returning", "off_duty"] | None = Field(
        default=None, description="assigned, en route and on scene follow the rescuer's presses"
    )
    lat: Latitude | None = None
    lon: Longitude | None = None

    @model_validator(mode="after")
    def _whole_location(self) -> RescuerPatch:
        if ("lat" in self.model_fields_set) != ("lon" in self.model_fields_set):
            raise ValueError("set lat and lon together")
        return self


class AssignmentBrief(BaseModel):
    id: int
    incident_id: str
    state: AssignmentState
    assigned_at: datetime
    accepted_at: datetime | None
    on_scene_at: datetime | None
    household_name: str | None
    alarm_at: datetime | None


class Rescuer(BaseModel):
    id: int
    name: str
    phone: str
    team_id: int | None
    team: str | None
    shift: str
    username: str | None
    status: RescuerStatus
    status_since: datetime
    lat: float | None
    lon: float | None
    located_at: datetime | None
    assignment: AssignmentBrief | None = Field(description="the open task, if any")
    distance_km: float | None = Field(
        default=None, description="from the incident's home (when listed for an incident)"
    )
    not_accepted: bool = Field(
        default=False, description="assigned and not accepted within the accept target"
    )
    over_target: bool = Field(
        default=False, description="not on scene and past the on-scene target from the alarm"
    )


class HomeLocation(_In):
    lat: Latitude
    lon: Longitude


class RescueDispatchRequest(_In):
    rescuer_id: RowId | None = Field(default=None, description="one rescuer")
    team_id: RowId | None = Field(default=None, description="every available member of a team")
    note: Long = ""

    @model_validator(mode="after")
    def _one_target(self) -> RescueDispatchRequest:
        if (self.rescuer_id is None) == (self.team_id is None):
            raise ValueError("pick exactly one: rescuer_id or team_id")
        return self


class ReassignRequest(_In):
    rescuer_id: RowId
    reason: Annotated[Str, Field(min_length=1, max_length=200)]


class CancelRequest(_In):
    reason: Annotated[Str, Field(min_length=1, max_length=200)]


class Assignment(BaseModel):
    id: int
    incident_id: str
    rescuer_id: int
    rescuer: str
    team: str | None
    state: AssignmentState
    assigned_at: datetime
    assigned_by: str
    accepted_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    handed_over_at: datetime | None
    handed_over_to: str | None
    need_help_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    note: str


class RescueDispatchResult(BaseModel):
    assignments: list[Assignment]


class PressRequest(_In):
    key: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")] = Field(
        description="the page's idempotency key: a press sent twice is applied once"
    )
    assignment_id: RowId
    action: PressAction
    pressed_at: AwareDatetime | None = Field(
        default=None, description="when the rescuer pressed, by the phone's clock (with its zone)"
    )
    lat: Latitude | None = None
    lon: Longitude | None = None
    accuracy_m: Annotated[float, Field(ge=0, le=100000)] | None = None
    handed_over_to: Literal["ambulance", "family"] | None = None
    outcome: RescueOutcome | None = None
    note: Long = ""

    @model_validator(mode="after")
    def _complete(self) -> PressRequest:
        if self.action == "handed_over" and self.handed_over_to is None:
            raise ValueError("handed_over needs handed_over_to (ambulance or family)")
        if self.action == "done" and self.outcome is None:
            raise ValueError("done needs an outcome")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("a location needs both lat and lon")
        return self


class PressResult(BaseModel):
    assignment: Assignment
    at: datetime = Field(description="the time dispatch records for the press")
    received_at: datetime = Field(description="when dispatch received it")
    replayed: bool = Field(description="this key was applied before; nothing changed now")


class RescuerStatusRequest(_In):
    status: Literal["available", "off_duty"]


class TaskIncident(BaseModel):
    id: str
    kind: str
    priority: int
    state: str
    alarm_at: datetime | None


class TaskHousehold(BaseModel):
    name: str
    address: str
    community: str
    phone: str
    access_notes: str
    key_safe: str
    notes: str
    residents: list[Resident]
    emergency_contacts: list[Contact]


class RescuerTask(BaseModel):
    assignment: Assignment
    incident: TaskIncident
    household: TaskHousehold | None
    navigation_url: str | None = Field(description="the configured map link to the address")
