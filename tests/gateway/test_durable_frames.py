"""The pipeline tells a transport when a frame is durable: its events committed to the buffer,
or, for a frame that decides nothing, once it has been processed. Never before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.home import parse_config
from drivers.base import LocalCommand, data_frame
from gatewayd.daemon import build_drivers
from gatewayd.devicestate import DeviceStates
from gatewayd.pipeline import Pipeline
from rules import RuleEngine, load_rules
from tests.fixtures.gateway import home_toml

ZIGBEE = '[[drivers]]\nid = "zigbee"\ntype = "zigbee2mqtt"\n'


async def _noop(command: LocalCommand) -> None:
    return None


async def test_a_frame_is_durable_only_once_its_alarm_is_committed(tmp_path: Path) -> None:
    config = parse_config(home_toml(tmp_path / "state", drivers=ZIGBEE))
    path = tmp_path / "buffer.db"
    buffer = AsyncEventBuffer(EventBuffer.open(path, gateway_id=config.gateway.id))
    await buffer.start()
    pipeline = Pipeline(
        engine=RuleEngine(load_rules(config.rules, devices=config.devices), config.devices),
        buffer=buffer,
        parsers={d: drv.create_parser() for d, drv in build_drivers(config).items()},
        send_command=_noop,
        devices=DeviceStates(config.devices),
    )
    worker = asyncio.create_task(pipeline.run())
    wedged = sqlite3.connect(path, timeout=5, isolation_level=None)  # a disk that hangs
    wedged.execute("BEGIN EXCLUSIVE")
    try:
        alarm = await pipeline.submit(
            data_frame("zigbee", "zigbee2mqtt/smoke_1", json.dumps({"smoke": True}).encode())
        )
        await asyncio.sleep(1.0)
        before_commit = alarm.done()
        wedged.execute("ROLLBACK")
        async with asyncio.timeout(10):
            await alarm
        committed = [e.kind.value for e in buffer.buffer.pending()]
        nothing = await pipeline.submit(data_frame("zigbee", "elsewhere/x", b"{}"))
        async with asyncio.timeout(5):
            await nothing
    finally:
        wedged.close()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await buffer.aclose()
    assert not before_commit, "the frame was reported durable while its commit was held up"
    assert "smoke" in committed
