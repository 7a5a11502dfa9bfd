"""The rescuer's phone page beside the operators' console: a real dispatchd, a gateway raising the
SOS with its own dispatch client, headless Chromium with a phone (390x844, touch, mobile) and a
desktop console side by side.

An incident dispatched from the roster reaches the phone live, is accepted, en route, on scene and
done; a press made while the phone's connection fails is kept and delivered once; a task is
reassigned to another rescuer; a rescuer logged in on a second phone sees the same task; the board
flags a task not accepted in time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from contract.wire import EventKind
from tests.console.accessibility import violations
from tests.console.conftest import ARTIFACTS, Centre, log_in, press_joins

pytestmark = pytest.mark.browser

HOME = (31.2304, 121.4737)
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    ),
}


@pytest.fixture
def phone_for(browser: Any, centre: Centre) -> Iterator[Callable[..., Any]]:
    """``phone_for()``: a fresh phone (its own context: own storage, own login) at the
    rescuer's page, with the location it reports granted."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(*, lang: str = "en-GB") -> Any:
        context = browser.new_context(
            **PHONE,
            locale=lang,
            geolocation={"latitude": HOME[0] + 0.01, "longitude": HOME[1]},
            permissions=["geolocation"],
            bypass_csp=True,  # only so the test can inject axe-core; the page is unchanged
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(8000)
        page.on("request", lambda r: centre.requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the phone page: {errors}"
    assert centre.foreign_requests() == []


def add_rescuer(centre: Centre, name: str, username: str) -> dict[str, Any]:
    reply = centre.server.operator_client().post(
        "/api/v1/rescue/rescuers",
        json={
            "name": name,
            "phone": "+86 139 1111 0000",
            "status": "available",
            "username": username,
            "password": f"pw-{username}-2026",
        },
    )
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


def phone_log_in(phone: Any, centre: Centre, username: str) -> None:
    phone.goto(centre.server.url + "/rescuer/")
    phone.fill("#login-form input[name=username]", username)
    phone.fill("#login-form input[name=password]", f"pw-{username}-2026")
    phone.click("#login-form button[type=submit]")
    phone.wait_for_selector("#app:not(.hidden)")
    phone.wait_for_selector("#idle:not(.hidden)")
    phone.wait_for_selector("#live.live")  # its stream is open: a task arrives live


def dispatch_from_console(page: Any, incident_id: str, rescuer_id: int) -> None:
    page.click(f"#queue-body tr[data-id='{incident_id}']")
    page.wait_for_selector(f"#incident-view[data-id='{incident_id}']")
    page.click("#act-ack")
    page.wait_for_selector("#incident-view[data-state=acknowledged]")
    option = f"#rescue-form select[name=rescuer] option[value='{rescuer_id}']"
    page.wait_for_selector(option, state="attached")
    assert page.input_value("#rescue-form select[name=rescuer]") == ""  # nobody chosen for them
    page.select_option("#rescue-form select[name=rescuer]", str(rescuer_id))
    page.click("#rescue-send")
    page.wait_for_selector("#incident-view[data-state=responder_dispatched]")


def alarm_dispatched_from_console(
    centre: Centre,
    page_for: Any,
    gateway: Any,
    rescuer: dict[str, Any],
    kind: EventKind = EventKind.FALL,
) -> tuple[Any, str]:
    """An alarm (a fall unless said) at ``gateway``'s home, sent to ``rescuer`` from a fresh
    console page: (the page, the incident's id)."""
    incident = gateway.raise_alarm(kind).acks[0].incident
    assert incident is not None
    console = page_for()
    log_in(console, centre)
    console.wait_for_selector(f"#queue-body tr[data-id='{incident.id}']")
    dispatch_from_console(console, incident.id, rescuer["id"])
    return console, incident.id


def accept_and_set_off(phone: Any, centre: Centre, incident_id: str) -> None:
    """The rescuer accepts the task and sets off: dispatch has both, the second with where the
    phone was."""
    phone.click("[data-press=accept]")
    phone.wait_for_selector("body[data-task=accepted][data-queued='0']")
    phone.click("[data-press=en_route]")
    phone.wait_for_selector("body[data-task=en_route][data-queued='0']")
    [moving] = actions(centre, incident_id, "rescuer_en_route")
    assert moving["detail"]["lat"] == pytest.approx(HOME[0] + 0.01)


def actions(centre: Centre, incident_id: str, name: str) -> list[dict[str, Any]]:
    detail = centre.server.operator_client().get(f"/api/v1/incidents/{incident_id}").json()
    return [e for e in detail["timeline"] if e["type"] == "action" and e["name"] == name]


def test_sos_dispatched_accepted_en_route_on_scene_done_with_an_offline_press(
    centre: Centre, page_for: Any, phone_for: Any
) -> None:
    gateway = centre.household("hh-0301", resident="Zhou Lan", community="East Lake")
    admin = centre.server.operator_client()
    located = admin.put(
        "/api/v1/rescue/homes/hh-0301/location", json={"lat": HOME[0], "lon": HOME[1]}
    )
    assert located.status_code == 204, located.text
    rescuer = add_rescuer(centre, "Chen Gang", "chen.gang")
    phone = phone_for()
    phone_log_in(phone, centre, "chen.gang")

    console, incident_id = alarm_dispatched_from_console(
        centre, page_for, gateway, rescuer, EventKind.SOS
    )

    # The task arrives on the phone by itself, with sound.
    phone.wait_for_selector("body[data-task=assigned]")
    phone.wait_for_function("() => Number(document.body.dataset.sounds || 0) >= 1")
    assert phone.is_visible("#task-new")
    card = phone.inner_text("#task-card")
    facts = ("Zhou Lan", "HH-0301 Riverside Road 12", "code 4711", "Atrial fibrillation", "Dog")
    for fact in facts:
        assert fact in card, f"{fact!r} missing from the phone's card:\n{card}"
    tel = phone.get_attribute("#task-card .phones a[href^='tel:']", "href")
    assert tel == "tel:+862155550100"
    navigate = phone.get_attribute("#navigate", "href") or ""
    assert quote("HH-0301 Riverside Road 12", safe="") in navigate
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "rescuer-phone-390x844-en.png"), full_page=True)
    assert violations(phone) == []
    phone.click("#lang-toggle")
    phone.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    assert "接受" in phone.inner_text(".presses")
    phone.screenshot(path=str(ARTIFACTS / "rescuer-phone-390x844-zh-CN.png"), full_page=True)
    assert violations(phone) == []
    phone.click("#lang-toggle")

    accept_and_set_off(phone, centre, incident_id)

    # On scene while the connection fails after dispatch got the press: the phone keeps it...
    delivered: list[int] = []

    def answer_lost(route: Any) -> None:
        response = route.fetch()
        delivered.append(response.status)
        route.abort("internetdisconnected")

    phone.route("**/api/v1/rescuer/presses", answer_lost)
    phone.click("[data-press=on_scene]")
    phone.wait_for_selector("body[data-task=on_scene][data-queued='1']")
    phone.wait_for_selector("#offline:not(.hidden)")
    # Dispatch answered (and may be asked again by the page's retry); the phone never heard.
    assert delivered
    assert set(delivered) == {200}
    # ...and sends it again when the connection returns: dispatch applies it once.
    # A retry may be in the handler right now: let it finish (lost too) before the line is back.
    phone.unroute_all(behavior="wait")
    phone.wait_for_selector("body[data-queued='0']", timeout=10000)
    assert len(actions(centre, incident_id, "rescuer_on_scene")) == 1
    console.wait_for_selector("#incident-view[data-state=on_scene]")
    assert "Rescuer on scene" in console.inner_text("#timeline")

    phone.select_option("#done-form select[name=outcome]", "taken_to_hospital")
    phone.fill("#done-form textarea[name=note]", "ambulance 120 took her to Ruijin")
    phone.click("#done-form button[type=submit]")
    phone.wait_for_selector("#idle:not(.hidden)")
    phone.wait_for_selector("#shift-back:not(.hidden)")
    [done] = actions(centre, incident_id, "rescuer_done")
    assert done["detail"]["outcome"] == "taken_to_hospital"

    console.click("[data-nav=rescuers]")
    row = f"#rescuer-board tr[data-rescuer='{rescuer['id']}']"
    console.wait_for_selector(row)
    assert "Returning" in console.inner_text(row)
    on_scene_at = admin.get(f"/api/v1/incidents/{incident_id}").json()["on_scene_at"]
    [arrived] = actions(centre, incident_id, "rescuer_on_scene")
    assert on_scene_at.replace("Z", "+00:00") == arrived["detail"]["at"]

    # The supervisor's reports measure the rescuer from their own presses.
    console.click("[data-nav=reports]")
    console.wait_for_selector("#rescue-report td:text('Chen Gang')")
    row_text = console.inner_text("#rescue-report tbody tr:first-child")
    assert "no data" not in row_text.split("Chen Gang", 1)[1].split("\t")[2]  # time to accept


