"""The database tables (SQLAlchemy Core), the same for SQLite and PostgreSQL.

Times are stored in UTC and always come back timezone-aware (:class:`UtcDateTime`). Households keep
their residents, emergency contacts and devices as JSON lists: they are read and written whole by
the console, never queried piecemeal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "metadata"]


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both engines (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A 64-bit id that is SQLite's rowid alias there (so it autoincrements).
BigId = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

households = Table(
    "households",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("address", String(500), nullable=False, server_default=""),
    Column("community", String(200), nullable=False, server_default=""),
    Column("phone", String(64), nullable=False, server_default=""),
    Column("key_safe", String(500), nullable=False, server_default=""),
    Column("access_notes", Text, nullable=False, server_default=""),
    Column("notes", Text, nullable=False, server_default=""),
    Column("residents", JSON, nullable=False),
    Column("emergency_contacts", JSON, nullable=False),
    Column("devices", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Household administration: archived households leave the lists (their history stays);
    # "away / in hospital" until an instant is sent to the gateway with each heartbeat reply.
    Column("archived_at", UtcDateTime, nullable=True),
    Column("away_until", UtcDateTime, nullable=True),
    Column("away_reason", String(32), nullable=False, server_default=""),
    Column("away_note", String(500), nullable=False, server_default=""),
    # Lower-cased names, phones (also digits only), addresses and device ids: what search finds.
    Column("search_text", Text, nullable=False, server_default=""),
)

# Operators' notes on a household (append-only, like the audit log's view of them).
household_notes = Table(
    "household_notes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("author", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_household_notes_household", "household_id", "id"),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=False),
    # Sealed (dispatch.sealing): a prefix and base64 of nonce, ciphertext and tag.
    Column("secret", String(256), nullable=False),
    Column("version", String(64), nullable=False, server_default=""),
    Column("enrolled_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_heartbeat_at", UtcDateTime, nullable=True),
    Column("interval_s", Float, nullable=False, server_default="30"),
    Column("online", Boolean, nullable=False, server_default="1"),
    # When the gateway counts as lost unless another heartbeat arrives (heartbeat time plus its
    # interval times the allowed misses): one indexed comparison finds every lost gateway.
    Column("offline_after", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("clock_offset_s", Float, nullable=True),
    Column("uptime_s", Float, nullable=True),
    Column("buffer_depth", JSON, nullable=True),
    Column("oldest_unsent_age_s", Float, nullable=True),
    Column("evicted_total", Integer, nullable=False, server_default="0"),
    Column("health", JSON, nullable=True),
    Index("ix_gateways_household", "household_id"),
    Index("ix_gateways_offline_after", "online", "offline_after"),
)

enroll_codes = Table(
    "enroll_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("used_by", String(128), nullable=True),
)

# Failed enrollments, counted per address and per code over a window (every process sees them)
# and kept for the audit; purged once older than ``enroll_failure_retention_s`` (90 days).
enroll_failures = Table(
    "enroll_failures",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("address", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("gateway_id", String(128), nullable=False),
    Column("reason", String(64), nullable=False),
    Index("ix_enroll_failures_address", "address", "at"),
    Index("ix_enroll_failures_code", "code_hash", "at"),
)

# A supervisor's explicit, one-use, expiring permission to enroll an existing (or revoked)
# gateway id again: without one, a household code cannot take over a gateway id.
reenroll_allowances = Table(
    "reenroll_allowances",
    metadata,
    Column("gateway_id", String(128), primary_key=True),
    Column("allowed_by", String(200), nullable=False),
    Column("allowed_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

gateway_nonces = Table(
    "gateway_nonces",
    metadata,
    Column("gateway_id", String(128), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_gateway_nonces_expires", "expires_at"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=False),
    Column("gateway_id", String(128), nullable=True),
    Column("kind", String(64), nullable=False),
    # alarm | trouble | gateway_offline
    Column("category", String(32), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    # Set while open for incidents of which there may be only one (per outage, per household):
    # a unique index makes that a database guarantee across processes. NULL once resolved.
    Column("open_key", String(300), nullable=True, unique=True),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=True),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_event_at", UtcDateTime, nullable=False),
    Column("last_action_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", Integer, nullable=True),
    Column("callback_at", UtcDateTime, nullable=True),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Column("on_scene_at", UtcDateTime, nullable=True),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("resolved_by", Integer, nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("ack_deadline", UtcDateTime, nullable=True),
    Column("callback_deadline", UtcDateTime, nullable=True),
    Column("on_scene_deadline", UtcDateTime, nullable=True),
    Column("event_count", Integer, nullable=False, server_default="0"),
    Column("requeue_count", Integer, nullable=False, server_default="0"),
    Column("summary", JSON, nullable=False),
    # The gateway's event time in server time (its clock offset taken out): service-level timers
    # run from here, not from when the event happened to reach dispatch.
    Column("alarm_at", UtcDateTime, nullable=True),
    Column("received_at", UtcDateTime, nullable=True),
    # When a console first rendered the incident (the console reports it).
    Column("first_seen_at", UtcDateTime, nullable=True),
    Column("late", Boolean, nullable=False, server_default="0"),
    # A new alarm event joined after the incident was acknowledged: nobody has seen it yet.
    Column("realerted_at", UtcDateTime, nullable=True),
    # Where a wristband's alarm is (its latest fix while the incident is open; dispatch.jt808).
    Column("terminal", String(20), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("fix", Boolean, nullable=True),
    Column("fix_at", UtcDateTime, nullable=True),
    Column("position_verified", Boolean, nullable=True),
    Index("ix_incidents_queue", "state", "priority", "opened_at"),
    Index("ix_incidents_terminal", "terminal", "state"),
    Index("ix_incidents_household", "household_id", "state"),
    # Heartbeat replies (recently acknowledged alarms) and reports (a period of incidents).
    Index("ix_incidents_acknowledged", "acknowledged_at"),
    Index("ix_incidents_opened", "opened_at"),
)

# An event id is unique per gateway, not across gateways: a home's gateway cannot make another
# home's event a "duplicate" by reusing its id (nor learn that home's incident from the answer).
events = Table(
    "events",
    metadata,
    Column("gateway_id", String(128), primary_key=True),
    Column("id", String(26), primary_key=True),
    Column("household_id", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("device_id", String(128), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("test", Boolean, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("incident_id", String(32), nullable=True),
    # When an operator acknowledged this very event: only these are reported to the gateway.
    Column("acknowledged_at", UtcDateTime, nullable=True),
    # Most events are telemetry: on no incident, never acknowledged. These two indexes leave
    # those rows out (each query of the column asks for a value, which implies NOT NULL).
    Index(
        "ix_events_incident",
        "incident_id",
        sqlite_where=text("incident_id IS NOT NULL"),
        postgresql_where=text("incident_id IS NOT NULL"),
    ),
    Index(
        "ix_events_acknowledged",
        "acknowledged_at",
        sqlite_where=text("acknowledged_at IS NOT NULL"),
        postgresql_where=text("acknowledged_at IS NOT NULL"),
    ),
    Index("ix_events_gateway_received", "gateway_id", "received_at"),
    Index("ix_events_household_received", "household_id", "received_at"),
)

incident_actions = Table(
    "incident_actions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_incident_actions_incident", "incident_id", "id"),
)

# A service-level escalation happens once per incident and reason, whichever process sees it.
escalations = Table(
    "escalations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id"), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("incident_id", "reason", name="uq_escalations_incident_reason"),
)

operators = Table(
    "operators",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
)

# Whether an operator is there: on duty while a console stream (or an action) was seen within the
# presence timeout, on break by their own word, gone after logout, disable or a lost stream.
operator_presence = Table(
    "operator_presence",
    metadata,
    Column("operator_id", Integer, ForeignKey("operators.id"), primary_key=True),
    # on_duty | on_break | gone
    Column("status", String(16), nullable=False),
    Column("seen_at", UtcDateTime, nullable=True),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("reason", String(200), nullable=False, server_default=""),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_sessions_expires", "expires_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity_type", String(64), nullable=False),
    Column("entity_id", String(200), nullable=False),
    Column("detail", JSON, nullable=False),
)

# The live stream's source: one row per change, read in id order. On PostgreSQL the writer holds
# an advisory lock from the insert to the commit, so ids become visible in order and a reader
# that resumes after id N can never miss a smaller id committed later.
changes = Table(
    "changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("topic", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("entity_id", String(200), nullable=False),
    # all | supervisor
    Column("audience", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_changes_at", "at"),
)

# JT/T 808 wristbands (dispatch.jt808), by terminal phone number (digits, leading zeros dropped).
# A terminal that registered but is bound to no household has household_id NULL: a supervisor
# binds it. The latest fix and status are kept here; the track in wristband_fixes.
wristbands = Table(
    "wristbands",
    metadata,
    Column("terminal", String(20), primary_key=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=True),
    Column("resident", String(200), nullable=False, server_default=""),
    Column("auth_code", String(64), nullable=False, server_default=""),
    Column("manufacturer", String(64), nullable=False, server_default=""),
    Column("model", String(64), nullable=False, server_default=""),
    Column("device_id", String(64), nullable=False, server_default=""),
    Column("protocol", String(8), nullable=False, server_default=""),
    Column("seq", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("registered_at", UtcDateTime, nullable=True),
    Column("bound_at", UtcDateTime, nullable=True),
    Column("last_seen_at", UtcDateTime, nullable=True),
    Column("online", Boolean, nullable=False, server_default="0"),
    Column("alarm_flags", BigInteger, nullable=False, server_default="0"),
    Column("last_alarm_at", UtcDateTime, nullable=True),
    Column("battery", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("satellites", Integer, nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("fix", Boolean, nullable=True),
    Column("fix_at", UtcDateTime, nullable=True),
    Index("ix_wristbands_household", "household_id"),
    Index("ix_wristbands_seen", "online", "last_seen_at"),
)

wristband_fixes = Table(
    "wristband_fixes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("terminal", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("fix", Boolean, nullable=False),
    Column("speed_kmh", Float, nullable=False, server_default="0"),
    Column("alarm_flags", BigInteger, nullable=False, server_default="0"),
    # False when the frame's check code or length was wrong (an alarm salvaged from it).
    Column("verified", Boolean, nullable=False, server_default="1"),
    Index("ix_wristband_fixes_terminal_at", "terminal", "at"),
    Index("ix_wristband_fixes_received", "received_at"),
)

# Where a household's home is, for a wristband fix's distance from it.
household_places = Table(
    "household_places",
    metadata,
    Column("household_id", String(128), ForeignKey("households.id"), primary_key=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# SIA DC-09 transmitters (alarm panels, telecare units) reporting straight into dispatchd. Each
# account belongs to a household and reports under a gateway row of its own ("dc09:<account>"),
# so its alarms enter the same incident queue and its NULL messages supervise it like heartbeats.
dc09_accounts = Table(
    "dc09_accounts",
    metadata,
    Column("account", String(16), primary_key=True),
    Column("household_id", String(128), ForeignKey("households.id"), nullable=False),
    Column("gateway_id", String(128), nullable=False, unique=True),
    # AES key as hex (32, 48 or 64 digits); NULL: messages in the clear are accepted.
    Column("key", String(64), nullable=True),
    # Seconds between the transmitter's NULL messages; 0: not supervised.
    Column("supervision_s", Float, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
)

# Replay protection: the last message seen per account and sequence number. A repeat (same
# account, sequence and content) within the window is acknowledged again and stored once.
dc09_seen = Table(
    "dc09_seen",
    metadata,
    Column("account", String(16), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

# -- rescuers in the field (dispatch/rescue.py) --------------------------------------------------

rescue_teams = Table(
    "rescue_teams",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# One row per rescuer: the roster. ``operator_id`` is the rescuer's own login (role rescuer).
rescuers = Table(
    "rescuers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(64), nullable=False, server_default=""),
    Column("team_id", Integer, ForeignKey("rescue_teams.id"), nullable=True),
    Column("shift", String(200), nullable=False, server_default=""),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=True, unique=True),
    # available | assigned | en_route | on_scene | returning | off_duty
    Column("status", String(16), nullable=False),
    Column("status_since", UtcDateTime, nullable=False),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("located_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_rescuers_status", "status"),
)

# Where a home is, for ordering the roster by distance (set by supervisors; optional).
household_locations = Table(
    "household_locations",
    metadata,
    Column("household_id", String(128), ForeignKey("households.id"), primary_key=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
)

# One rescuer sent to one incident. Open while ``ended_at`` is NULL.
rescue_assignments = Table(
    "rescue_assignments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id"), nullable=False),
    Column("rescuer_id", Integer, ForeignKey("rescuers.id"), nullable=False),
    # assigned | accepted | en_route | on_scene | handed_over | done | cancelled | reassigned
    Column("state", String(16), nullable=False),
    Column("assigned_at", UtcDateTime, nullable=False),
    Column("assigned_by", String(200), nullable=False),
    Column("accepted_at", UtcDateTime, nullable=True),
    Column("en_route_at", UtcDateTime, nullable=True),
    Column("on_scene_at", UtcDateTime, nullable=True),
    Column("handed_over_at", UtcDateTime, nullable=True),
    Column("handed_over_to", String(32), nullable=True),
    Column("need_help_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("note", Text, nullable=False, server_default=""),
    Index("ix_rescue_assignments_incident", "incident_id"),
    Index("ix_rescue_assignments_rescuer", "rescuer_id", "ended_at"),
)

# Every press on a rescuer's phone, once: the idempotency key is the page's own.
rescue_presses = Table(
    "rescue_presses",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("assignment_id", Integer, ForeignKey("rescue_assignments.id"), nullable=False),
    Column("rescuer_id", Integer, ForeignKey("rescuers.id"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("pressed_at", UtcDateTime, nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("accuracy_m", Float, nullable=True),
    Column("detail", JSON, nullable=False),
)
