"""The console draws the change it is pushed: an alarm reaches the queue and the open incident
without the page asking the server for anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from contract.wire import EventKind
from tests.console.conftest import Centre, add_operator, log_in, press_joins

pytestmark = pytest.mark.browser

T = TypeVar("T")


_NO_READ_IN_FLIGHT = (
    "() => { const d = document.body.dataset;"
    " return Number(d.readsDone || 0) === Number(d.reads || 0); }"
)


class Requests:
    """The page's requests while recording, but the live stream's own connection and the
    presence list, which is read when someone's presence changes (the page's own stream opening
    puts its operator on duty), not for an alarm."""

    def __init__(self, page: Any) -> None:
        self.seen: list[tuple[str, str]] = []
        self.on = False
        page.on("request", self._add)

    def _add(self, request: Any) -> None:
        path = request.url.split("/", 3)[3]
        if self.on and path not in ("api/v1/stream", "api/v1/operators/presence"):
            self.seen.append((request.method, path))

    def during(self, page: Any, step: Callable[[], T], *, timer: str = "") -> T:
        """Record the requests the page makes while ``step`` runs. The safety re-read every
        30 s, or a page's own timer (known by its request for ``timer``), may fall in the
        window: then the step is measured again (at most three times)."""
        for _attempt in range(3):
            # A re-read begun before the window would make its later requests inside it.
            page.wait_for_function(_NO_READ_IN_FLIGHT)
            before = page.evaluate("() => Number(document.body.dataset.reads || 0)")
            self.seen.clear()
            self.on = True
            result = step()
            self.on = False
            timed = any(path == timer for _method, path in self.seen)
            reads = page.evaluate("() => Number(document.body.dataset.reads || 0)")
            if not timed and reads == before:
                break
        return result


def test_a_pushed_alarm_is_drawn_without_a_request(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0101", resident="Sun Li", community="North Park")
    page = page_for()
    requests = Requests(page)
    log_in(page, centre)
    page.wait_for_selector("body[data-live=connected]")
    # Every re-read begun is done (logging in and the stream's opening may each start one).
    page.wait_for_function(
        "() => { const d = document.body.dataset;"
        " return Number(d.readsDone || 0) >= 1 && d.readsDone === d.reads; }"
    )
    page.wait_for_selector("#queue-empty:not(.hidden)")

    def new_alarm() -> str:
        incident = gateway.raise_alarm(EventKind.SOS).acks[0].incident
        assert incident is not None
        row = page.wait_for_selector(f"#queue-body tr[data-id='{incident.id}']", timeout=3000)
        assert "Sun Li" in row.inner_text()
        # The one request the page makes for a new row is its report that a screen showed it.
        page.wait_for_function(
            "(id) => window.ConsoleKit.state.seenSent.has(id)", arg=incident.id, timeout=3000
        )
        return incident.id

    incident_id = requests.during(page, new_alarm)
    assert requests.seen == [("POST", f"api/v1/incidents/{incident_id}/seen")], requests.seen

    # The incident is open with a note being typed; another press joins it.
    page.click(f"#queue-body tr[data-id='{incident_id}']")
    page.wait_for_selector(f"#incident-view[data-id='{incident_id}']")
    page.wait_for_function("() => document.querySelectorAll('#timeline li').length >= 2")
    page.fill("#note-form input[name=text]", "calling the daughter")

    requests.during(page, lambda: press_joins(page, gateway, incident_id, EventKind.SOS))
    assert requests.seen == [], requests.seen
    # The newest entry is on top, with the room the household's card gives its device.
    assert "bedroom" in page.inner_text("#timeline li.tl-event >> nth=0")
    # What the operator was typing, and where, is kept.
    assert page.input_value("#note-form input[name=text]") == "calling the daughter"
    assert page.evaluate("() => document.activeElement.name") == "text"


def test_a_gateway_revoked_elsewhere_is_drawn_without_a_request(
    centre: Centre, page_for: Any
) -> None:
    add_operator(centre.server, "admin.qin", "admin-qin-pass-2026", role="admin")
    gateways = [
        centre.household(f"hh-020{n}", resident=f"Resident {n}", community="East Gate")
        for n in range(3)
    ]
    page = page_for()
    requests = Requests(page)
    log_in(page, centre, "admin.qin", "admin-qin-pass-2026")
    page.goto(centre.server.url + "/#/gateways")
    page.wait_for_selector("body[data-live=connected]")
    for gateway in gateways:
        page.wait_for_selector(f"#gateways-body tr[data-id='{gateway.id}']")
    other = centre.server.operator_client()
    waiting = list(gateways)

    def revoke_one() -> str:
        gateway_id = waiting.pop(0).id
        assert other.post(f"/api/v1/gateways/{gateway_id}/revoke").is_success
        page.wait_for_function(
            """(id) => {
              const row = document.querySelector(`#gateways-body tr[data-id="${id}"]`);
              return Boolean(row) && row.textContent.includes("revoked");
            }""",
            arg=gateway_id,
        )
        return gateway_id

    # The page re-reads every 15 s for the devices' health (with the DC-09 receiver's figures).
    requests.during(page, revoke_one, timer="api/v1/dc09/receiver")
    assert requests.seen == [], requests.seen
    # Only what was revoked says so.
    revoked = {g.id for g in gateways} - {g.id for g in waiting}
    for gateway in gateways:
        row = page.inner_text(f"#gateways-body tr[data-id='{gateway.id}']")
        assert ("revoked" in row) == (gateway.id in revoked), row


def alarm_in_the_queue(centre: Centre, page_for: Any, kind: EventKind) -> tuple[Any, str, str]:
    """An alarm of ``kind`` in the queue of a console page with no re-read in flight: (the page,
    the incident's id, its row's selector)."""
    gateway = centre.household("hh-0105", resident="Guo Ping", community="North Gate")
    incident = gateway.raise_alarm(kind).acks[0].incident
    assert incident is not None
    page = page_for()
    log_in(page, centre)
    row = f"#queue-body tr[data-id='{incident.id}']"
    page.wait_for_selector(f"{row} .sla")
    page.wait_for_function(_NO_READ_IN_FLIGHT)
    return page, str(incident.id), row


def test_a_row_pressed_as_the_page_moves_still_opens(centre: Centre, page_for: Any) -> None:
    """An operator presses an alarm's row as a colleague acknowledges it: the alarm strip above
    goes and the queue moves up under the pointer before the button is released, so the browser
    sends the click elsewhere. The alarm pressed opens all the same."""
    add_operator(centre.server, "li.na", "li-na-pass-2026", role="operator", display_name="Li Na")
    colleague = centre.server.login("li.na", "li-na-pass-2026")
    page, incident_id, row = alarm_in_the_queue(centre, page_for, EventKind.FALL)
    page.wait_for_selector("#alert-strip:not(.hidden)")
    box = page.locator(f"{row} td.age").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    assert colleague.post(f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200
    page.wait_for_selector("#alert-strip.hidden", state="attached")
    moved = page.locator(row).bounding_box()
    assert moved["y"] + moved["height"] < box["y"], "the queue did not move under the pointer"
    page.mouse.up()
    page.wait_for_selector(f"#incident-view[data-id='{incident_id}']", timeout=3000)
    assert "Li Na" in page.inner_text("#incident-holder")


def test_the_queue_timers_tick_in_place(centre: Centre, page_for: Any) -> None:
    """The age and the timers of a row get new text every second, not new elements: what the
    operator's pointer or screen reader is on stays."""
    page, _, row = alarm_in_the_queue(centre, page_for, EventKind.SOS)
    before = page.evaluate(
        """(sel) => {
             window.marked = Array.from(document.querySelectorAll(`${sel} td, ${sel} td *`));
             return document.querySelector(`${sel} .sla`).textContent;
           }""",
        row,
    )
    page.wait_for_function(
        "([sel, text]) => document.querySelector(`${sel} .sla`).textContent !== text",
        arg=[row, before],
    )
    assert page.evaluate("() => window.marked.every((el) => el.isConnected)")
