"""`gatewayd enroll` against servers that answer wrongly: each says which input to fix, with
the exit code docs/operations.md gives, never a dumped page or a raw OpenSSL error."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gatewayd.cli import cli

Answer = tuple[int, str, bytes]


@pytest.fixture
def server() -> Iterator[Callable[[Answer], str]]:
    """A plain-HTTP server on loopback that answers every POST with the answer set last."""
    answer: list[Answer] = [(200, "text/plain", b"")]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            status, content_type, body = answer[0]
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def answering(new: Answer) -> str:
        answer[0] = new
        return f"127.0.0.1:{httpd.server_address[1]}"

    try:
        yield answering
    finally:
        httpd.shutdown()
        httpd.server_close()


def enroll(url: str, tmp_path: Path) -> Result:
    args = ["enroll", "--code", "K7Q2-9XRT", "--dispatch", url, "--gateway-id", "gw-1"]
    args += ["--state-dir", str(tmp_path / "state"), "--timeout", "5"]
    return CliRunner().invoke(cli, args, env={"COLUMNS": "200", "GATEWAYD_CONFIG": None})


PAGE = b"<html><body><h1>Welcome to nginx!</h1></body></html>"


def test_a_404_is_no_enrollment_api_at_that_url(
    server: Callable[[Answer], str], tmp_path: Path
) -> None:
    host = server((404, "application/json", b'{"detail": "Not Found"}'))
    result = enroll(f"http://{host}/dispatch", tmp_path)
    assert result.exit_code == 3, result.output
    assert (
        f"no dispatch enrollment API at http://{host}/dispatch/api/v1/gateway/enroll (HTTP 404): "
        "check the URL" in result.stderr
    )
    assert "refused the code" not in result.stderr


@pytest.mark.parametrize("status", [200, 403])
def test_a_page_that_is_not_json_is_named_by_its_type(
    server: Callable[[Answer], str], tmp_path: Path, status: int
) -> None:
    host = server((status, "text/html; charset=utf-8", PAGE))
    result = enroll(f"http://{host}", tmp_path)
    assert result.exit_code == 3, result.output
    assert f"http://{host} is not a dispatch server: it answered HTTP {status} with text/html" in (
        result.stderr
    )
    assert "nginx" not in result.stderr
    assert "<html>" not in result.stderr


def test_https_to_a_plain_http_port_says_so(
    server: Callable[[Answer], str], tmp_path: Path
) -> None:
    host = server((200, "application/json", b"{}"))
    result = enroll(f"https://{host}", tmp_path)
    assert result.exit_code == 3, result.output
    assert (
        "TLS handshake with 127.0.0.1 failed: the server does not speak TLS on this port "
        "(is the URL http?)" in result.stderr
    )
    assert "WRONG_VERSION_NUMBER" not in result.stderr


def test_a_credential_for_another_gateway_is_a_mismatch(
    server: Callable[[Answer], str], tmp_path: Path
) -> None:
    reply = {"gateway_id": "gw-2", "household_id": "hh-1", "secret": "s3cret"}
    host = server((200, "application/json", json.dumps(reply).encode()))
    result = enroll(f"http://{host}", tmp_path)
    assert result.exit_code == 3, result.output
    assert "gateway id mismatch: dispatch enrolled gateway 'gw-2', not 'gw-1'" in result.stderr
    assert "unreachable" not in result.stderr
    assert "s3cret" not in result.stderr
    assert not (tmp_path / "state" / "credential.json").exists()


def test_a_refused_code_is_still_a_refused_code(
    server: Callable[[Answer], str], tmp_path: Path
) -> None:
    problem = {"title": "unknown enrollment code", "detail": "no enrollment code matches"}
    host = server((401, "application/problem+json", json.dumps(problem).encode()))
    result = enroll(f"http://{host}", tmp_path)
    assert result.exit_code == 2, result.output
    assert "dispatch refused the code: unknown enrollment code" in result.stderr
