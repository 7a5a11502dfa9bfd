"""DC-09 inbound group commit: messages arriving together share a transaction, and no message
is ACKed before the transaction holding it has committed."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.dc09 import Dc09Message, decode, encode
from tests.dc09.test_receiver import centre_at
from tests.fixtures.broker import free_port
from tests.fixtures.dispatch import DispatchServer
from tests.fixtures.waiting import await_until, wait_until


def alarm(sequence: int, account: str = "1234") -> bytes:
    return encode(
        Dc09Message(
            "ADM-CID",
            sequence,
            account,
            data=f"#{account}|1101 01 {sequence % 1000:03d}",
            timestamp=datetime.now(UTC),
        )
    )


async def nothing(_tx: object) -> None:
    return None


async def test_messages_arriving_together_share_one_commit_acked_after_it(
    tmp_path: Path,
) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        commits = centre.intake.commits
        # While the database's writer is held, nothing can commit: a first write waits for it,
        # and five transmitters, each on a connection of its own, send an alarm meanwhile.
        async with centre.db.write():
            first = asyncio.create_task(commits.run(nothing))
            await await_until(lambda: commits.waiting == 1)
            sending = [asyncio.create_task(centre.tcp(alarm(n))) for n in range(1, 6)]
            await await_until(lambda: commits.waiting == 6)
            assert not any(task.done() for task in sending), "an ACK went out before a commit"
        answers = await asyncio.gather(*sending)
        await first
        assert [decode(a).type for [a] in answers] == ["ACK"] * 5
        # The first write's commit, then one for the five that arrived while it waited.
        assert (commits.commits, commits.writes) == (2, 6)
        assert len(await centre.events()) == 5


async def test_a_failing_write_does_not_refuse_its_neighbours(tmp_path: Path) -> None:
    async with centre_at(tmp_path / "d.db") as centre:
        await centre.add("1234")
        commits = centre.intake.commits
        calls = 0

        async def broken(_tx: object) -> None:
            nonlocal calls
            calls += 1
            raise OSError("disk on fire")

        async with centre.db.write():
            first = asyncio.create_task(commits.run(nothing))
            await await_until(lambda: commits.waiting == 1)
            sending = [asyncio.create_task(centre.tcp(alarm(n))) for n in range(1, 4)]
            await await_until(lambda: commits.waiting == 4)
            failing = asyncio.create_task(commits.run(broken))
            await await_until(lambda: commits.waiting == 5)
        await first
        answers = await asyncio.gather(*sending)
        assert [decode(a).type for [a] in answers] == ["ACK"] * 3
        with pytest.raises(OSError, match="disk on fire"):
            await failing
        assert calls == 2  # in the transaction it shared with three alarms, then alone
        assert len(await centre.events()) == 3


def test_every_acked_message_survives_kill_9(
    dispatch_factory: Callable[..., DispatchServer],
) -> None:
    """Eight transmitters send as fast as they are answered; dispatchd is killed mid-stream.
    Whatever was ACKed is in the database after the restart."""
    port = free_port()
    server = dispatch_factory(args=["--dc09-port", str(port)])
    server.ensure_household("hh-dc09")
    added = server.cli("dc09", "account", "add", "--household", "hh-dc09", "--account", "ABC")
    assert added.returncode == 0, added.stderr
    acked: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def transmitter(first: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                for sequence in range(first, first + 500):
                    # As a panel does, a message refused (the account not yet read by the
                    # receiver, which looks again within a second) is sent again.
                    while True:
                        if stop.is_set():
                            return
                        sock.sendall(alarm(sequence, "ABC"))
                        answer = b""
                        while not answer.endswith(b"\r"):
                            chunk = sock.recv(1024)
                            if not chunk:
                                return
                            answer += chunk
                        if decode(answer).type == "ACK":
                            break
                        time.sleep(0.05)
                    with lock:
                        acked.add(sequence)
        except OSError:
            return  # killed under us

    threads = [threading.Thread(target=transmitter, args=(1000 * t + 1,)) for t in range(8)]
    for thread in threads:
        thread.start()
    # Let a good many ACKs go out.
    wait_until(lambda: len(acked) >= 200, within=60)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in threads)
    with lock:
        answered = set(acked)
    db = sqlite3.connect(server.db_url.removeprefix("sqlite:///"))
    try:
        stored = {
            int(row[0])
            for row in db.execute(
                "SELECT json_extract(payload, '$.sequence') FROM events "
                "WHERE json_extract(payload, '$.account') = 'ABC'"
            )
        }
    finally:
        db.close()
    assert answered, "nothing was acknowledged before the kill"
    assert answered <= stored, f"ACKed but not stored: {sorted(answered - stored)[:10]}"
    server.start()  # and the database it left opens again
