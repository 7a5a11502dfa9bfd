"""`gatewayd status`: the running gateway's health, for a person (tables), a script (``--json``)
or a monitoring system (``--metrics``, Prometheus text exposition).

Exit codes: 0 the daemon answered; 3 the config cannot be read; 4 the daemon is unreachable.
The renderer tolerates missing or extra fields, so a newer CLI can read an older daemon.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gatewayd.commands.daemon_options import (
    config_option,
    resolve_socket,
    socket_option,
    unreachable,
)
from gatewayd.control import ControlClient, ControlError

__all__ = ["format_age", "metrics_text", "one_line_summary", "render_status", "status"]

LANES = ("alarm", "trouble", "telemetry")
_STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "degraded": "yellow",
    "failed": "bold red",
    "stopped": "red",
}
LOW_BATTERY_PERCENT = 20.0


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h 12 min``, ``2 d 4 h``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_age(value: Any, now: datetime, *, never: str = "never") -> str:
    """``5 min ago`` for an ISO time; ``never`` for null; the raw text if it is not a time."""
    when = _parse_time(value)
    if when is None:
        return never if value in (None, "") else str(value)
    delta = (now - when).total_seconds()
    if delta < -5:
        return f"in {format_duration(-delta)} (clock skew?)"
    return f"{format_duration(delta)} ago"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dash(value: Any) -> str:
    return "—" if value in (None, "") else str(value)


def _list(status: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = status.get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _dict(status: dict[str, Any], key: str) -> dict[str, Any]:
    value = status.get(key)
    return value if isinstance(value, dict) else {}


def render_status(status: dict[str, Any], *, now: datetime | None = None) -> RenderableType:
    """The status snapshot as rich tables."""
    now = now or datetime.now(UTC)
    parts: list[RenderableType] = [_header(status), _drivers(status, now), _devices(status, now)]
    parts += [_buffer_and_forwarder(status, now), _troubles(status, now)]
    return Group(*parts)


def _header(status: dict[str, Any]) -> Text:
    mode = str(status.get("mode") or "unknown")
    mode_style = {"normal": "green", "away": "cyan", "test": "bold yellow"}.get(mode, "red")
    uptime = _number(status.get("uptime_s"))
    header = Text.assemble(
        ("gateway ", "dim"),
        (str(status.get("gateway_id") or "?"), "bold"),
        ("  household ", "dim"),
        (str(status.get("household") or "—"), ""),
        ("  version ", "dim"),
        (str(status.get("version") or "?"), ""),
        ("  up ", "dim"),
        (format_duration(uptime) if uptime is not None else "?", ""),
        ("  mode ", "dim"),
        (mode.upper(), mode_style),
    )
    if mode == "test":
        header.append("  (alarms are raised as tests: no incident at dispatch)", "yellow")
    return header


def _drivers(status: dict[str, Any], now: datetime) -> Table:
    table = Table(title="Drivers", title_justify="left", expand=False)
    for column in ("driver", "type", "state", "restarts", "link down since", "detail"):
        table.add_column(column)
    for driver in _list(status, "drivers"):
        state = str(driver.get("state") or "?")
        down = driver.get("link_down_since")
        table.add_row(
            _dash(driver.get("id")),
            _dash(driver.get("type")),
            Text(state, _STATE_STYLE.get(state, "")),
            _dash(driver.get("restarts")),
            Text(format_age(down, now), "red") if down else Text("—"),
            _dash(driver.get("detail")),
        )
    if not table.rows:
        table.add_row("(none)", "", "", "", "", "")
    return table


def _devices(status: dict[str, Any], now: datetime) -> Table:
    table = Table(title="Devices", title_justify="left")
    for column in ("device", "role", "room", "driver", "last seen", "battery", "signal", "online"):
        table.add_column(column, justify="right" if column in ("battery", "signal") else "left")
    for device in _list(status, "devices"):
        battery = _number(device.get("battery"))
        signal = _number(device.get("signal"))
        online = device.get("online")
        table.add_row(
            _dash(device.get("id")),
            _dash(device.get("role")),
            _dash(device.get("room")),
            _dash(device.get("driver")),
            format_age(device.get("last_seen"), now),
            Text(
                "—" if battery is None else f"{battery:.0f} %",
                "bold red" if battery is not None and battery < LOW_BATTERY_PERCENT else "",
            ),
            "—" if signal is None else f"{signal:g}",
            Text("yes", "green") if online else Text("NO", "bold red"),
        )
    if not table.rows:
        table.add_row("(none)", "", "", "", "", "", "", "")
    return table


def _buffer_and_forwarder(status: dict[str, Any], now: datetime) -> Table:
    buffer = _dict(status, "buffer")
    depth = _dict(buffer, "depth")
    forwarder = _dict(status, "forwarder")
    table = Table(title="Buffer and forwarding", title_justify="left", show_header=False)
    table.add_column("what", style="dim")
    table.add_column("value")
    for lane in LANES:
        count = depth.get(lane, 0)
        style = "bold red" if lane == "alarm" and count else ""
        table.add_row(f"unsent {lane}", Text(str(count), style))
    oldest = _number(buffer.get("oldest_unsent_age_s"))
    table.add_row("oldest unsent", "—" if oldest is None else format_duration(oldest))
    evicted = buffer.get("evicted_total", 0)
    table.add_row("evicted (disk budget)", Text(str(evicted), "bold red" if evicted else ""))
    size = _number(buffer.get("size_bytes"))
    table.add_row("buffer size", "—" if size is None else f"{size / 1048576:.1f} MiB")
    reachable = forwarder.get("reachable")
    table.add_row(
        "dispatch reachable",
        Text("yes", "green") if reachable else Text("NO", "bold red"),
    )
    table.add_row("last successful forward", format_age(forwarder.get("last_success_at"), now))
    failures = forwarder.get("consecutive_failures", 0)
    table.add_row("failures in a row", Text(str(failures), "red" if failures else ""))
    table.add_row("last error", _dash(forwarder.get("last_error")))
    return table


def _troubles(status: dict[str, Any], now: datetime) -> RenderableType:
    troubles = _list(status, "troubles")
    if not troubles:
        return Text("No troubles.", "green")
    table = Table(title="Troubles", title_justify="left")
    for column in ("trouble", "device", "since", "detail"):
        table.add_column(column)
    for trouble in troubles:
        table.add_row(
            Text(str(trouble.get("kind") or "?"), "yellow"),
            _dash(trouble.get("device_id")),
            format_age(trouble.get("since"), now),
            _dash(trouble.get("detail")),
        )
    return table


def one_line_summary(status: dict[str, Any]) -> str:
    """A status snapshot in one line, for systemd's ``STATUS=`` (`systemctl status gatewayd`).

    ``mode normal, drivers 1/2 up, devices 2/3 online, unsent 1 alarm 255 total, dispatch down``
    """
    drivers = _list(status, "drivers")
    devices = _list(status, "devices")
    depth = _dict(_dict(status, "buffer"), "depth")
    unsent = sum(int(n) for n in (_number(v) for v in depth.values()) if n is not None)
    alarms = _number(depth.get("alarm")) or 0
    reachable = _dict(status, "forwarder").get("reachable")
    troubles = len(_list(status, "troubles"))
    parts = [
        f"mode {status.get('mode') or '?'}",
        f"drivers {sum(d.get('state') == 'running' for d in drivers)}/{len(drivers)} up",
        f"devices {sum(bool(d.get('online')) for d in devices)}/{len(devices)} online",
        f"unsent {alarms:.0f} alarm {unsent} total",
        "dispatch reachable" if reachable else "dispatch down",
    ]
    if troubles:
        parts.append(f"{troubles} trouble{'s' if troubles != 1 else ''}")
    return ", ".join(parts)


class _StatusCollector(Collector):
    def __init__(self, status: dict[str, Any] | None) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("gatewayd_up", "1 if the daemon answered on its control socket")
        up.add_metric([], 0 if self._status is None else 1)
        yield up
        if self._status is not None:
            yield from _status_metrics(self._status)


def _status_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "gatewayd_info", "The gateway's identity", labels=["gateway_id", "version", "mode"]
    )
    info.add_metric(
        [str(status.get(k) or "") for k in ("gateway_id", "version", "mode")],
        1,
    )
    yield info
    if (uptime := _number(status.get("uptime_s"))) is not None:
        yield GaugeMetricFamily("gatewayd_uptime_seconds", "Seconds since start", value=uptime)

    driver_up = GaugeMetricFamily(
        "gatewayd_driver_up", "1 if the driver is running", labels=["driver", "type", "state"]
    )
    restarts = CounterMetricFamily(
        "gatewayd_driver_restarts", "Restarts of the driver since start", labels=["driver"]
    )
    link_down = GaugeMetricFamily(
        "gatewayd_driver_link_down_since_seconds",
        "Unix time the driver's link went down (absent while up)",
        labels=["driver"],
    )
    for driver in _list(status, "drivers"):
        name = str(driver.get("id") or "")
        state = str(driver.get("state") or "")
        driver_up.add_metric([name, str(driver.get("type") or ""), state], state == "running")
        if (count := _number(driver.get("restarts"))) is not None:
            restarts.add_metric([name], count)
        if (down := _parse_time(driver.get("link_down_since"))) is not None:
            link_down.add_metric([name], down.timestamp())
    yield from (driver_up, restarts, link_down)

    labels = ["device", "role", "room", "driver"]
    online = GaugeMetricFamily(
        "gatewayd_device_online", "1 if the device is reachable", labels=labels
    )
    battery = GaugeMetricFamily(
        "gatewayd_device_battery_percent", "Battery level", labels=["device"]
    )
    signal = GaugeMetricFamily(
        "gatewayd_device_signal", "Link quality or RSSI as the driver reports it", labels=["device"]
    )
    seen = GaugeMetricFamily(
        "gatewayd_device_last_seen_seconds",
        "Unix time the device was last heard",
        labels=["device"],
    )
    for device in _list(status, "devices"):
        name = str(device.get("id") or "")
        online.add_metric(
            [str(device.get(k) or "") for k in ("id", "role", "room", "driver")],
            bool(device.get("online")),
        )
        if (value := _number(device.get("battery"))) is not None:
            battery.add_metric([name], value)
        if (value := _number(device.get("signal"))) is not None:
            signal.add_metric([name], value)
        if (when := _parse_time(device.get("last_seen"))) is not None:
            seen.add_metric([name], when.timestamp())
    yield from (online, battery, signal, seen)

    buffer = _dict(status, "buffer")
    depth = GaugeMetricFamily("gatewayd_buffer_unsent", "Events not yet forwarded", labels=["lane"])
    lanes = _dict(buffer, "depth")
    for lane in LANES:
        depth.add_metric([lane], _number(lanes.get(lane)) or 0.0)
    yield depth
    if (oldest := _number(buffer.get("oldest_unsent_age_s"))) is not None:
        yield GaugeMetricFamily(
            "gatewayd_buffer_oldest_unsent_age_seconds",
            "Age of the oldest unsent event",
            value=oldest,
        )
    if (evicted := _number(buffer.get("evicted_total"))) is not None:
        yield CounterMetricFamily(
            "gatewayd_buffer_evicted",
            "Telemetry events evicted to stay in the disk budget",
            value=evicted,
        )
    if (size := _number(buffer.get("size_bytes"))) is not None:
        yield GaugeMetricFamily("gatewayd_buffer_size_bytes", "Buffer file size", value=size)

    forwarder = _dict(status, "forwarder")
    yield GaugeMetricFamily(
        "gatewayd_dispatch_reachable",
        "1 if the last forward reached dispatch",
        value=1 if forwarder.get("reachable") else 0,
    )
    if (failures := _number(forwarder.get("consecutive_failures"))) is not None:
        yield GaugeMetricFamily(
            "gatewayd_forward_consecutive_failures",
            "Failed forwards since the last success",
            value=failures,
        )
    if (last := _parse_time(forwarder.get("last_success_at"))) is not None:
        yield GaugeMetricFamily(
            "gatewayd_forward_last_success_seconds",
            "Unix time of the last successful forward",
            value=last.timestamp(),
        )

    troubles = GaugeMetricFamily("gatewayd_troubles", "Open troubles by kind", labels=["kind"])
    counts: dict[str, int] = {}
    for trouble in _list(status, "troubles"):
        kind = str(trouble.get("kind") or "unknown")
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in sorted(counts.items()):
        troubles.add_metric([kind], count)
    yield troubles


def metrics_text(status: dict[str, Any] | None) -> str:
    """Prometheus text exposition of a status snapshot; ``None`` means unreachable
    (``gatewayd_up 0`` only), so a textfile collector still records the outage."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry).decode()


@click.command("status")
@config_option
@socket_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON, for scripts.")
@click.option(
    "--metrics", is_flag=True, help="Print Prometheus text exposition (node_exporter textfile)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the daemon.",
)
def status(
    config_path: Path, socket_path: Path | None, as_json: bool, metrics: bool, timeout: float
) -> None:
    """Show the running gateway's drivers, devices, buffer, forwarding and troubles.

    Exit codes: 0 answered, 3 config unreadable, 4 daemon unreachable.
    """
    if as_json and metrics:
        raise click.UsageError("--json and --metrics are alternatives; give one")
    path = resolve_socket(config_path, socket_path)
    try:
        snapshot = asyncio.run(ControlClient(path, timeout=timeout).status())
    except ControlError as exc:
        if metrics:
            click.echo(metrics_text(None), nl=False)
        unreachable(str(exc))
    if as_json:
        click.echo(json.dumps(snapshot, indent=2, sort_keys=True))
    elif metrics:
        click.echo(metrics_text(snapshot), nl=False)
    else:
        Console().print(render_status(snapshot))
