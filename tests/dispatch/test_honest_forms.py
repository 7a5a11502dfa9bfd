"""The server's refusals behind the console's forms: no call outcome or resolution by default,
and no resolution without a recorded call attempt or a stated reason."""

from __future__ import annotations

import httpx
import pytest

from contract.wire import EventKind
from tests.dispatch.conftest import unique
from tests.dispatch.test_incidents import operator, send
from tests.fixtures.dispatch_app import DispatchApp


def _claimed_alarm(server: DispatchApp) -> tuple[str, httpx.Client]:
    gw = server.enroll(unique("hh"))
    [incident_id] = send(gw, EventKind.INACTIVITY)
    assert incident_id is not None
    _name, client = operator(server)
    assert client.post(f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200
    return f"/api/v1/incidents/{incident_id}", client


@pytest.mark.parametrize("body", [{}, {"outcome": ""}, {"outcome": None}, {"note": "rang"}])
def test_a_call_without_an_outcome_is_refused_naming_the_field(
    server: DispatchApp, body: dict[str, object]
) -> None:
    base, client = _claimed_alarm(server)
    reply = client.post(f"{base}/callback", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in reply.json()["errors"]] == ["body.outcome"]
    assert client.get(base).json()["callback_at"] is None


def test_a_resolution_without_an_outcome_is_refused_naming_the_field(server: DispatchApp) -> None:
    base, client = _claimed_alarm(server)
    client.post(f"{base}/callback", json={"outcome": "reached"})
    reply = client.post(f"{base}/resolve", json={"note": "fine"})
    assert reply.status_code == 422, reply.text
    assert [e["loc"] for e in reply.json()["errors"]] == ["body.outcome"]
    assert client.get(base).json()["state"] == "callback_made"


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_resolve_without_a_call_or_a_reason_is_refused(
    server: DispatchApp, reason: str | None
) -> None:
    base, client = _claimed_alarm(server)
    body: dict[str, object] = {"outcome": "false_alarm"}
    if reason is not None:
        body["no_call_reason"] = reason
    reply = client.post(f"{base}/resolve", json=body)
    assert reply.status_code == 409, reply.text
    problem = reply.json()
    assert problem["title"] == "no call recorded"
    assert "no_call_reason" in problem["detail"]
    assert client.get(base).json()["state"] == "acknowledged"


def test_resolve_without_a_call_is_allowed_with_a_stated_reason(server: DispatchApp) -> None:
    base, client = _claimed_alarm(server)
    reason = "false alarm confirmed on site by the warden"
    reply = client.post(
        f"{base}/resolve", json={"outcome": "false_alarm", "no_call_reason": reason}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["incident"]["state"] == "resolved"
    timeline = client.get(base).json()["timeline"]
    [resolved] = [e for e in timeline if e["name"] == "resolved"]
    assert resolved["detail"]["no_call_reason"] == reason


def test_resolve_after_an_unanswered_call_needs_no_reason(server: DispatchApp) -> None:
    base, client = _claimed_alarm(server)
    call = client.post(f"{base}/callback", json={"outcome": "no_answer"})
    assert call.status_code == 200
    reply = client.post(f"{base}/resolve", json={"outcome": "no_answer"})
    assert reply.status_code == 200, reply.text
