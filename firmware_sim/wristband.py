"""A Beidou/GNSS wristband speaking JT/T 808 over a real TCP connection.

It registers (0x0100), authenticates with the code it was given (0x0102), sends heartbeats
(0x0002) and location reports (0x0200) along a walk, and can press SOS, fall, run its battery
low or send a batch (0x0704). Every message waits for the platform's answer, as a terminal does.
What the platform sends of its own accord (0x8103, set terminal parameters) is answered with a
terminal general response (0x0001) and obeyed: the heartbeat interval it is told is the one it
keeps.

    python -m firmware_sim.wristband --port 7018 --terminal 13912345678 --sos-after 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contract import jt808
from contract.jt808 import AlarmBit, MsgId, StatusBit
from runtime.timeouts import within

__all__ = ["Reply", "Walker", "Wristband", "walk"]


@dataclass(frozen=True)
class Reply:
    msg_id: int
    body: bytes
    #: For a general response: (answered serial, answered message id, result).
    general: tuple[int, int, int] | None = None
    serial: int = 0
    is_2019: bool = False


@dataclass
class Wristband:
    host: str
    port: int
    terminal: str = "13912345678"
    #: 1 speaks the 2019 header; None the 2013 one.
    version: int | None = None
    lat: float = 31.2304
    lon: float = 121.4737
    fix: bool = True
    battery: int = 80
    signal: int = 25
    satellites: int = 9
    alarm: int = 0
    auth_code: str = ""
    serial: int = 0
    timeout_s: float = 10.0
    #: Seconds between heartbeats, as the platform set it (0x8103 parameter 0x0001); None: untold.
    heartbeat_s: int | None = None
    #: False: receive the platform's commands but never answer them (a terminal out of reach).
    answer_commands: bool = True
    #: The platform's commands received, oldest first.
    commands: list[Reply] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False)
    _splitter: jt808.Splitter = field(default_factory=jt808.Splitter, repr=False)
    _frames: list[bytes] = field(default_factory=list, repr=False)
    _last_heartbeat: float | None = field(default=None, repr=False)

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> Wristband:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the wire ---------------------------------------------------------------------------

    def frame(
        self,
        msg_id: int,
        body: bytes = b"",
        *,
        corrupt_check: bool = False,
        packages: int | None = None,
        index: int | None = None,
    ) -> bytes:
        self.serial = (self.serial + 1) & 0xFFFF
        return jt808.encode_frame(
            msg_id,
            self.terminal,
            self.serial,
            body,
            version=self.version,
            corrupt_check=corrupt_check,
            packages=packages,
            index=index,
        )

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None, "connect() first"
        self._writer.write(data)
        await self._writer.drain()

    async def _next_frame(self) -> Reply:
        assert self._reader is not None, "connect() first"
        while not self._frames:
            data = await within(self._reader.read(4096), self.timeout_s)
            if not data:
                raise ConnectionError("the platform closed the connection")
            self._frames += self._splitter.feed(data)
        msg = jt808.decode_frame(self._frames.pop(0))
        general = None
        if msg.header.msg_id == MsgId.PLATFORM_RESPONSE:
            general = jt808.decode_general_response(msg.body)
        return Reply(msg.header.msg_id, msg.body, general, msg.header.serial, msg.header.is_2019)

    async def reply(self) -> Reply:
        """The platform's next answer; its commands met on the way are obeyed and answered."""
        while True:
            answer = await self._next_frame()
            if answer.msg_id != MsgId.SET_PARAMS:
                return answer
            await self._obey(answer)

    async def command(self) -> Reply:
        """Wait for the platform's next command (obeyed and answered like any other)."""
        answer = await self._next_frame()
        if answer.msg_id != MsgId.SET_PARAMS:
            raise ConnectionError(f"expected a command, the platform sent {answer.msg_id:#06x}")
        await self._obey(answer)
        return answer

    async def _obey(self, command: Reply) -> None:
        self.commands.append(command)
        params = jt808.decode_set_params(command.body)
        value = params.get(jt808.Param.HEARTBEAT_S)
        if value is not None and len(value) == 4:
            self.heartbeat_s = int.from_bytes(value, "big")
        if self.answer_commands:
            body = jt808.encode_general_response(command.serial, command.msg_id, 0)
            await self.send_raw(self.frame(MsgId.TERMINAL_RESPONSE, body))

    async def request(
        self, msg_id: int, body: bytes = b"", *, corrupt_check: bool = False
    ) -> Reply:
        await self.send_raw(self.frame(msg_id, body, corrupt_check=corrupt_check))
        return await self.reply()

    # -- messages ---------------------------------------------------------------------------

    async def register(self) -> str:
        reg = jt808.Registration(31, 100, "SIM01", "WB-1", self.terminal[-7:], 0, "")
        body = jt808.encode_registration(reg, is_2019=self.version is not None)
        answer = await self.request(MsgId.REGISTER, body)
        if answer.msg_id != MsgId.REGISTER_REPLY:
            raise ConnectionError(f"registration answered with {answer.msg_id:#06x}")
        _, result, self.auth_code = jt808.decode_register_reply(answer.body)
        if result != 0:
            raise ConnectionError(f"registration refused: result {result}")
        return self.auth_code

    async def authenticate(self, code: str | None = None) -> int:
        auth = jt808.Authentication(code if code is not None else self.auth_code, "86" * 7 + "1")
        body = jt808.encode_authentication(auth, is_2019=self.version is not None)
        answer = await self.request(MsgId.AUTHENTICATE, body)
        assert answer.general is not None
        return answer.general[2]

    async def heartbeat(self) -> int:
        answer = await self.request(MsgId.HEARTBEAT)
        assert answer.general is not None
        self._last_heartbeat = asyncio.get_running_loop().time()
        return answer.general[2]

    async def heartbeat_if_due(self) -> int | None:
        """A heartbeat if the interval the platform set has passed (always, if it set none)."""
        last, every = self._last_heartbeat, self.heartbeat_s
        if every is not None and last is not None:
            due = last + every
            if asyncio.get_running_loop().time() < due:
                return None
        return await self.heartbeat()

    def location(self, at: datetime | None = None) -> jt808.Location:
        status = 1 << StatusBit.FIX if self.fix else 0
        extra = {
            0x30: bytes([self.signal]),
            0x31: bytes([self.satellites]),
            0xFE: bytes([self.battery]),
        }
        return jt808.Location(
            self.alarm,
            status,
            self.lat,
            self.lon,
            12,
            4.5,
            90,
            (at or datetime.now(UTC)).replace(microsecond=0),
            extra,
        )

    async def report(self, *, corrupt_check: bool = False) -> int:
        body = jt808.encode_location(self.location())
        answer = await self.request(MsgId.LOCATION, body, corrupt_check=corrupt_check)
        assert answer.general is not None
        return answer.general[2]

    async def batch(self, locations: list[jt808.Location]) -> int:
        answer = await self.request(MsgId.BATCH_LOCATION, jt808.encode_batch(locations))
        assert answer.general is not None
        return answer.general[2]

    def set_alarm(self, bit: AlarmBit, on: bool = True) -> None:
        self.alarm = self.alarm | (1 << bit) if on else self.alarm & ~(1 << bit)


