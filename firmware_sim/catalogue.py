"""The simulators' device catalogue: every model they can play, in one place.

A model says what the device is (model, vendor, description), the state it starts in and how it
reports. The Zigbee2MQTT emulator (:mod:`firmware_sim.zigbee2mqtt`) publishes the Zigbee models'
definitions on ``bridge/devices``; scenarios (:mod:`firmware_sim.scenario`) render their messages
over time (check-ins, batteries draining) and the 433 MHz models' RFLink lines.

Zigbee exposes are written the way Zigbee2MQTT 2.x publishes them on ``bridge/devices`` (the JSON
of zigbee-herdsman-converters' ``exposes``: ``access`` bit 1 = in the published state, bit 2 =
settable, bit 4 = gettable), for the definitions of these models in zigbee-herdsman-converters
(``heiman.ts``, ``xiaomi.ts``/``lumi.ts``, ``tuya.ts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["IDENTIFY", "MODELS", "ZIGBEE", "DeviceModel"]

STATE, SET, STATE_GET, ALL = 1, 2, 5, 7


def _binary(name: str, description: str, *, category: str | None = None) -> dict[str, Any]:
    expose: dict[str, Any] = {
        "access": STATE,
        "description": description,
        "label": name.replace("_", " ").capitalize(),
        "name": name,
        "property": name,
        "type": "binary",
        "value_off": False,
        "value_on": True,
    }
    if category:
        expose["category"] = category
    return expose


def _numeric(
    name: str,
    description: str,
    *,
    unit: str | None = None,
    value_min: int | None = None,
    value_max: int | None = None,
    access: int = STATE,
    category: str | None = None,
) -> dict[str, Any]:
    expose: dict[str, Any] = {
        "access": access,
        "description": description,
        "label": name.replace("_", " ").capitalize(),
        "name": name,
        "property": name,
        "type": "numeric",
    }
    for key, value in (
        ("unit", unit),
        ("value_min", value_min),
        ("value_max", value_max),
        ("category", category),
    ):
        if value is not None:
            expose[key] = value
    return expose


def _battery() -> dict[str, Any]:
    return _numeric(
        "battery",
        "Remaining battery in %",
        unit="%",
        value_min=0,
        value_max=100,
        access=STATE_GET,
        category="diagnostic",
    )


def _battery_low() -> dict[str, Any]:
    return _binary(
        "battery_low",
        "Indicates if the battery of this device is almost empty",
        category="diagnostic",
    )


def _voltage() -> dict[str, Any]:
    return _numeric(
        "voltage", "Voltage of the battery in millivolts", unit="mV", category="diagnostic"
    )


def _action(values: list[str]) -> dict[str, Any]:
    return {
        "access": STATE,
        "category": "diagnostic",
        "description": "Triggered action (e.g. a button click)",
        "label": "Action",
        "name": "action",
        "property": "action",
        "type": "enum",
        "values": values,
    }


def _test() -> dict[str, Any]:
    return _binary("test", "Indicates whether the device is being tested", category="diagnostic")


def _tamper() -> dict[str, Any]:
    return _binary("tamper", "Indicates whether the device is tampered", category="diagnostic")


def _warning_hs2wd() -> dict[str, Any]:
    # e.warning() without level and strobe_level, mode limited to stop/emergency (heiman.ts).
    return {
        "access": SET,
        "description": "Siren warning",
        "label": "Warning",
        "name": "warning",
        "property": "warning",
        "type": "composite",
        "features": [
            {
                "access": SET,
                "description": "Turn on/off the strobe (light) during warning",
                "label": "Strobe",
                "name": "strobe",
                "property": "strobe",
                "type": "binary",
                "value_off": False,
                "value_on": True,
            },
            {
                "access": SET,
                "description": "Length of the flash cycle",
                "label": "Strobe duty cycle",
                "name": "strobe_duty_cycle",
                "property": "strobe_duty_cycle",
                "type": "numeric",
                "value_max": 10,
                "value_min": 0,
            },
            {
                "access": SET,
                "description": "Duration in seconds of the alarm",
                "label": "Duration",
                "name": "duration",
                "property": "duration",
                "type": "numeric",
                "unit": "s",
            },
            {
                "access": SET,
                "description": "Mode of the warning (sound effect)",
                "label": "Mode",
                "name": "mode",
                "property": "mode",
                "type": "enum",
                "values": ["stop", "emergency"],
            },
        ],
    }


#: ``identify`` as Zigbee2MQTT 2.x adds it to devices with the genIdentify cluster.
IDENTIFY: dict[str, Any] = {
    "access": SET,
    "category": "config",
    "description": "Initiate device identification",
    "label": "Identify",
    "name": "identify",
    "property": "identify",
    "type": "enum",
    "values": ["identify"],
}


@dataclass(frozen=True)
class DeviceModel:
    """One model: its Zigbee2MQTT definition (Zigbee models) and how it reports over time."""

    model: str
    vendor: str
    description: str
    #: The Zigbee model id the device reports in its basic cluster.
    model_id: str = ""
    manufacturer: str = ""
    power_source: str = "Battery"
    exposes: list[dict[str, Any]] = field(default_factory=list)
    #: The merged state Zigbee2MQTT keeps (and publishes whole with each message).
    initial_state: dict[str, Any] = field(default_factory=dict)
    #: Zigbee2MQTT's type: EndDevice (battery) or Router (mains).
    type: str = "EndDevice"
    linkquality: int = 120
    #: Seconds between check-ins (battery/voltage reports, or the Aqara heartbeat); None: the
    #: device only speaks when something happens (cheap 433 MHz detectors).
    checkin_s: float | None = 3600.0
    #: Aqara devices report voltage too; battery % follows it.
    reports_voltage: bool = False
    #: battery_low is reported by the device itself (Heiman IAS zone status bit).
    reports_battery_low: bool = False
    #: The RFLink protocol name of a 433 MHz device (read through an RFLink receiver); None for
    #: a Zigbee device.
    rflink: str | None = None

    @property
    def battery_powered(self) -> bool:
        return self.power_source == "Battery"


MODELS: dict[str, DeviceModel] = {
    m.model: m
    for m in (
        DeviceModel(
            model="HS1SA",
            vendor="Heiman",
            description="Smoke detector",
            model_id="SmokeSensor-EF-3.0",
            manufacturer="HEIMAN",
            power_source="Battery",
            exposes=[
                _binary("smoke", "Indicates whether the device detected smoke"),
                _battery_low(),
                _battery(),
                _test(),
            ],
            initial_state={"smoke": False, "battery_low": False, "battery": 100, "test": False},
            reports_battery_low=True,
        ),
        DeviceModel(
            model="HS1CG",
            vendor="Heiman",
            description="Smart combustible gas sensor",
            model_id="RH3070",
            manufacturer="HEIMAN",
            power_source="Mains (single phase)",
            type="Router",
            exposes=[
                _binary("gas", "Indicates whether the device detected gas"),
                _battery_low(),
                _tamper(),
            ],
            initial_state={"gas": False, "battery_low": False, "tamper": False},
            linkquality=180,
        ),
        DeviceModel(
            model="SJCGQ11LM",
            vendor="Aqara",
            description="Water leak sensor",
            model_id="lumi.sensor_wleak.aq1",
            manufacturer="LUMI",
            power_source="Battery",
            exposes=[
                _battery(),
                _binary("water_leak", "Indicates whether the device detected a water leak"),
                _battery_low(),
                _voltage(),
                _numeric("device_temperature", "Temperature of the device", unit="°C"),
                _numeric("power_outage_count", "Number of power outages"),
            ],
            initial_state={
                "battery": 100,
                "water_leak": False,
                "battery_low": False,
                "voltage": 3025,
                "device_temperature": 21,
                "power_outage_count": 3,
            },
            reports_voltage=True,
            reports_battery_low=True,
        ),
        DeviceModel(
            model="HS1EB/HS1EB-E",
            vendor="Heiman",
            description="Smart emergency button",
            model_id="SOS-EF-3.0",
            manufacturer="HEIMAN",
            power_source="Battery",
            exposes=[_battery(), _action(["off", "single", "double", "hold"])],
            initial_state={"battery": 100},
        ),
        DeviceModel(
            model="TS0215A_sos",
            vendor="Tuya",
            description="SOS button",
            model_id="TS0215A",
            manufacturer="_TZ3000_p6ju8myv",
            power_source="Battery",
            exposes=[_battery(), _voltage(), _action(["emergency"])],
            initial_state={"battery": 80, "voltage": 2900},
        ),
        DeviceModel(
            model="RTCGQ11LM",
            vendor="Aqara",
            description="Motion sensor",
            model_id="lumi.sensor_motion.aq2",
            manufacturer="LUMI",
            power_source="Battery",
            exposes=[
                _battery(),
                _binary("occupancy", "Indicates whether the device detected occupancy"),
                _numeric("device_temperature", "Temperature of the device", unit="°C"),
                _voltage(),
                _numeric("illuminance", "Measured illuminance", unit="lx"),
                _numeric("power_outage_count", "Number of power outages"),
            ],
            # No occupancy until the first detection: the sensor only ever reports true.
            initial_state={
                "battery": 100,
                "device_temperature": 22,
                "voltage": 3005,
                "illuminance": 120,
                "power_outage_count": 1,
            },
            reports_voltage=True,
        ),
        DeviceModel(
            model="MCCGQ11LM",
            vendor="Aqara",
            description="Door and window sensor",
            model_id="lumi.sensor_magnet.aq2",
            manufacturer="LUMI",
            power_source="Battery",
            exposes=[
                _battery(),
                {
                    **_binary(
                        "contact", "Indicates if the contact is closed (= true) or open (= false)"
                    ),
                    "value_off": True,
                    "value_on": False,
                },
                _numeric("device_temperature", "Temperature of the device", unit="°C"),
                _voltage(),
                _numeric("power_outage_count", "Number of power outages"),
            ],
            initial_state={
                "battery": 100,
                "contact": True,
                "device_temperature": 21,
                "voltage": 3015,
                "power_outage_count": 2,
            },
            reports_voltage=True,
        ),
        DeviceModel(
            model="HS2WD-E",
            vendor="Heiman",
            description="Smart siren",
            model_id="WarningDevice-EF-3.0",
            manufacturer="HEIMAN",
            power_source="Mains (single phase)",
            type="Router",
            exposes=[
                _battery(),
                _numeric(
                    "max_duration",
                    "Max duration of Siren",
                    unit="s",
                    value_min=0,
                    value_max=600,
                    access=ALL,
                    category="config",
                ),
                _warning_hs2wd(),
            ],
            initial_state={"battery": 100, "max_duration": 240},
            linkquality=200,
        ),
        # 433 MHz devices through an RFLink receiver: they send only when something happens,
        # every packet several times.
        DeviceModel(
            "SmokeAlert", "RFLink", "433 MHz smoke alarm", checkin_s=None, rflink="SmokeAlert"
        ),
        DeviceModel("Pir", "RFLink", "433 MHz motion detector", checkin_s=None, rflink="Pir"),
        DeviceModel(
            "EV1527",
            "RFLink",
            "433 MHz pendant or contact (EV1527 chip)",
            checkin_s=None,
            rflink="EV1527",
        ),
    )
}

#: The Zigbee models: what the Zigbee2MQTT emulator can pair.
ZIGBEE: dict[str, DeviceModel] = {k: m for k, m in MODELS.items() if m.rflink is None}
