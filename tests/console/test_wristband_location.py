"""A wristband's SOS outdoors, end to end: a real dispatchd with its JT/T 808 port, the
simulator over TCP, the position in the API and on the console (Debian's chromium)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from contract.jt808 import AlarmBit, Result
from firmware_sim.wristband import Wristband
from tests.console.conftest import Centre, log_in, run_async


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


PORT = _free_port()
TERMINAL = "13800138000"
HOME = (31.2304, 121.4737)
PARK = (31.2404, 121.4737)  # 1.11 km north of home


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.centre_args(
    "--jt808-port",
    str(PORT),
    "--jt808-host",
    "127.0.0.1",
    "--jt808-map-url",
    "https://map.example/?mlat={lat}&mlon={lon}",
)
def test_wristband_sos_shows_its_position_on_the_console(centre: Centre, page_for: Any) -> None:
    server = centre.server
    server.ensure_household("hh-wb-01")
    bound = server.cli(
        "wristband",
        "add",
        "--household",
        "hh-wb-01",
        "--resident",
        "Chen Mei",
        "--terminal",
        TERMINAL,
    )
    assert bound.returncode == 0, bound.stderr
    placed = server.cli(
        "wristband",
        "place",
        "--household",
        "hh-wb-01",
        "--lat",
        str(HOME[0]),
        "--lon",
        str(HOME[1]),
    )
    assert placed.returncode == 0, placed.stderr
    listed = server.cli("wristband", "list")
    assert TERMINAL in listed.stdout
    assert "Chen Mei" in listed.stdout

    band = Wristband("127.0.0.1", PORT, TERMINAL, lat=PARK[0], lon=PARK[1])

    async def walk_and_press() -> list[int]:
        async with band:
            await band.register()
            results = [await band.authenticate(), await band.report()]
            band.set_alarm(AlarmBit.EMERGENCY)
            results.append(await band.report())
            return results

    assert run_async(walk_and_press) == [Result.SUCCESS] * 3
    sos = [i for i in centre.incidents() if i["kind"] == "sos"]
    assert len(sos) == 1
    position = sos[0]["position"]
    assert (position["lat"], position["lon"], position["fix"]) == (*PARK, True)
    assert position["fix_at"]

    page = page_for()
    log_in(page, centre)
    page.click(f"#queue-body tr[data-id='{sos[0]['id']}']")
    page.wait_for_selector("#loc-latest")
    latest = page.inner_text("#loc-latest")
    assert "31.240400, 121.473700" in latest
    assert "GNSS fix" in latest
    assert page.inner_text("#loc-distance") == "1.11 km"
    assert page.get_attribute("#loc-map-link", "href") == (
        "https://map.example/?mlat=31.240400&mlon=121.473700"
    )
    assert page.is_visible("#location-card svg.track")
    page.select_option("#lang", "zh-CN")
    page.wait_for_function(
        "() => document.querySelector('#location-card h3')?.textContent === '位置'"
    )
    assert "卫星定位" in page.inner_text("#loc-latest")


@pytest.mark.browser
def test_a_supervisor_binds_and_removes_a_wristband_in_the_console(
    centre: Centre, page_for: Any
) -> None:
    server = centre.server
    server.ensure_household("hh-wb-02")
    page = page_for()
    log_in(page, centre)
    page.click("[data-nav=households]")
    page.click("#adm-hh-body tr[data-id='hh-wb-02'] a")
    page.wait_for_selector("#wristband-panel #wb-bind")
    assert page.input_value("#wb-terminal") == ""  # nothing chosen for the supervisor
    page.fill("#wb-terminal", "139 0000 4242")
    page.fill("#wb-resident", "Zhao Lan")
    page.click("#wb-bind")
    page.wait_for_selector("#wristband-panel li[data-terminal='13900004242']")
    listed = server.cli("wristband", "list")
    assert "13900004242\thh-wb-02\tZhao Lan" in listed.stdout
    page.click("#wristband-panel li[data-terminal='13900004242'] .wb-remove")
    page.wait_for_selector("#wristband-panel li[data-terminal='13900004242']", state="detached")
    assert "13900004242" not in server.cli("wristband", "list").stdout
