"""Gateway footprint: resident memory and CPU, idle and under load, with every driver running.

    python -m bench.footprint [--quick] [--idle S] [--load S]

The gateway runs as systemd runs it (``python -m gatewayd run``), enrolled with a real
`dispatchd serve` (SQLite), with the demo's home: an RFLink receiver on a pty, a Modbus TCP gas
detector and leak controller (polled every 0.5 s), BLE advertisements over loopback UDP and a
Zigbee2MQTT bridge on the broker at 127.0.0.1:1883 (see :mod:`firmware_sim.demo`). Measured from
``/proc/<pid>``: resident memory (VmRSS at the end of each window, and the peak VmHWM) and CPU
(utime + stime over the window, as a share of one core).

- idle: the home quiet for 60 s (``--quick``: 15 s) after start-up has settled; the drivers
  still poll, heartbeat and supervise as they always do;
- load: every 50 ms a Zigbee door flips, an RFLink PIR fires and the BLE wristband advertises,
  and the Modbus gas level changes (30 s; ``--quick``: 10 s).

The reference, measured in the same run: a bare interpreter with the same imports (the daemon
and every driver) running an idle asyncio loop for the same window. Goal: under 50 MiB resident
and under 1% of a core idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Report
from bench.harness import DispatchServer, free_port, port_open, start_dispatch
from bench.home import ZigbeeDevice, gateway_process, project_env, zigbee_home_toml
from runtime.timeouts import within

BROKER = ("127.0.0.1", 1883)
RSS_GOAL_MIB = 50.0
ZIGBEE_RSS_GOAL_MIB = 40.0
CPU_GOAL_PCT = 1.0
TICK = os.sysconf("SC_CLK_TCK")

_SAME_IMPORTS = (
    "import asyncio, sys\n"
    "from gatewayd.cli import DAEMON_SKIPS\n"
    "sys.modules.update(dict.fromkeys(DAEMON_SKIPS))\n"
    "import gatewayd.commands.run, gatewayd.daemon, runtime.logs\n"
    "import drivers.zigbee2mqtt, drivers.rflink, drivers.modbus, drivers.ble\n"
    "drivers.ble.bthome.load_bthome()\n"
    "async def idle():\n"
    "    print('ready', flush=True)\n"
    "    await asyncio.sleep(float(sys.argv[1]))\n"
    "asyncio.run(idle())\n"
)


#: Measured one after the other in a fresh interpreter: what each adds to resident memory.
_IMPORT_STEPS = (
    "asyncio",
    "structlog",
    "pydantic",
    "contract.wire",
    "sqlite_utils",
    "buffer.store",
    "httpx",
    "rules",
    "gatewayd.daemon",
    "drivers.zigbee2mqtt",
    "drivers.rflink",
    "drivers.modbus",
    "drivers.ble",
    "bthome_ble",
)
_IMPORT_COSTS = (
    "import importlib, json, sys\n"
    "from gatewayd.cli import DAEMON_SKIPS\n"
    "sys.modules.update(dict.fromkeys(DAEMON_SKIPS))\n"
    "def rss():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS'):\n"
    "            return int(line.split()[1]) / 1024\n"
    "out = {'interpreter': rss()}\n"
    "for name in sys.argv[1:]:\n"
    "    before = rss()\n"
    "    importlib.import_module(name)\n"
    "    out[name] = rss() - before\n"
    "print(json.dumps(out))\n"
)


def import_costs() -> dict[str, float]:
    """MiB of resident memory each import step adds, in import order (an attribution)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_COSTS, *_IMPORT_STEPS],
        capture_output=True,
        text=True,
        env=project_env(),
        check=True,
        timeout=120,
    )
    costs: dict[str, float] = json.loads(result.stdout)
    return costs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


