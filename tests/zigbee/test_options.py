"""The driver's options: URLs, TLS, credentials, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from contract.home import HomeConfig, parse_config
from drivers.base import DriverConfigError, LocalCommand
from drivers.registry import load_driver
from drivers.zigbee2mqtt import Zigbee2MqttDriver
from drivers.zigbee2mqtt.bridge import BridgeDevice
from drivers.zigbee2mqtt.options import BrokerAddress
from drivers.zigbee2mqtt.transport import siren_payload
from gatewayd.commands.init import HomeAnswers, render_config
from gatewayd.daemon import GatewayError, build_drivers


def test_defaults() -> None:
    driver = Zigbee2MqttDriver("zigbee", {}, [])
    assert driver.broker.url == "mqtt://127.0.0.1:1883"
    assert driver.base_topic == "zigbee2mqtt"
    assert load_driver("zigbee2mqtt") is Zigbee2MqttDriver


def test_mqtts_credentials_and_ca() -> None:
    driver = Zigbee2MqttDriver(
        "zigbee",
        {
            "url": "mqtts://user:url%20pass@broker.local",
            "password": "from-options",
            "ca_file": "/etc/gatewayd/ca.pem",
            "base_topic": "/z2m/",
        },
        [],
    )
    broker = driver.broker
    assert (broker.host, broker.port, broker.tls) == ("broker.local", 8883, True)
    assert (broker.username, broker.password) == ("user", "from-options")
    assert str(broker.ca_file) == "/etc/gatewayd/ca.pem"
    assert driver.base_topic == "z2m"
    assert "from-options" not in repr(broker)
    assert "from-options" not in repr(driver.options)
    assert "from-options" not in str(driver.status())


def test_password_from_the_url() -> None:
    broker = BrokerAddress.from_url("mqtt://gw:s%40cret@10.0.0.2:1884")
    assert (broker.username, broker.password, broker.port) == ("gw", "s@cret", 1884)
    assert broker.url == "mqtt://10.0.0.2:1884"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://broker"}, "mqtt:// or mqtts://"),
        ({"url": "mqtt://"}, "names no host"),
        ({"url": "mqtt://h:99999"}, "bad port"),
        ({"base_topic": "a/+/b"}, "without + or #"),
        ({"bogus": 1}, "bogus"),
        ({"reconnect_min": 0}, "reconnect_min"),
        ({"reconnect_min": 60, "reconnect_max": 1}, "reconnect_min (60.0) must not exceed"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(DriverConfigError, match="driver 'zigbee'") as info:
        Zigbee2MqttDriver("zigbee", options, [])
    assert message in str(info.value)


def test_siren_payload_follows_the_exposes() -> None:
    assert siren_payload(True, duration=30) == {
        "warning": {"mode": "emergency", "level": "very_high", "strobe": True, "duration": 30}
    }
    no_level = BridgeDevice(
        ieee_address="0x00158d0001a2b307",
        friendly_name="siren",
        exposes=(
            {
                "type": "composite",
                "property": "warning",
                "name": "warning",
                "features": [{"property": p, "access": 2} for p in ("mode", "strobe", "duration")],
            },
        ),
    )
    assert siren_payload(False, duration=30, device=no_level) == {
        "warning": {"mode": "stop", "strobe": False, "duration": 0}
    }


async def test_send_without_a_connection_is_false() -> None:
    from tests.fixtures.zigbee import spec

    driver = Zigbee2MqttDriver("zigbee", {}, [spec("siren", "hall_siren", "siren")])
    assert not await driver.send(LocalCommand(device="siren", action="siren_on"))
    assert not await driver.send(LocalCommand(device="siren", action="notify"))


def _zigbee_config(options: str = "", gateway_id: str = "gw-0042") -> HomeConfig:
    return parse_config(
        f'[gateway]\nid = "{gateway_id}"\n\n[[drivers]]\nid = "zigbee"\ntype = "zigbee2mqtt"\n'
        + options
    )


def test_a_persistent_session_always_under_an_id_derived_from_gateway_and_driver() -> None:
    driver = build_drivers(_zigbee_config())["zigbee"]
    assert isinstance(driver, Zigbee2MqttDriver)
    assert (driver.client_id, driver.persistent) == ("gatewayd-gw-0042-zigbee", True)
    other = build_drivers(_zigbee_config(gateway_id="gw-0043"))["zigbee"]
    assert isinstance(other, Zigbee2MqttDriver)
    assert other.client_id != driver.client_id
    configured = build_drivers(_zigbee_config('client_id = "flat3"\n'))["zigbee"]
    assert isinstance(configured, Zigbee2MqttDriver)
    assert (configured.client_id, configured.persistent) == ("flat3", True)


def test_a_clean_session_only_when_the_config_says_so() -> None:
    clean = build_drivers(_zigbee_config("clean_session = true\n"))["zigbee"]
    assert isinstance(clean, Zigbee2MqttDriver)
    assert clean.persistent is False
    with pytest.raises(GatewayError, match="clean_session"):
        build_drivers(_zigbee_config('clean_session = "perhaps"\n'))
    lone = Zigbee2MqttDriver("zigbee", {}, [])
    with pytest.raises(DriverConfigError, match=r"client_id.*clean_session = true"):
        lone.bind("")


def test_an_observer_never_takes_the_daemons_session() -> None:
    observer = build_drivers(_zigbee_config('client_id = "flat3"\n'), observer=True)["zigbee"]
    assert isinstance(observer, Zigbee2MqttDriver)
    assert (observer.client_id, observer.persistent) == (None, False)


def test_init_writes_the_session_the_driver_uses() -> None:
    text = render_config(
        HomeAnswers(
            gateway_id="gw-0042",
            dispatch_url="https://dispatch.example",
            zigbee_url="mqtt://127.0.0.1:1883",
        )
    )
    assert 'client_id = "gatewayd-gw-0042-zigbee"' in text
    driver = build_drivers(parse_config(text))["zigbee"]
    assert isinstance(driver, Zigbee2MqttDriver)
    assert (driver.client_id, driver.persistent) == ("gatewayd-gw-0042-zigbee", True)