#: The phone's location answers after ``window.geoDelayMs`` (never if it is null).
SLOW_LOCATION = """
  window.geoDelayMs = 3500;
  const original = navigator.geolocation.getCurrentPosition.bind(navigator.geolocation);
  navigator.geolocation.getCurrentPosition = (ok, fail, options) => {
    const answer = () => original(ok, fail, options);
    if (window.geoDelayMs !== null) setTimeout(answer, window.geoDelayMs);
  };
"""


def test_a_press_waits_a_few_seconds_for_its_location_and_no_longer(
    centre: Centre, page_for: Any, phone_for: Any
) -> None:
    """A location slow to come (3.5 s: past the phone's retry of its queue every 3 s) still
    joins the en-route press; one that never comes holds the on-scene press a few seconds,
    then it goes without."""
    gateway = centre.household("hh-0305", resident="Zhou Lan", community="North Gate")
    rescuer = add_rescuer(centre, "Chen Gang", "chen.gang")
    phone = phone_for()
    phone.add_init_script(SLOW_LOCATION)
    phone_log_in(phone, centre, "chen.gang")
    _, incident_id = alarm_dispatched_from_console(centre, page_for, gateway, rescuer)
    phone.wait_for_selector("body[data-task=assigned]")
    accept_and_set_off(phone, centre, incident_id)

    phone.evaluate("() => { window.geoDelayMs = null; }")
    phone.click("[data-press=on_scene]")
    phone.wait_for_selector("body[data-task=on_scene][data-queued='1']")
    phone.wait_for_selector("body[data-queued='0']", timeout=9000)
    [there] = actions(centre, incident_id, "rescuer_on_scene")
    assert "lat" not in there["detail"]


