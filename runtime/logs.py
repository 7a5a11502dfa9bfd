"""Logging: one structlog processor pipeline for our own loggers and the stdlib ones.

JSON lines when stdout is not a terminal (journald keeps them), colours on a terminal. Context is
bound (``gateway``, ``device``, ``event_id``) rather than formatted into messages.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

import structlog

__all__ = ["LOG_LEVELS", "configure_logging", "redact_secrets"]

#: The levels a command line or a setting may name.
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")

#: Loggers bind their configuration on first use (fast). A test process that configures
#: logging more than once turns this off, so no logger keeps a configuration from before.
CACHE_LOGGERS = True

_SECRET_KEYS = frozenset({"password", "secret", "token", "credential", "key", "code", "bind_key"})


def redact_secrets(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Never write a secret to the log, whatever a caller bound."""
    for name in list(event_dict):
        if name in _SECRET_KEYS or name.endswith(("_password", "_secret", "_token")):
            event_dict[name] = "***"
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once for the whole process."""
    if json is None:
        json = not sys.stdout.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
        # No local variables in tracebacks: they can hold request bodies, cookies and secrets.
        shared_tail: list[structlog.types.Processor] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        # rich is absent from the daemon's process (gatewayd.cli.DAEMON_SKIPS): plain tracebacks.
        tracebacks: structlog.typing.ExceptionRenderer = (
            structlog.dev.RichTracebackFormatter(show_locals=False)
            if getattr(structlog.dev, "rich", None) is not None
            else structlog.dev.plain_traceback
        )
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=tracebacks)
        shared_tail = []
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *shared_tail,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Third-party libraries are chatty at INFO; their warnings still come through.
    for noisy in ("aiomqtt", "pymodbus", "bleak", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
