"""`gatewayd enroll` as a real process against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from forwarder.client import Credential
from tests.fixtures.procs import run_module


@dataclass
class EnrollServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    reply: dict[str, Any] = field(
        default_factory=lambda: {"gateway_id": "gw-5", "household_id": "hh-7", "secret": "s3"}
    )


@pytest.fixture
def server() -> Iterator[EnrollServer]:
    state = EnrollServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "body": json.loads(body)})
            data = json.dumps(state.reply).encode()
            self.send_response(state.status)
            content_type = "application/json" if state.status < 400 else "application/problem+json"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def enroll(*args: str) -> tuple[int, str]:
    # The fake dispatch listens on loopback: plain http, allowed by name.
    result = run_module("gatewayd", "enroll", *args, "--insecure-http", timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_enrolls_and_stores_the_credential_0600(server: EnrollServer, tmp_path: Path) -> None:
    code, out = enroll(
        "--dispatch",
        server.url,
        "--code",
        "K7Q2-9XRT",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert code == 0, out
    path = tmp_path / "state" / "credential.json"
    assert str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credential.load(path) == Credential("gw-5", "hh-7", "s3", server.url)
    assert "s3" not in out.replace(str(tmp_path), "")
    [request] = server.requests
    assert request["path"] == "/api/v1/gateway/enroll"
    assert request["body"]["code"] == "K7Q2-9XRT"
    assert request["body"]["gateway_id"] == "gw-5"


def test_takes_id_state_folder_and_url_from_the_config(
    server: EnrollServer, tmp_path: Path
) -> None:
    config = tmp_path / "home.toml"
    config.write_text(
        f'[gateway]\nid = "gw-5"\nstate_dir = "{tmp_path / "st"}"\n\n'
        f'[dispatch]\nurl = "{server.url}"\ninsecure_http = true\n'
    )
    code, out = enroll("--code", "abc", "--config", str(config))
    assert code == 0, out
    assert (tmp_path / "st" / "credential.json").exists()


def test_refused_code_exits_2_and_writes_nothing(server: EnrollServer, tmp_path: Path) -> None:
    server.status = 410
    server.reply = {"title": "Enrolment code expired", "status": 410, "detail": "made 3 days ago"}
    code, out = enroll(
        "--dispatch",
        server.url,
        "--code",
        "old",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(tmp_path),
    )
    assert code == 2
    assert "Enrolment code expired" in out
    assert "made 3 days ago" in out
    assert not (tmp_path / "credential.json").exists()


def test_unreachable_exits_4(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = enroll(
        "--dispatch",
        f"http://127.0.0.1:{port}",
        "--code",
        "c",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(tmp_path),
        "--timeout",
        "2",
    )
    assert code == 4
    assert "unreachable" in out


def test_server_error_exits_4(server: EnrollServer, tmp_path: Path) -> None:
    server.status = 503
    server.reply = {"title": "Database unavailable", "status": 503}
    code, out = enroll(
        "--dispatch",
        server.url,
        "--code",
        "c",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(tmp_path),
    )
    assert code == 4
    assert "Database unavailable" in out


@pytest.mark.parametrize(
    ("config_text", "extra", "message"),
    [
        ("[gateway]\nid = \n", [], "not valid TOML"),
        ('[gateway]\nid = "gw-5"\nstat_dir = "/x"\n', [], "unknown key"),
        (None, [], "no gateway id"),
    ],
)
def test_config_problems_exit_3_before_anything_is_sent(
    server: EnrollServer, tmp_path: Path, config_text: str | None, extra: list[str], message: str
) -> None:
    args = ["--dispatch", server.url, "--code", "c", "--state-dir", str(tmp_path), *extra]
    if config_text is not None:
        config = tmp_path / "home.toml"
        config.write_text(config_text)
        args += ["--config", str(config)]
    code, out = enroll(*args)
    assert code == 3, out
    assert message in out
    assert server.requests == []


def test_existing_credential_needs_force(server: EnrollServer, tmp_path: Path) -> None:
    Credential("gw-5", "hh-1", "old", server.url).save(tmp_path / "credential.json")
    args = [
        "--dispatch",
        server.url,
        "--code",
        "c",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(tmp_path),
    ]
    code, out = enroll(*args)
    assert code == 3
    assert "--force" in out
    assert server.requests == []
    code, out = enroll(*args, "--force")
    assert code == 0, out
    assert Credential.load(tmp_path / "credential.json").secret == "s3"


def test_unwritable_state_folder_exits_3_without_spending_the_code(
    server: EnrollServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out = enroll(
        "--dispatch",
        server.url,
        "--code",
        "c",
        "--gateway-id",
        "gw-5",
        "--state-dir",
        str(blocker / "state"),
    )
    assert code == 3
    assert "not writable" in out
    assert server.requests == []
