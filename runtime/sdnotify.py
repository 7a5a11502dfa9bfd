"""systemd's notify protocol, spoken directly: ``READY=1``, ``WATCHDOG=1``, ``STATUS=...``.

A datagram of ``KEY=VALUE`` lines sent to the ``AF_UNIX`` socket named in ``$NOTIFY_SOCKET``
(a leading ``@`` names the abstract namespace). Without ``$NOTIFY_SOCKET`` (not under systemd,
or in tests) every call is a no-op. A failure to notify never raises: the gateway's job is the
alarms, and systemd's watchdog will notice if the notifications stop mattering.

The watchdog is not a blind timer: :func:`run_watchdog` pings only while the daemon's own check
says the pipeline is moving, so a wedged pipeline gets the process restarted::

    interval = watchdog_interval()
    if interval is not None:
        tasks.create_task(run_watchdog(pipeline.is_healthy, interval))
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Final

import structlog

__all__ = [
    "notify",
    "ready",
    "reloading",
    "run_watchdog",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

log = structlog.get_logger(__name__)

#: Upper bound of a STATUS= text: journal lines and `systemctl status` show it on one line.
MAX_STATUS_CHARS: Final = 200


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        # Abstract namespace: the name starts with a NUL byte instead of '@'.
        return "\0" + address[1:]
    return address


def _one_line(value: object) -> str:
    # A newline in a value would start a new KEY=VALUE assignment of systemd's protocol.
    return str(value).replace("\n", " ").replace("\r", " ")


def notify(**fields: object) -> bool:
    """Send ``KEY=VALUE`` assignments to systemd, e.g. ``notify(READY=1, STATUS="up")``.

    Returns True if the datagram was sent, False when not under systemd or when sending failed
    (which is logged, never raised).
    """
    address = _address()
    if address is None or not fields:
        return False
    message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never stall the event loop on a busy systemd: a full socket is a logged failure.
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode("utf-8", "replace"))
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc), fields=sorted(fields))
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the daemon is up (buffer open, drivers started)."""
    if status is None:
        return notify(READY=1)
    return notify(READY=1, STATUS=status[:MAX_STATUS_CHARS])


def stopping(status: str | None = None) -> bool:
    """Tell systemd the daemon is shutting down on purpose (SIGTERM)."""
    if status is None:
        return notify(STOPPING=1)
    return notify(STOPPING=1, STATUS=status[:MAX_STATUS_CHARS])


def reloading() -> bool:
    """Tell systemd a reload (SIGHUP) has begun; send :func:`ready` when it is done.

    ``MONOTONIC_USEC`` lets systemd match the reload to this message (``Type=notify-reload``).
    """
    return notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)


def status(text: str) -> bool:
    """A one-line status `systemctl status gatewayd` shows, e.g. ``3 drivers up, 0 unsent``."""
    return notify(STATUS=text[:MAX_STATUS_CHARS])


def watchdog_ping() -> bool:
    return notify(WATCHDOG=1)


def watchdog_interval() -> float | None:
    """The watchdog timeout systemd expects pings within, in seconds; None if not asked for.

    systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) for the service's main process; a
    child that inherited the environment must not ping in its parent's name.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("sd_watchdog_usec_invalid", value=usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000


async def run_watchdog(is_healthy: Callable[[], bool], interval: float) -> None:
    """Ping ``WATCHDOG=1`` every half ``interval`` while ``is_healthy()`` is True; forever.

    When the check fails (or raises) the ping is withheld and that is logged once per episode,
    with how long it has been failing; systemd then restarts the service after ``interval``.
    Cancel the task to stop it.
    """
    period = max(interval / 2, 0.01)
    failing_since: float | None = None
    while True:
        try:
            healthy = bool(is_healthy())
            reason = None
        except Exception as exc:  # a broken check must not kill the loop: withhold instead
            healthy = False
            reason = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if healthy:
            if failing_since is not None:
                log.info("sd_watchdog_resumed", unhealthy_for_s=round(now - failing_since, 1))
                failing_since = None
            watchdog_ping()
        elif failing_since is None:
            failing_since = now
            log.error(
                "sd_watchdog_withheld",
                reason=reason or "health check failed",
                restart_after_s=interval,
            )
        await asyncio.sleep(period)
