"""The ``[[drivers]]`` options of a Zigbee2MQTT driver and the MQTT client they describe.

::

    [[drivers]]
    id = "zigbee"
    type = "zigbee2mqtt"
    url = "mqtts://broker.local:8883"   # mqtt:// (default port 1883) or mqtts:// (8883)
    username = "gateway"
    password = "..."
    ca_file = "/etc/gatewayd/mqtt-ca.pem" # TLS: the CA that signed the broker's certificate
    client_id = "gatewayd-gw-0042-zigbee" # the MQTT session; default gatewayd-<gateway>-<driver>
    base_topic = "zigbee2mqtt"

The session is persistent (clean_session off): the broker keeps the subscription and every QoS 1
message published while the gateway is away, and sends them when it is back. ``clean_session =
true`` gives that up and must be asked for explicitly.

The client speaks MQTT 5 (``mqtt_version = "3.1.1"`` for a broker without it). A QoS 1 message is
acknowledged only once durable, so how many the broker sends ahead of their acknowledgements
bounds the ingest rate: MQTT 5 lets the client say how many (``receive_maximum``), while under
3.1.1 the broker decides (Mosquitto: ``max_inflight_messages``, 20 by default, about 800
messages/s on a disk that commits in a few milliseconds).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, SecretStr, field_validator, model_validator

from drivers.base import DriverOptions
from drivers.zigbee2mqtt.fastread import speed_up

__all__ = [
    "DEFAULT_URL",
    "BrokerAddress",
    "Zigbee2MqttOptions",
    "make_client",
    "session_client_id",
]

DEFAULT_URL = "mqtt://127.0.0.1:1883"
#: MQTT 5 Session Expiry Interval meaning "never": a persistent session outlives any outage, as
#: it does under 3.1.1.
SESSION_NEVER_EXPIRES = 0xFFFFFFFF


class Zigbee2MqttOptions(DriverOptions):
    url: str = DEFAULT_URL
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    #: A clean session loses every alarm published while the gateway is away (a restart, an
    #: upgrade): only with this set explicitly.
    clean_session: bool = False
    base_topic: str = "zigbee2mqtt"
    keepalive: int = Field(default=30, ge=5, le=3600)
    #: Reconnect back-off: doubles from ``reconnect_min`` to ``reconnect_max`` seconds, jittered.
    reconnect_min: float = Field(default=0.25, gt=0, le=60)
    reconnect_max: float = Field(default=30.0, gt=0, le=3600)
    #: Link quality must move this much (LQI) before a new ``signal`` reading.
    signal_delta: float = Field(default=10.0, ge=0, le=255)
    #: Battery voltage must move this much (mV) before a new ``voltage`` reading.
    voltage_delta: float = Field(default=50.0, ge=0, le=10_000)
    #: How long a siren sounds unless the command says otherwise (seconds; Z2M caps at 1800).
    siren_duration: int = Field(default=600, ge=1, le=1800)
    #: At (re)connect, wait this long for the retained inventory before the device topics,
    #: so devices configured by IEEE address resolve from their first message.
    inventory_wait: float = Field(default=1.0, ge=0, le=30)
    #: "5", or "3.1.1" for a broker that does not speak MQTT 5.
    mqtt_version: Literal["5", "3.1.1"] = "5"
    #: MQTT 5: QoS 1 messages the broker may send before the first is acknowledged (each is
    #: held in memory until its frame is durable).
    receive_maximum: int = Field(default=2000, ge=1, le=65535)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        BrokerAddress.from_url(value)
        return value

    @field_validator("base_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "+#\0"):
            raise ValueError(f"base_topic {value!r} must be a non-empty topic without + or #")
        return value

    @model_validator(mode="after")
    def _reconnect_range(self) -> Zigbee2MqttOptions:
        self._ensure_not_above("reconnect_min", "reconnect_max")
        return self

    def broker(self) -> BrokerAddress:
        address = BrokerAddress.from_url(self.url)
        return BrokerAddress(
            host=address.host,
            port=address.port,
            tls=address.tls,
            username=self.username if self.username is not None else address.username,
            password=self.password.get_secret_value()
            if self.password is not None
            else address.password,
            ca_file=self.ca_file,
        )


class BrokerAddress:
    """Where the broker is and how to log in (the password is never in ``repr``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.ca_file = ca_file

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker url must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"broker url {url!r} names no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"broker url {url!r} has a bad port") from exc
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def url(self) -> str:
        """The URL without credentials, for logs and messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"BrokerAddress({self.url!r}, username={self.username!r})"


def session_client_id(gateway_id: str, driver_id: str) -> str:
    """The client id of a driver's session when none is configured: stable across restarts,
    unique per gateway and driver (two clients with one id take the session from each other)."""
    return f"gatewayd-{gateway_id}-{driver_id}"


def make_client(
    broker: BrokerAddress,
    *,
    identifier: str | None = None,
    persistent: bool = False,
    keepalive: int = 30,
    will: aiomqtt.Will | None = None,
    timeout: float = 10.0,
    mqtt_version: Literal["5", "3.1.1"] = "5",
    receive_maximum: int = 2000,
) -> aiomqtt.Client:
    """An aiomqtt client for ``broker`` (must be called inside a running event loop)."""
    tls_params = None
    if broker.tls:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=str(broker.ca_file) if broker.ca_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    persistent = persistent and identifier is not None
    if mqtt_version == "3.1.1":
        session: dict[str, object] = {
            "protocol": aiomqtt.ProtocolVersion.V311,
            "clean_session": not persistent if identifier else None,
        }
    else:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = receive_maximum
        if persistent:
            properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        session = {
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": not persistent,
            "properties": properties,
        }
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=identifier,
        keepalive=keepalive,
        **session,  # type: ignore[arg-type]
        will=will,
        tls_params=tls_params,
        timeout=timeout,
    )
    return speed_up(client)
