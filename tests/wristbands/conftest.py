"""A dispatch centre with its JT/T 808 port open, in this process, one per backend."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from dispatch.settings import Settings
from firmware_sim.wristband import Wristband
from tests.dispatch.conftest import BACKENDS, app_server, unique
from tests.fixtures.dispatch_app import DispatchApp

T = TypeVar("T")

#: Short windows: a wristband is offline after 2 silent seconds (tests that need it wait on it).
#: Answers to what the centre sends a terminal are awaited 0.2 s, then 0.4 s, then 1.2 s.
FAST = Settings(
    jt808_heartbeat_s=1.0,
    heartbeat_misses=2,
    supervise_every_s=0.1,
    jt808_answer_timeout_s=0.2,
    jt808_resends=2,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=BACKENDS)
def centre(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    settings = FAST.model_copy(update={"jt808_port": free_port(), "jt808_host": "127.0.0.1"})
    for app in app_server(request.param, settings):
        yield app
        _clients.pop(id(app), None)


_numbers = itertools.count(random.randrange(10**6))


def new_terminal() -> str:
    """A terminal phone number no other test uses."""
    return f"139{next(_numbers) % 10**8:08d}"


def band(centre: DispatchApp, terminal: str | None = None, **kw: object) -> Wristband:
    return Wristband("127.0.0.1", centre.settings.jt808_port, terminal or new_terminal(), **kw)  # type: ignore[arg-type]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a wristband from the test's own thread (the centre runs on its own loop)."""
    return asyncio.run(coro)


def bound_household(centre: DispatchApp, terminal: str, resident: str = "Li Wei") -> str:
    household = unique("hh-wb")
    centre.ensure_household(household)
    reply = supervisor(centre).post(
        "/api/v1/wristbands",
        json={"terminal": terminal, "household_id": household, "resident": resident},
    )
    assert reply.status_code == 201, reply.text
    return household


_clients: dict[int, httpx.Client] = {}


def supervisor(centre: DispatchApp) -> httpx.Client:
    """An admin's session on this centre, made once (a login costs a password hash)."""
    if id(centre) not in _clients:
        _clients[id(centre)] = centre.operator_client()
    return _clients[id(centre)]


def incidents_of(centre: DispatchApp, household: str) -> list[dict[str, object]]:
    reply = supervisor(centre).get(
        "/api/v1/incidents", params={"household_id": household, "limit": 50, "state": "all"}
    )
    assert reply.status_code == 200, reply.text
    items: list[dict[str, object]] = reply.json()["items"]
    return items
