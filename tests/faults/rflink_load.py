"""A home of RFLink devices and a load of frames for it: unique smoke detectors (each one alarm),
and doors whose opening and closing is telemetry."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from firmware_sim.rflink import RflinkSimulator

__all__ = ["DOORS", "CountingRflinkSimulator", "RflinkLoad", "rflink_config"]

#: Enough doors that one door's same frame never comes twice within the receiver's repeat window.
DOORS = 160


def rflink_config(port: str) -> dict[str, str]:
    devices = "".join(
        f"""
[[devices]]
id = "door-{i}"
driver = "rflink"
address = "NewKaku:{0x200 + i:x}"
role = "door"
room = "room {i}"
"""
        for i in range(DOORS)
    )
    drivers = f"""
[[drivers]]
id = "rflink"
type = "rflink"
port = "{port}"
"""
    return {"drivers": drivers, "devices": devices}


class CountingRflinkSimulator(RflinkSimulator):
    """The simulator, counting the lines the pty could not take (nobody was reading)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.dropped: list[bytes] = []

    def _write(self, data: bytes) -> None:
        if self._master is None:
            self.dropped.append(data)
            return
        try:
            os.write(self._master, data)
        except OSError:
            self.dropped.append(data)

    async def __aenter__(self) -> CountingRflinkSimulator:
        await self.start()
        return self

    def dropped_text(self) -> str:
        return b"".join(self.dropped).decode("ascii", "replace")


@dataclass
class RflinkLoad:
    """Sends frames; every ``alarm_every``-th is a new smoke detector going off."""

    sim: CountingRflinkSimulator
    alarm_every: int = 2
    #: Number of the first smoke detector (loads that must not share detectors differ here).
    first_alarm: int = 0
    sent: int = 0
    door_frames: int = 0
    #: Condition of each alarm sent -> monotonic time it was sent.
    alarms: dict[str, float] = field(default_factory=dict)
    _doors_open: list[bool] = field(default_factory=lambda: [False] * DOORS)

    @staticmethod
    def smoke_id(n: int) -> str:
        return f"{0xA00000 + n:06X}"

    @staticmethod
    def condition(rf_id: str) -> str:
        return f"smoke:SmokeAlert:{rf_id}"

    async def send_one(self) -> None:
        n = self.sent
        self.sent += 1
        if n % self.alarm_every == 0:
            rf_id = self.smoke_id(self.first_alarm + len(self.alarms))
            self.alarms[self.condition(rf_id)] = time.monotonic()
            await self.sim.smoke(rf_id, on=True)
        else:
            door = self.door_frames % DOORS
            self.door_frames += 1
            self._doors_open[door] = not self._doors_open[door]
            cmd = "ON" if self._doors_open[door] else "OFF"
            await self.sim.button("NewKaku", f"{0x200 + door:x}", cmd=cmd, switch="1")

    async def send(self, count: int, *, rate: float = 400.0) -> None:
        for _ in range(count):
            await self.send_one()
            await asyncio.sleep(1.0 / rate)

    async def sound_again(self, *, rate: float = 1000.0) -> None:
        """Every detector that went off repeats its frame, as a detector in smoke does."""
        for condition in list(self.alarms):
            await self.sim.smoke(condition.rsplit(":", 1)[1], on=True)
            await asyncio.sleep(1.0 / rate)
