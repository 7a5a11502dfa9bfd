"""Building frames and parsers for the BLE tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from contract.wire import RawFrame, Reading
from drivers.base import DeviceSpec
from drivers.ble import BleDriver, BleParser
from drivers.ble.frames import encode_advertisement
from tests.fixtures.waiting import await_until

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def spec(device_id: str, address: str, role: str, **options: Any) -> DeviceSpec:
    return DeviceSpec(id=device_id, driver="ble", address=address, role=role, options=options)


def make_parser(*devices: DeviceSpec, **options: Any) -> BleParser:
    return BleDriver("ble", options, list(devices)).create_parser()


def adv_frame(adv: tuple[BLEDevice, AdvertisementData], *, at: float = 0.0) -> RawFrame:
    """The frame the transport makes of one advertisement, ``at`` seconds after T0."""
    device, data = adv
    return RawFrame(
        driver="ble",
        source=device.address.upper(),
        payload=encode_advertisement(
            address=device.address,
            rssi=data.rssi,
            name=data.local_name,
            service_data=data.service_data,
            manufacturer_data=data.manufacturer_data,
            service_uuids=data.service_uuids,
            tx_power=data.tx_power,
        ),
        wall_time=T0 + timedelta(seconds=at),
        mono_time=1000.0 + at,
    )


def raw_frame(payload: bytes, *, at: float = 0.0, kind: str = "data") -> RawFrame:
    return RawFrame(
        driver="ble",
        source="test",
        payload=payload,
        kind=kind,  # type: ignore[arg-type]
        wall_time=T0 + timedelta(seconds=at),
        mono_time=1000.0 + at,
    )


def props(readings: Iterable[Reading]) -> list[tuple[str, str, Any]]:
    """(device, property, value) of each reading, signal left out (it has its own tests)."""
    return [(r.device, r.property, r.value) for r in readings if r.property != "signal"]


class Pipeline:
    """Stands in for the daemon: parses every emitted frame with the driver's own parser."""

    def __init__(self, driver: BleDriver) -> None:
        self.parser = driver.create_parser()
        self.frames: list[RawFrame] = []
        self.readings: list[Reading] = []

    async def __call__(self, frame: RawFrame) -> None:
        self.frames.append(frame)
        self.readings.extend(self.parser.parse(frame))

    def seen(self, device: str, prop: str, value: Any = ...) -> list[Reading]:
        return [
            r
            for r in self.readings
            if r.device == device and r.property == prop and (value is ... or r.value == value)
        ]

    async def wait(self, condition: Callable[[], object], within: float = 5.0) -> None:
        await await_until(condition, within)


@contextlib.asynccontextmanager
async def running(driver: BleDriver) -> AsyncIterator[Pipeline]:
    pipeline = Pipeline(driver)
    task = asyncio.create_task(driver.run(pipeline))
    try:
        await pipeline.wait(lambda: any(f.kind == "link" for f in pipeline.frames) or task.done())
        yield pipeline
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
