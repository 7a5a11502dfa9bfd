"""A gateway that is told to stop, stops: even when the stop lands as a connection attempt fails.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives after the work it waits
for has finished but before it resumes (CPython gh-86296): the failure is raised instead, the link
took it for one more failed attempt and retried forever, and the daemon's shutdown hung.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from drivers.ble.config import DeviceConfig
from drivers.ble.gatt import GattLink
from drivers.ble.transport import ClientBackend
from firmware_sim.ble import SimWristband, sim_client_factory

BAND = "FF:FF:10:2A:4B:01"


def band_config() -> DeviceConfig:
    return DeviceConfig(
        id="band",
        address=BAND,
        role="wristband",
        bind_key=None,
        gatt=True,
        service="0000ffe0-0000-1000-8000-00805f9b34fb",
        characteristic="0000ffe1-0000-1000-8000-00805f9b34fb",
        press_values=None,
        offline_after_s=None,
    )


class _StoppedAsItFails:
    """The simulator's client for an absent band; the stop is scheduled as its connect fails."""

    def __init__(self, client: ClientBackend, stop: Callable[[], None]) -> None:
        self._client = client
        self._stop = stop

    async def connect(self) -> None:
        asyncio.get_running_loop().call_soon(self._stop)
        await self._client.connect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_stop_that_meets_a_failing_connect_stops_the_link() -> None:
    absent = sim_client_factory(SimWristband("FF:FF:10:2A:4B:99"))  # the band is not in range
    stops: list[int] = []

    def stop() -> None:
        stops.append(1)
        task.cancel()

    def factory(address: str, on_disconnect: Callable[[], None], *, service: str) -> Any:
        return _StoppedAsItFails(absent(address, on_disconnect, service=service), stop)

    link = GattLink(
        band_config(), factory, lambda payload: None, reconnect_initial_s=0.01, reconnect_max_s=0.02
    )
    task = asyncio.create_task(link.run())
    done, _ = await asyncio.wait({task}, timeout=3)
    if not done:
        task.cancel()  # let the test end; the assertion below names the failure
    assert task in done, f"the link kept retrying after {len(stops)} stops"
    assert task.cancelled()
    assert stops == [1]
    assert link.connected is False
