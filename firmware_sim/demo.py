"""`gatewayd demo`: the whole product on one machine, with nothing installed beyond the package.

It starts a dispatch server on 127.0.0.1 (SQLite in a temporary folder), simulated devices of
every driver (an RFLink receiver on a pty, a Modbus TCP gas detector and leak controller, BLE
advertisements over loopback and, where an MQTT broker answers on 127.0.0.1:1883, a Zigbee2MQTT
bridge), a gateway enrolled with that dispatch server, and a scripted scenario. It prints the
console's URL and one line for each alarm as dispatch stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from gatewayd.cli import EXIT_FAILURE
from runtime.timeouts import within

if TYPE_CHECKING:
    from firmware_sim.zigbee2mqtt import SimDevice

__all__ = ["demo"]

OPERATOR = ("demo", "demo-operator")
RESCUER = ("rescuer", "demo-rescuer")
HOUSEHOLD = "hh-demo-0001"
GATEWAY = "gw-demo-0001"
#: The resident's Beidou wristband (JT/T 808, straight to dispatch), its home and the park.
WRISTBAND_TERMINAL = "13800000001"
HOME_PLACE = (39.9087, 116.3975)
PARK = (39.9125, 116.3910)
console = Console(highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class ZigbeeKitDevice:
    """A Zigbee device of the demo home: played by the emulator, configured in home.toml."""

    id: str
    friendly_name: str
    #: A key of :data:`firmware_sim.catalogue.ZIGBEE`.
    model: str
    role: str
    room: str
    ieee: str


ZIGBEE_KIT: tuple[ZigbeeKitDevice, ...] = (
    ZigbeeKitDevice(
        "sos-button",
        "living_room_sos",
        "HS1EB/HS1EB-E",
        "sos_button",
        "living room",
        "0x00124b0000000001",
    ),
    ZigbeeKitDevice(
        "smoke-kitchen", "kitchen_smoke", "HS1SA", "smoke", "kitchen", "0x00124b0000000002"
    ),
    ZigbeeKitDevice(
        "motion-hall", "hall_motion", "RTCGQ11LM", "motion", "hall", "0x00158d0000000003"
    ),
    ZigbeeKitDevice("door-front", "front_door", "MCCGQ11LM", "door", "hall", "0x00158d0000000004"),
    ZigbeeKitDevice("siren-hall", "hall_siren", "HS2WD-E", "siren", "hall", "0x00124b0000000005"),
)


async def _add_rescuer(url: str) -> None:
    """A rescuer on the roster with a login, near the demo home, ready to be sent."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = {"username": OPERATOR[0], "password": OPERATOR[1]}
        (await client.post("/api/v1/auth/login", json=login)).raise_for_status()
        home = {"lat": 39.9087, "lon": 116.3975}
        located = await client.put(f"/api/v1/rescue/homes/{HOUSEHOLD}/location", json=home)
        located.raise_for_status()
        added = await client.post(
            "/api/v1/rescue/rescuers",
            json={
                "name": "Demo rescuer 救援员",
                "phone": "+86 139 0000 0120",
                "shift": "day 07:00-19:00",
                "status": "available",
                "username": RESCUER[0],
                "password": RESCUER[1],
            },
        )
        added.raise_for_status()
        near = {"lat": home["lat"] + 0.01, "lon": home["lon"]}
        moved = await client.patch(f"/api/v1/rescue/rescuers/{added.json()['id']}", json=near)
        moved.raise_for_status()


def zigbee_sim_devices() -> list[SimDevice]:
    """The emulator's devices of :data:`ZIGBEE_KIT`."""
    from firmware_sim.zigbee2mqtt import SimDevice  # the emulator only when a broker answers

    return [SimDevice(d.friendly_name, d.model, d.ieee) for d in ZIGBEE_KIT]


