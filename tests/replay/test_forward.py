"""replay --forward: replayed events reach dispatch through a buffer and the real forwarder."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.home import parse_config
from contract.wire import EventKind, Priority
from drivers.base import LocalCommand
from firmware_sim.scenarios import folder
from forwarder.client import Credential
from replay.forward import ForwardError, ReplayForwarder
from tests.buffer.fake_dispatch import CREDENTIAL, FakeDispatch
from tests.fixtures.procs import run_module

T0 = datetime(2026, 3, 6, 17, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Emit:
    kind: EventKind
    device_id: str | None
    condition: str
    payload: dict[str, Any] = field(default_factory=dict)
    test: bool = False
    priority: Priority | None = None


@dataclass(frozen=True)
class Action:
    command: LocalCommand
    reason: str


@dataclass(frozen=True)
class Decided:
    decision: Any
    at: datetime
    reading: None = None


def config_for(tmp_path: Path) -> Any:
    return parse_config(f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path}"\n')


def test_replayed_events_are_delivered_signed_and_marked(tmp_path: Path) -> None:
    CREDENTIAL.save(tmp_path / "credential.json")
    dispatch = FakeDispatch()
    forwarder = ReplayForwarder.start(config_for(tmp_path), transport=dispatch.transport())
    forwarder.submit(Decided(Emit(EventKind.SMOKE, "smoke-kitchen", "smoke:smoke-kitchen"), T0))
    forwarder.submit(Decided(Action(LocalCommand(device="siren", action="siren_on"), "smoke"), T0))
    forwarder.submit(
        Decided(
            Emit(EventKind.SMOKE_RESTORE, "smoke-kitchen", "smoke:smoke-kitchen"),
            T0 + timedelta(minutes=3),
        )
    )
    outcome = forwarder.finish(timeout=20)
    assert outcome["all_delivered"] is True
    assert outcome["events"] == 2
    stored = sorted(dispatch.stored.values(), key=lambda e: e.seq)
    assert [e.kind for e in stored] == [EventKind.SMOKE, EventKind.SMOKE_RESTORE]
    assert stored[0].gateway_id == "gw-1"
    assert stored[0].payload["condition"] == "smoke:smoke-kitchen"
    assert stored[0].payload["replay"] == {"trace_at": "2026-03-06T17:05:00Z"}
    assert stored[1].payload["replay"] == {"trace_at": "2026-03-06T17:08:00Z"}
    # Stamped when sent, so a console shows them as new.
    assert stored[0].at > datetime.now(UTC) - timedelta(minutes=5)


def test_forwarding_needs_a_credential(tmp_path: Path) -> None:
    with pytest.raises(ForwardError, match="credential"):
        ReplayForwarder.start(config_for(tmp_path))


def test_replay_forward_reaches_a_real_dispatch_server(
    dispatch_server: Any, tmp_path: Path
) -> None:
    """`gatewayd replay --forward` puts a scenario's alarms in front of dispatch's operators."""
    household = f"hh-replay-{uuid.uuid4().hex[:6]}"
    gateway = dispatch_server.enroll(household)
    credential = tmp_path / "credential.json"
    Credential(
        gateway_id=gateway.gateway_id,
        household_id=gateway.household_id,
        secret=gateway.secret,
        dispatch_url=dispatch_server.url,
    ).save(credential)
    scenario = folder("kitchen_gas")
    result = run_module(
        "gatewayd",
        "replay",
        str(scenario / "trace.jsonl.gz"),
        "--config",
        str(scenario / "home.toml"),
        "--forward",
        "--credential",
        str(credential),
        "--insecure-http",  # the test's dispatch listens on loopback
        "--out",
        str(tmp_path / "decisions.jsonl"),
        "--summary",
        "json",
        "--no-progress",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["forwarded"]["all_delivered"] is True
    events = sum(
        1
        for line in (tmp_path / "decisions.jsonl").read_text().splitlines()
        if '"decision": "event"' in line
    )
    assert summary["forwarded"]["events"] == events
    client = dispatch_server.operator_client()
    queue = client.get("/api/v1/incidents", params={"household_id": household}).json()
    kinds = {item.get("kind") for item in queue["items"]}
    assert {"gas", "water_leak"} <= kinds, queue