def walk(lat: float, lon: float, *, metres_per_step: float = 15.0) -> Iterator[tuple[float, float]]:
    """Positions along a slow loop around a start, a step at a time (a walk in the park)."""
    step = 0
    while True:
        angle = step * metres_per_step / 200.0
        dlat = 200.0 * math.sin(angle) / 111_320
        dlon = 200.0 * (1 - math.cos(angle)) / (111_320 * math.cos(math.radians(lat)))
        yield lat + dlat, lon + dlon
        step += 1


class Walker:
    """A wristband out for a walk: registered and authenticated, then a position and a heartbeat
    every ``every`` seconds along :func:`walk` until closed. ``press_sos`` and ``battery_low``
    act at once, between two reports."""

    def __init__(self, band: Wristband, *, every: float = 1.0) -> None:
        self.band = band
        self.every = every
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._path = walk(band.lat, band.lon)
        self.reports = 0

    async def __aenter__(self) -> Walker:
        await self.band.connect()
        await self.band.register()
        await self.band.authenticate()
        self._task = asyncio.create_task(self._walk(), name="wristband-walk")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.band.close()

    async def _step(self) -> None:
        async with self._lock:
            self.band.lat, self.band.lon = next(self._path)
            await self.band.report()
            await self.band.heartbeat_if_due()
            self.reports += 1

    async def _walk(self) -> None:
        while True:
            await self._step()
            await asyncio.sleep(self.every)

    async def press_sos(self) -> None:
        async with self._lock:
            self.band.set_alarm(AlarmBit.EMERGENCY)
            await self.band.report()

    async def battery_low(self, percent: int = 9) -> None:
        async with self._lock:
            self.band.battery = percent
            self.band.set_alarm(AlarmBit.UNDERVOLTAGE)
            await self.band.report()


async def run(args: argparse.Namespace) -> None:
    band = Wristband(args.host, args.port, args.terminal, version=1 if args.v2019 else None)
    async with band:
        await band.register()
        await band.authenticate()
        path = walk(band.lat, band.lon)
        started = asyncio.get_running_loop().time()
        while True:
            band.lat, band.lon = next(path)
            elapsed = asyncio.get_running_loop().time() - started
            if args.sos_after is not None and elapsed >= args.sos_after:
                band.set_alarm(AlarmBit.EMERGENCY)
            await band.report()
            await band.heartbeat_if_due()
            await asyncio.sleep(args.every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--terminal", default="13912345678")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    parser.add_argument("--sos-after", type=float, default=None, help="press SOS after seconds")
    parser.add_argument("--v2019", action="store_true", help="speak the 2019 header")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
