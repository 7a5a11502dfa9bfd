"""`gatewayd demo` stops on one Ctrl-C (or SIGTERM) and leaves nothing behind.

The demo runs in a real pseudo-terminal, so Ctrl-C is what a terminal sends: SIGINT to the whole
foreground process group, the demo's children included. Left behind would be: a `dispatchd` child
still serving, the temporary state folder, retained messages of the simulated Zigbee2MQTT bridge on
the real broker.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.fixtures.broker import port_open
from tests.fixtures.procs import REPO_ROOT, module_cmd, project_env

pytestmark = [pytest.mark.slow, pytest.mark.broker]

URL = re.compile(rb"console: http://127\.0\.0\.1:(\d+)/")


class Terminal:
    """The demo as a child whose controlling terminal is a pty we hold the master of."""

    def __init__(self, tmp: Path, *, under_shell: bool = False) -> None:
        self.output = b""
        env = project_env(TMPDIR=str(tmp), TERM="dumb", COLUMNS="200")
        argv = [*module_cmd("gatewayd"), "demo"]
        if under_shell:
            # As from an interactive shell: the shell leads the session, the demo is its child.
            # The shell stays a while after the demo, as a terminal's shell would.
            argv = ["/bin/sh", "-c", " ".join(argv) + "; sleep 60"]
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec the demo on the pty
            os.chdir(REPO_ROOT)
            os.execve(argv[0], argv, env)
        self.pid, self.fd = pid, fd

    def demo_pid(self) -> int:
        """The demo's own pid: the terminal's child, or the shell's child under a shell."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return int(children[0]) if children else self.pid

    def read_until(self, pattern: re.Pattern[bytes], within: float) -> re.Match[bytes]:
        deadline = time.monotonic() + within
        while (match := pattern.search(self.output)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern.pattern!r} within {within} s; output:\n{self.text}"
            self._read(min(left, 0.5))
        return match

    def _read(self, within: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], within)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def wait_exit(self, within: float) -> int:
        """The child's exit code, reading its output meanwhile so it never blocks on a full pty."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self._read(0.2)
        raise AssertionError(f"the demo did not exit within {within} s; output:\n{self.text}")

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")[-4000:]

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The demo's TMPDIR: short, since its control socket's path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def terminal(scratch: Path) -> Iterator[Terminal]:
    term = Terminal(scratch)
    try:
        yield term
    finally:
        term.kill()


async def _retained(topic_filter: str) -> list[str]:
    """Topics under the filter that the broker still keeps retained."""
    found: list[str] = []
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.subscribe(topic_filter, qos=1)
        try:
            async with asyncio.timeout(1.5):
                async for message in client.messages:
                    if message.retain and message.payload:
                        found.append(str(message.topic))
        except TimeoutError:
            pass
    return found


def _dispatchd_processes(port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dispatch" in cmdline and b"serve" in cmdline and str(port).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _assert_nothing_left(term: Terminal, tmp: Path, port: int) -> None:
    deadline = time.monotonic() + 5
    while _dispatchd_processes(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _dispatchd_processes(port) == [], "dispatchd outlived the demo"
    assert not port_open("127.0.0.1", port), "the demo's dispatch port still answers"
    assert list(tmp.iterdir()) == [], f"left behind: {list(tmp.iterdir())}"
    base = f"demo-gw-demo-0001-{term.pid}"
    assert asyncio.run(_retained(f"{base}/#")) == [], "retained messages left on the broker"


def _started(term: Terminal) -> int:
    port = int(term.read_until(URL, within=60).group(1))
    # The gateway is up once the scenario starts playing.
    term.read_until(re.compile(rb"scenario  "), within=60)
    return port


def test_one_ctrl_c_stops_the_demo_and_leaves_nothing_behind(
    terminal: Terminal, scratch: Path
) -> None:
    port = _started(terminal)
    os.write(terminal.fd, b"\x03")  # Ctrl-C, as typed: SIGINT to the foreground process group
    assert terminal.wait_exit(within=30) == 130
    _assert_nothing_left(terminal, scratch, port)


def test_sigterm_stops_the_demo_and_leaves_nothing_behind(
    terminal: Terminal, scratch: Path
) -> None:
    port = _started(terminal)
    os.kill(terminal.pid, signal.SIGTERM)
    assert terminal.wait_exit(within=30) == 143
    _assert_nothing_left(terminal, scratch, port)


def test_a_killed_demo_takes_its_dispatch_server_with_it(scratch: Path) -> None:
    terminal = Terminal(scratch, under_shell=True)
    try:
        port = _started(terminal)
        demo = terminal.demo_pid()
        assert demo != terminal.pid
        os.kill(demo, signal.SIGKILL)
    finally:
        terminal.kill()
    deadline = time.monotonic() + 10
    while _dispatchd_processes(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _dispatchd_processes(port) == [], "dispatchd was orphaned"
