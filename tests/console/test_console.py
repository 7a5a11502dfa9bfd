"""The operator console in headless Chromium against a real dispatchd and a signing gateway."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contract.wire import EventKind
from tests.console.conftest import ARTIFACTS, OPERATOR, OPERATOR_NAME, TIMEZONE, Centre, log_in

pytestmark = pytest.mark.browser


def test_alarm_appears_live_and_is_worked_to_resolution(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0042", resident="Zhang Wei", community="East Lake")
    page = page_for()
    log_in(page, centre)
    assert page.inner_text("#whoami-name") == OPERATOR_NAME
    assert page.inner_text("#whoami-role") == "Supervisor"
    page.wait_for_selector("body[data-live=connected]")
    page.wait_for_selector("#queue-empty:not(.hidden)")  # the first read of the queue is done
    assert page.is_hidden("#alert-strip")

    raised = time.monotonic()
    reply = gateway.raise_alarm(EventKind.SOS)
    incident = reply.acks[0].incident
    assert incident is not None
    row = page.wait_for_selector(f"#queue-body tr[data-id='{incident.id}']", timeout=3000)
    latency = time.monotonic() - raised
    assert latency < 1.0, f"the alarm took {latency:.2f} s to reach the page"
    assert "SOS" in row.inner_text()
    assert "Zhang Wei" in row.inner_text()
    assert "East Lake" in row.inner_text()
    assert "attention" in (row.get_attribute("class") or "")
    # It stands out on every view, and sounds, until someone acknowledges it.
    page.click("[data-nav=gateways]")
    assert page.is_visible("#alert-strip")
    assert "Zhang Wei" in page.inner_text("#alert-text")
    page.wait_for_function("() => Number(document.body.dataset.sounds || 0) >= 1", timeout=3000)
    page.click("[data-nav=queue]")

    page.click(f"#queue-body tr[data-id='{incident.id}']")
    page.wait_for_selector("#incident-view[data-state=new]")
    card = page.inner_text("#household-card")
    for fact in (
        "Zhang Wei",
        f"Age {datetime.now().year - 1941}",
        "HH-0042 Riverside Road 12",
        "Atrial fibrillation",
        "Dog in the flat",
        "code 4711",
        "Daughter Li",
        "+86 139 0000 0002",
        "bedroom",
        "gw-hh-0042",
    ):
        assert fact in card, f"{fact!r} missing from the household card:\n{card}"
    # Times are the centre's (Asia/Shanghai), not the browser's or UTC.
    opened = datetime.fromisoformat(centre.incidents()[0]["opened_at"])
    local = opened.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M")
    assert local in page.inner_text("#timeline")

    page.click("#act-ack")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")
    page.wait_for_selector("#alert-strip", state="hidden", timeout=1000)
    assert OPERATOR_NAME in page.inner_text("#incident-holder")  # the display name

    # Call back the daughter from her line on the card, and record that she answered.
    page.click("#household-card .call-back[data-number='+86 139 0000 0002']")
    page.select_option("#callback-form select[name=outcome]", "reached")
    page.fill("#callback-form input[name=note]", "on her way with the key")
    page.click("#act-callback")
    page.wait_for_selector("#incident-view[data-state=callback_made]")
    assert "on her way with the key" in page.inner_text("#timeline")

    # The responder is picked from the roster, not typed.
    rescuer = centre.server.operator_client().post(
        "/api/v1/rescue/rescuers",
        json={"name": "Ambulance 120-7", "phone": "+86 120", "status": "available"},
    )
    assert rescuer.status_code == 201, rescuer.text
    option = f"#rescue-form select[name=rescuer] option[value='{rescuer.json()['id']}']"
    page.wait_for_selector(option, state="attached")
    page.select_option("#rescue-form select[name=rescuer]", str(rescuer.json()["id"]))
    page.click("#rescue-send")
    page.wait_for_selector("#incident-view[data-state=responder_dispatched]")
    page.click("#act-onscene")
    page.wait_for_selector("#incident-view[data-state=on_scene]")

    page.select_option("#resolve-form select[name=outcome]", "real_emergency")
    page.fill("#resolve-form input[name=note]", "taken to hospital")
    page.click("#act-resolve")
    page.wait_for_selector("#queue-view:not(.hidden)")
    page.wait_for_selector("#queue-empty:not(.hidden)")

    detail = centre.server.operator_client().get(f"/api/v1/incidents/{incident.id}").json()
    assert detail["state"] == "resolved"
    assert detail["outcome"] == "real_emergency"
    actions = {e["name"]: e for e in detail["timeline"] if e["type"] == "action"}
    assert actions["callback_made"]["detail"] == {
        "outcome": "reached",
        "number": "+86 139 0000 0002",
        "note": "on her way with the key",
    }
    assert actions["responder_dispatched"]["detail"]["responder"] == "Ambulance 120-7"
    assert actions["acknowledged"]["actor"] == OPERATOR

    page.click("#logout")
    page.wait_for_selector("#login-view:not(.hidden)")
    assert page.is_hidden("#app")


def test_live_stream_recovers_after_dispatchd_restarts(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0007", resident="Liu Min", community="West Gate")
    page = page_for()
    log_in(page, centre)
    page.wait_for_selector("body[data-live=connected]")
    assert page.is_hidden("#conn-banner")

    centre.server.stop()
    page.wait_for_selector("#conn-banner:not(.hidden)", timeout=5000)
    assert "reconnecting" in page.inner_text("#conn-banner")
    centre.server.start()
    page.wait_for_selector("#conn-banner", state="hidden", timeout=8000)

    raised = time.monotonic()
    incident = gateway.raise_alarm(EventKind.FALL).acks[0].incident
    assert incident is not None
    page.wait_for_selector(f"#queue-body tr[data-id='{incident.id}']", timeout=3000)
    assert time.monotonic() - raised < 1.5
    assert "Fall" in page.inner_text(f"#queue-body tr[data-id='{incident.id}']")
    # The keyboard alone: Enter opens the alarm in the strip, A acknowledges it.
    page.keyboard.press("Enter")
    page.wait_for_selector("#incident-view[data-state=new]")
    page.keyboard.press("a")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#queue-view:not(.hidden)")


def test_language_switch_changes_the_labels(centre: Centre, page_for: Any) -> None:
    page = page_for()
    log_in(page, centre)
    assert page.inner_text("[data-nav=queue]") == "Queue"
    page.select_option("#lang", "zh-CN")
    assert page.inner_text("[data-nav=queue]") == "警情队列"
    assert page.inner_text("#queue-view h2") == "未处理警情"
    assert page.inner_text("#logout") == "退出"
    assert page.inner_text("#whoami-role") == "值班主管"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.reload()  # the choice is kept
    page.wait_for_selector("#app:not(.hidden)")
    assert page.inner_text("[data-nav=reports]") == "报表"
    page.select_option("#lang", "en")
    assert page.inner_text("[data-nav=reports]") == "Reports"


def test_reports_page_draws_charts(centre: Centre, page_for: Any) -> None:
    admin = centre.server.operator_client()
    for n, (kind, community) in enumerate(
        [
            (EventKind.SOS, "East Lake"),
            (EventKind.SMOKE, "West Gate"),
            (EventKind.FALL, "East Lake"),
        ]
    ):
        gateway = centre.household(f"hh-r{n}", resident=f"Resident {n}", community=community)
        incident = gateway.raise_alarm(kind).acks[0].incident
        assert incident is not None
        for action, body in (
            ("acknowledge", {}),
            ("callback", {"outcome": "reached"}),
            ("resolve", {"outcome": "false_alarm" if n else "real_emergency"}),
        ):
            reply = admin.post(f"/api/v1/incidents/{incident.id}/{action}", json=body)
            assert reply.status_code == 200, reply.text

    page = page_for()
    log_in(page, centre)
    page.click("[data-nav=reports]")
    page.select_option("#report-group", "community")
    page.wait_for_selector("#reports-view[data-group=community]")
    page.wait_for_function(
        "() => ['chart-times', 'chart-targets', 'chart-kinds'].every("
        "(id) => window.Chart && Chart.getChart(document.getElementById(id)))"
    )
    charts = page.evaluate(
        """() => Object.fromEntries(['chart-times', 'chart-targets', 'chart-kinds'].map((id) => {
            const c = Chart.getChart(document.getElementById(id));
            return [id, {labels: c.data.labels, data: c.data.datasets.map((d) => d.data)}];
        }))"""
    )
    assert charts["chart-times"]["labels"] == ["East Lake", "West Gate"]
    assert charts["chart-targets"]["data"][0] == [100, 100]  # both acknowledged within 60 s
    assert sorted(charts["chart-kinds"]["labels"]) == ["Fall", "SOS", "Smoke"]
    assert sum(charts["chart-kinds"]["data"][0]) == 3
    box = page.eval_on_selector("#chart-times", "(c) => [c.width, c.height]")
    assert box[0] > 100
    assert box[1] > 100
    assert "False-alarm rate: 66.7%" in page.inner_text("#report-summary")  # 2 of 3 resolved


def test_every_asset_comes_from_dispatchd(centre: Centre, page_for: Any) -> None:
    page = page_for()
    log_in(page, centre)
    page.click("[data-nav=reports]")
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('chart-kinds'))"
    )
    for view in ("gateways", "households", "queue"):
        page.click(f"[data-nav={view}]")
    assert any(u.endswith("/console/vendor/chart.umd.min.js") for u in centre.requests)
    assert any("/api/v1/stream" in u for u in centre.requests)
    assert centre.foreign_requests() == []
    # And the page never even asks for a font, script or style elsewhere.
    html = page.content()
    assert "http://" not in html.replace(centre.server.url, "")
    assert "https://" not in html
    # Each script once: a module loaded twice registers its handlers twice.
    scripts = page.eval_on_selector_all("script[src]", "(els) => els.map((e) => e.src)")
    assert len(scripts) == len(set(scripts)), scripts


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (1920, 1080)])
def test_queue_screenshots(centre: Centre, page_for: Any, width: int, height: int) -> None:
    """The queue with a few incidents, for a person to judge the layout (test-artifacts/)."""
    alarms = [
        ("hh-0101", "Chen Guiying", "East Lake", EventKind.SOS),
        ("hh-0102", "Wang Jianguo", "West Gate", EventKind.SMOKE),
        ("hh-0103", "Li Xiuying", "East Lake", EventKind.FALL),
        ("hh-0104", "Zhao Ming", "North Market", EventKind.WATER_LEAK),
        ("hh-0105", "Sun Lan", "West Gate", EventKind.LOW_BATTERY),
    ]
    ids = []
    for n, (household, resident, community, kind) in enumerate(alarms):
        gateway = centre.household(household, resident=resident, community=community)
        gateway.heartbeat(backlog=n * 3)
        incident = gateway.raise_alarm(kind).acks[0].incident
        assert incident is not None
        ids.append(incident.id)
    admin = centre.server.operator_client()
    assert admin.post(f"/api/v1/incidents/{ids[1]}/acknowledge").status_code == 200

    page = page_for(width=width, height=height)
    log_in(page, centre)
    page.wait_for_function(
        f"() => document.querySelectorAll('#queue-body tr').length === {len(ids)}"
    )
    order = page.eval_on_selector_all("#queue-body tr", "(rows) => rows.map((r) => r.dataset.id)")
    # Life safety first (SOS before the later fall, the acknowledged smoke alarm among them).
    assert order[-1] == ids[4]
    assert order.index(ids[0]) < order.index(ids[2])
    page.evaluate("document.getAnimations().forEach((a) => a.pause())")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-queue-{width}x{height}.png"))
    # Nothing overflows sideways at this size.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.click(f"#queue-body tr[data-id='{ids[0]}']")
    page.wait_for_selector("#incident-view[data-state=new]")
    page.screenshot(path=str(ARTIFACTS / f"console-incident-{width}x{height}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width != 1280:
        return
    # The other pages, once, for the same judgement.
    for view in ("gateways", "households", "reports"):
        page.click(f"[data-nav={view}]")
        if view == "gateways":
            page.wait_for_selector("#gateways-body tr")
            assert "1.4.0" in page.inner_text("#gateways-body")
        if view == "households":
            page.wait_for_selector("#adm-hh-body tr")
            page.fill("#adm-hh-search", "Li Xiu")
            page.wait_for_function(
                "() => document.querySelectorAll('#adm-hh-body tr').length === 1"
            )
            page.click("#adm-hh-body tr a")
            page.wait_for_selector("#adm-hh-form input[name=address]")
        if view == "reports":
            page.wait_for_function(
                "() => window.Chart && Chart.getChart(document.getElementById('chart-kinds'))"
            )
        page.screenshot(
            path=str(ARTIFACTS / f"console-{view}-{width}x{height}.png"), full_page=True
        )
    page.select_option("#lang", "zh-CN")
    page.click("[data-nav=queue]")
    page.click(f"#queue-body tr[data-id='{ids[0]}']")
    page.wait_for_selector("#incident-view[data-state=new]")
    page.screenshot(
        path=str(ARTIFACTS / f"console-incident-zh-{width}x{height}.png"), full_page=True
    )


def test_the_page_runs_under_a_policy_that_blocks_injected_script(
    centre: Centre, browser: Any
) -> None:
    # A page of its own: the blocked scripts here are expected, not errors of the console.
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(centre.server.url + "/")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        page.evaluate(
            """() => { window.blocked = [];
                document.addEventListener('securitypolicyviolation',
                    (e) => window.blocked.push(e.violatedDirective)); }"""
        )
        # What an injection would do: an inline script and an inline handler; neither runs.
        page.evaluate(
            """() => { const s = document.createElement('script');
                s.textContent = 'window.injected = true'; document.body.append(s);
                document.body.insertAdjacentHTML(
                    'beforeend', '<img src="/nothing" onerror="window.injected = true">'); }"""
        )
        page.wait_for_function("() => window.blocked.length >= 2", timeout=5000)
        assert page.evaluate("window.injected === undefined")
    finally:
        context.close()
