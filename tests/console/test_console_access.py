"""The console for everyone and in both languages: axe-core on every page in English and Chinese,
a zh-CN walk that fails on any untranslated string or raw internal name, and the keyboard: focus
and scroll kept through live updates, arrows through the queue, a skip link, login autofocus,
and each new alarm announced once.

Screenshots of every page at 1280x800 in both languages go to test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.wire import EventKind
from tests.console.accessibility import axe_source, violations
from tests.console.conftest import ARTIFACTS, OPERATOR, OPERATOR_PASSWORD, Centre, add_operator

pytestmark = pytest.mark.browser

COLLEAGUE = "li.na"
COLLEAGUE_PASSWORD = "day-shift-2026-li"
PAGES = (
    "queue",
    "incident",
    "gateways",
    "households",
    "household",
    "operators",
    "reports",
    "escalations",
    "handover",
    "rescuers",
)

#: Collects what a person can read or hear on the page: visible text, the title, labels,
#: placeholders and tooltips of visible elements, and the charts' labels (drawn on a canvas).
READABLE = """() => {
    const texts = [document.body.innerText, document.title];
    document.querySelectorAll("[placeholder], [aria-label], [title]").forEach((el) => {
        if (!el.getClientRects().length) return;
        ["placeholder", "aria-label", "title"].forEach((a) => texts.push(el.getAttribute(a) || ""));
    });
    document.querySelectorAll("canvas").forEach((c) => {
        const chart = window.Chart && Chart.getChart(c);
        if (!chart) return;
        texts.push(...chart.data.labels.map(String));
        chart.data.datasets.forEach((d) => texts.push(String(d.label || "")));
    });
    return texts.join("\\n");
}"""

#: English strings of the console that have a Chinese translation (the language chooser names
#: English in English, so that one word is left out).
ENGLISH_ONLY = """() => Object.entries(window.I18N.en)
    .filter(([k, v]) => window.I18N["zh-CN"][k] !== v && /[A-Za-z]{3}/.test(v) && v !== "English")
    .map(([, v]) => v)"""

#: Internal names: snake_case values, stream event names, the "system" actor, the unit "min".
RAW_NAME = (
    r"\b[a-z]+(?:_[a-z0-9]+)+\b|\b(?:incident|gateway|operator)\.[a-z_]+\b"
    r"|\bsystem\b|\bmin\b"
)


@pytest.fixture
def a11y_page(browser: Any, centre: Centre) -> Iterator[Any]:
    """A page that may run axe-core: the console's policy refuses injected script, so this
    context bypasses it (the console is the same; only the test's script is let in)."""
    axe_source()  # installed before the clock of any test starts
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-GB", bypass_csp=True
    )
    errors: list[str] = []
    page = context.new_page()
    page.set_default_timeout(5000)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def incident_id(gateway: Any, kind: EventKind, **kw: Any) -> str:
    incident = gateway.raise_alarm(kind, **kw).acks[0].incident
    assert incident is not None
    return str(incident.id)