def _zigbee_devices_toml() -> str:
    return "".join(
        f"""
[[devices]]
id = "{d.id}"
driver = "zigbee"
address = "{d.friendly_name}"
role = "{d.role}"
room = "{d.room}"
model = "{d.model}"
"""
        for d in ZIGBEE_KIT
    )


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Expected:
    """An alarm the scenario raises, which must reach dispatch."""

    kind: str
    device_id: str | None
    label: str


@dataclass
class Step:
    at: float
    label: str
    action: Callable[[], Awaitable[Any]]
    expect: list[Expected] = field(default_factory=list)


class DispatchProcess:
    """A real `dispatchd serve` in a child process."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.db_url = f"sqlite:///{workdir / 'dispatch.db'}"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.jt808_port = _free_port()
        self.log_path = workdir / "dispatchd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        return env

    def cli(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dispatch", *args, "--db", self.db_url],
            capture_output=True,
            text=True,
            input=input,
            env=self._env(),
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise click.ClickException(f"dispatchd {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            # Its own session: a terminal's Ctrl-C reaches the demo, which stops the server after
            # the gateway, in order. Dying with the demo: a killed demo leaves no server behind.
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dispatch",
                    "serve",
                    "--db",
                    self.db_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--jt808-port",
                    str(self.jt808_port),
                    "--jt808-host",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        return self.process

    async def start(self) -> None:
        await asyncio.to_thread(self.cli, "migrate")
        process = self._spawn()
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise click.ClickException(
                        f"dispatchd exited with {process.returncode}; see {self.log_path}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise click.ClickException(f"dispatchd did not answer within 30 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the demo dies (PR_SET_PDEATHSIG).

    Resolved before the fork, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the demo died before the child got this far
            os._exit(1)

    return arm


_PR_SET_PDEATHSIG = 1


def _home_toml(
    *,
    state_dir: Path,
    dispatch_url: str,
    rflink_port: str,
    modbus: Any,
    ble_port: int,
    broker: tuple[str, int] | None,
    base_topic: str,
) -> str:
    zigbee_driver = ""
    zigbee_devices = ""
    if broker is not None:
        zigbee_driver = f"""
[[drivers]]
id = "zigbee"
type = "zigbee2mqtt"
url = "mqtt://{broker[0]}:{broker[1]}"
base_topic = "{base_topic}"
"""
        zigbee_devices = _zigbee_devices_toml()
    return f"""# The demo home: every driver, simulated devices, accelerated inactivity.
[gateway]
id = "{GATEWAY}"
household = "{HOUSEHOLD}"
state_dir = "{state_dir}"
timezone = "Asia/Shanghai"

[dispatch]
url = "{dispatch_url}"
# The demo's dispatch listens on loopback only: plain http is allowed here, by name.
insecure_http = true
heartbeat_interval = 5

[rules]
pack = "elderly_care"

[rules.inactivity]
# Accelerated for the demo: a real home uses hours, not seconds.
after_s = 4
active_hours = "00:00-24:00"

[[drivers]]
id = "rflink"
type = "rflink"
port = "{rflink_port}"

[[drivers]]
id = "modbus"
type = "modbus"
interval = 0.5

[[drivers]]
id = "ble"
type = "ble"
scanner = "udp://127.0.0.1:{ble_port}"
{zigbee_driver}
[[devices]]
id = "smoke-bedroom"
driver = "rflink"
address = "SmokeAlert:123456"
role = "smoke"
room = "bedroom"

[[devices]]
id = "pir-bedroom"
driver = "rflink"
address = "Pir:aa66"
role = "motion"
room = "bedroom"

[[devices]]
id = "gas-kitchen"
driver = "modbus"
address = "{modbus.address(1)}"
role = "gas"
room = "kitchen"
options = {{ profile = "combustible_gas" }}

[[devices]]
id = "leak-bathroom"
driver = "modbus"
address = "{modbus.address(2)}"
role = "water_leak"
room = "bathroom"
options = {{ profile = "water_leak_controller" }}

