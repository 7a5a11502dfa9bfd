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
    args += ["--state-dir", str(tmp_path / "state"), "--timeout", "5", "--insecure-http"]
    return CliRunner().invoke(cli, args, env={"COLUMNS": "200", "GATEWAYD_CONFIG": None})


PAGE = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
PROBLEM = json.dumps({"title": "unknown enrollment code", "detail": "no such code"}).encode()

#: (scheme, URL path, answer, exit code, what stderr says ({host} filled in), what it must not)
CASES = {
    "404": (
        "http",
        "/dispatch",
        (404, "application/json", b'{"detail": "Not Found"}'),
        3,
        "no dispatch enrollment API at http://{host}/dispatch/api/v1/gateway/enroll (HTTP 404): "
        "check the URL",
        "refused the code",
    ),
    "a page": (
        "http",
        "",
        (200, "text/html; charset=utf-8", PAGE),
        3,
        "http://{host} is not a dispatch server: it answered HTTP 200 with text/html",
        "nginx",
    ),
    "a refusing page": (
        "http",
        "",
        (403, "text/html", PAGE),
        3,
        "http://{host} is not a dispatch server: it answered HTTP 403 with text/html",
        "<html>",
    ),
    "https to http": (
        "https",
        "",
        (200, "application/json", b"{}"),
        3,
        "TLS handshake with 127.0.0.1 failed: the server does not speak TLS on this port "
        "(is the URL http?)",
        "WRONG_VERSION_NUMBER",
    ),
    "a refused code": (
        "http",
        "",
        (401, "application/problem+json", PROBLEM),
        2,
        "dispatch refused the code: unknown enrollment code (no such code)",
        "unreachable",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_answer_names_what_to_fix(
    server: Callable[[Answer], str], tmp_path: Path, case: str
) -> None:
    scheme, path, answer, code, said, unsaid = CASES[case]
    host = server(answer)
    result = enroll(f"{scheme}://{host}{path}", tmp_path)
    assert result.exit_code == code, result.output
    assert said.format(host=host) in result.stderr
    assert unsaid not in result.stderr


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
