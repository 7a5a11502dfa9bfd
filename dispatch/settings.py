"""The server's tunable settings, with the defaults the service is specified with."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.errors import ConfigError

__all__ = ["Settings"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    #: An alarm joins the household's open incident of the same kind opened within this window.
    incident_window_s: float = 30 * 60
    #: An acknowledged incident with no further action for this long returns to the queue.
    ack_timeout_s: float = 5 * 60
    #: Service levels, measured from the moment dispatch opened the incident.
    sla_ack_s: float = 60
    sla_callback_s: float = 5 * 60
    sla_on_scene_s: float = 18 * 60
    #: A gateway is offline after missing this many of its heartbeat intervals.
    heartbeat_misses: float = 3
    #: How often the supervisor looks at gateways, timers and deadlines.
    supervise_every_s: float = 1.0
    session_ttl_s: float = 12 * 3600
    #: How far back a heartbeat reply reports acknowledged alarms.
    ack_report_window_s: float = 3600
    #: Request body limits.
    max_ingest_bytes: int = 2 * 1024 * 1024
    max_body_bytes: int = 256 * 1024
    #: On SQLite (no NOTIFY) the stream polls the changes table this often.
    stream_poll_s: float = 0.25
    stream_keepalive_s: float = 15.0
    #: How long the live stream can be resumed from (older changes are purged).
    change_retention_s: float = 7 * 86400
    #: The centre's time zone (IANA name) for the console's clocks; None: the browser's.
    timezone: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "incident_window_s",
            "ack_timeout_s",
            "sla_ack_s",
            "sla_callback_s",
            "sla_on_scene_s",
            "heartbeat_misses",
            "supervise_every_s",
            "session_ttl_s",
            "ack_report_window_s",
            "stream_poll_s",
            "stream_keepalive_s",
            "change_retention_s",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"unknown time zone {self.timezone!r}") from exc
        if self.max_ingest_bytes < 1024 or self.max_body_bytes < 1024:
            raise ConfigError("body limits must be at least 1024 bytes")
