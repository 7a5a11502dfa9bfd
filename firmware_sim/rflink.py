"""An RFLink receiver on a real pseudo-terminal, for tests and demos without radio hardware.

The simulator owns the master side of a pty (raw mode) and offers the slave side as
:attr:`RflinkSimulator.port`: a stable symlink to the current ``/dev/pts/N``, like the
``/dev/serial/by-id/...`` link udev makes for a real receiver. It speaks the RFLink text protocol
(57600 8N1 is meaningless on a pty, but the bytes are the same):

- the start banner ``20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;``;
- every line with the next packet counter (two hex digits, wrapping at FF);
- ``10;PING;`` answered with ``20;99;PONG;`` (until :meth:`stop_answering_pings`).

:meth:`unplug` closes the pty as a USB receiver pulled out would vanish; :meth:`replug` brings a
new one up under the same :attr:`port`. Usage::

    async with RflinkSimulator() as sim:
        driver = RflinkDriver("rf", {"port": sim.port}, devices)
        ...
        await sim.smoke("123456", on=True)

Standalone: ``python -m firmware_sim.rflink`` prints the port and reads commands on stdin
(``smoke 123456 on``, ``pir aa66``, ``button SOS 0a1b2c ON``, ``raw Pir;ID=aa66;PIR=ON;``,
``unplug``, ``replug``, ``mute``, ``unmute``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pty
import shutil
import sys
import tempfile
import tty
from pathlib import Path
from types import TracebackType

import structlog

__all__ = ["BANNER", "RflinkSimulator"]

log = structlog.get_logger(__name__)

BANNER = "Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;"


class RflinkSimulator:
    def __init__(
        self,
        *,
        link_dir: str | Path | None = None,
        banner: bool = True,
        repeat_gap: float = 0.05,
        pong_counter: bool = False,
    ) -> None:
        self._own_dir = link_dir is None
        self._dir = Path(link_dir) if link_dir is not None else Path(tempfile.mkdtemp("-rflink"))
        #: The device path to give the driver (a symlink to the pty's slave side).
        self.port = str(self._dir / "rflink")
        self.banner = banner
        self.repeat_gap = repeat_gap
        #: False: answer ``20;99;PONG;`` as the protocol reference shows; True: with the counter.
        self.pong_counter = pong_counter
        self.answering_pings = True
        #: Lines the host sent us (``10;PING;``, transmit commands), without line endings.
        self.received: list[str] = []
        self.pings = 0
        self._seq = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._inbuf = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._command_seen = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> RflinkSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._master is None:
            self._plug()
            if self.banner:
                self.reboot()

    async def stop(self) -> None:
        self.unplug()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """Close the pty: the host's reads fail and the device path vanishes."""
        if self._master is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._inbuf = b""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        log.info("rflink_sim_unplugged", port=self.port)

    def replug(self) -> None:
        """A receiver plugged back in: a new pty under the same :attr:`port`, then the banner."""
        if self._loop is None:
            raise RuntimeError("replug() needs a started simulator (await start() first)")
        self.unplug()
        self._plug()
        if self.banner:
            self.reboot()

    def reboot(self) -> None:
        """The firmware restarts (as when the host toggles DTR): counter back to 00, banner."""
        self._seq = 0
        self._write_line(BANNER)

    def stop_answering_pings(self) -> None:
        """The receiver hangs: the port stays open, but PINGs go unanswered."""
        self.answering_pings = False

    def answer_pings(self) -> None:
        self.answering_pings = True

    async def wait_for_command(self, line: str, *, within: float = 5.0) -> None:
        """Until the host has sent ``line`` (a transmit command, say); TimeoutError after."""
        async with asyncio.timeout(within):
            while line not in self.received:
                self._command_seen.clear()
                await self._command_seen.wait()

    # -- what the radio hears ----------------------------------------------------------------

    async def send(self, body: str, *, repeats: int = 1) -> list[str]:
        """Send a packet (``Name;ID=..;LABEL=value;``) ``repeats`` times, as a remote does."""
        if not body.endswith(";"):
            body += ";"
        lines = []
        for i in range(max(1, repeats)):
            if i:
                await asyncio.sleep(self.repeat_gap)
            lines.append(self._write_line(body))
        return lines

    async def smoke(self, rf_id: str, *, on: bool = True, repeats: int = 1) -> list[str]:
        state = "ON" if on else "OFF"
        return await self.send(f"SmokeAlert;ID={rf_id};SMOKEALERT={state};", repeats=repeats)

    async def pir(self, rf_id: str, *, on: bool = True, repeats: int = 1) -> list[str]:
        state = "ON" if on else "OFF"
        return await self.send(f"Pir;ID={rf_id};PIR={state};", repeats=repeats)

    async def button(
        self,
        protocol: str,
        rf_id: str,
        *,
        cmd: str = "ON",
        switch: str | None = "1",
        repeats: int = 1,
    ) -> list[str]:
        """A remote, pendant or contact: ``Protocol;ID=..;SWITCH=..;CMD=..;``."""
        sw = f"SWITCH={switch};" if switch is not None else ""
        return await self.send(f"{protocol};ID={rf_id};{sw}CMD={cmd};", repeats=repeats)

    async def battery_low(
        self, protocol: str, rf_id: str, *, low: bool = True, extra: str = ""
    ) -> list[str]:
        """A sensor reporting its battery (``BAT=LOW``/``BAT=OK``), with any other fields."""
        state = "LOW" if low else "OK"
        return await self.send(f"{protocol};ID={rf_id};{extra}BAT={state};")

    async def raw(self, text: str) -> None:
        """Bytes exactly as given, for noise and malformed lines."""
        self._write(text.encode("latin-1"))

    # -- the wire ----------------------------------------------------------------------------

    def _plug(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = f"{self.port}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)
        assert self._loop is not None
        self._loop.add_reader(master, self._readable)
        log.info("rflink_sim_plugged", port=self.port, pty=os.ttyname(slave))

    def _next_seq(self) -> str:
        seq = f"{self._seq:02X}"
        self._seq = (self._seq + 1) % 256
        return seq

    def _write_line(self, body: str) -> str:
        line = f"20;{self._next_seq()};{body}"
        self._write(line.encode("ascii") + b"\r\n")
        return line

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except BlockingIOError:
            # Nobody reads the port and its buffer is full: a real receiver's bytes are lost too.
            log.warning("rflink_sim_output_dropped", size=len(data))
        except OSError as exc:
            log.warning("rflink_sim_write_failed", error=str(exc))

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            # EIO: the host has the slave closed right now; it may open it again.
            data = b""
        if not data:
            return
        self._inbuf += data
        while b"\n" in self._inbuf:
            raw, _, self._inbuf = self._inbuf.partition(b"\n")
            self._command(raw.strip(b"\r ").decode("ascii", "replace"))
        if len(self._inbuf) > 4096:
            self._inbuf = b""

    def _command(self, line: str) -> None:
        if not line:
            return
        self.received.append(line)
        self._command_seen.set()
        upper = line.upper()
        if upper == "10;PING;":
            self.pings += 1
            if self.answering_pings:
                if self.pong_counter:
                    self._write_line("PONG;")
                else:
                    self._write(b"20;99;PONG;\r\n")
        elif upper == "10;VERSION;":
            self._write_line("VER=1.1;REV=46;BUILD=0c;")
        elif upper.startswith("10;"):
            # A transmit command: the firmware acknowledges it.
            self._write_line("OK;")


# -- standalone ------------------------------------------------------------------------------


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _run_command(sim: RflinkSimulator, words: list[str]) -> str:
    cmd, args = words[0].lower(), words[1:]
    on = not (len(args) > 1 and args[1].lower() in ("off", "0", "false"))
    if cmd == "smoke" and args:
        return "\n".join(await sim.smoke(args[0], on=on))
    if cmd == "pir" and args:
        return "\n".join(await sim.pir(args[0], on=on))
    if cmd == "button" and len(args) >= 2:
        return "\n".join(
            await sim.button(args[0], args[1], cmd=args[2] if len(args) > 2 else "ON", repeats=3)
        )
    if cmd == "battery" and len(args) >= 2:
        return "\n".join(await sim.battery_low(args[0], args[1]))
    if cmd == "raw" and args:
        return "\n".join(await sim.send(" ".join(args)))
    if cmd == "unplug":
        sim.unplug()
        return "unplugged"
    if cmd == "replug":
        sim.replug()
        return f"plugged at {sim.port}"
    if cmd == "mute":
        sim.stop_answering_pings()
        return "not answering PINGs"
    if cmd == "unmute":
        sim.answer_pings()
        return "answering PINGs"
    return f"unknown command: {' '.join(words)}"


async def _main(link_dir: str | None) -> None:
    async with RflinkSimulator(link_dir=link_dir) as sim:
        print(f"RFLink simulator on {sim.port}", flush=True)
        reader = await _stdin_lines()
        while line := await reader.readline():
            words = line.decode("utf-8", "replace").split()
            if words:
                print(await _run_command(sim, words), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim.rflink", description="An RFLink receiver on a pty."
    )
    parser.add_argument("--link-dir", help="directory for the port symlink (default: a temp dir)")
    args = parser.parse_args(argv)
    # Stdout answers the commands; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.link_dir))


if __name__ == "__main__":
    main()
