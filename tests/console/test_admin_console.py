"""A centre set up from an empty database with `dispatchd serve` and the console alone (the first
admin comes from `dispatchd operator add`, as README says): operators, a household with two
residents, three contacts and four devices, an edit, an enroll code a gateway then enrolls with,
the gateways page's health, away / in hospital, an operator's read-only card with notes, and an
archive. Screenshots of every administration page at 1280x800 in both languages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contract.wire import DeviceHealth, Heartbeat
from forwarder.client import DispatchClient
from tests.console.conftest import ARTIFACTS, TIMEZONE, away_until_local, run_async
from tests.fixtures.dispatch_thread import ThreadServer

pytestmark = pytest.mark.slow

ADMIN, ADMIN_PASSWORD = "root", "root-password-2026"
GATEWAY = "gw-setup-1"


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    contexts: list[Any] = []
    errors: list[str] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(8000)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the page: {errors}"


def log_in(page: Any, server: ThreadServer, username: str, password: str) -> None:
    page.goto(server.url + "/")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not(.hidden)")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("document.getAnimations().forEach((a) => a.pause())")
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}-1280x800.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def add_operator(page: Any, username: str, name: str, role: str, password: str) -> None:
    form = page.locator("#adm-op-add")
    form.locator("[name=username]").fill(username)
    form.locator("[name=display_name]").fill(name)
    form.locator("[name=role]").select_option(role)
    form.locator("[name=password]").fill(password)
    form.locator("button[type=submit]").click()
    page.wait_for_selector(f"#adm-op-body tr[data-username='{username}']")


def operators_by_console(page: Any) -> None:
    page.click("[data-nav=operators]")
    page.wait_for_selector("#adm-op-add")
    # Nothing is chosen for the person adding: the role must be picked.
    assert page.locator("#adm-op-add [name=role]").input_value() == ""
    add_operator(page, "chen.jing", "Chen Jing", "supervisor", "supervisor-pass-1")
    add_operator(page, "wang.fang", "Wang Fang", "operator", "operator-pass-1")
    row = page.locator("#adm-op-body tr[data-username='wang.fang']")
    row.locator("[name=display_name]").fill("王芳")
    row.locator(".adm-op-save").click()
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-username='wang.fang'] .adm-op-result\")"
        ".textContent === 'Saved'"
    )
    row.locator("[name=password]").fill("operator-pass-2")
    row.locator(".adm-op-password").click()
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-username='wang.fang'] .adm-op-result\")"
        ".textContent === 'Password reset'"
    )
    row.locator(".adm-op-toggle").click()  # disable, then enable again
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-username='wang.fang']\").textContent"
        ".includes('disabled')"
    )
    page.locator("#adm-op-body tr[data-username='wang.fang'] .adm-op-toggle").click()
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-username='wang.fang']\").textContent"
        ".includes('enabled')"
    )
    shot(page, "operators-en")


def fill_fieldset(page: Any, list_id: str, index: int, values: dict[str, str]) -> None:
    fieldset = page.locator(f"#{list_id} fieldset").nth(index)
    for name, value in values.items():
        field = fieldset.locator(f"[name={name}]")
        if name == "kind":
            field.select_option(value)
        elif name == "has_key":
            field.check()
        else:
            field.fill(value)


def new_household(page: Any) -> str:
    page.click("[data-nav=households]")
    page.click("#adm-hh-new")
    page.wait_for_selector("#adm-hh-form")
    form = page.locator("#adm-hh-form")
    form.locator("[name=name]").first.fill("Zhang Wei and Li Na")
    form.locator("[name=address]").fill("Riverside Road 12, flat 3")
    form.locator("[name=community]").fill("Riverside")
    form.locator("[name=phone]").fill("+86 21 5555 0100")
    form.locator("[name=key_safe]").fill("by the door, code 4711")
    residents = [
        {
            "name": "Zhang Wei",
            "birth_date": "1941-03-02",
            "language": "Shanghainese",
            "medications": "warfarin 5 mg",
            "doctor": "Dr. Chen, Ruijin Hospital",
            "advance_care": "DNR signed 2025-04",
        },
        {"name": "Li Na", "birth_date": "1944-07-19", "phones": "+86 139 0000 0001"},
    ]
    contacts = [
        {"name": "Zhang Mei", "relation": "daughter", "phones": "+86 138 1111 2222"},
        {
            "name": "Wu Gang",
            "relation": "neighbour",
            "phones": "+86 137 3333 4444",
            "has_key": "yes",
        },
        {"name": "Zhang Lei", "relation": "son", "phones": "+86 136 5555 6666"},
    ]
    devices = [
        {"id": "pendant-1", "kind": "sos", "room": "bedroom", "label": "pendant"},
        {"id": "smoke-kitchen", "kind": "smoke", "room": "kitchen"},
        {"id": "pir-hall", "kind": "motion", "room": "hall"},
        {"id": "door-front", "kind": "door", "room": "front door"},
    ]
    for button, list_id, items in (
        ("#adm-add-resident", "adm-residents", residents),
        ("#adm-add-contact", "adm-contacts", contacts),
        ("#adm-add-device", "adm-devices", devices),
    ):
        for index, values in enumerate(items):
            page.click(button)
            fill_fieldset(page, list_id, index, values)
    shot(page, "household-new-en")
    page.click("#adm-hh-save")
    page.wait_for_function("() => /^#\\/household\\/hh-/.test(location.hash)")
    page.wait_for_selector("#adm-notes-list li")
    return str(page.evaluate("decodeURIComponent(location.hash.split('/')[2])"))


def enroll_with(code: str, server: ThreadServer) -> None:
    """The installer's side: enroll with the console's code, then one heartbeat with health."""
    credential = run_async(
        lambda: DispatchClient.enroll(server.url, code=code, gateway_id=GATEWAY, insecure_http=True)
    )
    beat = Heartbeat(
        gateway_id=GATEWAY,
        sent_at=datetime.now(UTC),
        uptime_s=60.0,
        version="1.5.0",
        devices=[
            DeviceHealth(id="pendant-1", battery=12.0, last_seen=datetime.now(UTC)),
            DeviceHealth(id="smoke-kitchen", battery=90.0, online=False),
        ],
    )

    async def send() -> None:
        async with DispatchClient(server.url, credential=credential, insecure_http=True) as client:
            await client.send_heartbeat(beat)

    run_async(send)


def test_a_centre_is_set_up_from_the_console_alone(
    thread_server_factory: Callable[..., ThreadServer], new_page: Callable[[], Any]
) -> None:
    server = thread_server_factory(args=("--timezone", TIMEZONE))
    server.add_operator(ADMIN, ADMIN_PASSWORD, role="admin")  # `dispatchd operator add`
    api: httpx.Client = server.login(ADMIN, ADMIN_PASSWORD)
    page = new_page()
    log_in(page, server, ADMIN, ADMIN_PASSWORD)

    operators_by_console(page)
    audit = api.get("/api/v1/audit", params={"entity_id": "wang.fang"}).json()["items"]
    changed = sorted(tuple(a["detail"].get("changed") or [a["action"]]) for a in audit)
    assert changed == [
        ("disabled",),
        ("disabled",),
        ("display_name",),
        ("operator.created",),
        ("password",),
    ]

    hid = new_household(page)
    card = api.get(f"/api/v1/households/{hid}").json()
    assert [r["name"] for r in card["residents"]] == ["Zhang Wei", "Li Na"]
    assert card["residents"][0]["birth_year"] == 1941
    assert card["residents"][0]["advance_care"] == "DNR signed 2025-04"
    assert [c["priority"] for c in card["emergency_contacts"]] == [1, 2, 3]
    assert [c["has_key"] for c in card["emergency_contacts"]] == [False, True, False]
    assert [d["kind"] for d in card["devices"]] == ["sos", "smoke", "motion", "door"]
    shot(page, "household-en")

    # Edit: a new address and an allergy, one device less.
    page.fill("#adm-hh-form [name=address]", "Riverside Road 14, flat 1")
    fill_fieldset(page, "adm-residents", 0, {"allergies": "penicillin"})
    page.locator("#adm-devices fieldset").nth(3).locator(".adm-remove").click()
    page.click("#adm-hh-save")
    page.wait_for_function("() => document.querySelector('#adm-hh-status').textContent === 'Saved'")
    card = api.get(f"/api/v1/households/{hid}").json()
    assert card["address"] == "Riverside Road 14, flat 1"
    assert card["residents"][0]["allergies"] == "penicillin"
    assert len(card["devices"]) == 3
    # Search finds the home by a contact's phone, however it is typed.
    found = api.get("/api/v1/households", params={"q": "13733334444"}).json()["items"]
    assert [h["id"] for h in found] == [hid]

    # An enroll code from the console enrolls the gateway.
    page.click("#adm-enroll-btn")
    code = page.inner_text("#adm-code")
    enroll_with(code, server)
    page.click("[data-nav=gateways]")
    row = page.locator(f"#gateways-body tr[data-id='{GATEWAY}']")
    row.wait_for()
    assert "Zhang Wei and Li Na" in row.inner_text()
    row.locator("summary").click()
    assert "12 %" in row.inner_text()
    assert "low battery" in row.inner_text()
    shot(page, "gateways-en")

    # Away: in hospital until 10:00 the day after tomorrow, centre's time.
    row.locator(f"a[href='#/household/{hid}']").click()
    page.wait_for_selector("#adm-away-form")
    assert page.locator("#adm-away-form [name=reason]").input_value() == ""
    day, expected = away_until_local(2)
    page.select_option("#adm-away-form [name=reason]", "hospital")
    page.fill("#adm-away-form [name=date]", day)
    page.fill("#adm-away-form [name=time]", "10:00")
    page.click("#adm-away-form button[type=submit]")
    page.wait_for_selector("#adm-away-state .tag.away")
    card = api.get(f"/api/v1/households/{hid}").json()
    assert datetime.fromisoformat(card["away_until"]) == expected
    assert card["away_reason"] == "hospital"

    # Archiving is refused while the gateway reports for the home.
    page.click("#adm-archive-btn")
    page.click("#adm-archive-yes")
    page.wait_for_function(
        "() => document.querySelector('#adm-archive-error').textContent.includes('revoke')"
    )

    # Chinese: the same pages, nothing left untranslated.
    page.select_option("#lang", "zh-CN")
    page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    assert "adm_" not in page.inner_text("body")
    assert "保存住户" in page.inner_text("#adm-hh-form")
    shot(page, "household-zh")
    for view, ready in (
        ("households", "#adm-hh-body tr"),
        ("operators", "#adm-op-body tr"),
        ("gateways", "#gateways-body tr"),
    ):
        page.click(f"[data-nav={view}]")
        page.wait_for_selector(ready)
        assert "adm_" not in page.inner_text("body")
        shot(page, f"{view}-zh")
    page.click("[data-nav=households]")
    page.click("#adm-hh-new")
    page.wait_for_selector("#adm-hh-form")
    shot(page, "household-new-zh")
    page.select_option("#lang", "en")

    # A second household, archived from its page, leaves the list.
    page.click("[data-nav=households]")
    page.click("#adm-hh-new")
    page.fill("#adm-hh-form [name=name]", "Moved away")
    page.click("#adm-hh-save")
    page.wait_for_selector("#adm-archive-btn")
    other = str(page.evaluate("decodeURIComponent(location.hash.split('/')[2])"))
    page.click("#adm-archive-btn")
    page.click("#adm-archive-yes")
    page.wait_for_selector("#adm-restore-btn")
    page.click("[data-nav=households]")
    page.wait_for_selector(f"#adm-hh-body tr[data-id='{hid}']")
    assert page.locator(f"#adm-hh-body tr[data-id='{other}']").count() == 0
    page.check("#adm-hh-archived")
    page.wait_for_selector(f"#adm-hh-body tr[data-id='{other}']")
    shot(page, "households-archived-en")

    # An operator reads the whole card, is offered no form they cannot save, and adds a note.
    op = new_page()
    log_in(op, server, "wang.fang", "operator-pass-2")
    assert op.locator("[data-nav=operators]").is_hidden()
    op.goto(f"{server.url}/#/household/{hid}")
    op.wait_for_selector("#adm-hh-readonly")
    assert op.locator("#adm-hh-form, #adm-away-form, #adm-archive, #adm-enroll").count() == 0
    text = op.inner_text("#adm-hh-readonly")
    for fact in ("warfarin 5 mg", "penicillin", "DNR signed 2025-04", "Ruijin", "Wu Gang"):
        assert fact in text
    op.fill("#adm-note-form [name=text]", "Daughter visits on Sundays")
    op.click("#adm-note-form button[type=submit]")
    op.wait_for_function(
        "() => document.querySelector('#adm-notes-list').textContent.includes('Sundays')"
    )
    assert "wang.fang" in op.inner_text("#adm-notes-list")
    shot(op, "household-operator-en")
    op.click("[data-nav=households]")
    op.wait_for_selector(f"#adm-hh-body tr[data-id='{hid}']")
    assert op.locator("#adm-hh-new").count() == 0
