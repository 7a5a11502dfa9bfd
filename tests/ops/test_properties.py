"""Property tests: no request line breaks the control server's parser, and no status object
(however odd, e.g. from an older or newer daemon) breaks `gatewayd status`."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from gatewayd.commands.status import metrics_text, render_status
from gatewayd.control import _OPS, _parse_request
from gatewayd.status import (
    BufferDepth,
    BufferStatus,
    DeviceStatus,
    DriverStatus,
    ForwarderStatus,
    GatewayStatus,
    parse_status,
)
from tests.ops.fakes import realistic_status

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_any_bytes_parse_to_a_request_or_an_error(line: bytes) -> None:
    request, error = _parse_request(line)
    if request is None:
        assert error
    else:
        assert request["op"] in _OPS


@given(st.dictionaries(st.sampled_from(["op", "mode", "x"]), json_values, max_size=3))
def test_json_objects_parse_by_their_op(obj: dict[str, Any]) -> None:
    request, _ = _parse_request(json.dumps(obj).encode())
    assert (request is not None) == (obj.get("op") in _OPS)


def _mutated_status() -> st.SearchStrategy[dict[str, Any]]:
    base = realistic_status()
    keys = st.sampled_from(sorted(base))
    return st.dictionaries(keys, json_values, max_size=6).map(lambda extra: {**base, **extra})


@settings(max_examples=150, deadline=None)
@given(st.one_of(_mutated_status(), st.dictionaries(st.text(max_size=12), json_values)))
def test_status_rendering_never_fails(status: dict[str, Any]) -> None:
    console = Console(width=160, file=io.StringIO())
    console.print(render_status(status, now=datetime(2026, 11, 29, tzinfo=UTC)))
    families = {f.name for f in text_string_to_metric_families(metrics_text(status))}
    assert "gatewayd_up" in families


finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.datetimes(timezones=st.just(UTC))
names = st.text(max_size=12)
devices = st.builds(
    DeviceStatus,
    id=names,
    driver=names,
    role=names,
    room=names,
    known=st.booleans(),
    last_seen=st.none() | times,
    battery=st.none() | finite,
    signal=st.none() | finite,
    online=st.booleans(),
)
drivers = st.builds(
    DriverStatus,
    id=names,
    type=names,
    state=st.sampled_from(["starting", "running", "failed", "stopped"]),
    detail=names,
    restarts=st.integers(0, 10**6),
    driver_status=st.none() | st.dictionaries(names, st.none() | st.booleans() | names),
)


@settings(max_examples=100, deadline=None)
@given(
    drivers=st.lists(drivers, max_size=3),
    devices=st.lists(devices, max_size=4),
    mode=st.sampled_from(["normal", "away", "test", "starting"]),
    uptime=finite,
    buffer=st.builds(
        BufferStatus,
        depth=st.builds(BufferDepth, alarm=st.integers(0, 99), telemetry=st.integers(0, 99)),
        oldest_unsent_age_s=st.none() | finite,
    ),
    forwarder=st.builds(ForwarderStatus, reachable=st.none() | st.booleans()),
)
def test_what_the_daemon_sends_is_read_back_whole(
    drivers: list[DriverStatus],
    devices: list[DeviceStatus],
    mode: str,
    uptime: float,
    buffer: BufferStatus,
    forwarder: ForwarderStatus,
) -> None:
    status = GatewayStatus(
        gateway_id="gw-1",
        mode=mode,
        uptime_s=uptime,
        drivers=drivers,
        devices=devices,
        buffer=buffer,
        forwarder=forwarder,
    )
    assert (len(status.drivers), len(status.devices)) == (len(drivers), len(devices))
    wire = json.loads(json.dumps(status.to_json()))
    parsed = parse_status(wire)
    assert parsed.problems == []
    assert parsed.status == status
