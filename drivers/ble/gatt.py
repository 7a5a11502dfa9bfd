"""One GATT device (a wristband's or pendant's button): connect, subscribe, stay connected.

:class:`GattLink` keeps one device connected for as long as it runs: connect with a timeout,
``start_notify`` on the button characteristic, wait for the disconnection, and try again with
exponential back-off (with jitter, capped). Each notification and each change of presence goes
out as a frame (see :mod:`drivers.ble.frames`); a device that has not been connected for
``offline_after_s`` is reported ``unreachable`` once (→ ``available`` False → device_offline),
and ``connected`` again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from bleak.backends.characteristic import BleakGATTCharacteristic

from drivers.ble.config import DeviceConfig
from drivers.ble.frames import PresenceState, encode_notification, encode_presence
from drivers.ble.transport import ClientBackend, ClientFactory
from runtime.backoff import NARROW_JITTER, Backoff
from runtime.timeouts import within

__all__ = ["GattLink"]

log = structlog.get_logger(__name__)

#: How often the unreachable check runs at most (it is cheap).
_WATCH_PERIOD_S = 1.0


class GattLink:
    """Keeps one GATT device connected; puts frame payloads with ``put(payload)``."""

    def __init__(
        self,
        device: DeviceConfig,
        factory: ClientFactory,
        put: Callable[[bytes], None],
        *,
        offline_after_s: float = 120.0,
        connect_timeout_s: float = 20.0,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self._factory = factory
        self._put = put
        self._offline_after_s = offline_after_s
        self._connect_timeout_s = connect_timeout_s
        self._initial_s = reconnect_initial_s
        self._max_s = reconnect_max_s
        self._clock = clock
        self.connected = False
        #: Successful connections so far (the first one included).
        self.connects = 0
        #: Failed connection attempts so far.
        self.failures = 0
        self.last_error = ""
        self.last_seen: datetime | None = None
        self.unreachable = False
        self._down_since: float | None = None
        self._client: ClientBackend | None = None

    async def run(self) -> None:
        """Connect and reconnect forever; returns only when cancelled."""
        self._down_since = self._clock()
        watch = asyncio.create_task(self._watch(), name=f"ble-gatt-watch-{self.device.id}")
        backoff = Backoff(self._initial_s, self._max_s, jitter=NARROW_JITTER)
        client: ClientBackend | None = None
        try:
            while True:
                lost = asyncio.Event()
                client = self._factory(
                    self.device.address, _setter(lost), service=self.device.service
                )
                try:
                    await within(client.connect(), self._connect_timeout_s)
                    await within(
                        client.start_notify(self.device.characteristic, self._on_notify),
                        self._connect_timeout_s,
                    )
                except Exception as exc:  # any backend failure: log, back off, try again
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    delay = backoff.next_delay()
                    log.info(
                        "ble_gatt_connect_failed",
                        device=self.device.id,
                        error=self.last_error,
                        retry_in_s=round(delay, 2),
                    )
                    await _quietly_disconnect(client)
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                self._client = client
                self._up()
                await lost.wait()
                self._client = None
                self._down("disconnected", "connection lost")
                await _quietly_disconnect(client)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            self._client = None
            if client is not None:
                await _quietly_disconnect(client)
            self.connected = False

    async def write(self, characteristic: str, data: bytes) -> bool:
        """Write to the device if it is connected now; False when it is not, or it failed."""
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            await within(client.write(characteristic, data), self._connect_timeout_s)
        except Exception as exc:  # a write is best effort; the link loop handles the link
            log.warning("ble_gatt_write_failed", device=self.device.id, error=repr(exc)[:300])
            return False
        return True

    def _on_notify(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self.last_seen = datetime.now(UTC)
        self._put(
            encode_notification(
                address=self.device.address, characteristic=characteristic.uuid, data=bytes(data)
            )
        )

    def _up(self) -> None:
        self.connected = True
        self.connects += 1
        self.unreachable = False
        self._down_since = None
        self.last_seen = datetime.now(UTC)
        log.info("ble_gatt_connected", device=self.device.id, connects=self.connects)
        self._presence("connected", "")

    def _down(self, state: PresenceState, reason: str) -> None:
        self.connected = False
        self._down_since = self._clock()
        log.warning("ble_gatt_disconnected", device=self.device.id, reason=reason)
        self._presence(state, reason)

    async def _watch(self) -> None:
        period = min(_WATCH_PERIOD_S, self._offline_after_s / 4)
        while True:
            await asyncio.sleep(period)
            down_since = self._down_since
            if self.connected or self.unreachable or down_since is None:
                continue
            silent_s = self._clock() - down_since
            if silent_s >= self._offline_after_s:
                self.unreachable = True
                log.warning(
                    "ble_gatt_unreachable",
                    device=self.device.id,
                    silent_s=round(silent_s, 1),
                    error=self.last_error,
                )
                self._presence("unreachable", self.last_error or "not connected", silent_s)

    def _presence(self, state: PresenceState, reason: str, silent_s: float | None = None) -> None:
        self._put(
            encode_presence(
                address=self.device.address, state=state, reason=reason, silent_s=silent_s
            )
        )


def _setter(event: asyncio.Event) -> Callable[[], None]:
    """A disconnect callback that is safe from any thread (bleak's backends differ)."""
    loop = asyncio.get_running_loop()

    def fire() -> None:
        loop.call_soon_threadsafe(event.set)

    return fire


async def _quietly_disconnect(client: ClientBackend) -> None:
    # Disconnecting a half-open or already-gone connection may fail in many ways; the next
    # attempt starts from a fresh client anyway.
    with contextlib.suppress(Exception):
        await within(client.disconnect(), 5.0)
