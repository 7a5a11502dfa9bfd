"""A real dispatchd, a gateway raising alarms with its own dispatch client, headless Chromium.

The browser is Debian's chromium driven by Playwright's sync API (one browser per module, a fresh
context per test). Every request the page makes is recorded, so a test can prove that nothing left
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import playwright.sync_api as playwright_sync
import pytest

from contract.wire import Event, EventKind, Heartbeat, IngestBatch, IngestReply, Lane
from forwarder.client import Credential, DispatchClient
from tests.fixtures.cli import run_off_loop
from tests.fixtures.dispatch_thread import ThreadServer
from tests.fixtures.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # An alarm's sound must play in a page nobody has clicked yet (the test cannot click first).
    "--autoplay-policy=no-user-gesture-required",
]
OPERATOR = "wang.fang"
OPERATOR_NAME = "Wang Fang"
OPERATOR_PASSWORD = "night-shift-2026"
TIMEZONE = "Asia/Shanghai"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_seq = itertools.count(1)


T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion in a thread of its own.

    Playwright's sync API keeps an event loop running in the test's thread, so the gateway's
    asyncio client cannot run there.
    """

    async def main() -> T:
        return await make()

    return run_off_loop(lambda: asyncio.run(main()), timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Gateway:
    """An enrolled gateway that raises alarms as the real one does: signed IngestBatches."""

    credential: Credential
    url: str

    @property
    def id(self) -> str:
        return self.credential.gateway_id

    def raise_alarm(
        self, kind: EventKind, *, device: str = "pendant-1", at: datetime | None = None
    ) -> IngestReply:
        """Send one alarm; ``at`` (the sensor's time, default now) in the past is a late one."""
        event = Event.create(
            gateway_id=self.id,
            seq=next(_seq),
            kind=kind,
            at=at or datetime.now(UTC),
            device_id=device,
            payload={"battery_pct": 80},
        )

        async def send() -> IngestReply:
            async with DispatchClient(
                self.url, credential=self.credential, insecure_http=True
            ) as client:
                return await client.send_events(IngestBatch(gateway_id=self.id, events=[event]))

        return run_async(send)

    def heartbeat(self, *, backlog: int = 0) -> None:
        beat = Heartbeat(
            gateway_id=self.id,
            sent_at=datetime.now(UTC),
            uptime_s=3600.0,
            version="1.4.0",
            buffer_depth={Lane.ALARM: 0, Lane.TELEMETRY: backlog},
        )

        async def send() -> None:
            async with DispatchClient(
                self.url, credential=self.credential, insecure_http=True
            ) as client:
                await client.send_heartbeat(beat)

        run_async(send)


@dataclass
class Centre:
    """The dispatch centre under test: the server, its operator, households and gateways."""

    server: ThreadServer
    requests: list[str] = field(default_factory=list)

    def household(
        self, household_id: str, *, resident: str, community: str, room: str = "bedroom"
    ) -> Gateway:
        """A household with a full card, and its enrolled gateway."""
        admin = self.server.operator_client()
        body = {
            "id": household_id,
            "name": resident,
            "address": f"{household_id.upper()} Riverside Road 12, flat 3",
            "community": community,
            "phone": "+86 21 5555 0100",
            "key_safe": "key safe by the door, code 4711",
            "access_notes": "Dog in the flat; ring twice.",
            "notes": "",
            "residents": [
                {
                    "name": resident,
                    "birth_year": 1941,
                    "phones": ["+86 139 0000 0001"],
                    "medical_notes": "Atrial fibrillation; warfarin.",
                    "language": "zh",
                }
            ],
            "emergency_contacts": [
                {
                    "name": "Daughter Li",
                    "relation": "daughter",
                    "phones": ["+86 139 0000 0002"],
                    "has_key": True,
                }
            ],
            "devices": [{"id": "pendant-1", "room": room, "kind": "sos", "label": "pendant"}],
        }
        reply = admin.post("/api/v1/households", json=body)
        assert reply.status_code == 201, reply.text
        code = self.server.enroll_code(household_id)
        credential = run_async(
            lambda: DispatchClient.enroll(
                self.server.url, code=code, gateway_id=f"gw-{household_id}", insecure_http=True
            )
        )
        return Gateway(credential, self.server.url)

    def incidents(self) -> list[dict[str, Any]]:
        reply = self.server.operator_client().get("/api/v1/incidents", params={"state": "all"})
        reply.raise_for_status()
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if urlsplit(u).hostname not in ("127.0.0.1", None)]


