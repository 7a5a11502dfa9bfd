"""The daemon imports what its config uses and nothing else: a real `gatewayd run` process (the
console script's two lines, plus an exit hook that writes the names of the loaded modules)."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.broker import Broker
from tests.fixtures.gateway import NotifyListener, home_toml, zigbee_home
from tests.fixtures.procs import REPO_ROOT, project_env
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Libraries a Zigbee-only gateway has no use for: the other drivers' transports and decoders,
#: the optional extras of structlog and httpx (rich, pygments, greenlet), and the trace
#: recorder (its home does not record).
NOT_FOR_ZIGBEE = (
    "drivers.ble",
    "drivers.modbus",
    "drivers.rflink",
    "bthome_ble",
    "habluetooth",
    "cryptography",
    "pymodbus",
    "serial_asyncio_fast",
    "rich",
    "pygments",
    "greenlet",
    "sqlite_utils",
    "replay",
)


#: What the ``gatewayd`` console script runs, with an exit hook listing the loaded modules.
GATEWAYD_LISTING_MODULES = """
import atexit, sys
path = sys.argv.pop()
def listing():
    with open(path, "w") as f:
        f.write("\\n".join(name for name, module in sys.modules.items() if module is not None))
atexit.register(listing)
from gatewayd.cli import main
main()
"""


def test_a_zigbee_only_gateway_imports_no_other_driver_nor_optional_extras(
    tmp_path: Path, mqtt_broker: Broker, notify_listener: NotifyListener
) -> None:
    config = tmp_path / "home.toml"
    config.write_text(
        home_toml(tmp_path / "state", **zigbee_home(mqtt_broker.url, f"fp-{uuid.uuid4().hex[:8]}"))
    )
    listing = tmp_path / "modules.txt"
    process = subprocess.Popen(
        [sys.executable, "-c", GATEWAYD_LISTING_MODULES, "run", "--config", str(config), listing],
        stdout=subprocess.DEVNULL,
        env=project_env(NOTIFY_SOCKET=notify_listener.path),
        cwd=REPO_ROOT,
    )
    try:
        wait_until(lambda: notify_listener.seen("READY", "1"), 30, "READY=1")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    imported = set(listing.read_text().split())
    assert "drivers.zigbee2mqtt" in imported
    assert "pydantic" in imported  # the parse is right: a library the daemon does use
    loaded = sorted(
        name
        for name in imported
        if any(name == banned or name.startswith(banned + ".") for banned in NOT_FOR_ZIGBEE)
    )
    assert loaded == []