@pytest.mark.centre_args("--rescue-accept-within", "1")
def test_reassigned_task_moves_between_phones_and_a_second_phone_sees_it(
    centre: Centre, page_for: Any, phone_for: Any
) -> None:
    gateway = centre.household("hh-0302", resident="Qian Mei", community="West Gate")
    first = add_rescuer(centre, "Sun Hao", "sun.hao")
    second = add_rescuer(centre, "Zhao Yi", "zhao.yi")
    phone_a, phone_a2, phone_b = phone_for(), phone_for(lang="zh-CN"), phone_for()
    phone_log_in(phone_a, centre, "sun.hao")
    phone_log_in(phone_a2, centre, "sun.hao")  # the same rescuer on a second phone
    phone_log_in(phone_b, centre, "zhao.yi")

    console, incident_id = alarm_dispatched_from_console(centre, page_for, gateway, first)
    phone_a.wait_for_selector("body[data-task=assigned]")
    phone_a2.wait_for_selector("body[data-task=assigned]")
    assert "跌倒" in phone_a2.inner_text("#task-title")  # the second phone speaks Chinese

    # Not accepted within the (here: 1 s) target: the board says so.
    console.click("[data-nav=rescuers]")
    late = f"#rescuer-board tr.late[data-rescuer='{first['id']}']"
    console.wait_for_selector(late, timeout=10000)
    assert "Not accepted within 2 min" in console.inner_text("#rescuer-board")
    console.go_back()
    console.wait_for_selector(f"#incident-view[data-id='{incident_id}']")

    item = f"#rescue-list li[data-assignment]:has-text('{first['name']}')"
    choice = f"{item} select[name=to] option[value='{second['id']}']"
    console.wait_for_selector(choice, state="attached")
    console.select_option(f"{item} select[name=to]", str(second["id"]))
    console.fill(f"{item} input[name=reason]", "Zhao Yi is round the corner")
    console.click(f"{item} button[data-do=reassign]")

    phone_b.wait_for_selector("body[data-task=assigned]")
    phone_a.wait_for_selector("#idle:not(.hidden)")
    phone_a2.wait_for_selector("#idle:not(.hidden)")
    assert phone_a.is_visible("#notice")
    [moved] = actions(centre, incident_id, "rescuer_reassigned")
    assert moved["detail"]["from"] == "Sun Hao"
    assert moved["detail"]["responder"] == "Zhao Yi"
    phone_b.click("[data-press=accept]")
    phone_b.wait_for_selector("body[data-task=accepted][data-queued='0']")
    console.wait_for_selector("#timeline :text('Rescuer accepted')")


