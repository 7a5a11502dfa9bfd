"""Recording driver transports: restarts, link frames for failures, a clean end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers.base import Driver, FrameParser, TransportError, data_frame
from gatewayd.commands.record import record_drivers
from replay.recorder import Recorder
from replay.trace import read_frames
from runtime.timeouts import within


class FlakyDriver(Driver):
    """Emits a few frames, then its wire fails; the recorder must restart it."""

    type_name = "flaky"

    def __init__(self, driver_id: str) -> None:
        super().__init__(driver_id, {}, [])
        self.runs = 0

    def create_parser(self) -> FrameParser:
        raise NotImplementedError

    async def run(self, emit):  # type: ignore[no-untyped-def]
        self.runs += 1
        await emit(self.link_frame(True))
        for i in range(3):
            await emit(data_frame(self.id, f"flaky/{self.runs}", f"frame {i}".encode()))
            await asyncio.sleep(0)
        raise TransportError(f"port gone (run {self.runs})")


class SteadyDriver(Driver):
    type_name = "steady"

    def create_parser(self) -> FrameParser:
        raise NotImplementedError

    async def run(self, emit):  # type: ignore[no-untyped-def]
        i = 0
        while True:
            await emit(data_frame(self.id, "steady/topic", str(i).encode(), retained=i == 0))
            i += 1
            await asyncio.sleep(0.01)


async def test_failing_transports_are_restarted_and_their_failures_recorded(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    recorder = Recorder.open(path, gateway_id="gw")
    flaky = FlakyDriver("flaky")
    steady = SteadyDriver("steady", {}, [])
    await record_drivers(
        {"flaky": flaky, "steady": steady}, recorder, duration=0.5, backoff_initial=0.02
    )
    recorder.close()
    frames = read_frames(path)
    assert flaky.runs >= 2
    downs = [
        f
        for f in frames
        if f.driver == "flaky" and f.kind == "link" and f.payload.startswith(b"down")
    ]
    assert len(downs) >= 2
    assert downs[0].payload == b"down:TransportError: port gone (run 1)"
    data = [f for f in frames if f.driver == "flaky" and f.kind == "data"]
    assert [f.payload for f in data[:3]] == [b"frame 0", b"frame 1", b"frame 2"]
    ticks = [int(f.payload) for f in frames if f.driver == "steady"]
    assert ticks == list(range(len(ticks)))
    assert len(ticks) > 10
    assert [f.retained for f in frames if f.driver == "steady"][:2] == [True, False]


async def test_stop_ends_recording_promptly(tmp_path: Path) -> None:
    recorder = Recorder.open(tmp_path / "rec.jsonl", gateway_id="gw")
    stop = asyncio.Event()
    task = asyncio.create_task(
        record_drivers({"s": SteadyDriver("s", {}, [])}, recorder, stop=stop)
    )
    await asyncio.sleep(0.1)
    stop.set()
    await within(task, 2)
    recorder.close()
    assert len(read_frames(tmp_path / "rec.jsonl")) >= 3
