"""The administration pages follow the live stream: another console's change appears without a
reload, and a form being edited is never overwritten (the page says the record changed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import Centre, HeldRequests, add_operator, away_until_local, log_in

pytestmark = pytest.mark.browser

ADMIN, ADMIN_PASSWORD = "admin.zhao", "admin-pass-2026"


def _put(centre: Centre, household_id: str, **fields: str) -> None:
    """Another supervisor's edit of the household's name and address, through the API."""
    client = centre.server.operator_client()
    current = client.get(f"/api/v1/households/{household_id}").json()
    body = {"name": current["name"], "address": current["address"], **fields}
    reply = client.put(f"/api/v1/households/{household_id}", json=body)
    assert reply.status_code == 200, reply.text


def test_a_household_changed_elsewhere_is_redrawn_but_typing_is_kept(
    centre: Centre, page_for: Any
) -> None:
    centre.household("hh-0301", resident="Qian Yu", community="South Bank")
    page = page_for()
    log_in(page, centre)
    page.goto(centre.server.url + "/#/households")
    page.wait_for_selector("#adm-hh-body tr[data-id='hh-0301']")

    # The list: a household added at another console is listed without a reload.
    made = centre.server.operator_client().post(
        "/api/v1/households", json={"id": "hh-0302", "name": "Feng Lan"}
    )
    assert made.status_code == 201, made.text
    page.wait_for_selector("#adm-hh-body tr[data-id='hh-0302']")

    page.click("#adm-hh-body a[href='#/household/hh-0301']")
    address = "#adm-hh-form input[name=address]"
    page.wait_for_selector(address)
    # Nothing typed here: the new record is drawn.
    _put(centre, "hh-0301", address="Harbour Street 9")
    page.wait_for_function(
        "(sel) => document.querySelector(sel).value === 'Harbour Street 9'", arg=address
    )
    assert page.is_hidden("#adm-hh-changed")

    # Typing: what the person typed stays, and the page says the record changed.
    page.fill(address, "Harbour Street 9, flat 2")
    _put(centre, "hh-0301", name="Qian Yu (moved)")
    page.wait_for_selector("#adm-hh-changed:not(.hidden)")
    assert page.input_value(address) == "Harbour Street 9, flat 2"
    assert page.evaluate("() => document.activeElement.name") == "address"
    # Only when asked does the page show the other version, and what was typed goes.
    page.click("#adm-hh-theirs")
    page.wait_for_function(
        "(sel) => document.querySelector(sel).value === 'Harbour Street 9'", arg=address
    )
    assert page.input_value("#adm-hh-form input[name=name]") == "Qian Yu (moved)"
    assert page.is_hidden("#adm-hh-changed")


def operators_page_with_li_na(centre: Centre, page_for: Any) -> tuple[Any, str, str]:
    """An admin at the operators page, with operator Li Na listed: (page, her row, its name)."""
    add_operator(centre.server, ADMIN, ADMIN_PASSWORD, role="admin")
    add_operator(centre.server, "li.na", "li-na-pass-2026", role="operator", display_name="Li Na")
    page = page_for()
    log_in(page, centre, ADMIN, ADMIN_PASSWORD)
    page.goto(centre.server.url + "/#/operators")
    row = "#adm-op-body tr[data-username='li.na']"
    name = f"{row} input[name=display_name]"
    page.wait_for_selector(name)
    return page, row, name


def saved_name(page: Any, row: str, other: Any) -> str:
    """Save the row; Li Na's display name as dispatch then has it."""
    page.click(f"{row} .adm-op-save")
    page.wait_for_function(
        "(sel) => document.querySelector(sel).textContent === 'Saved'",
        arg=f"{row} .adm-op-result",
    )
    saved = other.get("/api/v1/operators").json()
    return str(next(o for o in saved if o["username"] == "li.na")["display_name"])


def test_an_operator_changed_elsewhere_is_redrawn_but_typing_is_kept(
    centre: Centre, page_for: Any
) -> None:
    page, row, name = operators_page_with_li_na(centre, page_for)
    other = centre.server.operator_client()

    # Nothing typed: another admin's rename shows at once.
    renamed = other.patch("/api/v1/operators/li.na", json={"display_name": "Li Na (nights)"})
    assert renamed.is_success
    page.wait_for_function(
        "(sel) => document.querySelector(sel).value === 'Li Na (nights)'", arg=name
    )
    # Typing in the row: kept; the row says what the record now is.
    page.fill(name, "Li Na (days)")
    assert other.patch("/api/v1/operators/li.na", json={"role": "supervisor"}).is_success
    page.wait_for_selector(f"{row} .adm-op-result.changed")
    assert "Supervisor" in page.inner_text(f"{row} .adm-op-result")
    assert page.input_value(name) == "Li Na (days)"
    # Saving what was typed is this admin's own change: the row says saved, nothing else.
    assert saved_name(page, row, other) == "Li Na (days)"


def test_typing_while_the_table_is_being_read_again_is_kept(centre: Centre, page_for: Any) -> None:
    """The table is read again (another admin added someone) and the admin types before the
    answer is drawn: what was typed is still there, and its save changes the name."""
    page, row, name = operators_page_with_li_na(centre, page_for)

    held = HeldRequests(page, "**/api/v1/operators")
    other = centre.server.operator_client()
    made = other.post(
        "/api/v1/operators",
        json={"username": "zhou.min", "role": "operator", "password": "zhou-min-pass-2026"},
    )
    assert made.status_code == 201, made.text
    # The page asks for the table again; its answer waits until the admin has typed.
    held.wait()
    page.fill(name, "李娜")
    held.release()
    page.wait_for_selector("#adm-op-body tr[data-username='zhou.min']")
    assert page.input_value(name) == "李娜"

    assert saved_name(page, row, other) == "李娜"


@pytest.mark.parametrize("opened", ["hh-0312", "hh-0311"], ids=["another", "the same again"])
def test_a_household_on_its_way_shows_nothing_of_the_one_before(
    centre: Centre, page_for: Any, opened: str
) -> None:
    """While a household's record is on its way (another one, or the same one come back to from
    another page), the page shown before is not left on screen: its forms could be filled in,
    then replaced by the answer before the click (seen as an away form sent empty)."""
    centre.household("hh-0311", resident="Kong Hui", community="South Bank")
    centre.household("hh-0312", resident="Lu Ping", community="South Bank")
    page = page_for()
    log_in(page, centre)
    page.goto(centre.server.url + "/#/household/hh-0311")
    page.wait_for_selector("#adm-away-form")
    page.click("[data-nav=households]")
    page.wait_for_selector(f"#adm-hh-body tr[data-id='{opened}']")

    held = HeldRequests(page, f"**/api/v1/households/{opened}")
    page.click(f"#adm-hh-body a[href='#/household/{opened}']")
    held.wait()
    assert page.is_hidden("#adm-away-form")
    assert "Kong Hui" not in page.evaluate(
        "() => document.querySelector('#household-view').innerText"
    )
    held.release()
    page.wait_for_selector("#adm-away-form")
    assert page.inner_text("#adm-hh-title") == {"hh-0311": "Kong Hui", "hh-0312": "Lu Ping"}[opened]
    assert page.input_value("#adm-away-form [name=reason]") == ""
    page.select_option("#adm-away-form [name=reason]", "hospital")
    page.fill("#adm-away-form [name=date]", away_until_local(2)[0])
    page.fill("#adm-away-form [name=time]", "10:00")
    page.click("#adm-away-form button[type=submit]")
    page.wait_for_selector("#adm-away-state .tag.away")
