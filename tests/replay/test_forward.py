"""replay --forward: replayed events reach dispatch through a buffer and the real forwarder."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.base import LocalCommand
from gatewayd.config import parse_config
from gatewayd.contract import EventKind, Priority
from gatewayd.replay_forward import ForwardError, ReplayForwarder
from tests.buffer.fake_dispatch import CREDENTIAL, FakeDispatch

pytest.importorskip("gatewayd.decider", reason="needs the pipeline's decider (draft_of)")

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
