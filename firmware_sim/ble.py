"""BLE devices without a radio: real BTHome v2 advertisements and a GATT wristband.

Everything here hands the driver bleak's own objects, built the way bleak's BlueZ backend
builds them (``BLEDevice(address, name, {"path", "props"})``, ``AdvertisementData(...,
platform_data=(path, props))``, ``BleakGATTCharacteristic`` inside a ``BleakGATTService``),
at the driver's seam (:mod:`drivers.ble.transport`).

- :func:`bthome_service_data`: BTHome v2 service data bytes, plaintext or encrypted with a bind
  key (AES-CCM, 4-byte MIC, nonce = MAC + UUID16 + adv info + counter, as the BTHome spec says).
- :class:`BthomeDevice`: a sensor or button that makes advertisements: ``press()``,
  ``battery()``, ``smoke()``, ``gas()``, ``moisture()``, ``motion()``, ``tamper()``,
  ``door()``, ``carbon_monoxide()``, ``battery_low()``; ``repeat()`` re-sends the last packet.
- :class:`SimScanner`: an in-process :class:`~drivers.ble.transport.ScannerBackend`.
- :class:`BleBroadcaster` / :class:`UdpScannerBackend`: the same advertisements from another
  process over loopback UDP (driver option ``scanner = "udp://127.0.0.1:PORT"``).
- :class:`SimWristband` and :func:`sim_client_factory`: a GATT button (service 0xFFE0,
  characteristic 0xFFE1) that can be pressed, go out of range and come back.
- :class:`WristbandServer` / :func:`udp_client_factory`: that wristband in another process
  (driver option ``client = "udp://127.0.0.1:PORT"``); both live in :mod:`firmware_sim.ble_gatt`.

From a shell (the demo, a walk test)::

    python -m firmware_sim.ble advertise --port 47001 --address A4:C1:38:8D:18:B2 press
    python -m firmware_sim.ble advertise --port 47001 --address 54:48:E6:8F:80:A5 \
        --bind-key 231d39c1d7cc1ab1aee224cd096db932 smoke tamper battery=4 smoke_clear
    python -m firmware_sim.ble wristband --port 47002 --address FF:FF:10:2A:4B:01
        (then type: press, drop, out, back, status, writes, quit)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time
from collections.abc import Callable, Iterable

import structlog
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.ble.loopback import (
    UdpScannerBackend,
    advertisement,
    decode_datagram,
    encode_datagram,
)
from drivers.ble.transport import AdvertisementCallback
from firmware_sim.ble_gatt import (
    SimWristband,
    WristbandServer,
    sim_client_factory,
    udp_client_factory,
)

__all__ = [
    "BTHOME_UUID",
    "BUTTON_EVENTS",
    "BleBroadcaster",
    "BthomeDevice",
    "SimScanner",
    "SimWristband",
    "UdpScannerBackend",
    "WristbandServer",
    "advertisement",
    "bthome_service_data",
    "decode_datagram",
    "encode_datagram",
    "sim_client_factory",
    "udp_client_factory",
]

log = structlog.get_logger(__name__)

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"

# BTHome v2 object ids (https://bthome.io/format/) and their data lengths in bytes.
PACKET_ID = 0x00
BATTERY = 0x01
VOLTAGE = 0x0C
OPENING = 0x11
BATTERY_LOW = 0x15
CARBON_MONOXIDE = 0x17
DOOR = 0x1A
GAS = 0x1C
MOISTURE = 0x20
MOTION = 0x21
SMOKE = 0x29
TAMPER = 0x2B
WINDOW = 0x2D
BUTTON = 0x3A
_LENGTHS = {
    PACKET_ID: 1,
    BATTERY: 1,
    VOLTAGE: 2,
    OPENING: 1,
    BATTERY_LOW: 1,
    CARBON_MONOXIDE: 1,
    DOOR: 1,
    GAS: 1,
    MOISTURE: 1,
    MOTION: 1,
    SMOKE: 1,
    TAMPER: 1,
    WINDOW: 1,
    BUTTON: 1,
}
BUTTON_EVENTS = {
    "none": 0x00,
    "press": 0x01,
    "double_press": 0x02,
    "triple_press": 0x03,
    "long_press": 0x04,
    "hold_press": 0x80,
    "hold_release": 0x81,
}
_V2 = 2 << 5
_ENCRYPTED = 0b1
_MAC_INCLUDED = 0b10
_TRIGGER_BASED = 0b100


def encode_objects(objects: Iterable[tuple[int, int]]) -> bytes:
    """BTHome objects, in ascending object id as the spec asks (stable for repeated ids)."""
    out = bytearray()
    for object_id, value in sorted(objects, key=lambda o: o[0]):
        length = _LENGTHS.get(object_id)
        if length is None:
            raise ValueError(f"object id 0x{object_id:02x} is not one the simulator writes")
        out.append(object_id)
        out += int(value).to_bytes(length, "little")
    return bytes(out)


def bthome_service_data(
    objects: Iterable[tuple[int, int]],
    *,
    address: str,
    bind_key: bytes | None = None,
    counter: int = 0,
    include_mac: bool = False,
    trigger_based: bool = False,
) -> bytes:
    """The service data of one BTHome v2 advertisement (the value under UUID 0xFCD2)."""
    payload = encode_objects(objects)
    info = _V2 | (_TRIGGER_BASED if trigger_based else 0) | (_MAC_INCLUDED if include_mac else 0)
    mac = bytes.fromhex(address.replace(":", ""))
    header = bytearray()
    if bind_key is None:
        header.append(info)
        if include_mac:
            header += mac[::-1]
        return bytes(header) + payload
    info |= _ENCRYPTED
    header.append(info)
    if include_mac:
        header += mac[::-1]
    count = counter.to_bytes(4, "little")
    # Nonce: MAC (6, as written) + UUID16 (little-endian) + adv info byte + counter (4).
    nonce = mac + b"\xd2\xfc" + bytes([info]) + count
    sealed = AESCCM(bind_key, tag_length=4).encrypt(nonce, payload, None)
    return bytes(header) + sealed[:-4] + count + sealed[-4:]


class BthomeDevice:
    """A BTHome v2 sensor or button; every method returns the advertisement it sends.

    Each new packet gets the next packet id (and, encrypted, the next counter); ``repeat()``
    returns the last packet again, as real devices repeat each advertisement a few times.
    """

    def __init__(
        self,
        address: str,
        *,
        name: str | None = None,
        bind_key: bytes | str | None = None,
        rssi: int = -60,
        packet_id: int = 0,
        counter: int = 1,
        include_mac: bool = False,
        trigger_based: bool = True,
        with_packet_id: bool = True,
    ) -> None:
        self.address = address.upper()
        self.name = name
        self.bind_key = bytes.fromhex(bind_key) if isinstance(bind_key, str) else bind_key
        self.rssi = rssi
        self.packet_id = packet_id
        self.counter = counter
        self.include_mac = include_mac
        self.trigger_based = trigger_based
        self.with_packet_id = with_packet_id
        self.last: tuple[BLEDevice, AdvertisementData] | None = None

    def packet(self, *objects: tuple[int, int]) -> tuple[BLEDevice, AdvertisementData]:
        self.packet_id = (self.packet_id + 1) % 256
        self.counter = (self.counter + 1) % 2**32
        objs = [(PACKET_ID, self.packet_id)] if self.with_packet_id else []
        data = bthome_service_data(
            [*objs, *objects],
            address=self.address,
            bind_key=self.bind_key,
            counter=self.counter,
            include_mac=self.include_mac,
            trigger_based=self.trigger_based,
        )
        self.last = advertisement(
            self.address, name=self.name, rssi=self.rssi, service_data={BTHOME_UUID: data}
        )
        return self.last

    def repeat(self) -> tuple[BLEDevice, AdvertisementData]:
        if self.last is None:
            raise RuntimeError("nothing was advertised yet")
        return self.last

    def press(self, event: str = "press") -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((BUTTON, BUTTON_EVENTS[event]))

    def battery(self, percent: int) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((BATTERY, percent))

    def voltage(self, millivolts: int) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((VOLTAGE, millivolts))

    def battery_low(self, low: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((BATTERY_LOW, int(low)))

    def smoke(self, on: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((SMOKE, int(on)))

    def gas(self, on: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((GAS, int(on)))

    def carbon_monoxide(self, on: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((CARBON_MONOXIDE, int(on)))

    def moisture(self, wet: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((MOISTURE, int(wet)))

    def motion(self, on: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((MOTION, int(on)))

    def tamper(self, on: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((TAMPER, int(on)))

    def door(self, open_: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((DOOR, int(open_)))

    def window(self, open_: bool = True) -> tuple[BLEDevice, AdvertisementData]:
        return self.packet((WINDOW, int(open_)))


# -- in-process scanner -------------------------------------------------------------------


class SimScanner:
    """A ScannerBackend fed by the test: ``deliver(advertisement, repeats=3)``."""

    def __init__(self, *, fail_start: Exception | None = None) -> None:
        self.fail_start = fail_start
        self.started = 0
        self.stopped = 0
        self._callback: AdvertisementCallback | None = None

    @property
    def running(self) -> bool:
        return self._callback is not None

    async def start(self, callback: AdvertisementCallback) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.started += 1
        self._callback = callback

    async def stop(self) -> None:
        self.stopped += 1
        self._callback = None

    def deliver(self, adv: tuple[BLEDevice, AdvertisementData], *, repeats: int = 1) -> None:
        if self._callback is None:
            raise RuntimeError("the scanner is not running")
        for _ in range(repeats):
            self._callback(*adv)


# -- another process: loopback UDP --------------------------------------------------------


class BleBroadcaster:
    """Sends advertisements to a gateway's ``udp://`` scanner (a sync, blocking-free socket)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def send(self, adv: tuple[BLEDevice, AdvertisementData], *, repeats: int = 1) -> None:
        datagram = encode_datagram(*adv)
        for _ in range(repeats):
            self._sock.sendto(datagram, self.address)
            self.sent += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BleBroadcaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- command line: a device in another process ---------------------------------------------

