"""The console knows the shift: who is there, when an alarm really happened, what each screen saw,
whose incident was taken, and what the next shift takes over.

Two operators in two browser contexts against one real dispatchd, alarms from a signing gateway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.wire import EventKind
from tests.console.conftest import OPERATOR_NAME, Centre, add_operator, log_in
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.browser

COLLEAGUE = "li.na"
COLLEAGUE_NAME = "Li Na"
COLLEAGUE_PASSWORD = "day-shift-2026-li"


def incident_id(gateway: Any, kind: EventKind, **kw: Any) -> str:
    incident = gateway.raise_alarm(kind, **kw).acks[0].incident
    assert incident is not None
    return str(incident.id)


def detail(centre: Centre, incident: str) -> dict[str, Any]:
    reply = centre.server.operator_client().get(f"/api/v1/incidents/{incident}")
    reply.raise_for_status()
    found: dict[str, Any] = reply.json()
    return found


def open_incident(page: Any, incident: str) -> None:
    page.click(f"#queue-body tr[data-id='{incident}']")
    page.wait_for_selector(f"#incident-view[data-id='{incident}']")


def test_presence_is_shown_and_a_break_returns_what_one_holds(
    centre: Centre, page_for: Any
) -> None:
    gateway = centre.household("hh-0301", resident="Zhou Min", community="East Lake")
    add_operator(
        centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator", display_name=COLLEAGUE_NAME
    )
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector("#my-presence[data-status=on_duty]")
    # A colleague logs in: the supervisor's page shows her on duty, by her display name.
    colleague = page_for()
    log_in(colleague, centre, COLLEAGUE, COLLEAGUE_PASSWORD)
    page.wait_for_selector(f"#presence [data-status=on_duty] .person[data-username='{COLLEAGUE}']")
    assert COLLEAGUE_NAME in page.inner_text("#presence")
    assert OPERATOR_NAME in page.inner_text("#presence")

    fall = incident_id(gateway, EventKind.FALL)
    colleague.wait_for_selector(f"#queue-body tr[data-id='{fall}']")
    open_incident(colleague, fall)
    colleague.click("#act-ack")
    colleague.wait_for_selector("#incident-view[data-state=acknowledged]")
    # The queue names the holder by display name, not by login.
    page.wait_for_selector(f"#queue-body tr[data-id='{fall}'] td:has-text('{COLLEAGUE_NAME}')")
    assert COLLEAGUE not in page.inner_text(f"#queue-body tr[data-id='{fall}']")

    # She goes on break (from the queue): the fall returns to the queue at once, and everyone
    # sees her on break.
    colleague.click("[data-nav=queue]")
    colleague.click("#break-toggle")
    colleague.wait_for_selector("#my-presence[data-status=on_break]")
    colleague.wait_for_selector("#break-banner:not(.hidden)")
    assert colleague.inner_text("#break-toggle") == "Back on duty"
    page.wait_for_selector(f"#presence [data-status=on_break] .person[data-username='{COLLEAGUE}']")
    page.wait_for_selector(f"#queue-body tr[data-id='{fall}'].attention")
    state = detail(centre, fall)
    assert state["operator"] is None
    assert state["state"] == "new"
    returned = [e for e in state["timeline"] if e["name"] == "returned"]
    assert returned
    assert returned[-1]["detail"]["reason"] == "on break"
    # Her own screen says why the fall left her.
    colleague.wait_for_selector("#notice:not(.hidden)")
    assert "on break" in colleague.inner_text("#notice-text")

    # Back on duty from the banner, on any page.
    colleague.click("[data-nav=gateways]")
    colleague.click("#break-end")
    colleague.wait_for_selector("#my-presence[data-status=on_duty]")
    page.wait_for_selector(f"#presence [data-status=on_duty] .person[data-username='{COLLEAGUE}']")


def test_an_operator_whose_incident_is_taken_over_is_told(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0311", resident="Fang Hui", community="West Gate")
    add_operator(
        centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator", display_name=COLLEAGUE_NAME
    )
    sos = incident_id(gateway, EventKind.SOS)
    colleague = page_for()
    log_in(colleague, centre, COLLEAGUE, COLLEAGUE_PASSWORD)
    colleague.wait_for_selector(f"#queue-body tr[data-id='{sos}']")
    open_incident(colleague, sos)
    colleague.click("#act-ack")
    colleague.wait_for_selector("#incident-view[data-state=acknowledged]")

    page = page_for()
    log_in(page, centre)
    page.select_option("#lang", "zh-CN")
    open_incident(page, sos)
    assert page.inner_text("#act-ack") == "接管"
    assert COLLEAGUE_NAME in page.inner_text("#incident-holder")
    page.click("#act-ack")
    page.wait_for_selector("#takeover-form:not(.hidden)")
    page.fill("#takeover-form input[name=reason]", "家属要求主管处理")
    page.click("#takeover-form button[type=submit]")
    page.wait_for_selector(f"#incident-holder:has-text('{OPERATOR_NAME}')")
    # The warning is in the operator's language and names the colleague by display name.
    assert page.inner_text("#action-error") == f"已从 {COLLEAGUE_NAME} 接管此警情，已通知对方。"

    colleague.wait_for_selector("#notice:not(.hidden)")
    told = colleague.inner_text("#notice-text")
    assert OPERATOR_NAME in told
    assert "家属要求主管处理" in told
    assert "took over" in told
    colleague.click("#notice-open")
    colleague.wait_for_selector(f"#incident-view[data-id='{sos}']")
    # Her open incident view follows too: the incident is no longer hers to work.
    colleague.wait_for_selector("#act-ack:text-is('Take over')")
    assert colleague.is_disabled("#act-callback")


def test_timers_run_from_the_alarm_and_a_late_alarm_says_so(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0321", resident="Kong Lei", community="North Market")
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector("#queue-empty:not(.hidden)")
    # A fall buffered through a ten-minute outage, and one that arrives at once.
    late = incident_id(gateway, EventKind.FALL, at=datetime.now(UTC) - timedelta(minutes=10))
    fresh = incident_id(
        centre.household("hh-0322", resident="Yan Ping", community="East Lake"), EventKind.SOS
    )
    row = f"#queue-body tr[data-id='{late}']"
    page.wait_for_selector(row)
    assert "happened 10 min ago, arrived late" in page.inner_text(row)
    assert page.inner_text(f"{row} td.age .since").startswith("10:")
    assert "arrived late" not in page.inner_text(f"#queue-body tr[data-id='{fresh}']")
    # Its acknowledge and call-back deadlines have passed already: red, negative.
    assert page.locator(f"{row} .sla-over").count() == 2
    page.select_option("#lang", "zh-CN")
    assert "10 分钟前发生，延迟到达" in page.inner_text(row)
    page.select_option("#lang", "en")

    # The console reported what it showed: first_seen_at is set for both, once.
    shown = wait_until(
        lambda: [detail(centre, i)["first_seen_at"] for i in (late, fresh)],
        check=lambda seen: all(seen),
        within=5,
    )
    open_incident(page, late)
    times = page.inner_text("#incident-times")
    for label in ("Alarm at", "Received", "First shown", "arrived late"):
        assert label in times
    firsts = [e for e in detail(centre, late)["timeline"] if e["name"] == "first_seen"]
    assert len(firsts) == 1
    assert "First shown" in page.inner_text("#timeline")
    assert detail(centre, late)["first_seen_at"] == shown[0]


def test_a_console_on_break_reports_nothing_as_seen(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0331", resident="Ren Jie", community="West Gate")
    page = page_for()
    log_in(page, centre)
    page.click("#break-toggle")
    page.wait_for_selector("#my-presence[data-status=on_break]")
    leak = incident_id(gateway, EventKind.WATER_LEAK)
    page.wait_for_selector(f"#queue-body tr[data-id='{leak}']")
    # The page has shown it and re-read the queue; the operator is still on break, nothing seen.
    page.wait_for_function("() => document.querySelectorAll('#queue-body tr').length === 1")
    page.click("[data-nav=gateways]")
    page.click("[data-nav=queue]")
    page.wait_for_selector(f"#queue-body tr[data-id='{leak}']")
    assert detail(centre, leak)["first_seen_at"] is None
    presence = centre.server.operator_client().get("/api/v1/operators/presence").json()
    assert {p["username"]: p["status"] for p in presence}["wang.fang"] == "on_break"
    page.click("#break-toggle")
    page.wait_for_selector("#my-presence[data-status=on_duty]")
    wait_until(lambda: detail(centre, leak)["first_seen_at"], check=bool, within=5)


def test_the_handover_lists_what_is_open_who_holds_it_and_what_is_late(
    centre: Centre, page_for: Any
) -> None:
    overdue = incident_id(
        centre.household("hh-0341", resident="Shi Lan", community="East Lake"),
        EventKind.FALL,
        at=datetime.now(UTC) - timedelta(minutes=7),
    )
    held = incident_id(
        centre.household("hh-0342", resident="Du Qiang", community="West Gate"), EventKind.SMOKE
    )
    admin = centre.server.operator_client()
    assert admin.post(f"/api/v1/incidents/{held}/acknowledge").status_code == 200
    page = page_for()
    log_in(page, centre)
    page.click("[data-nav=handover]")
    page.wait_for_selector(f"#handover-body tr[data-id='{held}']")
    late_row = page.inner_text(f"#handover-body tr[data-id='{overdue}']")
    assert "Shi Lan" in late_row
    assert "nobody" in late_row
    assert "acknowledge, call back" in late_row
    assert "arrived late" in late_row
    held_row = page.inner_text(f"#handover-body tr[data-id='{held}']")
    assert "admin" in held_row
    assert "in time" in held_row
    summary = page.inner_text("#handover-summary")
    assert "Open 2" in summary.replace("\n", " ")
    assert "Overdue 1" in summary.replace("\n", " ")
    assert OPERATOR_NAME in page.inner_text("#handover-people")
    # Printed, it is the handover alone: no top bar, no strip.
    page.emulate_media(media="print")
    assert page.is_hidden(".topbar")
    assert page.is_hidden("#alert-strip")
    assert page.is_visible("#handover-body")
    page.emulate_media(media="screen")
