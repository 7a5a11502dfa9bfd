"""The daemon's own tasks and its shutdown, in-process: nothing it starts is left unobserved, and
the buffer is closed however the steps before it went."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from buffer.store import EventBuffer
from contract.home import parse_config
from gatewayd import daemon
from replay.recorder import Recorder
from runtime.timeouts import within
from tests.fixtures.waiting import await_until


def home(state_dir: Path, *, record: bool = False) -> str:
    # A Unix socket path must stay under 108 bytes: keep it out of pytest's long tmp paths.
    socket_dir = tempfile.mkdtemp(prefix="gw-")
    return f"""[gateway]
id = "gw-life-1"
state_dir = "{state_dir}"

[status]
socket = "{socket_dir}/control.sock"

[record]
enabled = {"true" if record else "false"}
"""


class Running:
    def __init__(self, gateway: daemon.Gateway, task: asyncio.Task[None]) -> None:
        self.gateway = gateway
        self.task = task

    async def stop(self) -> None:
        self.gateway.request_stop()
        await within(self.task, 15)


@pytest.fixture
async def logs() -> AsyncIterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def start(tmp_path: Path, **kwargs: Any) -> Running:
    config_path = tmp_path / "home.toml"
    config_path.write_text(home(tmp_path / "state", **kwargs))
    config = parse_config(config_path.read_text())
    gateway = daemon.Gateway(config, config_path=config_path, drivers={}, tick_interval=0.1)
    task = asyncio.create_task(gateway.run())
    await within(gateway.wait_ready(), 15)
    return Running(gateway, task)


def buffer_can_be_opened_again(tmp_path: Path) -> bool:
    """The buffer's lock is free: the daemon closed it, and a restart can open it."""
    buffer = EventBuffer.open(tmp_path / "state" / "buffer.db", gateway_id="gw-life-1")
    buffer.close()
    return True


async def test_shutdown_closes_the_buffer_even_when_a_step_before_it_fails(
    tmp_path: Path, logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Recorder) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Recorder, "close", disk_full)
    running = await start(tmp_path, record=True)
    await running.stop()
    assert buffer_can_be_opened_again(tmp_path)
    failed = [e for e in logs if e["event"] == "shutdown_step_failed"]
    assert [e["step"] for e in failed] == ["recorder"]
    assert "No space left on device" in failed[0]["error"]
    assert any(e["event"] == "gateway_stopped" for e in logs)


async def test_test_mode_ends_by_itself_and_its_timer_ends_with_the_daemon(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    running = await start(tmp_path)
    gateway = running.gateway
    gateway.test_mode_limit_s = 0.2
    await gateway.set_mode("test")
    assert gateway.pipeline is not None
    await await_until(lambda: gateway.pipeline is not None and gateway.pipeline.mode == "normal", 5)
    assert [e["after_s"] for e in logs if e["event"] == "test_mode_expired"] == [0.2]

    # A second walk test still running when the daemon stops: its expiry is cancelled with it.
    gateway.test_mode_limit_s = 3600
    await gateway.set_mode("test")
    expiry = gateway._test_mode_expiry
    assert expiry is not None
    await running.stop()
    assert expiry.cancelled()
    assert not gateway._tasks, "every task the daemon started has ended"
    assert not [e for e in logs if e["event"] == "task_failed"]


async def test_a_reload_that_fails_is_logged_and_keeps_the_running_drivers(
    tmp_path: Path, logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start(tmp_path)
    gateway = running.gateway

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(daemon, "load_rules", broken)
    decider = gateway.pipeline.decider if gateway.pipeline else None
    gateway.request_reload()
    await await_until(lambda: any(e["event"] == "task_failed" for e in logs), 5)
    failed = next(e for e in logs if e["event"] == "task_failed")
    assert failed["task"] == "reload"
    assert "rules exploded" in failed["error"]
    assert gateway.pipeline is not None
    assert gateway.pipeline.decider is decider
    await running.stop()
    assert buffer_can_be_opened_again(tmp_path)