#: Events ``python -m firmware_sim.ble advertise`` knows, and what each sends.
EVENTS: dict[str, Callable[[BthomeDevice], tuple[BLEDevice, AdvertisementData]]] = {
    "press": lambda d: d.press("press"),
    "double_press": lambda d: d.press("double_press"),
    "long_press": lambda d: d.press("long_press"),
    "smoke": lambda d: d.smoke(True),
    "smoke_clear": lambda d: d.smoke(False),
    "gas": lambda d: d.gas(True),
    "gas_clear": lambda d: d.gas(False),
    "co": lambda d: d.carbon_monoxide(True),
    "co_clear": lambda d: d.carbon_monoxide(False),
    "leak": lambda d: d.moisture(True),
    "dry": lambda d: d.moisture(False),
    "motion": lambda d: d.motion(True),
    "still": lambda d: d.motion(False),
    "tamper": lambda d: d.tamper(True),
    "tamper_clear": lambda d: d.tamper(False),
    "door_open": lambda d: d.door(True),
    "door_closed": lambda d: d.door(False),
    "battery_low": lambda d: d.battery_low(True),
    "battery_ok": lambda d: d.battery_low(False),
}


def _event(device: BthomeDevice, name: str) -> tuple[BLEDevice, AdvertisementData]:
    if name.startswith("battery="):
        return device.battery(int(name.partition("=")[2]))
    return EVENTS[name](device)


