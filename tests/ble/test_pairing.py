"""BLE pairing at its seam: a simulated scanner feeds the scan, bleak's own objects in."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import TransportError
from drivers.ble import BleDriver
from drivers.ble.pairing import BlePairing, ScanFailed, check_bind_key, role_from_bthome
from drivers.pairing import Candidate, DeviceRefused, InvalidDevice, NothingFound
from firmware_sim.ble import BthomeDevice, SimScanner

KEY = "231d39c1d7cc1ab1aee224cd096db932"
PENDANT = "A4:C1:38:8D:18:B2"
SMOKE = "54:48:E6:8F:80:A5"


def test_role_from_what_a_bthome_device_reports() -> None:
    assert role_from_bthome({"button", "battery"}) == "sos_button"
    assert role_from_bthome({"smoke", "battery"}) == "smoke"
    assert role_from_bthome({"moisture"}) == "water_leak"
    assert role_from_bthome({"temperature"}) == "other"


def test_a_bind_key_is_32_hex_digits_kept_in_lower_case() -> None:
    assert check_bind_key(f" {KEY.upper()} ") == KEY
    for bad in ("", "not-a-key", KEY[:-1], KEY + "0", "g" * 32):
        with pytest.raises(ValueError, match="32 hex digits"):
            check_bind_key(bad)


def pairing_with(scanner: SimScanner) -> BlePairing:
    pairing = BleDriver("bt", {}, [], scanner=scanner).pairing()
    assert isinstance(pairing, BlePairing)
    return pairing


async def scan(pairing: BlePairing, scanner: SimScanner, *adverts: object) -> list[Candidate]:
    """Discover for a short while, delivering ``adverts`` once the scanner runs."""
    lines: list[str] = []

    async def radio() -> None:
        while not scanner.running:  # noqa: ASYNC110 (the simulated scanner has no event)
            await asyncio.sleep(0.01)
        for advert in adverts:
            scanner.deliver(advert)  # type: ignore[arg-type]

    async with pairing:
        feeding = asyncio.create_task(radio())
        try:
            return [c async for c in pairing.discover(0.3, lines.append)]
        finally:
            feeding.cancel()  # a scanner that never started is never fed
            await asyncio.gather(feeding, return_exceptions=True)


async def test_the_scan_lists_bthome_devices_strongest_first_with_a_role_guess() -> None:
    scanner = SimScanner()
    pairing = pairing_with(scanner)
    near = BthomeDevice(PENDANT, name="button", rssi=-42)
    far = BthomeDevice(SMOKE, name="smoke", rssi=-81)
    found = await scan(pairing, scanner, far.smoke(), near.press())
    assert [c.address for c in found] == [PENDANT, SMOKE]
    assert (found[0].signal, found[0].role_guess, found[0].needs) == ("-42 dBm", "sos_button", ())
    assert found[1].role_guess == "smoke"
    assert "smoke" in found[1].reports
    assert scanner.stopped == 1, "the scanner is stopped when the scan ends"


async def test_nothing_heard_is_named() -> None:
    scanner = SimScanner()
    with pytest.raises(NothingFound, match=r"no BTHome device heard in 0\.3 s"):
        await scan(pairing_with(scanner), scanner)


async def test_a_scanner_that_does_not_start_is_unreachable() -> None:
    scanner = SimScanner(fail_start=TransportError("adapter hci0 is down"))
    with pytest.raises(ScanFailed, match=r"adapter hci0 is down\. Is Bluetooth on"):
        await scan(pairing_with(scanner), scanner)


async def test_an_encrypted_device_needs_a_bind_key_that_opens_what_it_sent() -> None:
    scanner = SimScanner()
    pairing = pairing_with(scanner)
    sealed = BthomeDevice(SMOKE, name="smoke", bind_key=KEY)
    [candidate] = await scan(pairing, scanner, sealed.smoke())
    [need] = candidate.needs
    assert (need.option, need.reason) == ("bind_key", "encrypted")
    assert candidate.reports == (), "sealed until the key is known"
    async with pairing:
        with pytest.raises(InvalidDevice, match="bind_key is needed"):
            await pairing.identify(candidate, {})
        wrong = "00" * 16
        with pytest.raises(DeviceRefused, match="the bind key does not open what"):
            await pairing.identify(candidate, {"bind_key": wrong})
        identified = await pairing.identify(candidate, {"bind_key": KEY})
    assert identified.address == SMOKE
    assert identified.options == {"bind_key": KEY}
    assert identified.role_guess == "smoke", "guessed from what the key opened"


async def test_a_device_by_address_is_checked_and_normalised() -> None:
    pairing = pairing_with(SimScanner())
    async with pairing:
        identified = await pairing.identify(" a4:c1:38:8d:18:b2 ", {"gatt": True})
        assert (identified.address, identified.options) == (PENDANT, {"gatt": True})
        with pytest.raises(InvalidDevice, match="not a Bluetooth MAC"):
            await pairing.identify("A4:C1:38", {})
        with pytest.raises(InvalidDevice, match="bind_key"):
            await pairing.identify(PENDANT, {"bind_key": "short"})
