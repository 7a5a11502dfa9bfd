"""The live side of live-equals-replay checks: the daemon's own pipeline, buffer and memory keeping
on a virtual clock, stopped and started again at every session header of the inputs.

Each session opens the buffer's SQLite file, resumes a fresh engine from it as the daemon does
(:func:`gatewayd.memory.resume_engine`), runs the inputs through :class:`gatewayd.pipeline.Pipeline`
(ticking it at the engine's deadlines, as its one-second tick does on a real clock), and at the
next header drains, saves the engine's memory and closes the buffer: a restart of the daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract.home import HomeConfig
from contract.wire import Event, RawFrame
from gatewayd.devicestate import DeviceStates
from gatewayd.memory import MemoryKeeper, resume_engine
from gatewayd.pipeline import Pipeline, _Ack, _ModeChange
from replay.engine import Replay, build_decider, build_restart, canonical_decision
from replay.trace import TraceControl, TraceHeader, TraceItem, iso_utc
from tests.fixtures.procs import run_module

__all__ = ["ZIGBEE_DRIVER", "live_events", "replay_command", "replayed_events"]

#: The one driver of the test homes (no broker is reached: replay only parses).
ZIGBEE_DRIVER = """[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "mqtt://127.0.0.1:1883"
base_topic = "zigbee2mqtt"
"""


def _key(kind: str, device: Any, at: str, payload: dict[str, Any]) -> tuple[str, Any, str, str]:
    return kind, device, at, json.dumps(payload, sort_keys=True, default=str)


class _Session:
    def __init__(self, config: HomeConfig, state_dir: Path, at: datetime) -> None:
        self.now = at
        raw = EventBuffer.open(state_dir / "buffer.db", gateway_id=config.gateway.id)
        self.buffer = AsyncEventBuffer(raw)
        decider = build_decider(config)
        resume_engine(decider.engine, raw)
        self.pipeline = Pipeline(
            engine=decider.engine,
            buffer=self.buffer,
            parsers=decider.parsers,
            send_command=self._no_command,
            devices=DeviceStates(config.devices),
            clock=lambda: self.now,
            memory=MemoryKeeper(self.buffer),
        )

    @staticmethod
    async def _no_command(_: Any) -> None:
        return None

    async def tick_until(self, at: datetime) -> None:
        """Tick at every deadline up to ``at``: what the one-second tick does, exactly."""
        while (due := self.pipeline.engine.next_deadline()) is not None and due <= at:
            self.now = max(due, self.now)
            before = self.pipeline.engine.revision
            await self.pipeline.process([], tick=True)
            if self.pipeline.engine.revision == before:
                return  # nothing fired: the deadline does not advance (as replay stops too)
        self.now = max(at, self.now)

    async def stop(self, at: datetime) -> None:
        await self.tick_until(at)
        await self.pipeline.drain()
        await self.buffer.aclose()


async def _live(config: HomeConfig, items: Iterable[TraceItem], state_dir: Path) -> list[Event]:
    events: list[Event] = []
    session: _Session | None = None
    for item in items:
        if isinstance(item, TraceHeader):
            if session is not None:
                await session.stop(item.started)
            session = _Session(config, state_dir, item.started)
            session.pipeline.add_listener(events.append)
            await session.pipeline.process([], tick=True)  # the daemon's first act
            continue
        assert session is not None, "the inputs start with a session header"
        at = item.wall_time if isinstance(item, RawFrame) else item.at
        await session.tick_until(at)
        if isinstance(item, RawFrame):
            await session.pipeline.process([item])
        elif item.what == "ack":
            await session.pipeline.process([_Ack(item.value)])
        else:
            done = asyncio.get_running_loop().create_future()
            await session.pipeline.process([_ModeChange(item.value, done)])  # type: ignore[arg-type]
    if session is not None:
        await session.stop(session.now)
    return events


def live_events(
    config: HomeConfig, items: list[TraceItem], state_dir: Path
) -> list[tuple[str, Any, str, str]]:
    """The events the daemon stored, restarted at each header, as comparable tuples."""
    events = asyncio.run(_live(config, items, state_dir))
    return [_key(e.kind.value, e.device_id, iso_utc(e.at), e.payload) for e in events]


def replayed_events(config: HomeConfig, items: list[TraceItem]) -> list[tuple[str, Any, str, str]]:
    """The events a replay of the same inputs decides, as comparable tuples."""
    decided: list[dict[str, Any]] = []
    Replay(
        build_decider(config),
        on_decided=lambda d: decided.append(canonical_decision(d)),
        restart=build_restart(config),
    ).run(items)
    return [
        _key(d["kind"], d["device_id"], d["at"], {"condition": d["condition"], **d["payload"]})
        for d in decided
        if d["decision"] == "event"
    ]


def replay_command(
    trace: Path, home: Path, out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`gatewayd replay` of a trace: its decisions and its summary."""
    result = run_module(
        "gatewayd", "replay", str(trace), "--config", str(home), "--out", str(out),
        "--no-progress", "--summary", "json", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    return [json.loads(line) for line in out.read_text().splitlines()], summary


def header(gateway: str, at: datetime, session: str) -> TraceHeader:
    return TraceHeader(gateway_id=gateway, started=at, session=session)


def mode(value: str, at: datetime) -> TraceControl:
    return TraceControl("mode", value, at)
