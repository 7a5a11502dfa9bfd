"""The BLE driver: BTHome v2 advertisements and GATT button devices.

The transport (:meth:`BleDriver.run`) starts one scanner for the advertising devices and one
:class:`~drivers.ble.gatt.GattLink` per GATT device, turns what they report into frames (only
for configured addresses: the neighbours' devices are not our business), and supervises
advertising devices that should be heard regularly (``offline_after_s``). Frames wait in a
bounded queue for ``emit``; if the pipeline stalls so long that it fills, further frames are
dropped and counted (:attr:`BleDriver.dropped_frames`) rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from contract.wire import DeviceHealth, RawFrame
from drivers.base import (
    DeviceSpec,
    Driver,
    FrameSink,
    LocalCommand,
    TransportError,
    data_frame,
)
from drivers.ble.bthome import load_bthome
from drivers.ble.config import BleOptions, DeviceConfig, parse_endpoint, resolve_devices
from drivers.ble.frames import encode_advertisement, encode_presence, normalize_address
from drivers.ble.gatt import GattLink
from drivers.ble.pairing import BlePairing
from drivers.ble.parser import BleParser
from drivers.ble.transport import (
    BleakScannerBackend,
    ClientFactory,
    ScannerBackend,
    bleak_client_factory,
)

__all__ = ["BleDriver"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Heard:
    wall: datetime
    mono: float
    rssi: int | None


class BleDriver(Driver):
    """BTHome v2 sensors and buttons by advertisement; wristbands and pendants over GATT.

    ``scanner`` and ``client_factory`` replace the radio (tests, the simulator); by default
    they follow the ``scanner`` / ``client`` options (``bleak`` or ``udp://127.0.0.1:PORT``).
    """

    type_name = "ble"
    options_model = BleOptions
    options: BleOptions

    def __init__(
        self,
        driver_id: str,
        options: dict[str, Any],
        devices: Sequence[DeviceSpec],
        *,
        scanner: ScannerBackend | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(driver_id, options, devices)
        self.configs: dict[str, DeviceConfig] = resolve_devices(
            driver_id, self.devices, self.options
        )
        self._scanner_override = scanner
        self._client_factory_override = client_factory
        self._clock = clock
        #: Frames dropped because the pipeline did not keep up (the queue was full).
        self.dropped_frames = 0
        self.links: dict[str, GattLink] = {}
        self._heard: dict[str, _Heard] = {}
        self._silent: set[str] = set()
        self._failure: BaseException | None = None

    # -- plug-in contract ----------------------------------------------------------------

    def create_parser(self) -> BleParser:
        return BleParser(
            self.id,
            self.configs,
            duplicate_window_s=self.options.duplicate_window_s,
            repeat_window_s=self.options.repeat_window_s,
            signal_delta_db=self.options.signal_delta_db,
        )

    async def run(self, emit: FrameSink) -> None:
        queue: asyncio.Queue[RawFrame | None] = asyncio.Queue(maxsize=self.options.queue_size)
        self._failure = None

        def put(payload: bytes, source: str) -> None:
            try:
                queue.put_nowait(data_frame(self.id, source, payload))
            except asyncio.QueueFull:
                self.dropped_frames += 1
                if self.dropped_frames == 1 or self.dropped_frames % 1000 == 0:
                    log.error("ble_frames_dropped", driver=self.id, dropped=self.dropped_frames)

        def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
            address = normalize_address(device.address)
            if address not in self.configs:
                return
            self._heard[address] = _Heard(datetime.now(UTC), self._clock(), adv.rssi)
            self._silent.discard(address)
            put(
                encode_advertisement(
                    address=address,
                    rssi=adv.rssi,
                    name=adv.local_name,
                    service_data=adv.service_data,
                    manufacturer_data=adv.manufacturer_data,
                    service_uuids=adv.service_uuids,
                    tx_power=adv.tx_power,
                ),
                address,
            )

        def task_done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None and self._failure is None:
                self._failure = task.exception()
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)  # wake the pump

        advertisers = [c for c in self.configs.values() if not c.gatt]
        gatt_devices = [c for c in self.configs.values() if c.gatt]
        scanner: ScannerBackend | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if advertisers:
                # BTHome's decoder is imported only by a config with advertising devices, off
                # the event loop so the other drivers keep running meanwhile.
                await asyncio.to_thread(load_bthome)
                scanner = self.make_scanner()
                try:
                    await scanner.start(on_advertisement)
                except Exception as exc:  # no adapter, no BlueZ, port taken: link down
                    scanner = None
                    await emit(self.link_frame(False, str(exc) or type(exc).__name__))
                    if isinstance(exc, TransportError):
                        raise
                    raise TransportError(f"BLE scanner did not start: {exc!r}") from exc
            await emit(self.link_frame(True))
            log.info(
                "ble_driver_started",
                driver=self.id,
                advertisers=len(advertisers),
                gatt_devices=len(gatt_devices),
                scanner=self.options.scanner,
            )
            if gatt_devices:
                factory = self._make_client_factory()
                for config in gatt_devices:
                    link = self.links[config.address] = GattLink(
                        config,
                        factory,
                        functools.partial(put, source=config.address),
                        offline_after_s=config.offline_after_s or self.options.gatt_offline_after_s,
                        connect_timeout_s=self.options.connect_timeout_s,
                        reconnect_initial_s=self.options.reconnect_initial_s,
                        reconnect_max_s=self.options.reconnect_max_s,
                        clock=self._clock,
                    )
                    tasks.append(asyncio.create_task(link.run(), name=f"ble-gatt-{config.id}"))
            supervised = [c for c in advertisers if c.offline_after_s is not None]
            if supervised:
                tasks.append(asyncio.create_task(self._supervise(supervised, put)))
            for task in tasks:
                task.add_done_callback(task_done)

            while True:
                frame = await queue.get()
                if self._failure is not None:
                    raise TransportError(f"BLE driver task failed: {self._failure!r}") from (
                        self._failure
                    )
                if frame is not None:
                    await emit(frame)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if scanner is not None:
                try:
                    await scanner.stop()
                except Exception as exc:  # stopping must not hide why we are stopping
                    log.warning("ble_scanner_stop_failed", driver=self.id, error=repr(exc))

    async def send(self, command: LocalCommand) -> bool:
        """``ack``: tell a GATT wristband or pendant that help is coming (if it can be told)."""
        if command.action != "ack":
            return False
        config = next((c for c in self.configs.values() if c.id == command.device), None)
        if config is None or config.ack_characteristic is None:
            return False
        link = self.links.get(config.address)
        if link is None:
            return False
        done = await link.write(config.ack_characteristic, config.ack_value)
        log.info("ble_ack_sent" if done else "ble_ack_not_sent", device=config.id)
        return done

    def pairing(self) -> BlePairing:
        """A scan lists the BTHome devices heard, or a MAC; see :mod:`drivers.ble.pairing`."""
        return BlePairing(self)

    # -- status --------------------------------------------------------------------------

    def device_health(self) -> list[DeviceHealth]:
        """Last seen, RSSI and reachability of every configured device, for the heartbeat."""
        out = []
        for address, config in self.configs.items():
            heard = self._heard.get(address)
            link = self.links.get(address)
            last_seen = heard.wall if heard else None
            if link is not None:
                if link.last_seen is not None and (last_seen is None or link.last_seen > last_seen):
                    last_seen = link.last_seen
                online = link.connected or not link.unreachable
            else:
                online = address not in self._silent
            out.append(
                DeviceHealth(
                    id=config.id,
                    last_seen=last_seen,
                    signal=float(heard.rssi) if heard and heard.rssi is not None else None,
                    online=online,
                )
            )
        return out

    def status(self) -> dict[str, Any]:
        """The driver's own view, for diagnostics: per device, and the frame counters."""
        devices: dict[str, Any] = {}
        for health in self.device_health():
            config = next(c for c in self.configs.values() if c.id == health.id)
            entry: dict[str, Any] = {
                "address": config.address,
                "transport": "gatt" if config.gatt else "advertisement",
                "last_seen": health.last_seen.isoformat() if health.last_seen else None,
                "rssi": health.signal,
                "online": health.online,
            }
            link = self.links.get(config.address)
            if link is not None:
                entry.update(
                    connected=link.connected,
                    connects=link.connects,
                    failures=link.failures,
                    last_error=link.last_error,
                )
            devices[health.id] = entry
        return {"dropped_frames": self.dropped_frames, "devices": devices}

    # -- pieces --------------------------------------------------------------------------

    def make_scanner(self) -> ScannerBackend:
        """The scanner the options name (or the one given), for the transport and for pairing."""
        if self._scanner_override is not None:
            return self._scanner_override
        endpoint = parse_endpoint(self.options.scanner, what="scanner")
        if endpoint is None:
            return BleakScannerBackend(
                scanning_mode=self.options.scanning_mode, adapter=self.options.adapter
            )
        from drivers.ble.loopback import UdpScannerBackend  # only the loopback link needs it

        return UdpScannerBackend(endpoint.host, endpoint.port)

    def _make_client_factory(self) -> ClientFactory:
        if self._client_factory_override is not None:
            return self._client_factory_override
        endpoint = parse_endpoint(self.options.client, what="client")
        if endpoint is None:
            return bleak_client_factory(
                adapter=self.options.adapter, timeout=self.options.connect_timeout_s
            )
        from drivers.ble.loopback import udp_client_factory

        return udp_client_factory(endpoint.host, endpoint.port)

    async def _supervise(
        self, devices: list[DeviceConfig], put: Callable[[bytes, str], None]
    ) -> None:
        started = self._clock()
        shortest = min(c.offline_after_s or 60.0 for c in devices)
        period = max(0.05, min(5.0, shortest / 4))
        while True:
            await asyncio.sleep(period)
            now = self._clock()
            for config in devices:
                if config.address in self._silent or config.offline_after_s is None:
                    continue
                heard = self._heard.get(config.address)
                silent_s = now - (heard.mono if heard else started)
                if silent_s >= config.offline_after_s:
                    self._silent.add(config.address)
                    log.warning("ble_device_silent", device=config.id, silent_s=round(silent_s))
                    put(
                        encode_presence(
                            address=config.address,
                            state="silent",
                            reason="not heard",
                            silent_s=silent_s,
                        ),
                        config.address,
                    )
