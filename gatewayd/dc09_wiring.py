"""Wiring of the DC-09 channel into the daemon: which channels the buffer keeps, and zones."""

from __future__ import annotations

from buffer.aio import AsyncEventBuffer
from contract.home import HomeConfig
from forwarder.dc09 import CHANNEL, Dc09Channel
from gatewayd.status import Dc09LinkStatus

__all__ = [
    "DISPATCH_CHANNEL",
    "buffer_channels",
    "dc09_status",
    "make_dc09_channel",
    "reports_to_dispatchd",
]

#: The dispatchd forwarder's name in the buffer's per-channel bookkeeping.
DISPATCH_CHANNEL = "dispatch"


def reports_to_dispatchd(config: HomeConfig) -> bool:
    return config.dc09 is None or config.dc09.report_to_dispatchd


def buffer_channels(config: HomeConfig) -> list[str]:
    """Every channel that must deliver an event before it leaves the buffer."""
    channels = [DISPATCH_CHANNEL] if reports_to_dispatchd(config) else []
    if config.dc09 is not None:
        channels.append(CHANNEL)
    return channels


def make_dc09_channel(config: HomeConfig, buffer: AsyncEventBuffer) -> Dc09Channel | None:
    dc09 = config.dc09
    if dc09 is None:
        return None
    # A device's zone: as configured, else its place in [[devices]] (stable while the list is).
    positions = {device.id: index + 1 for index, device in enumerate(config.devices)}
    zones = {**positions, **dc09.zones}

    def zone_of(device_id: str | None) -> int:
        return 0 if device_id is None else min(zones.get(device_id, 0), 999)

    return Dc09Channel(buffer, dc09, zone_of=zone_of)


def dc09_status(channel: Dc09Channel | None) -> Dc09LinkStatus | None:
    if channel is None:
        return None
    status = channel.status
    return Dc09LinkStatus(
        receiver=status.receiver or (channel.links[0].name if channel.links else None),
        reachable=status.reachable,
        last_success_at=status.last_success_at,
        last_error=status.last_error,
        sent_total=status.sent_total,
        refused_total=status.refused_total,
        failovers=status.failovers,
        nulls_sent=status.nulls_sent,
    )
