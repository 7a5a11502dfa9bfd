"""The Zigbee2MQTT driver: an MQTT subscription to the bridge's base topic, and its outputs.

:meth:`Zigbee2MqttDriver.run` keeps one connection to the broker. Losing the broker is a
trouble, not a crash: the loop reconnects with exponential back-off and jitter, subscribes
again (QoS 1), and reports the outage as ``link`` frames (down, then up). How long the broker
was gone is logged and kept in :meth:`Zigbee2MqttDriver.status`.

At every (re)connect the driver first subscribes to ``BASE/bridge/devices`` and waits briefly
for the retained inventory, then to ``BASE/#``: devices configured by IEEE address then resolve
from their first message. Every message is passed on as a ``data`` frame with MQTT's retain
flag in ``RawFrame.retained``; the parser decides what is news.

The session is persistent, under the configured ``client_id`` or one derived from the gateway
and driver ids (:meth:`Zigbee2MqttDriver.bind`), so what is published while the gateway restarts
waits at the broker. A QoS 1 message is acknowledged (PUBACK) only once ``emit``'s future says
its frame is durable (:mod:`drivers.zigbee2mqtt.acks`): a gateway killed before its commit gets
the message again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiomqtt
import structlog

from contract.wire import MAX_FRAME_BYTES
from drivers.base import (
    DeviceSpec,
    Driver,
    DriverConfigError,
    FrameParser,
    FrameSink,
    LocalCommand,
    data_frame,
)
from drivers.zigbee2mqtt.acks import ManualAcks
from drivers.zigbee2mqtt.bridge import (
    IEEE_ADDRESS,
    BridgeDevice,
    BridgeMessageError,
    decode_json,
    parse_devices,
    settable_properties,
)
from drivers.zigbee2mqtt.fastread import messages
from drivers.zigbee2mqtt.options import Zigbee2MqttOptions, make_client, session_client_id
from drivers.zigbee2mqtt.oversize import shrink_state
from drivers.zigbee2mqtt.pairing import Zigbee2MqttPairing
from drivers.zigbee2mqtt.parser import Zigbee2MqttParser
from runtime.backoff import EQUAL_JITTER, Backoff

__all__ = ["Zigbee2MqttDriver", "siren_payload"]

log = structlog.get_logger(__name__)

_PUBLISH_TIMEOUT = 5.0


def siren_payload(on: bool, *, duration: int, device: BridgeDevice | None = None) -> dict[str, Any]:
    """The ``/set`` payload that sounds or stops a Zigbee2MQTT warning device.

    Zigbee2MQTT's ``warning`` composite: ``mode`` (``emergency``/``stop``), ``level``,
    ``strobe``, ``duration`` (seconds). Features a device's exposes leave out (the HS2WD-E
    has no ``level``) are left out too; with no inventory, the full form is sent.
    """
    warning: dict[str, Any] = {
        "mode": "emergency" if on else "stop",
        "level": "very_high",
        "strobe": on,
        "duration": duration if on else 0,
    }
    features = _warning_features(device) if device is not None else None
    if features:
        warning = {k: v for k, v in warning.items() if k in features}
    return {"warning": warning}


def _warning_features(device: BridgeDevice) -> set[str]:
    for expose in device.exposes:
        if expose.get("property") == "warning" and isinstance(expose.get("features"), list):
            return {
                f["property"]
                for f in expose["features"]
                if isinstance(f, dict) and isinstance(f.get("property"), str)
            }
    return set()


class Zigbee2MqttDriver(Driver):
    """Zigbee devices through a Zigbee2MQTT bridge's MQTT broker."""

    type_name: ClassVar[str] = "zigbee2mqtt"
    options_model = Zigbee2MqttOptions
    example_table = (
        '[[drivers]]\nid = "zigbee"\ntype = "zigbee2mqtt"\nurl = "mqtt://127.0.0.1:1883"'
    )

    @classmethod
    def initial_options(cls, *, gateway_id: str, driver_id: str) -> dict[str, tuple[Any, str]]:
        why = "The broker keeps this session's alarms while the gateway restarts: keep it unique."
        return {"client_id": (session_client_id(gateway_id, driver_id), why)}

    def __init__(self, driver_id: str, options: dict[str, Any], devices: Sequence[DeviceSpec]):
        super().__init__(driver_id, options, devices)
        assert isinstance(self.options, Zigbee2MqttOptions)
        self.opts: Zigbee2MqttOptions = self.options
        self.broker = self.opts.broker()
        self.base_topic = self.opts.base_topic
        #: The bridge's inventory by IEEE address, as last seen on ``bridge/devices``.
        self.inventory: dict[str, BridgeDevice] = {}
        #: The MQTT session: built alone (tests, tools) a driver is persistent only with a
        #: configured client_id; :meth:`bind` makes it persistent always, unless told otherwise.
        self.client_id: str | None = self.opts.client_id
        self.persistent = self.opts.client_id is not None and not self.opts.clean_session
        self.observer = False
        self._acks: ManualAcks | None = None
        self._client: aiomqtt.Client | None = None
        self._connected = False
        self._connected_since: float | None = None
        self._down_since: float | None = None
        self._down_since_wall: datetime | None = None
        self._last_outage_s: float | None = None
        self._outages = 0
        self._last_error = ""
        self._up_event = asyncio.Event()

    def create_parser(self) -> FrameParser:
        return Zigbee2MqttParser(
            driver_id=self.id,
            base_topic=self.base_topic,
            devices=self.devices,
            signal_delta=self.opts.signal_delta,
            voltage_delta=self.opts.voltage_delta,
        )

    def bind(self, gateway_id: str, *, observer: bool = False) -> None:
        super().bind(gateway_id, observer=observer)
        self.observer = observer
        if observer:
            # A random id and a clean session: never the daemon's session, nothing left behind.
            self.client_id, self.persistent = None, False
        elif self.opts.clean_session:
            self.client_id, self.persistent = self.opts.client_id, False
        elif self.opts.client_id is None and not gateway_id:
            raise DriverConfigError(
                f"driver {self.id!r}: no MQTT client_id for a persistent session; set client_id, "
                f"or clean_session = true to lose what is published while the gateway is away"
            )
        else:
            self.client_id = self.opts.client_id or session_client_id(gateway_id, self.id)
            self.persistent = True

    # -- status --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        """The link's state for status pages and heartbeats (no credentials)."""
        now = time.monotonic()
        return {
            "driver": self.id,
            "broker": self.broker.url,
            "base_topic": self.base_topic,
            "connected": self._connected,
            "connected_for_s": round(now - self._connected_since, 3)
            if self._connected and self._connected_since is not None
            else None,
            "down_for_s": round(now - self._down_since, 3)
            if not self._connected and self._down_since is not None
            else None,
            "down_since": self._down_since_wall.isoformat() if self._down_since_wall else None,
            "last_outage_s": self._last_outage_s,
            "outages": self._outages,
            "last_error": self._last_error,
            "inventory": len(self.inventory),
            "client_id": self.client_id,
            "persistent_session": self.persistent,
            "unacked": self._acks.pending if self._acks is not None else 0,
        }

    async def wait_connected(self) -> None:
        """Wait until the subscription is in place (bound it with ``asyncio.timeout``)."""
        await self._up_event.wait()

    # -- transport -----------------------------------------------------------------------

    async def run(self, emit: FrameSink) -> None:
        client = make_client(
            self.broker,
            identifier=self.client_id,
            persistent=self.persistent,
            keepalive=self.opts.keepalive,
            mqtt_version=self.opts.mqtt_version,
            receive_maximum=self.opts.receive_maximum,
        )
        acks = self._acks = ManualAcks(client)
        if self.opts.clean_session and not self.observer:
            log.warning(
                "zigbee_clean_session",
                driver=self.id,
                detail="what is published while the gateway is away is lost",
            )
        backoff = Backoff(self.opts.reconnect_min, self.opts.reconnect_max, jitter=EQUAL_JITTER)
        reported_down = False
        try:
            while True:
                try:
                    async with client:
                        await self._subscribe(client, emit)
                        self._client = client
                        self._went_up()
                        reported_down = False
                        backoff.reset()
                        await emit(self.link_frame(True, source=self.broker.url))
                        async for message in messages(client):
                            await self._received(message, emit)
                except aiomqtt.MqttError as exc:
                    self._client = None
                    self._last_error = str(exc)[:200]
                    leftovers = acks.connection_lost()
                    if not self.persistent:
                        # Received, never acknowledged, and no session to send them again.
                        for message in leftovers:
                            await self._received(message, emit)
                    if not reported_down:
                        reported_down = True
                        self._went_down(self._last_error)
                        await emit(self.link_frame(False, self._last_error, source=self.broker.url))
                    delay = backoff.next_delay()
                    log.info(
                        "zigbee_broker_retry",
                        driver=self.id,
                        broker=self.broker.url,
                        in_s=round(delay, 2),
                        error=self._last_error,
                    )
                    await asyncio.sleep(delay)
        finally:
            self._client = None
            self._acks = None
            self._connected = False
            self._up_event.clear()

    async def _subscribe(self, client: aiomqtt.Client, emit: FrameSink) -> None:
        inventory_topic = f"{self.base_topic}/bridge/devices"
        if self.opts.inventory_wait > 0:
            await client.subscribe(inventory_topic, qos=1)
            await self._await_inventory(client, emit, inventory_topic)
        await client.subscribe(f"{self.base_topic}/#", qos=1)
        if self.opts.inventory_wait > 0:
            await client.unsubscribe(inventory_topic)

    async def _await_inventory(
        self, client: aiomqtt.Client, emit: FrameSink, inventory_topic: str
    ) -> None:
        """Pass on what arrives until the inventory did, or ``inventory_wait`` is over.

        This polls rather than cancelling a pending receive at the deadline: aiomqtt drops a
        message that arrives just as its receive is cancelled, and a persistent session may be
        delivering a queued SOS press right now.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.inventory_wait
        messages = client.messages
        while loop.time() < deadline:
            if len(messages) == 0:
                await asyncio.sleep(0.02)
                continue
            message = await anext(messages)
            await self._received(message, emit)
            if str(message.topic) == inventory_topic:
                return

    async def _received(self, message: aiomqtt.Message, emit: FrameSink) -> None:
        """Pass the message on; acknowledge it once the pipeline says its frame is durable."""
        acks = self._acks
        receipt = acks.received(message) if acks is not None else None
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if topic == f"{self.base_topic}/bridge/devices":
            self._update_inventory(payload)
        if len(payload) > MAX_FRAME_BYTES:
            payload = self._shrunk(topic, payload)
        try:
            frame = data_frame(self.id, topic[:512], payload, retained=bool(message.retain))
        except ValueError:
            log.warning("zigbee_frame_unusable", driver=self.id, topic=topic[:200])
            if acks is not None:
                acks.durable(receipt)
            return
        durable = await emit(frame)
        if acks is None or receipt is None:
            return  # QoS 0: nothing to acknowledge
        if durable is None:  # a sink that keeps nothing: nothing to wait for
            acks.durable(receipt)
        else:
            durable.add_done_callback(lambda _: acks.durable(receipt))

    def _shrunk(self, topic: str, payload: bytes) -> bytes:
        """An oversized state without its largest fields, so an alarm in it is never dropped
        for its size; unchanged if it cannot be shrunk (then refused as unusable)."""
        shrunk = shrink_state(payload, MAX_FRAME_BYTES)
        if shrunk is None:
            return payload
        kept, dropped = shrunk
        log.warning(
            "zigbee_oversized_fields_dropped",
            driver=self.id,
            topic=topic[:200],
            size=len(payload),
            dropped=[name[:64] for name in dropped[:10]],
        )
        return kept

    def _update_inventory(self, payload: bytes) -> None:
        try:
            devices, _ = parse_devices(decode_json(payload))
        except BridgeMessageError:
            return  # the parser counts and logs it
        self.inventory = {d.ieee_address: d for d in devices}

    def _went_up(self) -> None:
        now = time.monotonic()
        self._connected = True
        self._connected_since = now
        if self._down_since is not None:
            self._last_outage_s = round(now - self._down_since, 3)
            log.warning(
                "zigbee_broker_back",
                driver=self.id,
                broker=self.broker.url,
                outage_s=self._last_outage_s,
            )
        else:
            log.info("zigbee_broker_connected", driver=self.id, broker=self.broker.url)
        self._down_since = None
        self._down_since_wall = None
        self._up_event.set()

    def _went_down(self, reason: str) -> None:
        if self._connected:
            self._outages += 1
        self._connected = False
        self._down_since = time.monotonic()
        self._down_since_wall = datetime.now(UTC)
        self._up_event.clear()
        log.error("zigbee_broker_lost", driver=self.id, broker=self.broker.url, error=reason)

    # -- local outputs -------------------------------------------------------------------

    def friendly_name(self, spec: DeviceSpec) -> str:
        """The topic name of a configured device (its IEEE address resolved when known)."""
        if IEEE_ADDRESS.match(spec.address):
            known = self.inventory.get(spec.address.lower())
            if known is not None:
                return known.friendly_name
        return spec.address

    def pairing(self) -> Zigbee2MqttPairing:
        """Devices join through the bridge (permit-join); see :mod:`drivers.zigbee2mqtt.pairing`."""
        return Zigbee2MqttPairing(self, self.opts)

    def _bridge_device(self, spec: DeviceSpec) -> BridgeDevice | None:
        address = spec.address.lower()
        return self.inventory.get(address) or next(
            (d for d in self.inventory.values() if d.friendly_name == spec.address), None
        )

    async def send(self, command: LocalCommand) -> bool:
        spec = next((d for d in self.devices if d.id == command.device), None)
        if spec is None:
            log.warning("zigbee_command_unknown_device", driver=self.id, device=command.device)
            return False
        known = self._bridge_device(spec)
        if command.action in ("siren_on", "siren_off"):
            duration = command.params.get("duration", self.opts.siren_duration)
            if not isinstance(duration, int) or isinstance(duration, bool):
                duration = self.opts.siren_duration
            payload = siren_payload(
                command.action == "siren_on", duration=max(1, min(duration, 1800)), device=known
            )
        elif command.action == "ack":
            if known is None or "identify" not in settable_properties(known):
                log.info("zigbee_ack_unsupported", driver=self.id, device=spec.id)
                return False
            payload = {"identify": "identify"}
        else:
            return False
        return await self._publish_set(spec, payload)

    async def _publish_set(self, spec: DeviceSpec, payload: dict[str, Any]) -> bool:
        client = self._client
        topic = f"{self.base_topic}/{self.friendly_name(spec)}/set"
        if client is None or not self._connected:
            log.error("zigbee_command_not_sent", driver=self.id, device=spec.id, error="no broker")
            return False
        try:
            await client.publish(topic, json.dumps(payload), qos=1, timeout=_PUBLISH_TIMEOUT)
        except aiomqtt.MqttError as exc:
            log.error("zigbee_command_not_sent", driver=self.id, device=spec.id, error=str(exc))
            return False
        log.info("zigbee_command_sent", driver=self.id, device=spec.id, topic=topic)
        return True
