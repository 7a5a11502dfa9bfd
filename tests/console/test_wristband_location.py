"""A wristband's SOS outdoors, end to end: a real dispatchd with its JT/T 808 port, the
simulator over TCP, the position in the API and on the console (Debian's chromium); with the
centre's map tiles (a tile server on 127.0.0.1) and without them."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from contract.jt808 import AlarmBit, Result
from firmware_sim.wristband import Wristband
from tests.console.accessibility import axe_source, violations
from tests.console.conftest import Centre, log_in, run_async
from tests.fixtures.tiles import TileServer, tile_server
from tests.fixtures.waiting import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


PORT = _free_port()
MAP_PORT = _free_port()
TILE_PORT = _free_port()
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
    # No tiles configured: no map, Leaflet not even loaded, images only from this site.
    assert page.locator("#loc-map").is_hidden()
    assert not [u for u in centre.requests if "leaflet" in u or "/tiles/" in u]
    policy = page.evaluate("() => fetch('/').then((r) => r.headers.get('content-security-policy'))")
    assert "img-src 'self' data:;" in policy
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


@pytest.fixture
def tiles() -> Iterator[TileServer]:
    with tile_server(TILE_PORT) as server:
        yield server


def _box(page: Any, selector: str) -> dict[str, float]:
    box: dict[str, float] | None = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not drawn"
    return box


def _centre_of(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.centre_args(
    "--jt808-port",
    str(MAP_PORT),
    "--jt808-host",
    "127.0.0.1",
    "--map-tile-url-template",
    f"http://127.0.0.1:{TILE_PORT}/tiles/{{z}}/{{x}}/{{y}}.png",
    "--map-tile-attribution",
    "Tiles: test server",
)
def test_the_centres_tile_map_shows_the_fix_the_home_and_the_track(
    centre: Centre, page_for: Any, browser: Any, tiles: TileServer
) -> None:
    server = centre.server
    server.ensure_household("hh-wb-03")
    terminal = "13800138003"
    for args in (
        ("add", "--household", "hh-wb-03", "--resident", "Sun Li", "--terminal", terminal),
        ("place", "--household", "hh-wb-03", "--lat", str(HOME[0]), "--lon", str(HOME[1])),
    ):
        done = server.cli("wristband", *args)
        assert done.returncode == 0, done.stderr
    band = Wristband("127.0.0.1", MAP_PORT, terminal, lat=PARK[0] - 0.004, lon=PARK[1])

    async def walk_north_and_press() -> list[int]:
        async with band:
            await band.register()
            results = [await band.authenticate()]
            for _ in range(3):
                band.lat += 0.002
                results.append(await band.report())
            band.set_alarm(AlarmBit.EMERGENCY)
            results.append(await band.report())
            return results

    assert run_async(walk_north_and_press) == [Result.SUCCESS] * 5
    sos = [i for i in centre.incidents() if i["kind"] == "sos" and i["household_id"] == "hh-wb-03"]
    assert len(sos) == 1
    admin = server.operator_client()
    wait_until(
        lambda: admin.get(f"/api/v1/incidents/{sos[0]['id']}/location").json()["track"],
        check=lambda track: len(track) == 4,
        what="the walk's four reports in the track",
    )
    assert tiles.tiles_served() == []  # nothing asked before a map is shown

    page = page_for()
    log_in(page, centre)
    response = page.goto(server.url + "/")
    policy = response.headers["content-security-policy"]
    assert f"img-src 'self' data: http://127.0.0.1:{TILE_PORT};" in policy
    page.wait_for_selector("#app:not(.hidden)")
    page.click(f"#queue-body tr[data-id='{sos[0]['id']}']")
    page.wait_for_selector("#loc-map .leaflet-tile-loaded")
    served = tiles.tiles_served()
    assert served, "the map asked the configured tile server for tiles"
    # Every tile the page asked for came from the configured server, and was a real image.
    asked = [u for u in centre.requests if "/tiles/" in u]
    assert asked
    assert all(u.startswith(f"http://127.0.0.1:{TILE_PORT}/tiles/") for u in asked)
    assert page.evaluate(
        "() => [...document.querySelectorAll('#loc-map img.leaflet-tile-loaded')]"
        ".every((img) => img.naturalWidth === 256)"
    )
    # The fix, the home and the track are on the map, where they are: the park north of home.
    area = _box(page, "#loc-map")
    here = _centre_of(_box(page, "#loc-map path.loc-here"))
    home = _centre_of(_box(page, "#loc-map path.loc-home"))
    track = _box(page, "#loc-map path.loc-track")
    for x, y in (here, home):
        assert area["x"] <= x <= area["x"] + area["width"]
        assert area["y"] <= y <= area["y"] + area["height"]
    assert here[1] < home[1]  # north is up
    assert abs(here[0] - home[0]) < 3  # same longitude
    assert track["height"] > track["width"]  # a walk due north
    assert "Tiles: test server" in page.inner_text("#loc-map .leaflet-control-attribution")
    assert page.is_hidden("#location-card svg.track")  # the map replaces the plain drawing
    assert page.get_attribute("#loc-map .leaflet-control-zoom-in", "title") == "Zoom in"
    page.select_option("#lang", "zh-CN")
    page.wait_for_function(
        "() => document.querySelector('#loc-map .leaflet-control-zoom-in')?.title === '放大'"
    )
    assert page.get_attribute("#loc-map", "aria-label") == "位置、住址与轨迹地图"

    # axe-core on the card with its map, in both languages (its context lets axe's script in).
    axe_source()
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-GB", bypass_csp=True
    )
    try:
        checked = context.new_page()
        checked.set_default_timeout(10000)
        log_in(checked, centre)
        checked.click(f"#queue-body tr[data-id='{sos[0]['id']}']")
        checked.wait_for_selector("#loc-map .leaflet-tile-loaded")
        for lang in ("en", "zh-CN"):
            checked.select_option("#lang", lang)
            checked.wait_for_function("(lang) => document.documentElement.lang === lang", arg=lang)
            assert violations(checked) == [], lang
    finally:
        context.close()
    assert not [p for p in tiles.requests if not re.match(r"^/tiles/\d+/\d+/\d+\.png$", p)]
