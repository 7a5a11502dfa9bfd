"""The console's forms tell the truth, nothing waits in silence, restores show, escalations show.

Two operators in two browser contexts where it matters: what one does on an incident reaches the
other's open page through the live stream, and must not wipe what the other is typing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contract.wire import EventKind
from tests.console.conftest import (
    OPERATOR_NAME,
    TIMEZONE,
    Centre,
    HeldRequests,
    add_operator,
    log_in,
)

pytestmark = pytest.mark.browser

COLLEAGUE = "li.na"
COLLEAGUE_PASSWORD = "day-shift-2026-li"


def open_incident(page: Any, incident_id: str) -> None:
    page.click(f"#queue-body tr[data-id='{incident_id}']")
    page.wait_for_selector(f"#incident-view[data-id='{incident_id}']")


def raise_alarm(gateway: Any, kind: EventKind) -> str:
    incident = gateway.raise_alarm(kind).acks[0].incident
    assert incident is not None
    return str(incident.id)


def test_nothing_typed_on_one_incident_is_offered_on_the_next(
    centre: Centre, page_for: Any
) -> None:
    leak = raise_alarm(centre.household("hh-0201", resident="Ma Li", community="East Lake"),
                       EventKind.WATER_LEAK)  # fmt: skip
    gas = raise_alarm(centre.household("hh-0202", resident="He Bo", community="West Gate"),
                      EventKind.GAS)  # fmt: skip
    add_operator(centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator")
    page = page_for()
    log_in(page, centre)
    colleague = page_for()
    log_in(colleague, centre, COLLEAGUE, COLLEAGUE_PASSWORD)

    plumber = centre.server.operator_client().post(
        "/api/v1/rescue/rescuers",
        json={"name": "Plumber Zhou", "phone": "+86 139 0000 0009", "status": "available"},
    )
    assert plumber.status_code == 201, plumber.text
    plumber_id = str(plumber.json()["id"])
    page.wait_for_selector(f"#queue-body tr[data-id='{gas}']")
    open_incident(page, leak)
    page.click("#act-ack")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")
    page.wait_for_selector(f"#rescue-form option[value='{plumber_id}']", state="attached")
    page.select_option("#rescue-form select[name=rescuer]", plumber_id)
    page.fill("#callback-form input[name=note]", "neighbour has a key")
    page.fill("#resolve-form input[name=note]", "valve closed")
    page.fill("#resolve-form input[name=no_call_reason]", "warden on site")

    # A colleague's note on the same incident re-renders it live: what is typed stays.
    colleague.wait_for_selector(f"#queue-body tr[data-id='{leak}']")
    open_incident(colleague, leak)
    colleague.fill("#note-form input[name=text]", "the plumber is on the way")
    colleague.click("#note-form button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#timeline').innerText.includes('the plumber is on the way')"
    )
    assert page.input_value("#rescue-form select[name=rescuer]") == plumber_id
    assert page.input_value("#callback-form input[name=note]") == "neighbour has a key"

    # Another incident: every field starts empty, nothing chosen.
    page.click("[data-nav=queue]")
    open_incident(page, gas)
    assert page.input_value("#rescue-form select[name=rescuer]") == ""
    assert page.input_value("#callback-form input[name=note]") == ""
    assert page.input_value("#resolve-form input[name=note]") == ""
    assert page.input_value("#resolve-form input[name=no_call_reason]") == ""
    assert page.input_value("#callback-form select[name=outcome]") == ""
    assert page.input_value("#resolve-form select[name=outcome]") == ""
    # Back on the first incident, nothing of it was kept either.
    page.click("[data-nav=queue]")
    open_incident(page, leak)
    assert page.input_value("#rescue-form select[name=rescuer]") == ""


def test_no_call_outcome_or_resolution_is_chosen_for_the_operator(
    centre: Centre, page_for: Any
) -> None:
    fall = raise_alarm(centre.household("hh-0211", resident="Gao Yu", community="East Lake"),
                       EventKind.FALL)  # fmt: skip
    page = page_for()
    log_in(page, centre)
    open_incident(page, fall)
    assert page.input_value("#callback-form select[name=outcome]") == ""
    assert page.input_value("#resolve-form select[name=outcome]") == ""
    page.click("#act-ack")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")

    # Resolve is not offered: no call is recorded and no reason given.
    assert page.is_disabled("#act-resolve")
    # An unchanged call form records nothing: the operator must say how the call went.
    page.click("#act-callback")
    page.wait_for_timeout(300)
    detail = centre.server.operator_client().get(f"/api/v1/incidents/{fall}").json()
    assert detail["callback_at"] is None
    assert [e for e in detail["timeline"] if e["name"] == "callback_made"] == []
    assert page.evaluate("() => document.querySelector('#callback-form').checkValidity()") is False

    # A reason without a call enables Resolve; clearing it disables it again.
    page.fill("#resolve-form input[name=no_call_reason]", "false alarm confirmed on site")
    assert page.is_enabled("#act-resolve")
    page.fill("#resolve-form input[name=no_call_reason]", "")
    assert page.is_disabled("#act-resolve")

    # A recorded call attempt (even unanswered) enables it.
    page.select_option("#callback-form select[name=outcome]", "no_answer")
    page.click("#act-callback")
    page.wait_for_selector("#incident-view[data-state=callback_made]")
    # Not kept for the next call: cleared once the request succeeded, which the pushed change
    # may draw before.
    page.wait_for_function(
        "() => document.querySelector('#callback-form select[name=outcome]').value === ''",
        timeout=5000,
    )
    assert page.is_enabled("#act-resolve")
    # Resolving still needs a chosen outcome.
    page.click("#act-resolve")
    page.wait_for_timeout(300)
    assert (
        centre.server.operator_client().get(f"/api/v1/incidents/{fall}").json()["state"]
        == "callback_made"
    )
    page.select_option("#resolve-form select[name=outcome]", "no_answer")
    page.click("#act-resolve")
    page.wait_for_selector("#queue-view:not(.hidden)")
    final = centre.server.operator_client().get(f"/api/v1/incidents/{fall}").json()
    assert final["outcome"] == "no_answer"


def test_a_restore_changes_the_row_and_stops_its_flashing(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0221", resident="Xu Hua", community="North Market")
    smoke = raise_alarm(gateway, EventKind.SMOKE)
    page = page_for()
    log_in(page, centre)
    row = f"#queue-body tr[data-id='{smoke}']"
    page.wait_for_selector(f"{row}.attention")
    assert raise_alarm(gateway, EventKind.SMOKE_RESTORE) == smoke
    page.wait_for_selector(f"{row}.restored")
    assert "attention" not in (page.get_attribute(row, "class") or "")
    restored_at = datetime.fromisoformat(centre.incidents()[0]["last_event_at"])
    local = restored_at.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M")
    assert f"Smoke cleared {local}" in page.inner_text(row)
    assert centre.incidents()[0]["state"] == "new"  # still open: someone must look
    page.select_option("#lang", "zh-CN")
    assert f"烟雾已解除 {local}" in page.inner_text(row)
    page.select_option("#lang", "en")
    open_incident(page, smoke)
    assert "Smoke cleared" in page.inner_text("#timeline")
    assert "smoke_restore" not in page.inner_text("#timeline")


#: Priority-2 alarms join the strip after 1 s instead of 60 s.
quick = pytest.mark.centre_args("--priority2-alert-after", "1")


def sounds(page: Any) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate(
        "() => ({life: Number(document.body.dataset.sounds || 0),"
        " soft: Number(document.body.dataset.softSounds || 0)})"
    )
    return counts


@quick
def test_a_waiting_priority_two_alarm_sounds_softly_and_joins_the_strip(
    centre: Centre, page_for: Any
) -> None:
    config = centre.server.operator_client().get("/api/v1/console/config").json()
    assert config["priority2_alert_after_s"] == 1.0
    gateway = centre.household("hh-0231", resident="Tang Fei", community="East Lake")
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector("body[data-live=connected]")
    inactivity = raise_alarm(gateway, EventKind.INACTIVITY)
    page.wait_for_selector(f"#queue-body tr[data-id='{inactivity}'].attention", timeout=4000)
    page.wait_for_selector("#alert-strip:not(.hidden)")
    assert "Inactivity" in page.inner_text("#alert-text")
    assert page.get_attribute("#alert-strip", "data-priority") == "2"
    page.wait_for_function("() => Number(document.body.dataset.softSounds || 0) >= 1", timeout=4000)
    assert sounds(page)["life"] == 0  # the softer tone, not the life-safety one
    page.click("#alert-ack")
    page.wait_for_selector("#alert-strip", state="hidden")


@quick
def test_mute_is_for_the_shift_shown_and_ignored_by_life_safety(
    centre: Centre, page_for: Any
) -> None:
    gateway = centre.household("hh-0241", resident="Lu Wen", community="West Gate")
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector("body[data-live=connected]")
    assert page.is_hidden("#mute-banner")
    page.click("#sound-toggle")
    page.wait_for_selector("#mute-banner:not(.hidden)")
    assert "muted" in page.inner_text("#mute-banner").lower()
    leak = raise_alarm(gateway, EventKind.WATER_LEAK)
    page.wait_for_selector(f"#queue-body tr[data-id='{leak}'].attention", timeout=4000)
    page.wait_for_timeout(2500)
    assert sounds(page)["soft"] == 0  # muted: the leak waits visibly, not audibly
    sos = raise_alarm(gateway, EventKind.SOS)
    page.wait_for_selector(f"#queue-body tr[data-id='{sos}']")
    page.wait_for_function("() => Number(document.body.dataset.sounds || 0) >= 1", timeout=4000)
    # The mute ends with the shift: a new login sounds again.
    page.click("#logout")
    log_in(page, centre)
    assert page.is_hidden("#mute-banner")


def test_supervisors_see_escalations(centre: Centre, page_for: Any) -> None:
    fall = raise_alarm(centre.household("hh-0251", resident="Qian Jun", community="East Lake"),
                       EventKind.FALL)  # fmt: skip
    add_operator(centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator")
    colleague = page_for()
    log_in(colleague, centre, COLLEAGUE, COLLEAGUE_PASSWORD)
    assert colleague.is_hidden("[data-nav=escalations]")  # operators have no such panel
    colleague.wait_for_selector(f"#queue-body tr[data-id='{fall}']")
    open_incident(colleague, fall)
    colleague.click("#act-ack")
    colleague.wait_for_selector("#incident-view[data-state=acknowledged]")

    page = page_for()
    log_in(page, centre)
    open_incident(page, fall)
    page.click("#act-ack")  # a takeover: asked to confirm, with a reason
    page.wait_for_selector("#takeover-form:not(.hidden)")
    assert COLLEAGUE in page.inner_text("#incident-holder"), "taken over without a confirmation"
    page.fill("#takeover-form input[name=reason]", "the caller asked for the senior operator")
    page.click("#takeover-form button[type=submit]")  # an escalation to supervisors
    page.wait_for_selector(f"#incident-holder:has-text('{OPERATOR_NAME}')")
    page.wait_for_selector("#escalation-count:not(.hidden)")
    page.click("[data-nav=escalations]")
    page.wait_for_selector(f"#escalations-body tr[data-id='{fall}']")
    text = page.inner_text("#escalations-body")
    assert "Taken over" in text
    assert "Qian Jun" in text
    assert COLLEAGUE in text
    # The supervisor hands it back to an operator on duty: nobody is chosen for them.
    form = f"#escalations-body form.assign[data-id='{fall}']"
    assert page.input_value(f"{form} select") == ""
    page.select_option(f"{form} select", COLLEAGUE)
    page.fill(f"{form} input[name=reason]", "back to the operator who knows the caller")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"#escalations-body tr[data-id='{fall}'] .assigned")
    page.click(f"#escalations-body tr[data-id='{fall}'] td:first-child")
    page.wait_for_selector(f"#incident-view[data-id='{fall}']")
    page.wait_for_selector(f"#incident-holder:has-text('{COLLEAGUE}')")
    assert "back to the operator who knows the caller" in page.inner_text("#timeline")


def test_an_incident_on_its_way_shows_nothing_of_the_one_before(
    centre: Centre, page_for: Any
) -> None:
    """Opening an incident while its record is on its way: the card of the incident open before
    is not left on screen to be read, or acted on, as if it were this one."""
    first = raise_alarm(
        centre.household("hh-0611", resident="Shen Yue", community="West"), EventKind.SOS
    )
    second = raise_alarm(
        centre.household("hh-0612", resident="Tang Xin", community="West"), EventKind.SMOKE
    )
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector(f"#queue-body tr[data-id='{second}']")
    open_incident(page, first)
    assert "Shen Yue" in page.inner_text("#incident-title")
    page.click("#incident-view a[href='#/queue']")

    held = HeldRequests(page, f"**/api/v1/incidents/{second}")
    page.click(f"#queue-body tr[data-id='{second}']")
    held.wait()
    assert page.is_hidden("#incident-title")
    assert page.is_hidden("#household-card")
    held.release()
    page.wait_for_selector(f"#incident-view[data-id='{second}']")
    assert "Tang Xin" in page.inner_text("#incident-title")
