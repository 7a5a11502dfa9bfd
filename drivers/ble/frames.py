"""What a BLE :class:`~contract.wire.RawFrame` carries: one JSON object per frame.

The transport builds these from bleak's objects; the parser reads them back, so the parser needs
nothing but the frame (it stays pure, and a recorded trace replays exactly). Three kinds:

``adv``
    One advertisement: ``address``, ``rssi``, ``name``, ``service_data`` (hex by 128-bit UUID),
    ``manufacturer_data`` (hex by company id, as a decimal string), ``service_uuids``,
    ``tx_power``.
``notify``
    One GATT notification: ``address``, ``char`` (characteristic UUID), ``data`` (hex).
``presence``
    The transport's supervision of one device: ``address``, ``state`` (``connected``,
    ``disconnected``, ``unreachable``, ``silent``, ``heard``), ``reason``, and ``silent_s`` (how
    long the device has not been heard or reached).

Decoding never raises anything but :class:`FrameFormatError`, whose message is a short reason
fit for :meth:`drivers.base.ParseStats.reject`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.parsing import FrameRejected

__all__ = [
    "BTHOME_UUID",
    "Advertisement",
    "FrameFormatError",
    "Notification",
    "Presence",
    "PresenceState",
    "decode_frame",
    "encode_advertisement",
    "encode_notification",
    "encode_presence",
    "normalize_address",
]

#: Service data UUID of BTHome v2 (16-bit 0xFCD2 in the Bluetooth base UUID).
BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"

PresenceState = Literal["connected", "disconnected", "unreachable", "silent", "heard"]
_PRESENCE_STATES: frozenset[str] = frozenset(
    ("connected", "disconnected", "unreachable", "silent", "heard")
)
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
#: Service data and manufacturer data are at most 255 bytes in any advertisement.
_MAX_FIELD_BYTES = 512
_MAX_FIELDS = 32


class FrameFormatError(FrameRejected):
    """The frame is not a BLE frame this driver wrote; the message is the reject reason."""


def normalize_address(address: str) -> str:
    """Addresses are compared case-insensitively: upper case, as BlueZ writes them."""
    return address.strip().upper()


@dataclass(frozen=True, slots=True)
class Advertisement:
    address: str
    rssi: int | None
    name: str | None = None
    service_data: dict[str, bytes] = field(default_factory=dict)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    address: str
    characteristic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Presence:
    address: str
    state: PresenceState
    reason: str = ""
    silent_s: float | None = None


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def encode_advertisement(
    *,
    address: str,
    rssi: int | None,
    name: str | None,
    service_data: dict[str, bytes],
    manufacturer_data: dict[int, bytes],
    service_uuids: list[str] | tuple[str, ...],
    tx_power: int | None,
) -> bytes:
    return _dumps(
        {
            "t": "adv",
            "address": normalize_address(address),
            "rssi": rssi,
            "name": name,
            "service_data": {str(k).lower(): bytes(v).hex() for k, v in service_data.items()},
            "manufacturer_data": {str(k): bytes(v).hex() for k, v in manufacturer_data.items()},
            "service_uuids": [str(u).lower() for u in service_uuids],
            "tx_power": tx_power,
        }
    )


def encode_notification(*, address: str, characteristic: str, data: bytes) -> bytes:
    return _dumps(
        {
            "t": "notify",
            "address": normalize_address(address),
            "char": characteristic.lower(),
            "data": bytes(data).hex(),
        }
    )


def encode_presence(
    *, address: str, state: PresenceState, reason: str = "", silent_s: float | None = None
) -> bytes:
    return _dumps(
        {
            "t": "presence",
            "address": normalize_address(address),
            "state": state,
            "reason": reason[:200],
            "silent_s": silent_s,
        }
    )


def decode_frame(payload: bytes) -> Advertisement | Notification | Presence:
    """Read a frame's payload back; raises :class:`FrameFormatError` naming what is wrong."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameFormatError("not_json") from exc
    if not isinstance(obj, dict):
        raise FrameFormatError("not_an_object")
    address = obj.get("address")
    if not isinstance(address, str) or not address.strip() or len(address) > 64:
        raise FrameFormatError("bad_address")
    address = normalize_address(address)
    kind = obj.get("t")
    if kind == "adv":
        return Advertisement(
            address=address,
            rssi=_opt_int(obj.get("rssi"), "bad_rssi"),
            name=_opt_str(obj.get("name"), "bad_name"),
            service_data={
                k.lower(): v for k, v in _hex_map(obj.get("service_data"), "service_data").items()
            },
            manufacturer_data=_manufacturer(obj.get("manufacturer_data")),
            service_uuids=_uuids(obj.get("service_uuids")),
            tx_power=_opt_int(obj.get("tx_power"), "bad_tx_power"),
        )
    if kind == "notify":
        char = obj.get("char")
        if not isinstance(char, str) or not char or len(char) > 64:
            raise FrameFormatError("bad_characteristic")
        return Notification(
            address=address, characteristic=char.lower(), data=_hex(obj.get("data"), "data")
        )
    if kind == "presence":
        state = obj.get("state")
        if state not in _PRESENCE_STATES:
            raise FrameFormatError("bad_presence_state")
        reason = obj.get("reason", "")
        silent_s = obj.get("silent_s")
        if silent_s is not None and (
            isinstance(silent_s, bool) or not isinstance(silent_s, int | float)
        ):
            raise FrameFormatError("bad_silent_s")
        return Presence(
            address=address,
            state=state,
            reason=reason if isinstance(reason, str) else "",
            silent_s=float(silent_s) if silent_s is not None else None,
        )
    raise FrameFormatError("unknown_frame_type")


def _opt_int(value: object, reason: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
        raise FrameFormatError(reason)
    return value


def _opt_str(value: object, reason: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 248:
        raise FrameFormatError(reason)
    return value


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * _MAX_FIELD_BYTES or not _HEX.match(value):
        raise FrameFormatError(f"bad_{what}_hex")
    return bytes.fromhex(value)


def _hex_map(value: object, what: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > _MAX_FIELDS:
        raise FrameFormatError(f"bad_{what}")
    return {str(k): _hex(v, what) for k, v in value.items()}


def _manufacturer(value: object) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for key, data in _hex_map(value, "manufacturer_data").items():
        if not key.isdigit() or int(key) > 0xFFFF:
            raise FrameFormatError("bad_manufacturer_id")
        out[int(key)] = data
    return out


def _uuids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_FIELDS:
        raise FrameFormatError("bad_service_uuids")
    if not all(isinstance(u, str) and len(u) <= 64 for u in value):
        raise FrameFormatError("bad_service_uuids")
    return tuple(u.lower() for u in value)
