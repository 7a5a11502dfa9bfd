"""`gatewayd status`: the running gateway's health, for a person (tables), a script (``--json``)
or a monitoring system (``--metrics``, Prometheus text exposition).

Exit codes: 0 the daemon answered; 3 the config cannot be read; 4 the daemon is unreachable.
The snapshot is parsed once (:func:`gatewayd.status.parse_status`): fields an older daemon leaves
out render as unknown, and a value that cannot be read is named on stderr and shown as unknown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Mapping
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
from gatewayd.status import LANES, GatewayStatus, parse_status

__all__ = ["format_age", "metrics_text", "render_status", "status"]

_STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "degraded": "yellow",
    "failed": "bold red",
    "stopped": "red",
}
LOW_BATTERY_PERCENT = 20.0


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
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


def format_age(value: datetime | str | None, now: datetime, *, never: str = "never") -> str:
    """``5 min ago`` for a time (or ISO text); ``never`` for null; other text as it is."""
    when = _parse_time(value)
    if when is None:
        return never if value in (None, "") else str(value)
    delta = (now - when).total_seconds()
    if delta < -5:
        return f"in {format_duration(-delta)} (clock skew?)"
    return f"{format_duration(delta)} ago"


def _dash(value: object) -> str:
    return "—" if value in (None, "") else str(value)


def _detail(value: str | dict[str, Any] | None) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"
    return _dash(value)


def render_status(
    status: GatewayStatus | Mapping[str, Any], *, now: datetime | None = None
) -> RenderableType:
    """The status snapshot as rich tables."""
    snapshot = parse_status(status).status
    now = now or datetime.now(UTC)
    parts: list[RenderableType] = [
        _header(snapshot),
        _drivers(snapshot, now),
        _devices(snapshot, now),
        _buffer_and_forwarder(snapshot, now),
        _troubles(snapshot, now),
    ]
    return Group(*parts)


def _header(status: GatewayStatus) -> Text:
    mode = status.mode or "unknown"
    mode_style = {"normal": "green", "away": "cyan", "test": "bold yellow"}.get(mode, "red")
    uptime = status.uptime_s
    header = Text.assemble(
        ("gateway ", "dim"),
        (status.gateway_id or "?", "bold"),
        ("  household ", "dim"),
        (status.household or "—", ""),
        ("  version ", "dim"),
        (status.version or "?", ""),
        ("  up ", "dim"),
        (format_duration(uptime) if uptime is not None else "?", ""),
        ("  mode ", "dim"),
        (mode.upper(), mode_style),
    )
    if mode == "test":
        header.append("  (alarms are raised as tests: no incident at dispatch)", "yellow")
    return header


def _drivers(status: GatewayStatus, now: datetime) -> Table:
    table = Table(title="Drivers", title_justify="left", expand=False)
    for column in ("driver", "type", "state", "restarts", "link down since", "detail"):
        table.add_column(column)
    for driver in status.drivers:
        state = driver.state or "?"
        down = driver.link_down_since
        table.add_row(
            _dash(driver.id),
            _dash(driver.type),
            Text(state, _STATE_STYLE.get(state, "")),
            _dash(driver.restarts),
            Text(format_age(down, now), "red") if down else Text("—"),
            _dash(driver.detail),
        )
    if not table.rows:
        table.add_row("(none)", "", "", "", "", "")
    return table


def _devices(status: GatewayStatus, now: datetime) -> Table:
    table = Table(title="Devices", title_justify="left")
    for column in ("device", "role", "room", "driver", "last seen", "battery", "signal", "online"):
        table.add_column(column, justify="right" if column in ("battery", "signal") else "left")
    for device in status.devices:
        battery, signal = device.battery, device.signal
        table.add_row(
            _dash(device.id),
            _dash(device.role),
            _dash(device.room),
            _dash(device.driver),
            format_age(device.last_seen, now),
            Text(
                "—" if battery is None else f"{battery:.0f} %",
                "bold red" if battery is not None and battery < LOW_BATTERY_PERCENT else "",
            ),
            "—" if signal is None else f"{signal:g}",
            Text("yes", "green") if device.online else Text("NO", "bold red"),
        )
    if not table.rows:
        table.add_row("(none)", "", "", "", "", "", "", "")
    return table


def _buffer_and_forwarder(status: GatewayStatus, now: datetime) -> Table:
    buffer, forwarder = status.buffer, status.forwarder
    table = Table(title="Buffer and forwarding", title_justify="left", show_header=False)
    table.add_column("what", style="dim")
    table.add_column("value")
    for lane in LANES:
        count = getattr(buffer.depth, lane)
        style = "bold red" if lane == "alarm" and count else ""
        table.add_row(f"unsent {lane}", Text(str(count), style))
    oldest = buffer.oldest_unsent_age_s
    table.add_row("oldest unsent", "—" if oldest is None else format_duration(oldest))
    evicted = buffer.evicted_total or 0
    table.add_row("evicted (disk budget)", Text(str(evicted), "bold red" if evicted else ""))
    size = buffer.size_bytes
    table.add_row("buffer size", "—" if size is None else f"{size / 1048576:.1f} MiB")
    table.add_row(
        "dispatch reachable",
        Text("yes", "green") if forwarder.reachable else Text("NO", "bold red"),
    )
    table.add_row("last successful forward", format_age(forwarder.last_success_at, now))
    failures = forwarder.consecutive_failures or 0
    table.add_row("failures in a row", Text(str(failures), "red" if failures else ""))
    table.add_row("last error", _dash(forwarder.last_error))
    dc09 = status.dc09
    if dc09 is not None:
        table.add_row("DC-09 receiver", _dash(dc09.receiver))
        table.add_row(
            "DC-09 reachable",
            Text("yes", "green") if dc09.reachable else Text("NO", "bold red"),
        )
        refused = dc09.refused_total or 0
        table.add_row(
            "DC-09 sent / refused (DUH)",
            Text(f"{dc09.sent_total or 0} / {refused}", "bold red" if refused else ""),
        )
        table.add_row("DC-09 last error", _dash(dc09.last_error))
    return table


def _troubles(status: GatewayStatus, now: datetime) -> RenderableType:
    if not status.troubles:
        return Text("No troubles.", "green")
    table = Table(title="Troubles", title_justify="left")
    for column in ("trouble", "device", "since", "detail"):
        table.add_column(column)
    for trouble in status.troubles:
        table.add_row(
            Text(trouble.kind or "?", "yellow"),
            _dash(trouble.device_id),
            format_age(trouble.since, now),
            _detail(trouble.detail),
        )
    return table


class _StatusCollector(Collector):
    def __init__(self, status: GatewayStatus | None) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("gatewayd_up", "1 if the daemon answered on its control socket")
        up.add_metric([], 0 if self._status is None else 1)
        yield up
        if self._status is not None:
            yield from _status_metrics(self._status)


def _status_metrics(status: GatewayStatus) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "gatewayd_info", "The gateway's identity", labels=["gateway_id", "version", "mode"]
    )
    info.add_metric([status.gateway_id or "", status.version or "", status.mode or ""], 1)
    yield info
    if status.uptime_s is not None:
        yield GaugeMetricFamily(
            "gatewayd_uptime_seconds", "Seconds since start", value=status.uptime_s
        )
    yield from _driver_metrics(status)
    yield from _device_metrics(status)
    yield from _buffer_metrics(status)
    yield from _forwarder_metrics(status)

    troubles = GaugeMetricFamily("gatewayd_troubles", "Open troubles by kind", labels=["kind"])
    counts: dict[str, int] = {}
    for trouble in status.troubles:
        kind = trouble.kind or "unknown"
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in sorted(counts.items()):
        troubles.add_metric([kind], count)
    yield troubles


def _driver_metrics(status: GatewayStatus) -> Iterator[Metric]:
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
    for driver in status.drivers:
        name, state = driver.id or "", driver.state or ""
        driver_up.add_metric([name, driver.type or "", state], state == "running")
        if driver.restarts is not None:
            restarts.add_metric([name], driver.restarts)
        if driver.link_down_since is not None:
            link_down.add_metric([name], driver.link_down_since.timestamp())
    yield from (driver_up, restarts, link_down)


def _device_metrics(status: GatewayStatus) -> Iterator[Metric]:
    online = GaugeMetricFamily(
        "gatewayd_device_online",
        "1 if the device is reachable",
        labels=["device", "role", "room", "driver"],
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
    for device in status.devices:
        name = device.id or ""
        labels = [name, device.role or "", device.room or "", device.driver or ""]
        online.add_metric(labels, bool(device.online))
        if device.battery is not None:
            battery.add_metric([name], device.battery)
        if device.signal is not None:
            signal.add_metric([name], device.signal)
        if device.last_seen is not None:
            seen.add_metric([name], device.last_seen.timestamp())
    yield from (online, battery, signal, seen)


def _buffer_metrics(status: GatewayStatus) -> Iterator[Metric]:
    buffer = status.buffer
    depth = GaugeMetricFamily("gatewayd_buffer_unsent", "Events not yet forwarded", labels=["lane"])
    for lane in LANES:
        depth.add_metric([lane], getattr(buffer.depth, lane))
    yield depth
    if buffer.oldest_unsent_age_s is not None:
        yield GaugeMetricFamily(
            "gatewayd_buffer_oldest_unsent_age_seconds",
            "Age of the oldest unsent event",
            value=buffer.oldest_unsent_age_s,
        )
    if buffer.evicted_total is not None:
        yield CounterMetricFamily(
            "gatewayd_buffer_evicted",
            "Telemetry events evicted to stay in the disk budget",
            value=buffer.evicted_total,
        )
    if buffer.size_bytes is not None:
        yield GaugeMetricFamily(
            "gatewayd_buffer_size_bytes", "Buffer file size", value=buffer.size_bytes
        )


def _forwarder_metrics(status: GatewayStatus) -> Iterator[Metric]:
    forwarder = status.forwarder
    yield GaugeMetricFamily(
        "gatewayd_dispatch_reachable",
        "1 if the last forward reached dispatch",
        value=1 if forwarder.reachable else 0,
    )
    if forwarder.consecutive_failures is not None:
        yield GaugeMetricFamily(
            "gatewayd_forward_consecutive_failures",
            "Failed forwards since the last success",
            value=forwarder.consecutive_failures,
        )
    if forwarder.last_success_at is not None:
        yield GaugeMetricFamily(
            "gatewayd_forward_last_success_seconds",
            "Unix time of the last successful forward",
            value=forwarder.last_success_at.timestamp(),
        )


def metrics_text(status: GatewayStatus | Mapping[str, Any] | None) -> str:
    """Prometheus text exposition of a status snapshot; ``None`` means unreachable
    (``gatewayd_up 0`` only), so a textfile collector still records the outage."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(None if status is None else parse_status(status).status))
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
        raw = asyncio.run(ControlClient(path, timeout=timeout).status())
    except ControlError as exc:
        if metrics:
            click.echo(metrics_text(None), nl=False)
        unreachable(str(exc))
    parsed = parse_status(raw)
    for problem in parsed.problems:
        click.echo(f"warning: status from gatewayd: {problem}; shown as unknown", err=True)
    if as_json:
        click.echo(json.dumps(parsed.status.to_json(), indent=2, sort_keys=True))
    elif metrics:
        click.echo(metrics_text(parsed.status), nl=False)
    else:
        Console().print(render_status(parsed.status))