def busy_centre(centre: Centre) -> str:
    """A centre mid-shift: a taken-over SOS with a call, a re-alert and notes (its id is
    returned), a restored smoke alarm, a late fall, a waiting leak, a colleague on break."""
    add_operator(
        centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator", display_name="Li Na"
    )
    colleague = centre.server.login(COLLEAGUE, COLLEAGUE_PASSWORD)
    admin = centre.server.operator_client()
    home = centre.household("hh-0401", resident="Chen Guiying", community="East Lake")
    home.heartbeat(backlog=2)
    sos = incident_id(home, EventKind.SOS)
    assert colleague.post(f"/api/v1/incidents/{sos}/seen").status_code == 200
    assert colleague.post(f"/api/v1/incidents/{sos}/acknowledge").status_code == 200
    for action, body in (
        ("acknowledge", {"takeover": True, "reason": "家属要求主管处理"}),
        ("callback", {"outcome": "no_answer", "number": "+86 139 0000 0002"}),
        ("notes", {"text": "邻居有钥匙"}),
    ):
        reply = admin.post(f"/api/v1/incidents/{sos}/{action}", json=body)
        assert reply.status_code == 200, reply.text
    assert incident_id(home, EventKind.SOS, device="pendant-2") == sos  # joins: a re-alert
    smoke_home = centre.household("hh-0402", resident="Wang Jianguo", community="West Gate")
    incident_id(smoke_home, EventKind.SMOKE)
    incident_id(smoke_home, EventKind.SMOKE_RESTORE)
    incident_id(
        centre.household("hh-0403", resident="Li Xiuying", community="East Lake"),
        EventKind.FALL,
        at=datetime.now(UTC) - timedelta(minutes=10),
    )
    incident_id(
        centre.household("hh-0404", resident="Zhao Ming", community="North Market"),
        EventKind.WATER_LEAK,
    )
    reply = colleague.post("/api/v1/operators/me/break", json={"on_break": True})
    assert reply.status_code == 200, reply.text
    return sos