[[devices]]
id = "wristband"
driver = "ble"
address = "A4:C1:38:00:00:01"
role = "wristband"
room = "worn by the resident"
{zigbee_devices}"""


class Demo:
    def __init__(self, *, duration: float | None, port: int, broker_url: str, keep: bool) -> None:
        self.duration = duration
        self.port = port or _free_port()
        host, _, broker_port = broker_url.removeprefix("mqtt://").partition(":")
        self.broker = (host or "127.0.0.1", int(broker_port or 1883))
        self.keep = keep
        self.arrived: dict[tuple[str, str | None], str] = {}
        self.expected: list[Expected] = []

    async def run(self) -> int:
        """Run until done or stopped by SIGINT/SIGTERM; always stop what was started."""
        workdir = Path(tempfile.mkdtemp(prefix="gatewayd-demo-"))
        dispatch = DispatchProcess(workdir, self.port)
        loop = asyncio.get_running_loop()
        main = asyncio.create_task(self._run(workdir, dispatch), name="demo")
        self._signals = _Signals(loop, main, on_second=lambda: _force_exit(dispatch, workdir))
        try:
            try:
                return await main
            except asyncio.CancelledError:
                if self._signals.received is None:
                    raise
                console.print("stopped")
                return 128 + self._signals.received
        finally:
            self._signals.restore()
            dispatch.stop()
            if self.keep:
                console.print(f"state kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _run(self, workdir: Path, dispatch: DispatchProcess) -> int:
        from contract.home import load_config
        from firmware_sim.ble import BleBroadcaster, BthomeDevice
        from firmware_sim.modbus import GAS, LEAK, ModbusSimulator
        from firmware_sim.rflink import RflinkSimulator
        from firmware_sim.wristband import Walker, Wristband
        from forwarder.client import DispatchClient
        from gatewayd.daemon import Gateway, credential_path
        from runtime.logs import configure_logging

        console.print("[bold]gatewayd demo[/]: a dispatch centre, a gateway and a simulated home")
        # The gateway's own log goes to a file, so the screen shows what an operator would see.
        configure_logging(level="INFO", json=True)
        import logging

        handler = logging.FileHandler(workdir / "gateway.log")
        handler.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().handlers[:] = [handler]

        await dispatch.start()
        dispatch.cli(
            "household",
            "add",
            HOUSEHOLD,
            "--name",
            "Wang Xiuying 王秀英",
            "--address",
            "12 Linden Lane, flat 3",
            "--community",
            "Linden Street",
            "--phone",
            "+86 10 5555 0101",
        )
        dispatch.cli(
            "operator",
            "add",
            OPERATOR[0],
            "--role",
            "supervisor",
            "--name",
            "Demo operator",
            "--password-stdin",
            input=OPERATOR[1] + "\n",
        )
        dispatch.cli(
            "wristband",
            "add",
            "--household",
            HOUSEHOLD,
            "--resident",
            "Wang Xiuying 王秀英",
            "--terminal",
            WRISTBAND_TERMINAL,
        )
        lat, lon = HOME_PLACE
        dispatch.cli(
            "wristband", "place", "--household", HOUSEHOLD, "--lat", str(lat), "--lon", str(lon)
        )
        code = dispatch.cli("enroll-code", "--household", HOUSEHOLD).splitlines()[-1].strip()
        console.print(
            f"console: [bold cyan]{dispatch.url}/[/]  (log in as "
            f"[bold]{OPERATOR[0]}[/] / [bold]{OPERATOR[1]}[/])"
        )
        await _add_rescuer(dispatch.url)
        console.print(
            f"rescuer's phone: [bold cyan]{dispatch.url}/rescuer/[/]  (log in as "
            f"[bold]{RESCUER[0]}[/] / [bold]{RESCUER[1]}[/])"
        )

        broker_up = _port_open(*self.broker)
        if broker_up:
            console.print(
                f"MQTT broker at {self.broker[0]}:{self.broker[1]}: "
                "running the Zigbee2MQTT path through it"
            )
        else:
            console.print(
                f"no MQTT broker answers at {self.broker[0]}:{self.broker[1]}: "
                "running without the Zigbee2MQTT path"
            )
        base_topic = f"demo-{GATEWAY}-{os.getpid()}"
        ble_port = _free_port(socket.SOCK_DGRAM)
        async with contextlib.AsyncExitStack() as stack:
            rflink = await stack.enter_async_context(RflinkSimulator())
            modbus = await stack.enter_async_context(ModbusSimulator({1: GAS, 2: LEAK}))
            ble = stack.enter_context(BleBroadcaster(ble_port))
            wristband = BthomeDevice("A4:C1:38:00:00:01", name="SOS wristband")
            outdoors = await stack.enter_async_context(
                Walker(
                    Wristband(
                        "127.0.0.1",
                        dispatch.jt808_port,
                        WRISTBAND_TERMINAL,
                        lat=PARK[0],
                        lon=PARK[1],
                    ),
                    every=2.0,
                )
            )
            bridge = None
            if broker_up:
                bridge = await stack.enter_async_context(self._zigbee_bridge(base_topic))
            config_path = workdir / "home.toml"
            config_path.write_text(
                _home_toml(
                    state_dir=workdir / "gateway",
                    dispatch_url=dispatch.url,
                    rflink_port=rflink.port,
                    modbus=modbus,
                    ble_port=ble_port,
                    broker=self.broker if broker_up else None,
                    base_topic=base_topic,
                )
            )
            config = load_config(config_path)
            config.gateway.state_dir.mkdir(parents=True, exist_ok=True)
            credential = await DispatchClient.enroll(
                dispatch.url, code=code, gateway_id=GATEWAY, insecure_http=True
            )
            credential.save(credential_path(config))
            gateway = Gateway(config, config_path=config_path)
            gateway_task = asyncio.create_task(gateway.run(), name="gateway")
            # The gateway installs its daemon's signal handlers as it starts; the demo's own
            # go back on top, so a Ctrl-C stops the whole demo, not the gateway alone.
            await asyncio.sleep(0)
            self._signals.install()
            ready = asyncio.create_task(gateway.wait_ready())
            await asyncio.wait(
                {ready, gateway_task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
            if not ready.done():
                ready.cancel()
                if gateway_task.done() and gateway_task.exception() is not None:
                    raise click.ClickException(
                        f"the gateway did not start: {gateway_task.exception()}"
                    )
                raise click.ClickException("the gateway did not become ready within 30 s")
            watcher = asyncio.create_task(self._watch(dispatch.url), name="demo-watch")
            steps = self._script(rflink, modbus, ble, wristband, bridge, outdoors)
            self.expected = [e for s in steps for e in s.expect]
            started = time.monotonic()
            try:
                await self._play(steps, started)
                await self._wait(started)
            finally:
                watcher.cancel()
                gateway.request_stop()
                with contextlib.suppress(Exception):
                    await within(asyncio.shield(gateway_task), 15)
        return self._summary()

    @contextlib.asynccontextmanager
    async def _zigbee_bridge(self, base_topic: str) -> Any:
        from firmware_sim.zigbee2mqtt import Zigbee2MqttBridge

        async with Zigbee2MqttBridge(
            host=self.broker[0],
            port=self.broker[1],
            base_topic=base_topic,
            devices=zigbee_sim_devices(),
            clear_retained_on_close=True,
        ) as bridge:
            await bridge.wait_connected()
            yield bridge

    def _script(
        self, rflink: Any, modbus: Any, ble: Any, wristband: Any, bridge: Any, outdoors: Any
    ) -> list[Step]:
        async def nothing() -> None:
            return None

        async def call(fn: Callable[[], Any]) -> None:
            result = fn()
            if asyncio.iscoroutine(result):
                await result

        steps = [
            Step(
                0.2,
                "the resident sits still: inactivity fires in accelerated time",
                nothing,
                [Expected("inactivity", None, "inactivity (no movement)")],
            ),
            Step(
                6.0,
                "movement in the bedroom (RFLink PIR): inactivity restores",
                lambda: call(lambda: rflink.pir("aa66", on=True, repeats=3)),
            ),
            Step(
                7.0,
                "SOS on the BLE wristband",
                lambda: call(lambda: ble.send(wristband.press(), repeats=3)),
                [Expected("sos", "wristband", "SOS wristband (BLE)")],
            ),
            Step(
                8.0,
                "smoke in the bedroom (433 MHz detector through RFLink)",
                lambda: call(lambda: rflink.smoke("123456", on=True, repeats=3)),
                [Expected("smoke", "smoke-bedroom", "smoke, bedroom (RFLink)")],
            ),
            Step(
                9.0,
                "water on the bathroom floor (Modbus leak controller)",
                lambda: call(lambda: modbus.set_leak(2, leak=True)),
                [Expected("water_leak", "leak-bathroom", "water leak, bathroom (Modbus)")],
            ),
            Step(
                10.0,
                "gas in the kitchen (Modbus gas detector, alarm 1)",
                lambda: call(lambda: modbus.set_gas(1, alarm1=True, lel=22.0)),
                [Expected("gas", "gas-kitchen", "gas, kitchen (Modbus)")],
            ),
            Step(
                13.0,
                "outdoors in the park: SOS on the Beidou wristband (JT/T 808, with its position)",
                lambda: call(outdoors.press_sos),
                [Expected("sos", f"wristband-{WRISTBAND_TERMINAL}", "SOS wristband outdoors")],
            ),
            Step(
                14.0,
                "the Beidou wristband's battery runs low (a trouble, not an alarm)",
                lambda: call(outdoors.battery_low),
                [
                    Expected(
                        "low_battery", f"wristband-{WRISTBAND_TERMINAL}", "wristband battery low"
                    )
                ],
            ),
            Step(
                12.0,
                "the bedroom smoke clears",
                lambda: call(lambda: rflink.smoke("123456", on=False, repeats=3)),
                [Expected("smoke_restore", "smoke-bedroom", "smoke restore, bedroom")],
            ),
        ]
        if bridge is not None:
            steps += [
                Step(
                    7.5,
                    "SOS button pressed in the living room (Zigbee)",
                    lambda: call(lambda: bridge.press("living_room_sos", action="emergency")),
                    [Expected("sos", "sos-button", "SOS button (Zigbee)")],
                ),
                Step(
                    8.5,
                    "smoke in the kitchen (Zigbee): the hall siren sounds",
                    lambda: call(lambda: bridge.set_state("kitchen_smoke", smoke=True)),
                    [Expected("smoke", "smoke-kitchen", "smoke, kitchen (Zigbee)")],
                ),
                Step(
                    11.5,
                    "the kitchen smoke clears",
                    lambda: call(lambda: bridge.set_state("kitchen_smoke", smoke=False)),
                    [Expected("smoke_restore", "smoke-kitchen", "smoke restore, kitchen")],
                ),
            ]
        return sorted(steps, key=lambda s: s.at)

    async def _play(self, steps: list[Step], started: float) -> None:
        for step in steps:
            delay = step.at - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            console.print(f"[dim]{_clock()}[/] scenario  {step.label}")
            try:
                await step.action()
            except Exception as exc:
                console.print(f"[red]scenario step failed: {exc!r}[/]")

    async def _wait(self, started: float) -> None:
        while True:
            missing = [e for e in self.expected if (e.kind, e.device_id) not in self.arrived]
            elapsed = time.monotonic() - started
            if self.duration is not None:
                if elapsed >= self.duration:
                    return
            elif not missing:
                console.print(
                    "every scripted alarm reached dispatch; the demo keeps running "
                    "for the console (Ctrl-C to stop)"
                )
                await asyncio.Event().wait()
            await asyncio.sleep(0.25)

    async def _watch(self, url: str) -> None:
        """Follow dispatch: print each event as dispatch stores it (read back through its API)."""
        seen: set[str] = set()
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await client.post(
                "/api/v1/auth/login", json={"username": OPERATOR[0], "password": OPERATOR[1]}
            )
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    page = (
                        await client.get("/api/v1/incidents", params={"state": "all", "limit": 500})
                    ).json()
                    for incident in page["items"]:
                        detail = (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
                        for entry in detail.get("timeline", []):
                            if entry.get("type") != "event" or entry["event_id"] in seen:
                                continue
                            seen.add(entry["event_id"])
                            key = (entry["name"], entry.get("device_id"))
                            self.arrived.setdefault(key, incident["id"])
                            console.print(
                                f"[dim]{_clock()}[/] [bold green]dispatch stored[/] "
                                f"[bold]{entry['name']}[/] {entry.get('device_id') or ''} "
                                f"{('(' + entry['room'] + ')') if entry.get('room') else ''} "
                                f"→ incident {incident['id']} [{incident['state']}]"
                                + _where(detail.get("position"))
                            )
                await asyncio.sleep(0.5)

    def _summary(self) -> int:
        table = Table(title="demo summary")
        table.add_column("scripted alarm")
        table.add_column("reached dispatch")
        ok = True
        for e in self.expected:
            incident = self.arrived.get((e.kind, e.device_id))
            ok &= incident is not None
            table.add_row(e.label, f"[green]yes[/] ({incident})" if incident else "[red]NO[/]")
        console.print(table)
        console.print(
            "[bold green]every scripted alarm reached dispatch[/]"
            if ok
            else "[bold red]some scripted alarms did not reach dispatch[/]"
        )
        return 0 if ok else EXIT_FAILURE


class _Signals:
    """SIGINT and SIGTERM for the demo: the first cancels the run (which stops everything in
    order), a second one forces the exit, as uvicorn does."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        main: asyncio.Task[int],
        on_second: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._main = main
        self._on_second = on_second
        self.received: int | None = None
        self.install()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._handle, sig)

    def restore(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.remove_signal_handler(sig)

    def _handle(self, sig: int) -> None:
        if self.received is not None:
            self._on_second()
            return
        self.received = sig
        console.print("stopping (again to force)…")
        self._main.cancel()


def _force_exit(dispatch: DispatchProcess, workdir: Path) -> None:
    if dispatch.process is not None and dispatch.process.poll() is None:
        dispatch.process.kill()
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(EXIT_FORCED)


#: Exit code of a demo stopped by a second signal.
EXIT_FORCED = 130


def _where(position: dict[str, Any] | None) -> str:
    """A wristband incident's position, as the console's location card shows it."""
    if not position:
        return ""
    fix = "GNSS fix" if position.get("fix") else "no fix"
    return f" at position {position['lat']:.5f}, {position['lon']:.5f} ({fix})"


def _clock() -> str:
    return datetime.now(UTC).astimezone().strftime("%H:%M:%S")


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop after this many seconds, print a summary, and exit 0 only if every "
    "scripted alarm reached dispatch. Without it the demo runs until Ctrl-C.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of the demo's dispatch server (default: a free one).",
)
@click.option(
    "--broker",
    default="mqtt://127.0.0.1:1883",
    show_default=True,
    help="Where to look for an MQTT broker for the Zigbee2MQTT path.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary state folder and its logs.")
def demo(duration: float | None, port: int, broker: str, keep: bool) -> None:
    """Run a dispatch server, a gateway and a simulated home with a scripted scenario."""
    try:
        code = asyncio.run(Demo(duration=duration, port=port, broker_url=broker, keep=keep).run())
    except KeyboardInterrupt:  # before the demo's own handlers were in place
        code = 128 + signal.SIGINT
    sys.exit(code)
