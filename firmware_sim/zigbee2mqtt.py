"""A Zigbee2MQTT bridge emulator that publishes to a real MQTT broker exactly as Zigbee2MQTT 2.x.

What it publishes (``BASE`` is the base topic):

- ``BASE/bridge/state``: ``{"state": "online"}`` retained at connect; the MQTT will is
  ``{"state": "offline"}`` (bare ``online``/``offline`` with ``legacy_availability``).
- ``BASE/bridge/info`` (retained) with ``permit_join`` and ``permit_join_end``.
- ``BASE/bridge/devices`` (retained): the coordinator and every device with its definition and
  exposes (see :mod:`firmware_sim.catalogue`), republished on every join, interview,
  removal and rename.
- ``BASE/<name>/availability`` (retained).
- ``BASE/<name>``: the device's merged state plus ``linkquality``, retained only for devices
  with ``retain=True`` (Zigbee2MQTT's per-device ``retain`` option, off by default).
  ``action`` is published with the state but never kept in it.
- ``BASE/bridge/event``: ``device_joined``, ``device_interview`` (started, successful or
  failed) and ``device_leave``.

What it answers: ``BASE/bridge/request/permit_join`` (``{"time": N}``), ``device/remove``,
``device/rename`` and ``device/options`` (``{"id": ..., "options": {"qos": 1}}``, answered with
``from``, ``to`` and ``restart_required``) on ``BASE/bridge/response/...`` (echoing
``transaction``), and it records every ``BASE/<name>/set`` in
:attr:`Zigbee2MqttBridge.sent_commands`.

A device's state is published at its ``qos`` option. Like Zigbee2MQTT, a device that joins starts
at QoS 0; the devices a bridge is created with are the home's installed kit, paired already,
so they start at QoS 1 (``SimDevice.qos``).

Like Zigbee2MQTT, an occupancy sensor only ever reports ``occupancy: true``; the bridge itself
publishes ``false`` after ``occupancy_timeout`` seconds without a new detection.

The connection survives broker restarts: it reconnects, republishes its retained messages,
and publications made while the broker is away wait for it.

Standalone, with a small kit of devices::

    python -m firmware_sim.zigbee2mqtt --broker mqtt://127.0.0.1:1883 --base-topic zigbee2mqtt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import structlog

from firmware_sim.catalogue import ZIGBEE, DeviceModel
from runtime.backoff import NO_JITTER, Backoff

__all__ = ["DEFAULT_KIT", "SentCommand", "SimDevice", "SimError", "Zigbee2MqttBridge", "main"]

log = structlog.get_logger(__name__)

COORDINATOR_IEEE = "0x00124b0029c1a2b3"


class SimError(Exception):
    """The simulator was asked for something Zigbee2MQTT would not do."""


@dataclass
class SimDevice:
    """One simulated device. ``model`` is a key of :data:`firmware_sim.catalogue.ZIGBEE`."""

    friendly_name: str
    model: str
    ieee: str
    #: Zigbee2MQTT's per-device ``retain`` option: publish the state as retained.
    retain: bool = False
    #: Extra exposes beyond the model's (e.g. ``IDENTIFY``).
    extra_exposes: list[dict[str, Any]] = field(default_factory=list)
    #: State to start from, over the model's initial state.
    state: dict[str, Any] = field(default_factory=dict)
    #: Zigbee2MQTT's per-device ``qos`` option: the QoS its state is published at. A device
    #: that joins starts at Zigbee2MQTT's default, 0, until a ``device/options`` request.
    qos: int = 1

    def __post_init__(self) -> None:
        if self.model not in ZIGBEE:
            raise SimError(f"unknown model {self.model!r}; known: {', '.join(sorted(ZIGBEE))}")
        self.ieee = self.ieee.lower()


@dataclass(frozen=True)
class SentCommand:
    """A ``/set`` the bridge received: which device, what payload, when (monotonic)."""

    name: str
    payload: Any
    at: float


@dataclass
class _Device:
    sim: SimDevice
    definition: DeviceModel
    state: dict[str, Any]
    online: bool = True
    interview_state: str = "SUCCESSFUL"
    network_address: int = 0
    occupancy_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.sim.friendly_name


DEFAULT_KIT: tuple[tuple[str, str, str], ...] = (
    ("sos_button", "HS1EB/HS1EB-E", "0x00158d0001a2b301"),
    ("smoke_kitchen", "HS1SA", "0x00158d0001a2b302"),
    ("gas_kitchen", "HS1CG", "0x00158d0001a2b303"),
    ("leak_bathroom", "SJCGQ11LM", "0x00158d0001a2b304"),
    ("motion_hall", "RTCGQ11LM", "0x00158d0001a2b305"),
    ("door_front", "MCCGQ11LM", "0x00158d0001a2b306"),
    ("siren_hall", "HS2WD-E", "0x00158d0001a2b307"),
)


class Zigbee2MqttBridge:
    """A Zigbee2MQTT bridge on a real broker; use as ``async with Zigbee2MqttBridge(...)``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        base_topic: str = "zigbee2mqtt",
        devices: Sequence[SimDevice] = (),
        occupancy_timeout: float = 90.0,
        legacy_availability: bool = False,
        legacy_action_sensor: bool = False,
        interview_delay: float = 0.2,
        lqi_jitter: int = 0,
        seed: int = 0,
        version: str = "2.6.2",
        clear_retained_on_close: bool = False,
        subscriptions: Sequence[str] = ("#",),
    ) -> None:
        self.host = host
        self.port = port
        self.base = base_topic.strip("/")
        self.occupancy_timeout = occupancy_timeout
        self.legacy_availability = legacy_availability
        self.legacy_action_sensor = legacy_action_sensor
        self.interview_delay = interview_delay
        self.lqi_jitter = lqi_jitter
        self.version = version
        #: Zigbee2MQTT leaves its retained messages when it stops; a demo should not.
        self.clear_retained_on_close = clear_retained_on_close
        #: What it subscribes to under its base topic. Zigbee2MQTT takes ``#``; a benchmark
        #: sharing a process with the gateway narrows it so the bridge does not read the flood.
        self.subscriptions = tuple(subscriptions)
        #: Every ``/set`` received, oldest first.
        self.sent_commands: list[SentCommand] = []
        #: Every ``permit_join`` request payload received.
        self.permit_join_requests: list[Any] = []
        #: When set, ``permit_join`` requests are answered with this error.
        self.refuse_permit_join: str | None = None
        #: When set, non-forced ``device/remove`` requests fail with this error.
        self.refuse_remove: str | None = None
        self._random = random.Random(seed)
        self._devices: dict[str, _Device] = {}
        for sim in devices:
            self._add(sim)
        self._bridge_online = True
        self._permit_until: float | None = None
        self._permit_timer: asyncio.TimerHandle | None = None
        self._connected = asyncio.Event()
        self._command = asyncio.Condition()
        self._publish_lock = asyncio.Lock()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Zigbee2MqttBridge:
        self._task = asyncio.create_task(self._run(), name="zigbee2mqtt-sim")
        try:
            async with asyncio.timeout(10):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise SimError(f"no broker at {self.host}:{self.port}") from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop like Zigbee2MQTT does: ``bridge/state`` offline first, then disconnect."""
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                if self.clear_retained_on_close:
                    for topic in self._retained_topics():
                        await client.publish(topic, b"", 1, True, timeout=2)
                else:
                    await client.publish(
                        f"{self.base}/bridge/state", self._online_payload(False), 1, True, timeout=2
                    )
        for device in self._devices.values():
            if device.occupancy_timer:
                device.occupancy_timer.cancel()
        if self._permit_timer:
            self._permit_timer.cancel()
        for task in [*self._background, *([self._task] if self._task else [])]:
            task.cancel()
        for task in [*self._background, *([self._task] if self._task else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    def _retained_topics(self) -> list[str]:
        """Every topic this bridge publishes retained (an empty retained message clears one)."""
        topics = [f"{self.base}/bridge/{name}" for name in ("state", "info", "devices")]
        for device in self._devices.values():
            topics.append(f"{self.base}/{device.name}/availability")
            if device.sim.retain:
                topics.append(f"{self.base}/{device.name}")
        return topics

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _run(self) -> None:
        will = aiomqtt.Will(
            f"{self.base}/bridge/state", self._online_payload(False), qos=1, retain=True
        )
        client = aiomqtt.Client(self.host, self.port, will=will, keepalive=10, timeout=5)
        backoff = Backoff(0.1, 1.0, jitter=NO_JITTER)
        while True:
            try:
                async with client:
                    for topic in self.subscriptions:
                        await client.subscribe(f"{self.base}/{topic}", qos=1)
                    self._client = client
                    backoff.reset()
                    await self._announce(client)
                    self._connected.set()
                    async for message in client.messages:
                        await self._handle(str(message.topic), bytes(message.payload or b""))
            except aiomqtt.MqttError:
                self._connected.clear()
                self._client = None
                await backoff.wait()

    async def _announce(self, client: aiomqtt.Client) -> None:
        """What Zigbee2MQTT publishes when it (re)connects to the broker."""
        await client.publish(
            f"{self.base}/bridge/state", self._online_payload(self._bridge_online), 1, True
        )
        await client.publish(f"{self.base}/bridge/info", json.dumps(self._info()), 1, True)
        await client.publish(f"{self.base}/bridge/devices", json.dumps(self._inventory()), 1, True)
        for device in self._devices.values():
            await client.publish(
                f"{self.base}/{device.name}/availability",
                self._online_payload(device.online),
                1,
                True,
            )
            if device.sim.retain:
                await client.publish(
                    f"{self.base}/{device.name}", json.dumps(self._message(device)), 1, True
                )

    # -- publishing ------------------------------------------------------------------------

    async def publish_raw(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish anything under the broker (for tests of what Zigbee2MQTT might send)."""
        async with self._publish_lock:
            while True:
                await self._connected.wait()
                client = self._client
                if client is None:
                    continue
                try:
                    await client.publish(topic, payload, qos=qos, retain=retain)
                    return
                except aiomqtt.MqttError:
                    self._connected.clear()
                    await asyncio.sleep(0.05)

    async def _publish(
        self, subtopic: str, payload: Any, *, retain: bool = False, qos: int = 1
    ) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.publish_raw(f"{self.base}/{subtopic}", text, retain=retain, qos=qos)

    async def _publish_state(self, device: _Device, **extra: Any) -> None:
        """The device's merged state, at its ``qos`` option, retained if it says so."""
        message = self._message(device, **extra)
        await self._publish(device.name, message, retain=device.sim.retain, qos=device.sim.qos)

    def _online_payload(self, online: bool, legacy: bool | None = None) -> str:
        state = "online" if online else "offline"
        legacy = self.legacy_availability if legacy is None else legacy
        return state if legacy else json.dumps({"state": state})

    def _message(self, device: _Device, **extra: Any) -> dict[str, Any]:
        message = dict(device.state)
        lqi = int(message.get("linkquality", device.definition.linkquality))
        if self.lqi_jitter:
            lqi += self._random.randint(-self.lqi_jitter, self.lqi_jitter)
        message["linkquality"] = max(0, min(255, lqi))
        message.update(extra)
        return message

    # -- the world -----------------------------------------------------------------------

    def device(self, name: str) -> SimDevice:
        return self._get(name).sim

    def state(self, name: str) -> dict[str, Any]:
        return dict(self._get(name).state)

    def _get(self, name: str) -> _Device:
        try:
            return self._devices[name]
        except KeyError:
            raise SimError(f"no device {name!r}") from None

    async def set_state(self, name: str, **changes: Any) -> None:
        """The device reports ``changes``; the bridge publishes the merged state."""
        device = self._get(name)
        device.state.update(changes)
        await self._publish_state(device)
        if changes.get("occupancy") is True:
            self._arm_occupancy_timeout(device)

    def _arm_occupancy_timeout(self, device: _Device) -> None:
        if device.occupancy_timer:
            device.occupancy_timer.cancel()
        loop = asyncio.get_running_loop()

        def clear() -> None:
            device.occupancy_timer = None
            self._spawn(self._clear_occupancy(device))

        device.occupancy_timer = loop.call_later(self.occupancy_timeout, clear)

    async def _clear_occupancy(self, device: _Device) -> None:
        if device.name in self._devices:
            device.state["occupancy"] = False
            await self._publish_state(device)

    async def press(self, name: str, action: str = "single") -> None:
        """A button action: published with the state, never kept in it."""
        device = self._get(name)
        await self._publish_state(device, action=action)
        if self.legacy_action_sensor:
            await self._publish_state(device, action="")

    async def set_availability(
        self, name: str, *, online: bool, legacy: bool | None = None
    ) -> None:
        device = self._get(name)
        device.online = online
        await self._publish(
            f"{name}/availability", self._online_payload(online, legacy), retain=True
        )

    async def set_bridge_online(self, online: bool, *, legacy: bool | None = None) -> None:
        self._bridge_online = online
        await self._publish("bridge/state", self._online_payload(online, legacy), retain=True)

    @property
    def permit_join(self) -> bool:
        return self._permit_until is not None and time.monotonic() < self._permit_until

    async def pair_device(self, sim: SimDevice, *, interview_ok: bool = True) -> bool:
        """A device tries to join; False (nothing published) unless joining is permitted.

        Like Zigbee2MQTT, a new device is named by its IEEE address until renamed.
        """
        if not self.permit_join:
            return False
        sim.friendly_name = sim.ieee
        sim.qos = 0  # Zigbee2MQTT's default for a new device
        rejoin = sim.ieee in {d.sim.ieee for d in self._devices.values()}
        device = self._add(sim, interview_state="IN_PROGRESS", replace=rejoin)
        ids = {"friendly_name": device.name, "ieee_address": sim.ieee}
        await self._publish("bridge/devices", self._inventory(), retain=True)
        await self._publish("bridge/event", {"data": ids, "type": "device_joined"})
        await self._publish(f"{device.name}/availability", self._online_payload(True), retain=True)
        await self._publish(
            "bridge/event", {"data": {**ids, "status": "started"}, "type": "device_interview"}
        )
        await asyncio.sleep(self.interview_delay)
        if interview_ok:
            device.interview_state = "SUCCESSFUL"
            data = {
                **ids,
                "status": "successful",
                "supported": True,
                "definition": self._definition(device),
            }
        else:
            device.interview_state = "FAILED"
            data = {**ids, "status": "failed"}
        await self._publish("bridge/devices", self._inventory(), retain=True)
        await self._publish("bridge/event", {"data": data, "type": "device_interview"})
        if interview_ok:
            await self._publish_state(device)
        return True

    async def leave(self, name: str) -> None:
        """The device leaves the network by itself."""
        device = self._devices.pop(self._get(name).name)
        await self._publish("bridge/devices", self._inventory(), retain=True)
        await self._publish(
            "bridge/event",
            {
                "data": {"friendly_name": device.name, "ieee_address": device.sim.ieee},
                "type": "device_leave",
            },
        )

    # -- requests --------------------------------------------------------------------------

    async def _handle(self, topic: str, payload: bytes) -> None:
        rest = topic.removeprefix(f"{self.base}/")
        if rest.startswith("bridge/request/"):
            await self._request(rest.removeprefix("bridge/request/"), payload)
        elif rest.endswith("/set"):
            await self._set(rest.removesuffix("/set"), payload)

    async def _set(self, name: str, payload: bytes) -> None:
        target = self._devices.get(name) or next(
            (d for d in self._devices.values() if d.sim.ieee == name.lower()), None
        )
        if target is None:
            log.warning("zigbee_sim_set_unknown_device", device=name)
            return
        try:
            data = json.loads(payload)
        except ValueError:
            log.warning("zigbee_sim_set_not_json", device=name)
            return
        async with self._command:
            self.sent_commands.append(SentCommand(target.name, data, time.monotonic()))
            self._command.notify_all()
        log.info("zigbee_sim_set", device=target.name, payload=data)
        # Settable attributes that are also in the published state are republished.
        stateful = {
            e["property"]
            for e in self._exposes(target)
            if isinstance(e.get("access"), int) and e["access"] & 3 == 3
        }
        changed = {k: v for k, v in data.items() if k in stateful} if isinstance(data, dict) else {}
        if changed:
            await self.set_state(target.name, **changed)

    async def next_command(self, *, after: int = 0) -> SentCommand:
        """Wait for ``sent_commands[after]`` to arrive (bound it with ``asyncio.timeout``)."""
        async with self._command:
            await self._command.wait_for(lambda: len(self.sent_commands) > after)
            return self.sent_commands[after]

    async def _request(self, what: str, payload: bytes) -> None:
        try:
            message: Any = json.loads(payload)
        except ValueError:
            message = payload.decode("utf-8", "replace")
        handlers = {
            "permit_join": self._permit_join,
            "device/remove": self._remove,
            "device/rename": self._rename,
            "device/options": self._options,
        }
        handler = handlers.get(what)
        if handler is None:
            return
        transaction = message.get("transaction") if isinstance(message, dict) else None
        try:
            response: dict[str, Any] = {"data": await handler(message), "status": "ok"}
        except SimError as exc:
            response = {"data": {}, "error": str(exc), "status": "error"}
        if transaction is not None:
            response["transaction"] = transaction
        await self._publish(f"bridge/response/{what}", response)

    async def _permit_join(self, message: Any) -> dict[str, Any]:
        self.permit_join_requests.append(message)
        if isinstance(message, dict):
            if message.get("time") is None:
                raise SimError("Invalid payload")
            raw = message["time"]
        else:
            raw = message
        try:
            seconds = int(raw)
        except (TypeError, ValueError):
            raise SimError("Invalid payload") from None
        if self.refuse_permit_join:
            raise SimError(self.refuse_permit_join)
        if not 0 <= seconds <= 254:
            raise SimError(f"Invalid time {seconds}: expected 0-254")
        if self._permit_timer:
            self._permit_timer.cancel()
            self._permit_timer = None
        if seconds == 0:
            self._permit_until = None
        else:
            self._permit_until = time.monotonic() + seconds

            def close() -> None:
                self._permit_until = None
                self._spawn(self._publish("bridge/info", self._info(), retain=True))

            self._permit_timer = asyncio.get_running_loop().call_later(seconds, close)
        await self._publish("bridge/info", self._info(), retain=True)
        return {"time": seconds}

    def _resolve(self, ident: Any) -> _Device:
        if isinstance(ident, str):
            for device in self._devices.values():
                if ident in (device.name, device.sim.ieee):
                    return device
        raise SimError(f"Device '{ident}' does not exist")

    async def _remove(self, message: Any) -> dict[str, Any]:
        ident = message.get("id") if isinstance(message, dict) else str(message).strip()
        force = bool(message.get("force")) if isinstance(message, dict) else False
        block = bool(message.get("block")) if isinstance(message, dict) else False
        device = self._resolve(ident)
        if self.refuse_remove and not force:
            raise SimError(
                f"Failed to remove device '{device.name}' (block: {block}, force: {force}) "
                f"({self.refuse_remove})"
            )
        del self._devices[device.name]
        if device.occupancy_timer:
            device.occupancy_timer.cancel()
        await self._publish(device.name, "", retain=True)  # clear the retained state
        await self._publish("bridge/devices", self._inventory(), retain=True)
        return {"id": ident, "block": block, "force": force}

    async def _rename(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or "to" not in message or "from" not in message:
            raise SimError("Invalid payload")
        device = self._resolve(message["from"])
        to = str(message["to"]).strip()
        if not to or to in self._devices:
            raise SimError(f"friendly_name '{to}' is already in use")
        old = device.name
        del self._devices[old]
        device.sim.friendly_name = to
        self._devices[to] = device
        await self._publish(old, "", retain=True)
        await self._publish("bridge/devices", self._inventory(), retain=True)
        await self._publish(f"{to}/availability", self._online_payload(device.online), retain=True)
        await self._publish_state(device)
        return {"from": old, "to": to, "homeassistant_rename": False}

    async def _options(self, message: Any) -> dict[str, Any]:
        """Zigbee2MQTT's device options; of them the simulator acts on ``qos`` and ``retain``."""
        if not isinstance(message, dict) or not isinstance(message.get("options"), dict):
            raise SimError("Invalid payload")
        device = self._resolve(message.get("id"))
        options: dict[str, Any] = message["options"]
        qos = options.get("qos", device.sim.qos)
        if qos not in (0, 1, 2) or isinstance(qos, bool):
            raise SimError(f"qos must be 0, 1 or 2, got {qos!r}")
        before = {"qos": device.sim.qos, "retain": device.sim.retain}
        device.sim.qos = qos
        device.sim.retain = bool(options.get("retain", device.sim.retain))
        after = {**before, **options}
        return {"id": message["id"], "from": before, "to": after, "restart_required": False}

    # -- payloads --------------------------------------------------------------------------

    def _add(
        self, sim: SimDevice, *, interview_state: str = "SUCCESSFUL", replace: bool = False
    ) -> _Device:
        if replace:
            for name, known in list(self._devices.items()):
                if known.sim.ieee == sim.ieee:
                    del self._devices[name]
        if sim.friendly_name in self._devices:
            raise SimError(f"friendly_name {sim.friendly_name!r} is already in use")
        definition = ZIGBEE[sim.model]
        device = _Device(
            sim=sim,
            definition=definition,
            state={**definition.initial_state, **sim.state},
            interview_state=interview_state,
            network_address=self._random.randint(1, 0xFFF7),
        )
        self._devices[sim.friendly_name] = device
        return device

    def _exposes(self, device: _Device) -> list[dict[str, Any]]:
        return [*device.definition.exposes, *device.sim.extra_exposes]

    def _definition(self, device: _Device) -> dict[str, Any]:
        model = device.definition
        return {
            "description": model.description,
            "exposes": self._exposes(device),
            "model": model.model,
            "options": [],
            "supports_ota": False,
            "vendor": model.vendor,
        }

    def _inventory(self) -> list[dict[str, Any]]:
        coordinator: dict[str, Any] = {
            "definition": None,
            "disabled": False,
            "endpoints": {},
            "friendly_name": "Coordinator",
            "ieee_address": COORDINATOR_IEEE,
            "interview_completed": True,
            "interview_state": "SUCCESSFUL",
            "interviewing": False,
            "network_address": 0,
            "supported": True,
            "type": "Coordinator",
        }
        devices = [coordinator]
        for device in self._devices.values():
            ok = device.interview_state == "SUCCESSFUL"
            model = device.definition
            devices.append(
                {
                    "date_code": "20231012",
                    "definition": self._definition(device) if ok else None,
                    "disabled": False,
                    "endpoints": {},
                    "friendly_name": device.name,
                    "ieee_address": device.sim.ieee,
                    "interview_completed": ok,
                    "interview_state": device.interview_state,
                    "interviewing": device.interview_state == "IN_PROGRESS",
                    "manufacturer": model.manufacturer,
                    "model_id": model.model_id,
                    "network_address": device.network_address,
                    "power_source": model.power_source,
                    "supported": ok,
                    "type": model.type,
                }
            )
        return devices

    def _info(self) -> dict[str, Any]:
        until = self._permit_until
        info: dict[str, Any] = {
            "version": self.version,
            "commit": "simulated",
            "coordinator": {"ieee_address": COORDINATOR_IEEE, "type": "zStack3x0"},
            "network": {"channel": 15, "pan_id": 6754, "extended_pan_id": "0xdddddddddddddddd"},
            "log_level": "info",
            "permit_join": self.permit_join,
            "restart_required": False,
        }
        if until is not None and self.permit_join:
            info["permit_join_end"] = int((time.time() + until - time.monotonic()) * 1000)
        return info

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def default_kit() -> list[SimDevice]:
    return [SimDevice(friendly_name=n, model=m, ieee=i) for n, m, i in DEFAULT_KIT]


async def _serve(args: argparse.Namespace) -> None:
    parts = urlsplit(args.broker)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise SystemExit(f"--broker must be mqtt://host[:port], got {args.broker!r}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bridge = Zigbee2MqttBridge(
        host=parts.hostname,
        port=parts.port or 1883,
        base_topic=args.base_topic,
        devices=default_kit(),
        occupancy_timeout=args.occupancy_timeout,
        legacy_availability=args.legacy_availability,
    )
    async with bridge:
        print(
            f"Zigbee2MQTT simulator on {args.broker} under {bridge.base}/ with "
            f"{', '.join(n for n, _, _ in DEFAULT_KIT)}; Ctrl-C stops it.",
            flush=True,
        )
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.zigbee2mqtt", description=__doc__)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--base-topic", default="zigbee2mqtt")
    parser.add_argument("--occupancy-timeout", type=float, default=90.0)
    parser.add_argument("--legacy-availability", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
