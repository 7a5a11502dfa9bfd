"""The walk test against a fake daemon behind a real control socket."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from contract.wire import EventKind
from gatewayd.cli import cli
from gatewayd.commands.walktest import measurements
from gatewayd.control import ControlServer
from tests.fixtures.procs import project_env
from tests.ops.fakes import FakeDaemon

DEVICES = """
[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"

[[drivers]]
id = "rflink"
type = "rflink"

[[devices]]
id = "sos_button"
driver = "zigbee"
address = "0x00158d0001a2b3c4"
role = "sos_button"
room = "bedroom"

[[devices]]
id = "kitchen_smoke"
driver = "zigbee"
address = "kitchen_smoke"
role = "smoke"
room = "kitchen"

[[devices]]
id = "hall_door"
driver = "rflink"
address = "NewKaku:00c0ffee"
role = "door"
room = "hall"

[[devices]]
id = "hall_siren"
driver = "zigbee"
address = "hall_siren"
role = "siren"
room = "hall"
"""


class Home:
    def __init__(self, daemon: FakeDaemon, socket_path: Path, config: Path) -> None:
        self.daemon = daemon
        self.socket = socket_path
        self.config = config
        self.tasks: list[asyncio.Task[None]] = []

    def on_test_mode(self, script: list[tuple[float, dict[str, object]]]) -> None:
        """When the gateway enters test mode, publish these events after these delays."""

        async def play() -> None:
            for delay, event in script:
                await asyncio.sleep(delay)
                self.daemon.publish(**event)  # type: ignore[arg-type]

        def on_mode(mode: str) -> None:
            if mode == "test":
                self.tasks.append(asyncio.create_task(play()))

        self.daemon.on_mode = on_mode


@pytest.fixture
async def home(sock_dir: Path) -> AsyncIterator[Home]:
    daemon = FakeDaemon()
    server = ControlServer(sock_dir / "control.sock", daemon)
    await server.start()
    config = sock_dir / "home.toml"
    config.write_text(f'[gateway]\nid = "gw-0042"\n[status]\nsocket = "{server.path}"\n{DEVICES}')
    h = Home(daemon, server.path, config)
    try:
        yield h
    finally:
        for task in h.tasks:
            task.cancel()
        await server.aclose()


async def walk(home: Home, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "GATEWAYD_CONFIG": None})
    return await asyncio.to_thread(
        runner.invoke, cli, ["test", "--config", str(home.config), *args], catch_exceptions=False
    )


def row(output: str, device: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"│ {device} "))


async def test_all_devices_pass(home: Home) -> None:
    home.daemon.mode = "normal"
    home.on_test_mode(
        [
            (
                0.05,
                {
                    "kind": EventKind.TEST,
                    "device_id": "sos_button",
                    "test": True,
                    "reading": {"property": "test", "value": True, "extra": {"linkquality": 120}},
                    "payload": {"battery": 87},
                },
            ),
            (0.05, {"kind": EventKind.MOTION, "device_id": "hall_door", "test": False}),
            (0.05, {"kind": EventKind.SMOKE, "device_id": "kitchen_smoke", "test": True}),
            (0.05, {"kind": EventKind.CONTACT, "device_id": "hall_door", "test": True}),
        ]
    )
    result = await walk(home, "--timeout", "20")
    assert result.exit_code == 0, result.output
    assert "✔ sos_button (sos_button, bedroom) passed after 0 s, signal 120, battery 87 %" in (
        result.stdout
    )
    assert "All 3 devices passed." in result.stdout
    assert "hall_siren" not in result.stdout  # an output: nothing to trigger
    assert "120" in row(result.stdout, "sos_button")
    # kitchen_smoke's event carried no numbers: the daemon's status fills them in.
    assert "45" in row(result.stdout, "kitchen_smoke")
    assert "14 %" in row(result.stdout, "kitchen_smoke")
    assert home.daemon.mode_changes == ["test", "normal"]
    assert "gatewayd is back in normal mode." in result.stdout


async def test_timeout_lists_what_did_not_signal_and_restores_away(home: Home) -> None:
    home.daemon.mode = "away"
    home.on_test_mode(
        [
            (0.05, {"kind": EventKind.TEST, "device_id": "sos_button", "test": True}),
            # Not raised in test mode, and a device that is not in the home: neither passes.
            (0.05, {"kind": EventKind.CONTACT, "device_id": "hall_door", "test": False}),
            (0.05, {"kind": EventKind.TEST, "device_id": "someone_elses", "test": True}),
        ]
    )
    result = await walk(home, "--timeout", "1.5")
    assert result.exit_code == 1, result.output
    assert "passed" in row(result.stdout, "sos_button")
    assert "no signal" in row(result.stdout, "kitchen_smoke")
    assert "no signal" in row(result.stdout, "hall_door")
    assert row(result.stdout, "hall_door").rstrip(" │").endswith("ago")  # last heard, from status
    assert "2 of 3 devices did not signal (timeout): kitchen_smoke, hall_door" in result.stdout
    assert home.daemon.mode_changes == ["test", "away"]


async def test_only_the_named_devices(home: Home) -> None:
    home.on_test_mode([(0.05, {"kind": EventKind.TEST, "device_id": "hall_siren", "test": True})])
    result = await walk(home, "--device", "hall_siren", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "All 1 devices passed." in result.stdout


async def test_unknown_device_is_a_usage_error(home: Home) -> None:
    result = await walk(home, "--device", "garage")
    assert result.exit_code == 2
    assert "no device garage in" in result.stderr
    assert home.daemon.mode_changes == []


async def test_losing_the_daemon_ends_the_test_and_still_restores(home: Home) -> None:
    home.on_test_mode([(0.1, {"kind": EventKind.TEST, "device_id": "sos_button", "test": True})])

    async def stop_watchers() -> None:
        await home.daemon.published.wait()  # in test mode, and a device has signalled
        home.daemon.hub.close()

    stopper = asyncio.create_task(stop_watchers())
    result = await walk(home, "--timeout", "20")
    await stopper
    assert result.exit_code == 1
    assert "lost gatewayd: gatewayd is stopping" in result.stdout
    assert home.daemon.mode_changes == ["test", "normal"]


def test_daemon_not_running(sock_dir: Path) -> None:
    config = sock_dir / "home.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\n[status]\nsocket = "{sock_dir / "none.sock"}"\n{DEVICES}'
    )
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(cli, ["test", "--config", str(config)])
    assert result.exit_code == 4
    assert "gatewayd is not running" in result.stderr


def test_no_devices(sock_dir: Path) -> None:
    config = sock_dir / "home.toml"
    config.write_text('[gateway]\nid = "gw-1"\n')
    result = CliRunner().invoke(cli, ["test", "--config", str(config)])
    assert result.exit_code == 2
    assert "lists no devices to test" in result.stderr


async def test_ctrl_c_ends_the_test_and_restores_the_mode(home: Home) -> None:
    home.on_test_mode([(0.05, {"kind": EventKind.TEST, "device_id": "sos_button", "test": True})])
    env = project_env(COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gatewayd", "test", "--config", str(home.config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            await home.daemon.published.wait()  # in test mode, and a device has signalled
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = stdout.decode()
    assert proc.returncode == 1, out + stderr.decode()
    assert "2 of 3 devices did not signal (interrupted): kitchen_smoke, hall_door" in out
    assert home.daemon.mode_changes == ["test", "normal"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"kind": "test", "payload": {"linkquality": 96, "battery": 0}}, (96.0, 0.0)),
        ({"kind": "test", "reading": {"extra": {"rssi": -71, "battery": 55.5}}}, (-71.0, 55.5)),
        ({"kind": "battery", "payload": {"value": 33}}, (None, 33.0)),
        ({"kind": "signal", "reading": {"property": "signal", "value": -80}}, (-80.0, None)),
        ({"kind": "test", "payload": {"battery": "high", "signal": True}}, (None, None)),
        ({"kind": "test", "reading": "garbage", "payload": None}, (None, None)),
    ],
)
def test_measurements(
    event: dict[str, object], expected: tuple[float | None, float | None]
) -> None:
    assert measurements(event) == expected
