"""Talking to a Zigbee2MQTT bridge as an installer: pairing, the inventory, remove and rename.

:class:`Zigbee2MqttPairing` is the driver's :class:`~drivers.pairing.Pairing`: devices join
(permit-join), none is added by address. :class:`BridgeSession` is a short-lived MQTT
connection that sends ``BASE/bridge/request/...`` and awaits the matching
``BASE/bridge/response/...`` (by ``transaction``), and follows ``bridge/event`` and
``bridge/devices``. :func:`pair_device` opens the network for joining
(Zigbee2MQTT 2.x: ``{"time": N}``), waits for a device to join and for its interview, sets the
device's ``qos`` option to 1 (``bridge/request/device/options``), and closes the network again
(``{"time": 0}``) whatever happens. Zigbee2MQTT publishes a device's state at QoS 0 by default,
and a broker keeps no QoS 0 message for a gateway that is away: an alarm sent while the gateway
restarts would be lost. At QoS 1 the gateway's persistent session keeps it.

Exceptions (each also the pairing error it is, in brackets)::

    PairingError
     └── BridgeError                 the bridge could not do what was asked
          ├── BridgeUnreachable       no broker, or it refused us            (PairingUnreachable)
          ├── BridgeRequestFailed     Zigbee2MQTT answered "status": "error" (DeviceRefused)
          ├── BridgeNoAnswer          no response in time (is the bridge up?) (PairingUnreachable)
          ├── PairingTimeout          nothing joined and passed its interview (NothingFound)
          └── InterviewFailed         a device joined but its interview failed (DeviceRefused)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal

import aiomqtt
import structlog

from drivers.base import Driver
from drivers.pairing import (
    Candidate,
    DeviceRefused,
    Identified,
    InvalidDevice,
    KnownDevice,
    NothingFound,
    Pairing,
    PairingError,
    PairingUnreachable,
    ProgressSink,
)
from drivers.zigbee2mqtt.bridge import (
    IEEE_ADDRESS,
    BridgeDevice,
    BridgeEvent,
    BridgeMessageError,
    decode_json,
    parse_devices,
    parse_event,
)
from drivers.zigbee2mqtt.options import BrokerAddress, Zigbee2MqttOptions, make_client

__all__ = [
    "MAX_PERMIT_JOIN",
    "BridgeError",
    "BridgeNoAnswer",
    "BridgeRequestFailed",
    "BridgeSession",
    "BridgeUnreachable",
    "InterviewFailed",
    "PairingTimeout",
    "Zigbee2MqttPairing",
    "guess_role",
    "pair_device",
]

log = structlog.get_logger(__name__)

#: Zigbee's permit-join duration is one byte; 255 would mean "forever", which we never ask.
MAX_PERMIT_JOIN = 254


#: Exposed property -> the role a device with it most likely plays, in order of preference.
_ROLE_HINTS = (
    ("smoke", "smoke"),
    ("gas", "gas"),
    ("carbon_monoxide", "co"),
    ("water_leak", "water_leak"),
    ("warning", "siren"),
    ("contact", "door"),
    ("occupancy", "motion"),
    ("presence", "motion"),
    ("sos", "sos_button"),
    ("action", "sos_button"),
)


def guess_role(exposes: list[str]) -> str:
    """The likeliest role for a device exposing these properties (``other`` if none fits)."""
    return next((role for prop, role in _ROLE_HINTS if prop in exposes), "other")


class BridgeError(PairingError):
    """The bridge could not do what was asked."""


class BridgeUnreachable(BridgeError, PairingUnreachable):
    """No broker at the address, or it refused the connection."""


class BridgeRequestFailed(BridgeError, DeviceRefused):
    """Zigbee2MQTT answered a request with ``"status": "error"``."""

    def __init__(self, request: str, error: str) -> None:
        super().__init__(f"the bridge refused {request}: {error}")
        self.request = request
        self.error = error


class BridgeNoAnswer(BridgeError, PairingUnreachable):
    """No response to a request in time: the bridge is probably not running."""


class PairingTimeout(BridgeError, NothingFound):
    """No device joined and passed its interview before joining closed."""


class InterviewFailed(BridgeError, DeviceRefused):
    """A device joined, but Zigbee2MQTT could not interview it."""

    def __init__(self, ieee_address: str) -> None:
        super().__init__(
            f"device {ieee_address} joined but its interview failed; reset it and pair again "
            f"(keep it awake by pressing its button during the interview)"
        )
        self.ieee_address = ieee_address


@dataclass(frozen=True)
class _Response:
    status: str
    data: Any
    error: str
    transaction: Any


class BridgeSession:
    """One MQTT connection to the bridge: ``async with BridgeSession(broker, base) as s: ...``."""

    def __init__(
        self,
        broker: BrokerAddress,
        base_topic: str = "zigbee2mqtt",
        *,
        answer_timeout: float = 10.0,
        mqtt_version: Literal["5", "3.1.1"] = "5",
    ) -> None:
        self.broker = broker
        self.mqtt_version: Literal["5", "3.1.1"] = mqtt_version
        self.base = base_topic.strip("/")
        self.answer_timeout = answer_timeout
        self.events: asyncio.Queue[BridgeEvent] = asyncio.Queue()
        self.inventory: dict[str, BridgeDevice] | None = None
        self._inventory_seen = asyncio.Event()
        self._responses: dict[str, list[_Response]] = {}
        self._response_arrived = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BridgeSession:
        client = make_client(
            self.broker, timeout=self.answer_timeout, mqtt_version=self.mqtt_version
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BridgeUnreachable(f"cannot reach the broker at {self.broker.url}: {exc}") from exc
        self._client = client
        try:
            for topic in ("bridge/response/#", "bridge/event", "bridge/devices"):
                await client.subscribe(f"{self.base}/{topic}", qos=1)
        except aiomqtt.MqttError as exc:
            await self._close()
            raise BridgeUnreachable(f"broker at {self.broker.url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read(client))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)
        self._client = None

    async def _read(self, client: aiomqtt.Client) -> None:
        prefix = f"{self.base}/bridge/"
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            what = topic.removeprefix(prefix)
            try:
                data = decode_json(payload) if payload else None
            except BridgeMessageError:
                continue
            if what == "event":
                with contextlib.suppress(BridgeMessageError):
                    if not message.retain:
                        await self.events.put(parse_event(data))
            elif what == "devices":
                with contextlib.suppress(BridgeMessageError):
                    devices, _ = parse_devices(data)
                    self.inventory = {d.ieee_address: d for d in devices}
                    self._inventory_seen.set()
            elif what.startswith("response/") and isinstance(data, dict):
                response = _Response(
                    status=str(data.get("status", "")),
                    data=data.get("data"),
                    error=str(data.get("error", "")),
                    transaction=data.get("transaction"),
                )
                async with self._response_arrived:
                    self._responses.setdefault(what.removeprefix("response/"), []).append(response)
                    self._response_arrived.notify_all()

    def _require_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise BridgeUnreachable("not connected to the broker")
        return self._client

    async def request(self, what: str, payload: dict[str, Any]) -> Any:
        """Send ``bridge/request/<what>`` and return the response's ``data``."""
        client = self._require_client()
        transaction = f"gatewayd-{secrets.token_hex(4)}"
        try:
            await client.publish(
                f"{self.base}/bridge/request/{what}",
                json.dumps({**payload, "transaction": transaction}),
                qos=1,
            )
        except aiomqtt.MqttError as exc:
            raise BridgeUnreachable(f"broker at {self.broker.url}: {exc}") from exc

        def answered() -> _Response | None:
            for response in self._responses.get(what, []):
                if response.transaction in (transaction, None):
                    return response
            return None

        try:
            async with asyncio.timeout(self.answer_timeout), self._response_arrived:
                await self._response_arrived.wait_for(lambda: answered() is not None)
        except TimeoutError:
            raise BridgeNoAnswer(
                f"no answer to {what} from Zigbee2MQTT under {self.base!r} within "
                f"{self.answer_timeout:g} s; is the bridge running?"
            ) from None
        response = answered()
        assert response is not None
        self._responses[what].remove(response)
        if response.status != "ok":
            raise BridgeRequestFailed(what, response.error or "no reason given")
        return response.data

    async def permit_join(self, seconds: int) -> None:
        """Open the network for ``seconds`` (0 closes it)."""
        if not 0 <= seconds <= MAX_PERMIT_JOIN:
            raise ValueError(f"permit_join time must be 0-{MAX_PERMIT_JOIN} s, got {seconds}")
        await self.request("permit_join", {"time": seconds})

    async def remove_device(self, ident: str, *, force: bool = False) -> None:
        await self.request("device/remove", {"id": ident, "force": force})

    async def rename_device(self, old: str, new: str) -> None:
        await self.request("device/rename", {"from": old, "to": new})

    async def set_device_options(self, ident: str, options: dict[str, Any]) -> Any:
        """Change a device's Zigbee2MQTT options (``qos``, ``retain``, ...); the answer's data
        (``from``, ``to``, ``restart_required``)."""
        return await self.request("device/options", {"id": ident, "options": options})

    async def fetch_inventory(self, *, wait: float = 5.0) -> dict[str, BridgeDevice]:
        """The retained ``bridge/devices`` inventory."""
        try:
            async with asyncio.timeout(wait):
                await self._inventory_seen.wait()
        except TimeoutError:
            raise BridgeNoAnswer(
                f"no device list under {self.base!r}/bridge/devices within {wait:g} s; "
                f"is Zigbee2MQTT running with this base topic?"
            ) from None
        assert self.inventory is not None
        return self.inventory


