"""The BLE driver end to end through the simulator: bleak's own objects at the seam."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from contract.wire import RawFrame
from drivers.base import DeviceSpec, DriverConfigError, LocalCommand, TransportError
from drivers.ble import BleDriver
from firmware_sim.ble import BthomeDevice, SimScanner, SimWristband, sim_client_factory
from runtime.timeouts import within
from tests.ble.helpers import Pipeline, running, spec
from tests.fixtures.waiting import await_until

KEY = "231d39c1d7cc1ab1aee224cd096db932"
PENDANT = "A4:C1:38:8D:18:B2"
SMOKE = "54:48:E6:8F:80:A5"
BAND = "FF:FF:10:2A:4B:01"
FAST_GATT = {
    "gatt_offline_after_s": 0.6,
    "reconnect_initial_s": 0.02,
    "reconnect_max_s": 0.1,
    "connect_timeout_s": 1.0,
}


async def test_alarms_restores_and_troubles_from_advertisements() -> None:
    scanner = SimScanner()
    driver = BleDriver(
        "ble",
        {},
        [
            spec("pendant", PENDANT.lower(), "pendant"),
            spec("smoke", SMOKE, "smoke", bind_key=KEY),
        ],
        scanner=scanner,
    )
    pendant, smoke = BthomeDevice(PENDANT), BthomeDevice(SMOKE, bind_key=KEY)
    neighbour = BthomeDevice("00:11:22:33:44:55")
    async with running(driver) as pipe:
        assert [r.property for r in pipe.readings] == ["link"]
        scanner.deliver(pendant.press(), repeats=3)  # one press, heard three times
        scanner.deliver(neighbour.smoke(True), repeats=2)  # not ours: never becomes a frame
        scanner.deliver(smoke.smoke(True), repeats=2)
        scanner.deliver(smoke.tamper(True))
        scanner.deliver(smoke.battery_low(True))
        scanner.deliver(smoke.smoke(False))
        await pipe.wait(lambda: pipe.seen("smoke", "smoke", False))

    assert len(pipe.seen("pendant", "action", "single")) == 1
    assert [r.value for r in pipe.seen("smoke", "smoke")] == [True, False]
    assert pipe.seen("smoke", "tamper", True)
    assert pipe.seen("smoke", "battery_low", True)
    assert not [r for r in pipe.readings if r.device == "00:11:22:33:44:55"]
    assert {f.source for f in pipe.frames if f.kind == "data"} == {PENDANT, SMOKE}
    assert pipe.parser.duplicates == 3
    assert scanner.stopped == 1  # cancelling the driver stops the scanner


async def test_scanner_that_cannot_start_reports_link_down_and_raises() -> None:
    scanner = SimScanner(fail_start=TransportError("BLE scanner did not start: No adapter"))
    driver = BleDriver("ble", {}, [spec("pendant", PENDANT, "pendant")], scanner=scanner)
    pipe = Pipeline(driver)
    with pytest.raises(TransportError, match="No adapter"):
        await driver.run(pipe)
    assert [(r.property, r.value, r.extra) for r in pipe.readings] == [
        ("link", False, {"reason": "BLE scanner did not start: No adapter"})
    ]


async def test_any_scanner_start_failure_becomes_a_transport_error() -> None:
    scanner = SimScanner(fail_start=PermissionError("Operation not permitted"))
    driver = BleDriver("ble", {}, [spec("pendant", PENDANT, "pendant")], scanner=scanner)
    pipe = Pipeline(driver)
    with pytest.raises(TransportError, match="Operation not permitted") as info:
        await driver.run(pipe)
    assert isinstance(info.value.__cause__, PermissionError)
    assert [(r.property, r.value) for r in pipe.readings] == [("link", False)]


async def test_wristband_press_link_loss_reconnect_and_unreachable() -> None:
    band = SimWristband(BAND)
    driver = BleDriver(
        "ble",
        FAST_GATT,
        [spec("band", BAND, "wristband", gatt=True, press_values=["01"])],
        client_factory=sim_client_factory(band),
    )
    async with running(driver) as pipe:
        await pipe.wait(lambda: band.subscribed)
        assert band.press()
        await pipe.wait(lambda: pipe.seen("band", "action", "single"))
        assert [r.value for r in pipe.seen("band", "available")] == [True]

        band.drop()  # the link is lost; the driver reconnects by itself
        await pipe.wait(lambda: band.connects == 2 and band.subscribed)
        assert band.press()
        await pipe.wait(lambda: len(pipe.seen("band", "action", "single")) == 2)
        # A short loss is not news: still no "unavailable".
        assert [r.value for r in pipe.seen("band", "available")] == [True]

        band.out_of_range()  # gone for longer than gatt_offline_after_s
        await pipe.wait(lambda: pipe.seen("band", "available", False))
        unavailable = pipe.seen("band", "available", False)[0]
        assert unavailable.extra["silent_s"] >= 0.6
        assert "not found" in unavailable.extra["reason"]
        assert band.connect_attempts > band.connects  # it kept trying, with back-off
        status = driver.status()["devices"]["band"]
        assert status["connected"] is False
        assert status["online"] is False
        assert status["failures"] >= 1

        band.back_in_range()
        await pipe.wait(lambda: len(pipe.seen("band", "available", True)) == 2)
        await pipe.wait(lambda: band.subscribed)
        assert band.press()
        await pipe.wait(lambda: len(pipe.seen("band", "action", "single")) == 3)
        assert driver.status()["devices"]["band"]["connected"] is True
    assert not band.connected  # cancelling disconnects


async def test_ack_reaches_a_connected_wristband_only() -> None:
    band, plain = SimWristband(BAND), SimWristband("FF:FF:10:2A:4B:02")
    driver = BleDriver(
        "ble",
        FAST_GATT,
        [
            spec("band", BAND, "wristband", gatt=True, ack_characteristic="2a06", ack_value="02"),
            spec("plain", plain.address, "pendant", gatt=True),
        ],
        client_factory=sim_client_factory(band, plain),
    )
    async with running(driver):
        await await_until(lambda: band.subscribed and plain.subscribed, 5)
        assert await driver.send(LocalCommand(device="band", action="ack"))
        assert band.writes == [("00002a06-0000-1000-8000-00805f9b34fb", b"\x02")]
        assert not await driver.send(LocalCommand(device="band", action="siren_on"))
        assert not await driver.send(LocalCommand(device="plain", action="ack"))  # cannot
        assert not await driver.send(LocalCommand(device="nobody", action="ack"))
        band.out_of_range()
        await await_until(lambda: not driver.links[BAND].connected, 5)
        assert not await driver.send(LocalCommand(device="band", action="ack"))
    assert len(band.writes) == 1
    assert plain.writes == []


async def test_wristband_never_reached_is_reported_unavailable() -> None:
    band = SimWristband(BAND, in_range=False)
    driver = BleDriver(
        "ble",
        FAST_GATT,
        [spec("band", BAND, "wristband", gatt=True)],
        client_factory=sim_client_factory(band),
    )
    async with running(driver) as pipe:
        await pipe.wait(lambda: pipe.seen("band", "available", False))
        # Back-off: attempts grow slower than a tight loop would make them.
        assert 2 <= band.connect_attempts < 30


async def test_wristband_with_the_wrong_service_configured_is_never_up() -> None:
    band = SimWristband(BAND)
    driver = BleDriver(
        "ble",
        FAST_GATT,
        [spec("band", BAND, "wristband", gatt=True, service="ffe5")],
        client_factory=sim_client_factory(band),
    )
    async with running(driver) as pipe:
        await pipe.wait(lambda: pipe.seen("band", "available", False))
    assert not pipe.seen("band", "available", True)
    assert band.connects >= 1  # it connected, but the characteristic is not where configured
    assert "BleakCharacteristicNotFoundError" in driver.links[BAND].last_error


async def test_a_broken_client_factory_fails_the_driver_loudly() -> None:
    def factory(address: str, on_disconnect: object, *, service: str) -> Any:
        raise RuntimeError("no BLE backend on this platform")

    driver = BleDriver(
        "ble", FAST_GATT, [spec("band", BAND, "wristband", gatt=True)], client_factory=factory
    )
    pipe = Pipeline(driver)
    with pytest.raises(TransportError, match="no BLE backend") as info:
        await within(driver.run(pipe), 5)
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_silent_advertiser_goes_offline_and_comes_back() -> None:
    scanner = SimScanner()
    driver = BleDriver(
        "ble",
        {},
        [spec("hall", PENDANT, "door", offline_after_s=0.3)],
        scanner=scanner,
    )
    door = BthomeDevice(PENDANT)
    async with running(driver) as pipe:
        scanner.deliver(door.door(False))
        await pipe.wait(lambda: pipe.seen("hall", "available", True))
        await pipe.wait(lambda: pipe.seen("hall", "available", False))
        assert [h.online for h in driver.device_health()] == [False]
        scanner.deliver(door.door(False))
        await pipe.wait(lambda: len(pipe.seen("hall", "available", True)) == 2)
        assert [h.online for h in driver.device_health()] == [True]
    assert [r.value for r in pipe.seen("hall", "available")] == [True, False, True]


async def test_device_health_has_last_seen_and_rssi() -> None:
    scanner = SimScanner()
    driver = BleDriver("ble", {}, [spec("hall", PENDANT, "door")], scanner=scanner)
    door = BthomeDevice(PENDANT, rssi=-77)
    async with running(driver) as pipe:
        assert driver.device_health()[0].last_seen is None
        scanner.deliver(door.door(True))
        await pipe.wait(lambda: pipe.seen("hall", "contact_open"))
        (health,) = driver.device_health()
    assert health.id == "hall"
    assert health.signal == -77.0
    assert health.last_seen is not None
    assert health.online is True


async def test_a_stalled_pipeline_drops_and_counts_instead_of_growing() -> None:
    scanner = SimScanner()
    driver = BleDriver("ble", {"queue_size": 10}, [spec("hall", PENDANT, "door")], scanner=scanner)
    door = BthomeDevice(PENDANT)
    release = asyncio.Event()
    emitted: list[RawFrame] = []

    async def slow_emit(frame: RawFrame) -> None:
        await release.wait()
        emitted.append(frame)

    task = asyncio.create_task(driver.run(slow_emit))
    try:
        await await_until(lambda: scanner.running, 5)
        for _ in range(50):
            scanner.deliver(door.door(True))
        assert driver.dropped_frames == 40
        release.set()
        await await_until(lambda: len(emitted) == 11, 5)  # the link frame and the ten queued
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert driver.status()["dropped_frames"] == 40


@pytest.mark.parametrize(
    ("device", "options", "message"),
    [
        (spec("d", "A4:C1:38:8D:18", "door"), {}, "is not a Bluetooth MAC"),
        (spec("d", PENDANT, "door", bind_key="abc"), {}, "bind_key"),
        (spec("d", PENDANT, "door", colour="red"), {}, "colour"),
        (spec("d", PENDANT, "band", gatt=True, service="zz"), {}, "not a 16-bit or 128-bit"),
        (spec("d", PENDANT, "band", gatt=True, press_values=["0x1"]), {}, "not hex bytes"),
        (spec("d", PENDANT, "door", ack_characteristic="2a06"), {}, "needs gatt = true"),
        (spec("d", PENDANT, "door"), {"scanner": "udp://10.0.0.5:4000"}, "loopback only"),
        (spec("d", PENDANT, "door"), {"scanner": "tcp://127.0.0.1:1"}, "must be 'bleak'"),
        (spec("d", PENDANT, "door"), {"scanning_mode": "sometimes"}, "scanning_mode"),
        (spec("d", PENDANT, "door"), {"reconnect_initial_s": 5, "reconnect_max_s": 1}, "at least"),
    ],
)
def test_bad_configuration_names_the_problem(
    device: DeviceSpec, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DriverConfigError, match=message):
        BleDriver("ble", options, [device])


def test_two_devices_with_one_address_are_refused() -> None:
    with pytest.raises(DriverConfigError, match="also device 'a'"):
        BleDriver("ble", {}, [spec("a", PENDANT, "door"), spec("b", PENDANT.lower(), "smoke")])


def test_registered_as_the_ble_driver_type() -> None:
    from drivers.registry import load_driver

    assert load_driver("ble") is BleDriver
