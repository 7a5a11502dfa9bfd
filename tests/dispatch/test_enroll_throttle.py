"""Failed enrollments are throttled per address and per code, and audited (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from dispatch import schema
from dispatch.settings import Settings
from dispatch.supervision import Supervisor
from dispatch.tx import ChangeFeed, transaction
from tests.dispatch.conftest import BACKENDS, app_server, unique
from tests.fixtures.dispatch_app import DispatchApp

PER_ADDRESS = 6
PER_CODE = 3


@pytest.fixture(scope="module", params=BACKENDS)
def strict(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    settings = Settings(
        enroll_failures_per_address=PER_ADDRESS,
        enroll_failures_per_code=PER_CODE,
        enroll_failure_window_s=600,
    )
    yield from app_server(request.param, settings)


def _enroll(server: DispatchApp, code: str, gateway_id: str) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    reply = server.http().post(
        "/api/v1/gateway/enroll", json={"code": code, "gateway_id": gateway_id, "version": "t"}
    )
    return reply.status_code, dict(reply.headers), reply.json()


def _failures_audited(server: DispatchApp) -> list[str]:
    async def read() -> list[str]:
        a = schema.audit_log
        async with server.database.read() as conn:
            rows = await conn.execute(
                select(a.c.detail).where(a.c.action == "gateway.enroll_failed").order_by(a.c.id)
            )
            return [str(d["reason"]) for d in rows.scalars()]

    return server.run(read())


def test_guessing_codes_is_throttled_per_code_then_per_address(strict: DispatchApp) -> None:
    server = strict
    # One code guessed wrong (as a code's holder with a typo would): limited per code.
    household = unique("hh-t")
    good = server.enroll_code(household)
    for _ in range(PER_CODE):
        status, _, body = _enroll(server, "WRNG-CODE-0001", unique("gw"))
        assert status == 401, body
    status, headers, body = _enroll(server, "WRNG-CODE-0001", unique("gw"))
    assert status == 429, body
    assert body["title"] == "too many failed enrollments"
    assert "this code" in body["detail"]
    assert 1 <= int(headers["retry-after"]) <= 600
    # Other codes from this address still work until the address's own limit.
    for n in range(PER_ADDRESS - PER_CODE):
        status, _, body = _enroll(server, f"OTHR-CODE-{n:04d}", unique("gw"))
        assert status == 401, body
    status, headers, body = _enroll(server, good, unique("gw"))
    assert status == 429, body
    assert "this address" in body["detail"]
    assert int(headers["retry-after"]) >= 1
    # The throttle spent nothing: the good code is unused, and every failure is audited.
    assert _failures_audited(server).count("unknown enrollment code") == PER_ADDRESS
    codes = schema.enroll_codes

    async def unused() -> bool:
        from dispatch.gateways import hash_code

        async with server.database.read() as conn:
            used = await conn.execute(
                select(codes.c.used_at).where(codes.c.code_hash == hash_code(good))
            )
            return used.scalar() is None

    assert server.run(unused())


def test_failed_enrollments_older_than_the_retention_are_purged(strict: DispatchApp) -> None:
    """The unauthenticated endpoint writes a row per failure: they must not pile up for ever."""
    server = strict
    retention = timedelta(seconds=server.settings.enroll_failure_retention_s)
    now = datetime(2031, 3, 1, 12, tzinfo=UTC)  # a passed-in clock, far from any other test's rows
    marker = unique("purge")
    ages = {"old": retention + timedelta(minutes=1), "kept": retention - timedelta(minutes=1)}
    f = schema.enroll_failures

    async def run() -> list[str]:
        async with transaction(server.database) as tx:
            for name, age in ages.items():
                await tx.conn.execute(
                    insert(f).values(
                        at=now - age, address=marker, code_hash=name, gateway_id="gw", reason="t"
                    )
                )
        await Supervisor(server.database, server.settings, ChangeFeed()).purge(now)
        async with server.database.read() as conn:
            left = await conn.execute(select(f.c.code_hash).where(f.c.address == marker))
            return sorted(str(c) for c in left.scalars())

    assert server.run(run()) == ["kept"]