def log_in(page: Any, centre: Centre) -> None:
    page.goto(centre.server.url + "/")
    page.fill("#login-form input[name=username]", OPERATOR)
    page.fill("#login-form input[name=password]", OPERATOR_PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not(.hidden)")


def show(page: Any, view: str, sos: str) -> None:
    """Go to one page of the console and wait until its content is there."""
    if view == "incident":
        page.click("[data-nav=queue]")
        page.click(f"#queue-body tr[data-id='{sos}']")
        page.wait_for_selector(f"#incident-view[data-id='{sos}'] #timeline li")
        return
    if view == "household":
        page.evaluate("location.hash = '#/household/hh-0401'")
        page.wait_for_selector("#household-view:not(.hidden) >> text=Chen Guiying")
        return
    if page.is_visible(f"[data-nav={view}]"):
        page.click(f"[data-nav={view}]")
    else:  # a page the role has no link to (operators, for a supervisor) still reads right
        page.evaluate(f"location.hash = '#/{view}'")
    ready = {
        "queue": "#queue-body tr",
        "gateways": "#gateways-body tr",
        "households": "#adm-hh-body tr",
        "operators": "#operators-view:not(.hidden) > *",
        "escalations": "#escalations-body tr",
        "handover": "#handover-body tr",
        "rescuers": "#rescuers-view:not(.hidden) #roster-form",
    }
    if view in ready:
        page.wait_for_selector(ready[view])
    if view == "reports":
        page.wait_for_function(
            "() => window.Chart && Chart.getChart(document.getElementById('chart-kinds'))"
        )


def test_every_page_passes_axe_and_reads_in_chinese_without_raw_names(
    centre: Centre, a11y_page: Any
) -> None:
    import re

    sos = busy_centre(centre)
    page = a11y_page
    ARTIFACTS.mkdir(exist_ok=True)
    failures: dict[str, Any] = {}

    for lang in ("en", "zh-CN"):
        page.goto(centre.server.url + "/")
        page.wait_for_selector("#login-view:not(.hidden)")
        page.click(f".lang-switch [data-lang='{lang}']")
        page.wait_for_function(f"() => document.documentElement.lang === '{lang}'")
        page.screenshot(path=str(ARTIFACTS / f"console-login-{lang}-1280x800.png"))
        if found := violations(page):
            failures[f"login {lang}"] = found
        log_in(page, centre)
        page.wait_for_selector("#presence .person")
        for view in PAGES:
            show(page, view, sos)
            # Flashing rows hold still for the contrast check and the picture.
            page.evaluate("document.getAnimations().forEach((a) => a.pause())")
            page.screenshot(
                path=str(ARTIFACTS / f"console-{view}-{lang}-1280x800.png"), full_page=True
            )
            if found := violations(page):
                failures[f"{view} {lang}"] = found
            if view == "queue" and lang == "en":
                # The press that joined the acknowledged SOS marks its row.
                assert "alarm again" in page.inner_text(f"#queue-body tr[data-id='{sos}']")
            if lang != "zh-CN":
                continue
            text = page.evaluate(READABLE)
            english = [
                v
                for v in page.evaluate(ENGLISH_ONLY)
                if re.search(rf"(?<![A-Za-z]){re.escape(v)}(?![A-Za-z])", text)
            ]
            raw = sorted(set(re.findall(RAW_NAME, text)))
            if english or raw:
                failures[f"{view} untranslated"] = {"english": english, "raw": raw}
        page.click("#logout")
        page.wait_for_selector("#login-view:not(.hidden)")

    assert failures == {}, json.dumps(failures, ensure_ascii=False, indent=1)


def test_the_keyboard_reaches_and_keeps_its_place_in_the_queue(
    centre: Centre, a11y_page: Any
) -> None:
    homes = [
        centre.household(f"hh-05{n}", resident=f"Resident {n}", community="East Lake")
        for n in range(5)
    ]
    # Rows enough for the page to scroll; nothing of priority 2, whose later strip would be a
    # second announcement.
    ids = [incident_id(home, EventKind.LOW_BATTERY) for home in homes]
    ids.append(incident_id(homes[1], EventKind.FALL))
    page = a11y_page
    page.set_viewport_size({"width": 1280, "height": 380})
    page.goto(centre.server.url + "/")
    page.wait_for_selector("#login-view:not(.hidden)")
    # The login form takes the keyboard at once.
    assert page.evaluate("document.activeElement.name") == "username"
    page.keyboard.type(OPERATOR)
    page.keyboard.press("Tab")
    page.keyboard.type(OPERATOR_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not(.hidden)")
    page.wait_for_function(
        f"() => document.querySelectorAll('#queue-body tr').length === {len(ids)}"
    )

    # The first Tab is the skip link; it lands in the page, a few Tabs from the first row.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Enter")
    tabs = 0
    while page.evaluate("document.activeElement.parentElement.id") != "queue-body":
        page.keyboard.press("Tab")
        tabs += 1
        assert tabs <= 3, "the first queue row is more than 3 Tabs past the skip link"
    first = page.evaluate("document.activeElement.dataset.id")
    order = page.eval_on_selector_all("#queue-body tr", "(rows) => rows.map((r) => r.dataset.id)")
    assert first == order[0]
    for _ in range(len(ids) - 1):
        page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.dataset.id")
    assert focused == order[-1]
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    top = page.evaluate("document.activeElement.getBoundingClientRect().top")

    # A new alarm elsewhere: the queue changes under the operator, who keeps their place.
    page.evaluate(
        """() => { window.announced = 0;
            new MutationObserver(() => { window.announced += 1; }).observe(
                document.querySelector('#alert-announce'),
                { childList: true, characterData: true, subtree: true }); }"""
    )
    sos = incident_id(centre.household("hh-0599", resident="Late Caller", community="West Gate"),
                      EventKind.SOS)  # fmt: skip
    page.wait_for_selector(f"#queue-body tr[data-id='{sos}']")
    assert page.evaluate("document.activeElement.dataset.id") == focused
    # Not thrown back to the top: the page scrolled by the new row's height, so the focused
    # row stays where it was on screen.
    assert page.evaluate("window.scrollY") > scrolled
    assert abs(page.evaluate("document.activeElement.getBoundingClientRect().top") - top) < 2
    # The strip is no live region; the alarm is announced once, though its age keeps ticking.
    assert page.get_attribute("#alert-strip", "role") is None
    age = page.inner_text("#alert-age")
    page.wait_for_function(f"() => document.querySelector('#alert-age').textContent !== '{age}'")
    age = page.inner_text("#alert-age")
    page.wait_for_function(f"() => document.querySelector('#alert-age').textContent !== '{age}'")
    assert page.evaluate("window.announced") == 1
    assert "Late Caller" in page.inner_text("#alert-announce")
    # Enter opens the focused row, not the alarm in the strip.
    page.keyboard.press("ArrowUp")
    target = page.evaluate("document.activeElement.dataset.id")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#incident-view[data-id='{target}']")
    assert target != sos


def test_server_refusals_read_in_the_operators_language(centre: Centre, a11y_page: Any) -> None:
    fall = incident_id(
        centre.household("hh-0601", resident="Hu Jing", community="East Lake"), EventKind.FALL
    )
    add_operator(
        centre.server, COLLEAGUE, COLLEAGUE_PASSWORD, role="operator", display_name="Li Na"
    )
    colleague = centre.server.login(COLLEAGUE, COLLEAGUE_PASSWORD)
    assert colleague.post(f"/api/v1/incidents/{fall}/acknowledge").status_code == 200
    page = a11y_page
    log_in(page, centre)
    page.wait_for_selector("#presence .person")
    page.select_option("#lang", "zh-CN")
    refusal = """async (path) => {
        try { await ConsoleKit.api("POST", path, {}); return "accepted"; }
        catch (e) { return ConsoleKit.errorText(e); } }"""
    # The real server's answers, shown as the console shows them.
    assert page.evaluate(refusal, f"/api/v1/incidents/{fall}/acknowledge") == "已被 Li Na 接警。"
    assert page.evaluate(refusal, f"/api/v1/incidents/{fall}/release") == "此警情不在您名下。"
    assert page.evaluate(refusal, "/api/v1/incidents/nothing-here/release") == "此警情不存在。"


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the focus is on ``selector``: reachable by keyboard, or the test fails."""
    for _ in range(limit):
        if page.evaluate("(s) => Boolean(document.activeElement?.matches(s))", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_an_incident_is_worked_to_resolution_with_the_keyboard_alone(
    centre: Centre, a11y_page: Any
) -> None:
    fall = incident_id(
        centre.household("hh-0701", resident="Kong Wei", community="East Lake"), EventKind.FALL
    )
    page = a11y_page
    page.goto(centre.server.url + "/")
    page.wait_for_selector("#login-view:not(.hidden)")
    page.keyboard.type(OPERATOR)
    page.keyboard.press("Tab")
    page.keyboard.type(OPERATOR_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#queue-body tr[data-id='{fall}']")

    # The queue is one Tab stop; the arrows reach the alarm, Enter opens it.
    tab_to(page, "#queue-body tr")
    for _ in range(60):
        if page.evaluate("document.activeElement.dataset.id") == fall:
            break
        page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.id") == fall
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#incident-view[data-id='{fall}']")

    tab_to(page, "#act-ack")
    page.keyboard.press("Enter")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")

    # Nothing is chosen for the operator: the arrow picks the first real outcome.
    tab_to(page, "#callback-form select[name=outcome]")
    assert page.input_value("#callback-form select[name=outcome]") == ""
    page.keyboard.press("ArrowDown")
    assert page.input_value("#callback-form select[name=outcome]") == "reached"
    tab_to(page, "#act-callback")
    page.keyboard.press("Enter")
    page.wait_for_selector("#incident-view[data-state=callback_made]")

    tab_to(page, "#resolve-form select[name=outcome]")
    assert page.input_value("#resolve-form select[name=outcome]") == ""
    page.keyboard.press("ArrowDown")
    tab_to(page, "#act-resolve")
    page.keyboard.press("Enter")
    # Resolved, the console goes back to the queue.
    page.wait_for_selector("#incident-view[data-state=resolved]", state="attached")
    detail = centre.server.operator_client().get(f"/api/v1/incidents/{fall}").json()
    assert detail["state"] == "resolved"
    assert detail["outcome"] == "real_emergency"
