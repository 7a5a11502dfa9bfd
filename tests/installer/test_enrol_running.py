"""Enrolling a gateway that is already running, as an installer does it (often with sudo): the
daemon picks the credential up by itself, survives a credential it cannot use, and a device
paired meanwhile is put to use by a reload."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.gateway import GatewayProcess, home_toml
from tests.fixtures.procs import run_module
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.slow]

NOBODY = 65534


def status(config: Path) -> dict[str, Any]:
    done = run_module("gatewayd", "status", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_bad_credential_is_survived_and_a_good_one_picked_up(
    tmp_path: Path, dispatch_server: DispatchServer
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # What a hand-copied or half-restored credential looks like: the daemon must start anyway.
    (state / "credential.json").write_text('{"gateway_id": "gw-bad"}')
    rf = '[[drivers]]\nid = "rf"\ntype = "rflink"\nport = "socket://127.0.0.1:9"\n'
    gw = GatewayProcess(
        tmp_path,
        home_toml(state, drivers=rf, gateway_id="gw-enrol-1", dispatch_url=dispatch_server.url),
    )
    gw.start()
    try:
        wait_until(lambda: gw.logged("gateway_ready"), 30, "gateway ready")
        assert gw.running
        [problem] = gw.logged("credential_unreadable")
        assert problem["error"].endswith("the credential lacks household_id, secret, dispatch_url")
        assert status(gw.config_path)["forwarder"].get("reachable") is not True

        # Paired while running; the reload puts it to use.
        paired = run_module(
            "gatewayd", "devices", "pair", "--config", str(gw.config_path), "--driver", "rf",
            "--address", "SmokeAlert:77aa01", "--role", "smoke", "--room", "hall", "--no-input",
        )  # fmt: skip
        assert paired.returncode == 0, paired.stderr
        assert "systemctl reload gatewayd" in paired.stderr
        gw.signal(signal.SIGHUP)
        wait_until(
            lambda: [d["id"] for d in status(gw.config_path)["devices"]],
            15,
            "the paired smoke_hall in the running gateway's devices",
            check=lambda ids: "smoke_hall" in ids,
        )

        # The state folder belongs to the service user; the installer enrols as root.
        os.chown(state, NOBODY, NOBODY)
        code = dispatch_server.enroll_code("hh-test-1")
        refused = run_module("gatewayd", "enroll", "--config", str(gw.config_path), "--code", code)
        assert refused.returncode == 3, refused.stderr
        assert "--force" in refused.stderr, "the bad file is not silently replaced"
        done = run_module(
            "gatewayd", "enroll", "--config", str(gw.config_path), "--code", code, "--force"
        )
        assert done.returncode == 0, done.stderr
        credential = state / "credential.json"
        assert credential.stat().st_uid == NOBODY, "readable by the service user"
        assert credential.stat().st_mode & 0o777 == 0o600

        wait_until(
            lambda: status(gw.config_path)["forwarder"],
            30,
            "dispatch reachable",
            check=lambda forwarder: forwarder.get("reachable") is True,
        )
        assert gw.running
        # Logged once for the one problem, not once per look.
        assert len(gw.logged("credential_unreadable")) == 1
    finally:
        gw.stop()


def test_enrolling_as_a_user_leaves_the_owner_alone(
    tmp_path: Path, dispatch_server: DispatchServer
) -> None:
    state = Path(tempfile.mkdtemp(prefix="gw-state-", dir=tmp_path))
    done = run_module(
        "gatewayd", "enroll", "--dispatch", dispatch_server.url, "--gateway-id", "gw-enrol-2",
        "--insecure-http",
        "--state-dir", str(state), "--code", dispatch_server.enroll_code("hh-enrol-2"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (state / "credential.json").stat().st_uid == os.geteuid()