async def pair_device(
    session: BridgeSession,
    *,
    seconds: int = 120,
    on_event: Callable[[BridgeEvent], None] | None = None,
) -> BridgeEvent:
    """Open joining, await a join and a successful interview, set the device's ``qos`` to 1,
    close joining; the interview.

    The first device that joins is the one paired; a device announcing itself without a join
    (already known to the bridge, re-paired) counts when its interview succeeds. A bridge that
    refuses the ``qos`` option fails the pairing (:class:`BridgeRequestFailed`): a device whose
    alarms a restart can lose is not installed quietly.
    """
    seconds = max(1, min(seconds, MAX_PERMIT_JOIN))
    deadline = time.monotonic() + seconds
    await session.permit_join(seconds)
    joined: str | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PairingTimeout(
                    (
                        f"no device joined within {seconds} s"
                        if joined is None
                        else f"device {joined} joined but its interview did not finish in "
                        f"{seconds} s"
                    )
                    + "; joining is closed again. Retry with the device in pairing mode"
                )
            try:
                async with asyncio.timeout(remaining):
                    event = await session.events.get()
            except TimeoutError:
                continue
            if on_event is not None:
                on_event(event)
            if event.type == "device_joined" and joined is None:
                joined = event.ieee_address
            if event.type != "device_interview" or joined not in (None, event.ieee_address):
                continue
            if event.status == "successful":
                await session.set_device_options(event.ieee_address, {"qos": 1})
                return event
            if event.status == "failed":
                raise InterviewFailed(event.ieee_address)
    finally:
        # Never leave the network open: a stranger's device could join it. (After Ctrl-C the
        # task's one cancellation has been delivered, so this await still runs.)
        try:
            await session.permit_join(0)
        except (BridgeError, aiomqtt.MqttError) as exc:
            log.error("zigbee_permit_join_not_closed", error=str(exc))