async def window(pid: int, seconds: float) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return {"cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), **memory_mib(pid)}


async def reference(seconds: float) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SAME_IMPORTS,
        str(seconds + 5),
        stdout=subprocess.PIPE,
        env=project_env(),
    )
    try:
        assert process.stdout is not None
        await within(process.stdout.readline(), 60)
        await asyncio.sleep(1.0)
        return await window(process.pid, seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def measure(
    dispatch: DispatchServer, workdir: Path, idle_s: float, load_s: float
) -> dict[str, Any]:
    from firmware_sim.ble import BleBroadcaster, BthomeDevice
    from firmware_sim.demo import GATEWAY, HOUSEHOLD, _home_toml, zigbee_sim_devices
    from firmware_sim.modbus import GAS, LEAK, ModbusSimulator
    from firmware_sim.rflink import RflinkSimulator
    from firmware_sim.zigbee2mqtt import Zigbee2MqttBridge
    from forwarder.client import Credential

    enrolled = dispatch.enroll(HOUSEHOLD, GATEWAY)
    state_dir = workdir / "gateway"
    state_dir.mkdir()
    Credential(GATEWAY, HOUSEHOLD, enrolled.secret, dispatch.url).save(
        state_dir / "credential.json"
    )
    base_topic = f"bench-footprint-{os.getpid()}"
    ble_port = free_port(socket.SOCK_DGRAM)
    broker_up = port_open(*BROKER)
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        rflink = await stack.enter_async_context(RflinkSimulator())
        modbus = await stack.enter_async_context(ModbusSimulator({1: GAS, 2: LEAK}))
        ble = stack.enter_context(BleBroadcaster(ble_port))
        wristband = BthomeDevice("A4:C1:38:00:00:01", name="SOS wristband")
        bridge = None
        if broker_up:
            bridge = await stack.enter_async_context(
                Zigbee2MqttBridge(
                    host=BROKER[0],
                    port=BROKER[1],
                    base_topic=base_topic,
                    devices=zigbee_sim_devices(),
                )
            )
            await bridge.wait_connected()
        config_path = workdir / "home.toml"
        config_path.write_text(
            _home_toml(
                state_dir=state_dir,
                dispatch_url=dispatch.url,
                rflink_port=rflink.port,
                modbus=modbus,
                ble_port=ble_port,
                broker=BROKER if broker_up else None,
                base_topic=base_topic,
            )
        )
        with gateway_process(config_path, workdir / "gateway.log", log_level="INFO") as process:
            await asyncio.sleep(8.0)  # start-up, enrolment check, first heartbeat, inventory
            if process.poll() is not None:
                log = (workdir / "gateway.log").read_text(errors="replace")
                raise SystemExit(f"the gateway exited: {log[-3000:]}")
            idle = await window(process.pid, idle_s)

            async def load() -> None:
                nonlocal sent
                deadline = time.monotonic() + load_s
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    await rflink.pir("aa66", on=True)
                    ble.send(wristband.motion(n % 2 == 0))
                    if bridge is not None:
                        await bridge.set_state("front_door", contact=n % 2 == 0)
                    if n % 10 == 0:
                        modbus.set_gas(1, lel=float(n % 7))
                    sent += 3 if bridge is not None else 2
                    await asyncio.sleep(0.05)

            loader = asyncio.create_task(load())
            loaded = await window(process.pid, load_s)
            await loader
            alive = process.poll() is None
        zigbee_only = None
        if bridge is not None:
            zigbee_only = await zigbee_only_idle(dispatch, workdir, base_topic, idle_s)
    return {
        "idle": idle,
        "load": loaded,
        "sent": sent,
        "zigbee": broker_up,
        "alive": alive,
        "zigbee_only": zigbee_only,
    }


async def zigbee_only_idle(
    dispatch: DispatchServer, workdir: Path, base_topic: str, idle_s: float
) -> dict[str, float]:
    """A second gateway whose home has only the Zigbee2MQTT driver (the demo's Zigbee devices,
    on the same simulated bridge), idle for the same window."""
    from firmware_sim.demo import ZIGBEE_KIT
    from forwarder.client import Credential

    gateway, household = "gw-footprint-zigbee", "hh-footprint-zigbee"
    enrolled = dispatch.enroll(household, gateway)
    state_dir = workdir / "gateway-zigbee"
    state_dir.mkdir()
    Credential(gateway, household, enrolled.secret, dispatch.url).save(
        state_dir / "credential.json"
    )
    devices = [ZigbeeDevice(d.id, d.friendly_name, d.model, d.role, d.ieee) for d in ZIGBEE_KIT]
    config_path = workdir / "home-zigbee.toml"
    config_path.write_text(
        zigbee_home_toml(
            gateway_id=gateway,
            household=household,
            state_dir=state_dir,
            dispatch_url=dispatch.url,
            broker=BROKER,
            base_topic=base_topic,
            devices=devices,
            rules='pack = "elderly_care"',
        )
    )
    log_path = workdir / "gateway-zigbee.log"
    with gateway_process(config_path, log_path, log_level="INFO") as process:
        await asyncio.sleep(8.0)
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited: {log_path.read_text(errors='replace')[-3000:]}")
        return await window(process.pid, idle_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="15 s idle, 10 s load")
    parser.add_argument("--idle", type=float, default=None)
    parser.add_argument("--load", type=float, default=None)
    args = parser.parse_args(argv)
    idle_s = args.idle or (15.0 if args.quick else 60.0)
    load_s = args.load or (10.0 if args.quick else 30.0)
    report = Report("footprint")
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        workdir = Path(tmp)
        dispatch = start_dispatch(f"sqlite:///{workdir / 'dispatch.db'}", workdir)
        try:
            result = asyncio.run(measure(dispatch, workdir, idle_s, load_s))
        finally:
            dispatch.stop()
            dispatch.close()
    ref = asyncio.run(reference(idle_s))
    idle, load = result["idle"], result["load"]
    report.add(
        "RSS idle",
        idle["VmRSS"],
        "MiB",
        ref["VmRSS"],
        "bare interpreter, same imports",
        goal=f"< {RSS_GOAL_MIB:.0f} MiB",
    )
    report.add(
        "CPU idle",
        idle["cpu_pct"],
        "% of a core",
        ref["cpu_pct"] or None,
        "bare interpreter, same imports",
        goal=f"< {CPU_GOAL_PCT:.0f}%",
    )
    zigbee_only = result["zigbee_only"]
    if zigbee_only is not None:
        report.add(
            "RSS idle, Zigbee only",
            zigbee_only["VmRSS"],
            "MiB",
            ref["VmRSS"],
            "bare interpreter, every driver's imports",
            goal=f"< {ZIGBEE_RSS_GOAL_MIB:.0f} MiB",
        )
        report.add("CPU idle, Zigbee only", zigbee_only["cpu_pct"], "% of a core")
    report.add("RSS under load", load["VmRSS"], "MiB", ref["VmRSS"], "bare interpreter")
    report.add("RSS peak (VmHWM)", load["VmHWM"], "MiB", ref["VmRSS"], "bare interpreter")
    report.add("CPU under load", load["cpu_pct"], "% of a core")
    report.add("bare interpreter RSS", ref["VmRSS"], "MiB")
    report.add("bare interpreter CPU", ref["cpu_pct"], "% of a core")
    report.notes.append(
        f"idle {idle_s:.0f} s, load {load_s:.0f} s ({result['sent']} device messages, "
        f"{result['sent'] / load_s:.0f}/s, Modbus polled every 0.5 s); drivers: RFLink pty, "
        f"Modbus TCP, BLE udp{', Zigbee2MQTT' if result['zigbee'] else ' (no broker: no Zigbee)'}"
        f"; gateway still running after load: {result['alive']}"
    )
    costs = import_costs()
    top = sorted(costs.items(), key=lambda kv: -kv[1])[:6]
    report.notes.append(
        "resident MiB added by each import, in order (largest): "
        + ", ".join(f"{name} +{mib:.1f}" for name, mib in top)
    )
    if idle["VmRSS"] >= RSS_GOAL_MIB:
        report.notes.append(f"GOAL MISSED: idle RSS {idle['VmRSS']:.1f} MiB >= {RSS_GOAL_MIB} MiB")
    if zigbee_only is not None and zigbee_only["VmRSS"] >= ZIGBEE_RSS_GOAL_MIB:
        report.notes.append(
            f"GOAL MISSED: Zigbee-only idle RSS {zigbee_only['VmRSS']:.1f} MiB >= "
            f"{ZIGBEE_RSS_GOAL_MIB} MiB"
        )
    if idle["cpu_pct"] >= CPU_GOAL_PCT:
        report.notes.append(
            f"GOAL MISSED: idle CPU {idle['cpu_pct']:.2f}% >= {CPU_GOAL_PCT}% of a core"
        )
    report.print()


if __name__ == "__main__":
    main()