def test_resolving_calls_off_the_rescuers_on_their_phones_and_asks_for_the_on_scene_handover(
    centre: Centre, page_for: Any, phone_for: Any
) -> None:
    gateway = centre.household("hh-0303", resident="Lin Fang", community="South Bridge")
    near = add_rescuer(centre, "Ma Lei", "ma.lei")
    far = add_rescuer(centre, "Hu Jun", "hu.jun")
    near_phone, far_phone = phone_for(), phone_for(lang="zh-CN")
    phone_log_in(near_phone, centre, "ma.lei")
    phone_log_in(far_phone, centre, "hu.jun")

    console, incident_id = alarm_dispatched_from_console(centre, page_for, gateway, near)
    option = f"#rescue-form select[name=rescuer] option[value='{far['id']}']:not([disabled])"
    console.wait_for_selector(option, state="attached")
    console.select_option("#rescue-form select[name=rescuer]", str(far["id"]))
    console.click("#rescue-send")
    far_phone.wait_for_selector("body[data-task=assigned]")
    near_phone.wait_for_selector("body[data-task=assigned]")
    handover = "#resolve-form input[name=on_scene_handover]"
    assert not console.is_visible(handover)  # nobody is with the resident yet

    near_phone.click("[data-press=on_scene]")
    near_phone.wait_for_selector("body[data-task=on_scene][data-queued='0']")
    # The form says a rescuer is with the resident, and wants their handover.
    console.wait_for_selector(f"{handover}:visible")
    assert console.is_visible("#resolve-onscene-hint")
    assert console.input_value(handover) == ""  # nothing written for the operator
    console.select_option("#resolve-form select[name=outcome]", "false_alarm")
    console.fill("#resolve-form input[name=no_call_reason]", "rescuer on site: pressed by mistake")
    console.click("#act-resolve")
    assert console.evaluate(f"() => document.querySelector('{handover}').validity.valueMissing")
    assert actions(centre, incident_id, "resolved") == []
    console.fill(handover, "Ma Lei: resident fine, pressed it while cleaning")
    console.click("#act-resolve")
    console.wait_for_function("() => location.hash === '#/queue'")

    # Both phones are told at once, with why; the one on the road and the one there alike.
    for phone, said in (
        (near_phone, "The incident was resolved: False alarm."),
        (far_phone, "误报"),
    ):
        phone.wait_for_selector("#idle:not(.hidden)")
        phone.wait_for_selector("#notice:not(.hidden)")
        assert said in phone.inner_text("#notice")
    called_off = actions(centre, incident_id, "rescuer_cancelled")
    assert sorted(a["detail"]["responder"] for a in called_off) == ["Hu Jun", "Ma Lei"]
    [on_site] = [a for a in called_off if a["detail"]["responder"] == "Ma Lei"]
    assert on_site["detail"]["handover"] == "Ma Lei: resident fine, pressed it while cleaning"


def test_a_reassignment_being_written_survives_a_pushed_change(
    centre: Centre, page_for: Any
) -> None:
    """A press joining the incident is pushed while the operator is choosing whom to send
    instead and typing why: the choice and the reason stay, and the reassignment goes out."""
    gateway = centre.household("hh-0304", resident="Guo Ping", community="North Gate")
    first = add_rescuer(centre, "Tang Wei", "tang.wei")
    second = add_rescuer(centre, "Xu Lan", "xu.lan")
    console, incident_id = alarm_dispatched_from_console(centre, page_for, gateway, first)

    item = f"#rescue-list li[data-assignment]:has-text('{first['name']}')"
    choice = f"{item} select[name=to] option[value='{second['id']}']"
    console.wait_for_selector(choice, state="attached")
    console.select_option(f"{item} select[name=to]", str(second["id"]))
    console.fill(f"{item} input[name=reason]", "Xu Lan is next door")

    press_joins(console, gateway, incident_id, EventKind.FALL)
    assert console.input_value(f"{item} select[name=to]") == str(second["id"])
    assert console.input_value(f"{item} input[name=reason]") == "Xu Lan is next door"

    # The first rescuer reports at the door meanwhile: the list is drawn again with the news,
    # and the choice and reason being written are still there.
    phone = centre.server.login("tang.wei", "pw-tang.wei-2026")
    assignment = int(str(console.get_attribute(item, "data-assignment")))
    for action in ("accept", "on_scene"):
        body = {"key": uuid.uuid4().hex, "assignment_id": assignment, "action": action}
        assert phone.post("/api/v1/rescuer/presses", json=body).status_code == 200
    console.wait_for_selector(f"li[data-assignment='{assignment}'].rescue-on_scene")
    assert console.input_value(f"{item} select[name=to]") == str(second["id"])
    assert console.input_value(f"{item} input[name=reason]") == "Xu Lan is next door"

    console.click(f"{item} button[data-do=reassign]")
    console.wait_for_selector(f"#rescue-list li[data-assignment]:has-text('{second['name']}')")
    [moved] = actions(centre, incident_id, "rescuer_reassigned")
    assert moved["detail"]["responder"] == "Xu Lan"
