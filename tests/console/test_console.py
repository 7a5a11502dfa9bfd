"""The operator console in headless Chromium against a real dispatchd and a signing gateway."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gatewayd.contract import EventKind
from tests.console.conftest import OPERATOR_NAME, Centre, log_in

pytestmark = pytest.mark.browser


def test_alarm_appears_live_and_is_worked_to_resolution(centre: Centre, page_for: Any) -> None:
    gateway = centre.household("hh-0042", resident="Zhang Wei", community="East Lake")
    page = page_for()
    log_in(page, centre)
    whoami = page.inner_text("#whoami")
    assert OPERATOR_NAME in whoami and "supervisor" in whoami.lower()
    page.wait_for_selector("body[data-live=connected]")
    assert page.is_visible("#queue-empty")

    raised = time.monotonic()
    reply = gateway.raise_alarm(EventKind.SOS)
    incident = reply.acks[0].incident
    assert incident is not None
    row = page.wait_for_selector(f"#queue-body tr[data-id='{incident.id}']", timeout=3000)
    latency = time.monotonic() - raised
    assert latency < 1.5, f"the alarm took {latency:.2f} s to appear"
    assert "SOS" in row.inner_text() and "Zhang Wei" in row.inner_text()
    assert "attention" in (row.get_attribute("class") or "")
    page.wait_for_selector("#alert-strip:not(.hidden)")