def make_centre(
    factory: Callable[..., ThreadServer], *args: str, role: str = "supervisor"
) -> Centre:
    """A dispatchd in the centre's zone (with ``args`` besides) and its operator of ``role``."""
    server = factory(args=("--timezone", TIMEZONE, *args))
    add_operator(server, OPERATOR, OPERATOR_PASSWORD, role=role, display_name=OPERATOR_NAME)
    return Centre(server)


def add_operator(
    server: ThreadServer, username: str, password: str, *, role: str, display_name: str = ""
) -> None:
    reply = server.operator_client().post(
        "/api/v1/operators",
        json={
            "username": username,
            "display_name": display_name or username,
            "role": role,
            "password": password,
        },
    )
    assert reply.status_code == 201, reply.text


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "centre_args(*args): more dispatchd serve flags for the test's centre"
    )


@pytest.fixture
def centre(
    request: pytest.FixtureRequest, thread_server_factory: Callable[..., ThreadServer]
) -> Centre:
    marker = request.node.get_closest_marker("centre_args")
    return make_centre(thread_server_factory, *(marker.args if marker else ()))


@pytest.fixture
def page_for(browser: Any, centre: Centre) -> Iterator[Callable[..., Any]]:
    """``page_for(width=1280, height=800)``: a fresh browser page whose requests are recorded."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(*, width: int = 1280, height: int = 800) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        # What must appear is waited for this long: the whole suite keeps both cores busy, and
        # a page, its server and the browser then take turns (nothing here waits for an absence).
        page.set_default_timeout(10000)
        page.on("request", lambda r: centre.requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Anything the Content-Security-Policy blocks is an error of the page.
        page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the page: {errors}"
    assert centre.foreign_requests() == []


def press_joins(page: Any, gateway: Any, incident_id: str, kind: EventKind) -> None:
    """Another press at the same home joins the open incident; waits until the page draws it."""
    events = page.locator("#timeline li.tl-event").count()
    again = gateway.raise_alarm(kind).acks[0].incident
    assert again is not None
    assert again.id == incident_id
    page.wait_for_function(
        "(n) => document.querySelectorAll('#timeline li.tl-event').length > n", arg=events
    )


def away_until_local(days: int) -> tuple[str, datetime]:
    """The date ``days`` from now in the centre's zone (as the away form takes it), and 10:00
    on it as a UTC instant."""
    zone = ZoneInfo(TIMEZONE)
    day = (datetime.now(zone) + timedelta(days=days)).date()
    return day.isoformat(), datetime.combine(day, time(10, 0), tzinfo=zone).astimezone(UTC)


def log_in(
    page: Any, centre: Centre, username: str = OPERATOR, password: str = OPERATOR_PASSWORD
) -> None:
    page.goto(centre.server.url + "/")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not(.hidden)")


class HeldRequests:
    """The page's requests matching ``pattern`` wait, unanswered, from now until
    :meth:`release` (later ones then go through): what the page shows, or lets a person type,
    while an answer is on its way."""

    def __init__(self, page: Any, pattern: str) -> None:
        self._page = page
        self._held: list[Any] = []
        self._holding = True
        page.route(pattern, self._hold)

    def _hold(self, route: Any) -> None:
        if self._holding:
            self._held.append(route)
        else:
            route.continue_()

    def wait(self, within: float = 10) -> None:
        """Until the page has asked (and is held)."""
        wait_until(lambda: (self._page.wait_for_timeout(50), self._held)[1], within=within)

    def release(self) -> None:
        self._holding = False
        for route in self._held:
            route.continue_()
