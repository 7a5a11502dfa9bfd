"""BTHome v2 service data → what it says, using bthome-ble (the decoder Home Assistant ships).

Why bthome-ble rather than our own decoder: it is the reference implementation of the BTHome
object table (some 90 object ids, each with its own length, sign and factor), it implements the
AES-CCM decryption and the encryption-counter replay check as the BTHome spec describes, and it
is maintained by the Bluetooth-Devices group alongside Home Assistant's BTHome integration, so
new object ids arrive there first. The cost, checked: its own dependencies are small
(``sensor-state-data``, ``bluetooth-data-tools``, ``cryptography``), but through
``bluetooth-sensor-state-data`` it pulls in ``habluetooth``, Home Assistant's Bluetooth manager,
with ``bleak-retry-connector``, ``bluetooth-adapters``, ``bluetooth-auto-recovery`` and
``dbus-fast`` (which bleak needs on Linux anyway). All install as wheels, from the same group,
none starts anything at import, and we use only one value object of habluetooth
(``BluetoothServiceInfoBleak``); importing the lot costs about 0.12 s once. A hand-written
decoder would save those packages and cost us the object table and the crypto to maintain.

How we use it: a fresh ``BTHomeBluetoothDeviceData`` per advertisement, with the device's
encryption state (last counter, key verified) carried in and out by us. That way its merged
"entity state" (it keeps every value ever seen) and its own 4-second duplicate heuristics never
leak into our per-packet readings; duplicate filtering by packet id is ours (see
:mod:`drivers.ble.parser`). The structural checks (version bits, encryption flag against the
configured key, counter replay) are done here first, so that each refusal has a clear reason.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bleak.backends.device import BLEDevice

from contract.parsing import FrameRejected
from drivers.ble.frames import BTHOME_UUID

if TYPE_CHECKING:
    from bthome_ble import BTHomeBluetoothDeviceData
    from habluetooth import BluetoothServiceInfoBleak

__all__ = [
    "BthomeDecoded",
    "BthomeRejected",
    "EncryptionState",
    "decode_bthome",
    "load_bthome",
]

# bthome-ble logs every refused advertisement at WARNING/ERROR (and a few malformed ones at
# ERROR); our parser counts refusals and logs each reason once, so its own logger would only
# repeat that, once per advertisement, from the radio's noise.
logging.getLogger("bthome_ble").setLevel(logging.CRITICAL)

#: Encrypted v2 layout: adv info (1) [+ MAC (6)] + ciphertext (>=1) + counter (4) + MIC (4).
_ENCRYPTION_OVERHEAD = 8
#: bthome-ble accepts a counter below the last one only when it restarted near zero
#: (a battery change); the same threshold here keeps the two checks in step.
_COUNTER_RESTART_BELOW = 100


@functools.cache
def load_bthome() -> tuple[type[BTHomeBluetoothDeviceData], type[BluetoothServiceInfoBleak]]:
    """bthome-ble and habluetooth, imported when first needed (the BLE driver loads them as it
    starts scanning for advertising devices): with cryptography and habluetooth's Bluetooth
    stack they cost about 16 MiB resident, which a gateway with no BTHome device never pays."""
    from bthome_ble import BTHomeBluetoothDeviceData
    from habluetooth import BluetoothServiceInfoBleak

    return BTHomeBluetoothDeviceData, BluetoothServiceInfoBleak


class BthomeRejected(FrameRejected):
    """The service data is refused; ``reason`` is short and stable (a ParseStats reason)."""


@dataclass(slots=True)
class EncryptionState:
    """What must survive between advertisements of one encrypted device."""

    counter: int | None = None
    verified: bool = False
    last_data: bytes = b""


@dataclass(frozen=True, slots=True)
class BthomeDecoded:
    encrypted: bool
    #: The encryption counter of an encrypted advertisement.
    counter: int | None
    packet_id: int | None
    #: Numeric sensors by bthome-ble key (``battery``, ``voltage``, ``temperature_1``, ...).
    sensors: dict[str, Any] = field(default_factory=dict)
    #: Binary sensors by bthome-ble key (``smoke``, ``moisture``, ``opening``, ``battery``...).
    binary: dict[str, bool] = field(default_factory=dict)
    #: Events by key (``button``, ``button_2``, ``dimmer``) → event type (``press``, ...).
    events: dict[str, str] = field(default_factory=dict)
    #: True when an identical encrypted advertisement (same counter, same bytes) was seen.
    repeat: bool = False


def decode_bthome(
    data: bytes,
    *,
    address: str,
    name: str | None,
    bind_key: bytes | None,
    state: EncryptionState,
    time: float,
) -> BthomeDecoded:
    """Decode one BTHome v2 service data; raises :class:`BthomeRejected` with the reason.

    ``state`` is updated only when an encrypted advertisement decrypted correctly, so a forged
    or corrupted one cannot move the replay window.
    """
    if not data:
        raise BthomeRejected("empty_service_data")
    info = data[0]
    version = (info >> 5) & 0b111
    if version != 2:
        raise BthomeRejected(f"bthome_version_{version}_unsupported")
    encrypted = bool(info & 0b1)
    header = 7 if info & 0b10 else 1
    if encrypted and bind_key is None:
        raise BthomeRejected("encrypted_without_bind_key")
    if not encrypted and bind_key is not None:
        # A device with a key must not be spoofed by plaintext (a downgrade).
        raise BthomeRejected("plaintext_from_encrypted_device")
    # Every BTHome object is at least an id byte and a data byte.
    if len(data) < header + 2 + (_ENCRYPTION_OVERHEAD if encrypted else 0):
        raise BthomeRejected("truncated_encrypted" if encrypted else "no_objects")

    counter: int | None = None
    if encrypted:
        counter = int.from_bytes(data[-8:-4], "little")
        if state.counter is not None and counter == state.counter:
            if data == state.last_data:
                # The device repeats each advertisement a few times: the same packet.
                return BthomeDecoded(encrypted=True, counter=counter, packet_id=None, repeat=True)
            raise BthomeRejected("replayed_counter")
        if (
            state.counter is not None
            and state.verified
            and counter < state.counter
            and counter >= _COUNTER_RESTART_BELOW
        ):
            raise BthomeRejected("replayed_counter")

    device_data, service_info = load_bthome()
    decoder = device_data(bindkey=bind_key)
    if state.counter is not None:
        decoder.encryption_counter = float(state.counter)
    decoder.bindkey_verified = state.verified
    device = BLEDevice(address, name, None)
    update = decoder.update(
        service_info(
            name=name or address,
            address=address,
            rssi=0,
            manufacturer_data={},
            service_data={BTHOME_UUID: data},
            service_uuids=[BTHOME_UUID],
            source="local",
            device=device,
            advertisement=None,
            connectable=False,
            time=time,
            tx_power=None,
        )
    )
    if encrypted and decoder.decryption_failed:
        raise BthomeRejected("decryption_failed_wrong_bind_key")
    if decoder.last_service_info is None:
        # Nothing in the payload was a known BTHome object (or it was cut short).
        raise BthomeRejected("no_known_objects")
    if encrypted:
        state.counter = counter
        state.verified = True
        state.last_data = bytes(data)

    sensors: dict[str, Any] = {}
    packet_id: int | None = None
    for key, value in update.entity_values.items():
        if key.key == "signal_strength":
            continue  # bthome-ble adds the RSSI we gave it; the frame has the real one
        if key.key == "packet_id":
            if isinstance(value.native_value, int | float):
                packet_id = int(value.native_value)
            continue
        sensors[key.key] = value.native_value
    binary = {
        key.key: bool(value.native_value)
        for key, value in update.binary_entity_values.items()
        if value.native_value is not None
    }
    events = {key.key: str(event.event_type) for key, event in update.events.items()}
    return BthomeDecoded(
        encrypted=encrypted,
        counter=counter,
        packet_id=packet_id,
        sensors=sensors,
        binary=binary,
        events=events,
    )
