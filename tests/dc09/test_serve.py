"""`dispatchd serve --dc09-port` and `dispatchd dc09 account ...` as real processes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime

from contract.dc09 import Dc09Message, decode, encode
from tests.fixtures.broker import free_port
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.waiting import wait_until

KEY = "00112233445566778899AABBCCDDEEFF"


def exchange(port: int, frame: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(frame)
        answer = b""
        while not answer.endswith(b"\r"):
            chunk = sock.recv(1024)
            assert chunk, "the receiver closed the connection without an answer"
            answer += chunk
    return answer


def test_account_cli_and_a_transmitter_opening_an_incident(
    dispatch_factory: Callable[..., DispatchServer],
) -> None:
    dc09_port = free_port()
    server = dispatch_factory(args=["--dc09-port", str(dc09_port)])
    server.ensure_household("hh-dc09")
    added = server.cli(
        "dc09", "account", "add", "--household", "hh-dc09", "--account", "c0ffee", "--key", KEY
    )
    assert added.returncode == 0, added.stderr
    assert "C0FFEE" in added.stdout
    assert "AES" in added.stdout
    listed = server.cli("dc09", "account", "list")
    assert listed.stdout.split() == ["C0FFEE", "hh-dc09", "AES-128", "-"]
    again = server.cli("dc09", "account", "add", "--household", "hh-dc09", "--account", "C0FFEE")
    assert again.returncode == 6
    assert "already mapped" in again.stderr
    bad_key = server.cli(
        "dc09", "account", "add", "--household", "hh-dc09", "--account", "BEEF", "--key", "12"
    )
    assert bad_key.returncode == 1
    assert "32, 48 or 64 hex digits" in bad_key.stderr

    alarm = Dc09Message(
        "ADM-CID", 1, "C0FFEE", data="#C0FFEE|1101 01 003", timestamp=datetime.now(UTC)
    )

    def answered() -> str:
        return decode(
            exchange(dc09_port, encode(alarm, key=bytes.fromhex(KEY))),
            keys=lambda _a: bytes.fromhex(KEY),
        ).type

    # The server reads accounts added by another process within a second.
    assert wait_until(answered, check=lambda t: t == "ACK", within=10) == "ACK"
    client = server.operator_client()
    incidents = client.get("/api/v1/incidents").json()["items"]
    assert [(i["kind"], i["household_id"], i["gateway_id"]) for i in incidents] == [
        ("sos", "hh-dc09", "dc09:C0FFEE")
    ]

    removed = server.cli("dc09", "account", "remove", "--account", "c0ffee")
    assert removed.returncode == 0, removed.stderr
    assert server.cli("dc09", "account", "list").stdout.strip() == ""
    missing = server.cli("dc09", "account", "remove", "--account", "c0ffee")
    assert missing.returncode == 5
