"""The server's settings: one model, read from ``DISPATCHD_*`` environment variables and flags.

Each field is one setting. Its environment variable is ``DISPATCHD_`` + the field's name in
capitals (``sla_ack_s`` -> ``DISPATCHD_SLA_ACK_S``); its ``dispatchd serve`` flag is the field's
name with dashes and without a ``_s`` unit suffix (``--sla-ack``); see :mod:`dispatch.serve_flags`.
A flag wins over the environment. Adding a setting is adding a field here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatch.errors import ConfigError
from runtime.logs import LOG_LEVELS

__all__ = ["ENV_PREFIX", "Settings", "env_var", "flag_name", "tile_origin"]

ENV_PREFIX = "DISPATCHD_"


class Settings(BaseSettings):
    """What ``dispatchd serve`` is configured with, with the defaults the service is specified
    with. Seconds are floats; limits are the ones the command line has always enforced."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    db: str = Field(
        "sqlite:///dispatch.db",
        description="sqlite:///path/dispatch.db or postgresql://user@host/db.",
    )
    host: str = Field(
        "127.0.0.1", description="Address to listen on (behind a TLS-terminating reverse proxy)."
    )
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR."
    )
    incident_window_s: float = Field(
        30 * 60,
        ge=1,
        description="Seconds within which an alarm joins the open incident of its kind.",
    )
    ack_timeout_s: float = Field(
        5 * 60,
        ge=1,
        description="Seconds an acknowledged incident may sit without action before requeue.",
    )
    routing: Literal["claim", "least_load"] = Field(
        "claim",
        # claim is the default: an unassigned alarm is seen by every operator on duty and the
        # first free hand takes it, so none waits on one person who may be on another call.
        description="New incidents: claim (unassigned until claimed) or least_load (assigned).",
    )
    presence_timeout_s: float = Field(
        20.0,
        ge=1,
        description=(
            "Seconds without a console stream or action after which an operator counts as gone "
            "and what they hold returns to the queue."
        ),
    )
    late_arrival_s: float = Field(
        60.0,
        ge=1,
        description="Seconds between an alarm and its arrival beyond which it is flagged late.",
    )
    sla_ack_s: float = Field(
        60,
        ge=1,
        description="Service level: seconds from the alarm to its acknowledgement.",
    )
    sla_callback_s: float = Field(
        5 * 60,
        ge=1,
        description=("Service level: seconds from the alarm to the call to the household."),
    )
    sla_on_scene_s: float = Field(
        18 * 60,
        ge=1,
        description="Service level: seconds from the alarm to help on scene.",
    )
    heartbeat_misses: float = Field(
        3, ge=1, description="Heartbeat intervals a gateway may miss before it is offline."
    )
    heartbeat_flush_s: float = Field(
        0.5,
        ge=0.01,
        le=5,
        description="Seconds between group writes of answered heartbeats (a gateway's last-seen "
        "time); a gateway is declared lost only twice this long after its deadline.",
    )
    supervise_every_s: float = Field(
        1.0,
        ge=0.05,
        description="Seconds between looks at gateways' heartbeats, timers and deadlines.",
    )
    session_ttl_s: float = Field(
        12 * 3600, ge=60, description="Seconds an operator's console login lasts."
    )
    login_failures_per_user: int = Field(
        5, ge=1, description="Failed logins of one user allowed before each next one waits."
    )
    login_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one address allowed before each next one waits."
    )
    login_lockout_max_s: float = Field(
        300, ge=1, description="Longest wait, in seconds, the login throttle imposes."
    )
    slow_request_s: float = Field(
        2.0,
        gt=0,
        description="Answers that begin after this many seconds are logged as slow requests.",
    )
    trust_proxy_headers: bool = Field(
        False,
        description=(
            "Trust the reverse proxy's X-Forwarded-Proto (https makes the session cookie Secure) "
            "and X-Forwarded-Host (the site a browser's Origin must name)."
        ),
    )
    ack_report_window_s: float = Field(
        3600, gt=0, description="Seconds back a heartbeat reply reports acknowledged alarms."
    )
    max_ingest_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="Largest event batch body a gateway may send, in bytes.",
    )
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest body of any other request, in bytes."
    )
    stream_poll_s: float = Field(
        0.25,
        gt=0,
        description="Seconds between the live stream's looks for changes on SQLite (no NOTIFY).",
    )
    stream_keepalive_s: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments on an idle live stream."
    )
    change_retention_s: float = Field(
        7 * 86400,
        gt=0,
        description="Seconds the live stream can be resumed from (older changes are purged).",
    )
    priority2_alert_after_s: float = Field(
        60,
        ge=0,
        description="Seconds a priority-2 alarm (inactivity, water leak, intrusion) may wait "
        "unacknowledged before the console sounds it and puts it on the alert strip.",
    )
    dc09_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="TCP and UDP port of the SIA DC-09 receiver (on --host); 0: no receiver.",
    )
    dc09_window_past_s: float = Field(
        40, ge=0, description="Seconds a DC-09 message's timestamp may lag the server's clock."
    )
    dc09_window_future_s: float = Field(
        20, ge=0, description="Seconds a DC-09 message's timestamp may lead the server's clock."
    )
    timezone: str | None = Field(
        None, description="The centre's IANA time zone, for the console (default: the browser's)."
    )
    # JT/T 808 wristbands (dispatch.jt808; docs/wristbands.md).
    jt808_port: int = Field(
        0, ge=0, le=65535, description="TCP port for JT/T 808 wristbands; 0 turns it off."
    )
    jt808_host: str = Field("0.0.0.0", description="Address the JT/T 808 port listens on.")
    jt808_heartbeat_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds between a wristband's heartbeats; silent for heartbeat-misses of "
        "them, it is a 'wristband offline' trouble.",
    )
    jt808_answer_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a wristband has to answer what the centre sends it (the heartbeat "
        "interval, 0x8103) before it is sent again; the n-th resend waits n+1 times longer.",
    )
    jt808_resends: int = Field(
        2, ge=0, le=10, description="Times an unanswered message to a wristband is sent again."
    )
    jt808_max_connections: int = Field(
        20_000, ge=1, description="Wristband connections held at once; more are refused."
    )
    jt808_map_url: str | None = Field(
        None,
        description="Link template for a fix's 'open map' ({lat}, {lon}), e.g. "
        "https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}; none by default.",
    )
    map_tile_url_template: str | None = Field(
        None,
        # The console's Content-Security-Policy lets images in from this host, and no other.
        description="Tiles of the location card's map, e.g. https://tiles.example/{z}/{x}/{y}.png; "
        "none: no map, nothing fetched.",
    )
    map_tile_attribution: str = Field(
        "",
        max_length=300,
        description="Text shown on the map, as the tiles' licence asks.",
    )
    rescue_accept_within_s: float = Field(
        120, ge=1, description="Seconds a rescuer has to accept a task before the board flags it."
    )
    rescue_map_url_template: str = Field(
        "https://www.openstreetmap.org/search?query={address}",
        description="The rescuer's navigation link: {address} (URL-encoded), {lat} and {lon} "
        "(the home's location, when known) are filled in.",
    )
    secrets_key_file: str | None = Field(
        None,
        description="File of the key sealing gateway secrets (created, 0600, on first start; "
        "default: beside an SQLite database; required for PostgreSQL unless the key is given).",
    )
    secrets_key: str | None = Field(
        None,
        repr=False,
        description="The key sealing gateway secrets, URL-safe base64 of 32 bytes (prefer the "
        "environment to the flag: a flag shows in the process list).",
    )
    enroll_failures_per_address: int = Field(
        10, ge=1, description="Failed enrollments from one address allowed per window."
    )
    enroll_failures_per_code: int = Field(
        5, ge=1, description="Failed enrollments with one code allowed per window."
    )
    enroll_failure_window_s: float = Field(
        15 * 60, ge=1, description="Seconds over which failed enrollments are counted."
    )
    enroll_failure_retention_s: float = Field(
        90 * 86400,
        ge=1,
        description="Seconds failed enrollments are kept for the audit (older ones are purged; "
        "never sooner than the throttle's window).",
    )
    reenroll_allow_ttl_s: float = Field(
        3600, ge=60, description="Seconds a supervisor's permission to re-enroll a gateway lasts."
    )

    @field_validator("timezone")
    @classmethod
    def _real_time_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}; use an IANA name") from exc
        return value

    @field_validator("rescue_map_url_template")
    @classmethod
    def _map_template(cls, value: str) -> str:
        try:
            link = value.format(address="x", lat="0", lon="0")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"use only {{address}}, {{lat}} and {{lon}} ({exc!r})") from exc
        if not link.startswith(("https://", "http://", "geo:")):
            raise ValueError("must start with https://, http:// or geo:")
        return value

    @field_validator("map_tile_url_template")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            url = value.format(z=0, x=0, y=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"use only {{z}}, {{x}} and {{y}} ({exc!r})") from exc
        if any(f"{{{part}}}" not in value for part in "zxy"):
            raise ValueError("must contain {z}, {x} and {y}")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// (or http://) URL with a host")
        if parts.username is not None or parts.password is not None:
            # Browsers refuse image requests with credentials in the URL; a tile service's key
            # goes in the query instead.
            raise ValueError(
                "must not carry a user name or password (browsers do not send them; "
                "put the tile service's key in the query)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> str:
        if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None) -> Settings:
        """The settings from the environment, overridden by ``flags`` (field name -> value).

        Raises :class:`ConfigError` naming each bad setting by where it came from: its flag if
        one was given, else its environment variable.
        """
        given = dict(flags or {})
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                source = flag_name(name) if name in given else env_var(name)
                reason = error["msg"].removeprefix("Value error, ")
                problems.append(f"{source}: {reason} (got {error['input']!r})")
            raise ConfigError("invalid setting " + "; ".join(problems)) from exc


def env_var(field: str) -> str:
    """The environment variable of a setting: ``sla_ack_s`` -> ``DISPATCHD_SLA_ACK_S``."""
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    """The ``dispatchd serve`` flag of a setting: ``sla_ack_s`` -> ``--sla-ack``."""
    return "--" + field.removesuffix("_s").replace("_", "-")


def tile_origin(template: str | None) -> str | None:
    """Where map tiles come from (``scheme://host[:port]``), for the Content-Security-Policy."""
    if not template:
        return None
    parts = urlsplit(template.format(z=0, x=0, y=0))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
