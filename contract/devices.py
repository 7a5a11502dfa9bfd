"""A home's kit as both the gateway and its tools describe it: devices, roles, drivers, outputs.

The roles are the one vocabulary the rule engine, the parsers, the installer's prompts and the
simulators share; :data:`SOS_ROLES` is the one definition of which devices carry an SOS button.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ROLES", "SOS_ROLES", "DeviceSpec", "DriverEntry", "LocalCommand"]

#: Roles a device can play in the kit. The rule engine maps role + property to alarms.
ROLES = (
    "sos_button",
    "wristband",
    "pendant",
    "smoke",
    "gas",
    "co",
    "water_leak",
    "inactivity",
    "motion",
    "door",
    "fall",
    "siren",
    "other",
)


#: Roles whose devices carry an SOS button (a press is an alarm, whatever the driver).
SOS_ROLES: Final = frozenset({"sos_button", "wristband", "pendant"})


class DeviceSpec(BaseModel):
    """One device of the home as a driver sees it (from the ``[[devices]]`` of the home config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    driver: str = Field(min_length=1, description="the id of the [[drivers]] entry that reads it")
    address: str = Field(
        min_length=1,
        description="native address: Zigbee friendly name or IEEE, RFLink protocol:ID, "
        "Modbus host:port/unit, BLE MAC",
    )
    role: str = Field(
        min_length=1,
        description="role in the kit: sos_button, wristband, smoke, gas, water_leak, "
        "inactivity, motion, door, siren, fall, co",
    )
    room: str = ""
    model: str = ""
    name: str = ""
    #: Driver-specific settings for this device (Modbus profile, BLE bind key, ...).
    options: dict[str, Any] = Field(default_factory=dict)


class DriverEntry(BaseModel):
    """A ``[[drivers]]`` table: ``id`` and ``type``; the rest are the driver's own options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: str = Field(min_length=1)
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LocalCommand(BaseModel):
    """A local output the rules ask for: sound a siren, acknowledge an SOS on the device."""

    model_config = ConfigDict(frozen=True)

    #: Device id; for ``notify`` the name of the secondary channel.
    device: str
    #: ``notify`` goes to the configured secondary channel (a hook), not to a driver.
    action: Literal["siren_on", "siren_off", "ack", "notify"]
    params: dict[str, Any] = Field(default_factory=dict)