def _advertise_main(args: argparse.Namespace) -> int:
    device = BthomeDevice(
        args.address,
        bind_key=args.bind_key,
        rssi=args.rssi,
        # Fresh ids per run, so two runs in a row are two packets, and a counter that only
        # grows with time, as a device's does.
        packet_id=random.randrange(256),
        counter=int(time.time()) % 2**32,
    )
    with BleBroadcaster(args.port, args.host) as broadcaster:
        for name in args.events:
            broadcaster.send(_event(device, name), repeats=args.repeats)
            time.sleep(args.gap)
    return 0


async def _wristband_main(args: argparse.Namespace) -> int:
    band = SimWristband(args.address)
    loop = asyncio.get_running_loop()
    async with WristbandServer(args.port, band, host=args.host):
        print("ready", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            command, _, arg = line.strip().partition(" ")
            if not line or command == "quit":
                return 0
            if command == "press":
                ok = band.press(bytes.fromhex(arg) if arg else None)
                print("pressed" if ok else "not-connected", flush=True)
            elif command == "drop":
                band.drop()
                print("dropped", flush=True)
            elif command == "out":
                band.out_of_range()
                print("out", flush=True)
            elif command == "back":
                band.back_in_range()
                print("back", flush=True)
            elif command == "status":
                print("connected" if band.subscribed else "disconnected", flush=True)
            elif command == "writes":
                print(" ".join(f"{c}={d.hex()}" for c, d in band.writes) or "none", flush=True)
            else:
                print(f"unknown command {command!r}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim.ble", description="Simulated BLE devices over loopback UDP."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    adv = sub.add_parser("advertise", help="send BTHome v2 advertisements to a gateway")
    adv.add_argument("--port", type=int, required=True)
    adv.add_argument("--host", default="127.0.0.1")
    adv.add_argument("--address", required=True, help="the device's MAC")
    adv.add_argument("--bind-key", default=None, help="32 hex digits: send encrypted")
    adv.add_argument("--rssi", type=int, default=-60)
    adv.add_argument("--repeats", type=int, default=3, help="copies of each advertisement")
    adv.add_argument("--gap", type=float, default=0.05, help="seconds between events")
    adv.add_argument("events", nargs="+", metavar="EVENT", help=f"{', '.join(EVENTS)}, battery=NN")
    band = sub.add_parser(
        "wristband",
        help="serve a GATT wristband; stdin: press [HEX], drop, out, back, status, writes, quit",
    )
    band.add_argument("--port", type=int, required=True)
    band.add_argument("--host", default="127.0.0.1")
    band.add_argument("--address", required=True)
    args = parser.parse_args(argv)
    if args.command == "advertise":
        unknown = [e for e in args.events if e not in EVENTS and not e.startswith("battery=")]
        if unknown:
            parser.error(f"unknown event(s): {', '.join(unknown)}; known: {', '.join(EVENTS)}")
        return _advertise_main(args)
    return asyncio.run(_wristband_main(args))


if __name__ == "__main__":
    sys.exit(main())
