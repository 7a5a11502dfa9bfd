"""Home configs for the benchmarks: a gateway with many Zigbee2MQTT devices on the real broker,
and a gateway process run as systemd would run it (``python -m gatewayd run``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ZigbeeDevice", "gateway_process", "project_env", "zigbee_home_toml"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ZigbeeDevice:
    id: str
    name: str
    model: str
    role: str
    ieee: str


def zigbee_home_toml(
    *,
    gateway_id: str,
    household: str,
    state_dir: Path,
    dispatch_url: str,
    broker: tuple[str, int],
    base_topic: str,
    devices: Sequence[ZigbeeDevice],
    rules: str = "",
) -> str:
    lines = [
        "[gateway]",
        f'id = "{gateway_id}"',
        f'household = "{household}"',
        f'state_dir = "{state_dir}"',
        "",
        "[dispatch]",
        f'url = "{dispatch_url}"',
        "insecure_http = true",
        "heartbeat_interval = 30",
        "",
        "[rules]",
        rules,
        "",
        "[[drivers]]",
        'id = "zigbee"',
        'type = "zigbee2mqtt"',
        f'url = "mqtt://{broker[0]}:{broker[1]}"',
        f'base_topic = "{base_topic}"',
    ]
    for d in devices:
        lines += [
            "",
            "[[devices]]",
            f'id = "{d.id}"',
            'driver = "zigbee"',
            f'address = "{d.name}"',
            f'role = "{d.role}"',
            'room = "bench"',
            f'model = "{d.model}"',
        ]
    return "\n".join(lines) + "\n"


def project_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@contextlib.contextmanager
def gateway_process(
    config_path: Path, log_path: Path, *, log_level: str = "WARNING"
) -> Iterator[subprocess.Popen[bytes]]:
    """``gatewayd run`` as a child process; SIGTERM (then SIGKILL) at exit."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatewayd",
                "run",
                "--config",
                str(config_path),
                "--log-level",
                log_level,
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=project_env(),
            cwd=ROOT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