_EVENT_TEXT = {
    "device_joined": "{ieee} joined",
    "device_announce": "{ieee} announced itself",
    "device_interview": "interview of {ieee}: {status}",
    "device_leave": "{ieee} left",
}


def _describe(event: BridgeEvent) -> str:
    text = _EVENT_TEXT.get(event.type, event.type)
    return text.format(ieee=event.ieee_address, status=event.status)


class Zigbee2MqttPairing(Pairing):
    """Pairing through the bridge: open joining, await a device and its interview, close it.

    The bridge session is opened when first needed and closed when the pairing exits.
    """

    discovery = "join"
    by_address = False
    address_example = "a Zigbee device joins; it is not added by address"
    address_kind: ClassVar[str] = "IEEE address"
    discovery_seconds = 120.0
    max_discovery_seconds = float(MAX_PERMIT_JOIN)
    has_network = True

    def __init__(self, driver: Driver, options: Zigbee2MqttOptions) -> None:
        super().__init__(driver)
        self.broker = options.broker()
        self.base_topic = options.base_topic
        self.mqtt_version = options.mqtt_version
        self._session: BridgeSession | None = None

    async def _bridge(self) -> BridgeSession:
        if self._session is None:
            session = BridgeSession(self.broker, self.base_topic, mqtt_version=self.mqtt_version)
            await session.__aenter__()
            self._session = session
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.__aexit__(None, None, None)

    def announce(self, seconds: float) -> str:
        return (
            f"Opening the Zigbee network of {self.driver.id!r} ({self.broker.url}, "
            f"{self.base_topic}/) for {math.ceil(seconds)} s. Put the device in pairing mode now."
        )

    async def discover(self, seconds: float, progress: ProgressSink) -> AsyncIterator[Candidate]:
        session = await self._bridge()
        interview = await pair_device(
            session, seconds=math.ceil(seconds), on_event=lambda e: progress(_describe(e))
        )
        # The bridge republishes bridge/devices right after the interview.
        known = None
        for _ in range(20):
            if session.inventory and interview.ieee_address in session.inventory:
                known = session.inventory[interview.ieee_address]
                break
            await asyncio.sleep(0.05)
        exposes = known.exposed_properties if known else []
        friendly = known.friendly_name if known else interview.friendly_name
        yield Candidate(
            address=interview.ieee_address,
            name=friendly,
            model=interview.model or (known.model if known else ""),
            vendor=interview.vendor or (known.vendor if known else ""),
            description=interview.description or (known.description if known else ""),
            reports=tuple(exposes),
            supported=interview.supported,
            role_guess=guess_role(exposes),
            aliases=(friendly,) if friendly else (),
        )

    async def identify(self, target: Candidate | str, options: Mapping[str, Any]) -> Identified:
        if isinstance(target, str):
            raise InvalidDevice(
                "Zigbee devices are paired by joining, not by address: put the device in "
                "pairing mode when the network is open"
            )
        if options:
            raise InvalidDevice(f"Zigbee devices take no options; got {', '.join(options)}")
        # The bridge interviewed the device as it joined: that was the contact.
        return Identified(
            address=target.address,
            model=target.model,
            role_guess=target.role_guess,
            aliases=target.aliases,
        )

    async def inventory(self) -> list[KnownDevice]:
        devices = await (await self._bridge()).fetch_inventory(wait=5.0)
        return [
            KnownDevice(
                address=d.ieee_address,
                name=d.friendly_name,
                model=d.model,
                vendor=d.vendor,
                identified=d.interview_completed,
                details={
                    "ieee_address": d.ieee_address,
                    "friendly_name": d.friendly_name,
                    "model": d.model,
                    "vendor": d.vendor,
                    "description": d.description,
                    "interviewed": d.interview_completed,
                    "exposes": d.exposed_properties,
                },
            )
            for d in sorted(devices.values(), key=lambda d: d.friendly_name)
        ]

    async def _bridge_name(self, address: str) -> str:
        """The friendly name the bridge knows the device by (requests take names)."""
        session = await self._bridge()
        if not IEEE_ADDRESS.match(address):
            return address
        try:
            inventory = await session.fetch_inventory(wait=2.0)
        except BridgeNoAnswer:
            return address
        known = inventory.get(address.lower())
        return known.friendly_name if known is not None else address

    async def unpair(self, address: str, *, force: bool = False) -> None:
        name = await self._bridge_name(address)
        await (await self._bridge()).remove_device(name, force=force)

    async def rename(self, address: str, new_name: str) -> str:
        name = await self._bridge_name(address)
        await (await self._bridge()).rename_device(name, new_name)
        # A device known by its friendly name is now known by the new one.
        return address if IEEE_ADDRESS.match(address) else new_name
