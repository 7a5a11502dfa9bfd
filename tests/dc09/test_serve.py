"""`dispatchd serve --dc09-port` and `dispatchd dc09 account ...` as real processes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

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


def test_rejections_are_counted_by_reason_where_the_centre_looks(
    dispatch_factory: Callable[..., DispatchServer],
) -> None:
    dc09_port = free_port()
    server = dispatch_factory(args=["--dc09-port", str(dc09_port)])
    server.ensure_household("hh-dc09-count")
    added = server.cli(
        "dc09",
        "account",
        "add",
        "--household",
        "hh-dc09-count",
        "--account",
        "ABC123",
        "--key",
        KEY,
    )
    assert added.returncode == 0, added.stderr
    key = bytes.fromhex(KEY)

    def answer(*frames: bytes) -> str:
        """The type of the one answer to ``frames`` sent on one connection."""
        return decode(exchange(dc09_port, b"".join(frames)), keys=lambda _a: key).type

    def message(seq: int, at: datetime | None = None, account: str = "ABC123") -> Dc09Message:
        return Dc09Message(
            "ADM-CID",
            seq,
            account,
            data=f"#{account}|1101 01 003",
            timestamp=at or datetime.now(UTC),
        )

    def null() -> bytes:
        return encode(Dc09Message("NULL", 0, "ABC123", timestamp=datetime.now(UTC)), key=key)

    # The server reads the account added by another process within a second.
    assert wait_until(lambda: answer(null()), check=lambda t: t == "ACK", within=10) == "ACK"
    client = server.operator_client()
    before = client.get("/api/v1/dc09/receiver").json()
    assert before["listening"] is True
    assert before["port"] == dc09_port
    assert set(before["rejected"]) >= {"crc", "length", "unknown_account", "timestamp", "decrypt"}
    # NULLs sent before the server read the new account (it looks at most once a second) are
    # refused for want of its key, nothing else.
    assert {r for r, n in before["rejected"].items() if n} <= {"no_key", "unknown_account"}

    good = encode(message(1), key=key)
    bad_crc = bytearray(good)
    bad_crc[1:5] = b"0000"
    bad_length = bytearray(good)
    bad_length[5:9] = b"0FFF"
    # No answer to a broken frame: the NULL after it on the same connection answers.
    assert answer(bytes(bad_crc), null()) == "ACK"
    assert answer(bytes(bad_length), null()) == "ACK"
    assert answer(encode(message(2, account="DEAD01"))) == "NAK"  # unknown account
    stale = message(3, at=datetime.now(UTC) - timedelta(hours=1))
    assert answer(encode(stale, key=key)) == "NAK"  # timestamp out of the window
    assert answer(encode(message(4), key=bytes(16))) == "NAK"  # does not decrypt
    assert answer(good) == "ACK"
    assert answer(good) == "ACK"  # a replay: acknowledged again, stored once

    after = client.get("/api/v1/dc09/receiver").json()
    counted = {r: n - before["rejected"][r] for r, n in after["rejected"].items()}
    assert {r: n for r, n in counted.items() if n} == {
        "crc": 1,
        "length": 1,
        "unknown_account": 1,
        "timestamp": 1,
        "decrypt": 1,
    }
    assert after["accepted"]["repeat"] == 1
    assert after["accepted"]["ADM-CID"] == 1


def test_a_server_without_a_receiver_says_so(dispatch_server: DispatchServer) -> None:
    status = dispatch_server.operator_client().get("/api/v1/dc09/receiver")
    assert status.status_code == 200, status.text
    assert status.json()["listening"] is False
