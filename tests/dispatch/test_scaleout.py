"""Several dispatchd processes on one PostgreSQL serve one centre."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contract.wire import EventKind, IngestReply
from tests.dispatch.conftest import shared_servers, unique
from tests.dispatch.wire import batch, event, heartbeat, sse_events
from tests.fixtures.dispatch import DispatchServer, EnrolledGateway
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.postgres

FAST = ("--heartbeat-misses", "2", "--supervise-every", "0.05")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[DispatchServer, DispatchServer]]:
    """Two dispatchd processes on one PostgreSQL database."""
    for servers in shared_servers("postgres", FAST, count=2):
        assert isinstance(servers, list)
        yield servers[0], servers[1]


def test_event_ingested_by_one_appears_on_the_others_stream(
    pair: tuple[DispatchServer, DispatchServer],
) -> None:
    a, b = pair
    household = unique("hh")
    gw = a.enroll(household)
    console = b.operator_client()  # the console is connected to the other process
    sos = event(gw.gateway_id, EventKind.SOS)

    def raise_alarm() -> None:
        reply = gw.send_events(batch(gw.gateway_id, sos))
        assert reply.status_code == 200

    # Raised while B's stream is open, so it usually arrives live (NOTIFY wakes B). The stream is
    # read from the first change on, so a machine too busy to open it in time still sees the
    # alarm, and nothing here depends on how fast the machine is; the speed is bench/latency's.
    timer = threading.Timer(0.5, raise_alarm)
    timer.start()
    events = sse_events(
        console,
        last_event_id=0,
        until=lambda ev: any(
            e["_event"] == "incident.opened" and e["data"]["household_id"] == household for e in ev
        ),
    )
    timer.join()
    opened = next(
        e
        for e in events
        if e["_event"] == "incident.opened" and e["data"]["household_id"] == household
    )
    # The same incident, whichever process is asked; a resend to B is a duplicate.
    resend = EnrolledGateway(b.url, gw.gateway_id, gw.household_id, gw.secret)
    ack = IngestReply.model_validate_json(resend.send_events(batch(gw.gateway_id, sos)).content)
    assert ack.acks[0].status == "duplicate"
    assert ack.acks[0].incident is not None
    assert ack.acks[0].incident.id == opened["entity_id"]
    # An operator action through A reaches B's stream, resuming after the last id seen.
    a_client = a.operator_client()
    assert a_client.post(f"/api/v1/incidents/{opened['entity_id']}/acknowledge").status_code == 200
    later = sse_events(
        console,
        last_event_id=opened["_id"],
        until=lambda ev: any(e["data"].get("state") == "acknowledged" for e in ev),
    )
    assert all(e["_id"] > opened["_id"] for e in later)


def test_concurrent_supervisors_open_one_offline_incident(
    pair: tuple[DispatchServer, DispatchServer],
) -> None:
    a, b = pair
    households = [unique("hh") for _ in range(5)]
    gateways = [a.enroll(h) for h in households]
    for gw in gateways:
        assert gw.heartbeat(heartbeat(gw.gateway_id, interval_s=0.2)).status_code == 200
    client = b.operator_client()

    def offline() -> list[Any]:
        items = client.get(
            "/api/v1/incidents",
            params={"category": "gateway_offline", "state": "all", "limit": 100},
        ).json()["items"]
        return [i for i in items if i["household_id"] in households]

    wait_until(
        offline, 60, "every household's offline incident", check=lambda f: len(f) >= len(households)
    )
    # A duplicate would come from the other supervisor's next passes (every 0.05 s): give it
    # many of them before counting.
    time.sleep(0.5)
    found = offline()
    assert sorted(i["household_id"] for i in found) == sorted(households)


def test_concurrent_resends_to_both_processes_store_once(
    pair: tuple[DispatchServer, DispatchServer],
) -> None:
    a, b = pair
    gw_a = a.enroll(unique("hh"))
    gw_b = EnrolledGateway(b.url, gw_a.gateway_id, gw_a.household_id, gw_a.secret)
    events = [event(gw_a.gateway_id, EventKind.SOS)] + [
        event(gw_a.gateway_id, EventKind.MOTION) for _ in range(50)
    ]
    body = batch(gw_a.gateway_id, *events)
    replies: list[IngestReply] = []

    def send(gw: EnrolledGateway) -> None:
        replies.append(IngestReply.model_validate_json(gw.send_events(body).content))

    threads = [threading.Thread(target=send, args=(gw,)) for gw in (gw_a, gw_b, gw_a, gw_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = sum(ack.status == "stored" for reply in replies for ack in reply.acks)
    assert stored == len(events)
    incident_ids = {reply.acks[0].incident.id for reply in replies if reply.acks[0].incident}
    assert len(incident_ids) == 1


def test_stream_survives_losing_the_listen_connection(
    pair: tuple[DispatchServer, DispatchServer],
) -> None:
    """A dropped LISTEN connection delays the stream at most to the poll; nothing is lost."""
    import psycopg

    a, b = pair
    household = unique("hh")
    gw = a.enroll(household)
    console = b.operator_client()
    with psycopg.connect(b.db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed, "each dispatchd holds a LISTEN connection"
    timer = threading.Timer(
        0.3, lambda: gw.send_events(batch(gw.gateway_id, event(gw.gateway_id, EventKind.GAS)))
    )
    timer.start()
    events = sse_events(
        console,
        timeout=10,
        until=lambda ev: any(
            e["_event"] == "incident.opened" and e["data"]["household_id"] == household for e in ev
        ),
    )
    timer.join()
    assert events
