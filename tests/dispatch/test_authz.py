"""Authorization: sessions, roles, and gateways kept out of operator endpoints."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.dispatch.conftest import new_operator, unique
from tests.fixtures.dispatch_app import DispatchApp

PUBLIC = {"/healthz", "/api/v1/auth/login"}


def operator_operations(server: DispatchApp) -> list[tuple[str, str]]:
    spec = server.http().get("/openapi.json").json()
    found = []
    for path, methods in spec["paths"].items():
        if path in PUBLIC or path.startswith("/api/v1/gateway/"):
            continue
        for method in methods:
            found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


def test_every_operator_endpoint_needs_a_session(server: DispatchApp) -> None:
    operations = operator_operations(server)
    assert len(operations) >= 20  # the whole operator API, not a few samples
    anonymous, forged = server.http(), server.http()
    forged.cookies.set("dispatch_session", "forged")
    for method, path in operations:
        reply = anonymous.request(method, path, json={})
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
        bogus = forged.request(method, path, json={})
        assert bogus.status_code == 401, (method, path)


def test_gateway_credentials_do_not_open_operator_endpoints(server: DispatchApp) -> None:
    gw = server.enroll(unique("hh"))
    anonymous = server.http()
    for method, path in operator_operations(server):
        headers = gw.signed_headers(path, b"{}")
        reply = anonymous.request(method, path, content=b"{}", headers=headers)
        assert reply.status_code == 401, (method, path)


@pytest.fixture(scope="module")
def roles(server: DispatchApp) -> dict[str, httpx.Client]:
    """One session per role, made once per server."""
    clients = {}
    for role in ("operator", "supervisor", "admin"):
        clients[role] = new_operator(server, role)[1]
    return clients


@pytest.mark.parametrize(
    ("method", "path", "minimum"),
    [
        ("GET", "/api/v1/operators", "admin"),
        ("POST", "/api/v1/operators", "admin"),
        ("PATCH", "/api/v1/operators/someone", "admin"),
        ("POST", "/api/v1/gateways/gw/revoke", "admin"),
        ("POST", "/api/v1/households", "supervisor"),
        ("PUT", "/api/v1/households/hh", "supervisor"),
        ("POST", "/api/v1/households/hh/enroll-codes", "supervisor"),
        ("GET", "/api/v1/audit", "supervisor"),
        ("GET", "/api/v1/reports/response-times", "supervisor"),
        ("GET", "/api/v1/escalations", "supervisor"),
    ],
)
def test_role_limits(roles: dict[str, httpx.Client], method: str, path: str, minimum: str) -> None:
    ranks = ["operator", "supervisor", "admin"]
    for role in ranks[: ranks.index(minimum)]:
        reply = roles[role].request(method, path, json={})
        assert reply.status_code == 403, (role, reply.text)
        assert f"{minimum} role required" == reply.json()["title"]
    allowed = roles[minimum].request(method, path, json={})
    assert allowed.status_code != 403, allowed.text


def test_operators_are_managed_by_admins_and_audited(server: DispatchApp) -> None:
    admin = server.operator_client()
    name = unique("new")
    created = admin.post(
        "/api/v1/operators",
        json={"username": name, "password": "long-enough-1", "role": "supervisor"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "supervisor"
    assert "password" not in created.text
    assert (
        admin.post(
            "/api/v1/operators", json={"username": name, "password": "long-enough-1"}
        ).status_code
        == 409
    )
    assert (
        admin.post(
            "/api/v1/operators", json={"username": unique("x"), "password": "short"}
        ).status_code
        == 422
    )
    session = server.login(name, "long-enough-1")
    assert session.get("/api/v1/auth/me").json()["username"] == name
    disabled = admin.patch(f"/api/v1/operators/{name}", json={"disabled": True})
    assert disabled.json()["disabled"] is True
    assert session.get("/api/v1/auth/me").status_code == 401  # its sessions ended
    with pytest.raises(httpx.HTTPStatusError):
        server.login(name, "long-enough-1")
    audit = admin.get("/api/v1/audit", params={"entity_id": name}).json()["items"]
    assert [e["action"] for e in audit][:3] == [
        "auth.login_failed",
        "operator.updated",
        "auth.login",
    ]


def test_login_logout_and_expiry(server: DispatchApp) -> None:
    client = server.operator_client()
    assert client.get("/api/v1/auth/me").status_code == 200
    cookie = client.cookies.get("dispatch_session")
    assert cookie
    bearer = server.http().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {cookie}"})
    assert bearer.status_code == 200
    assert client.post("/api/v1/auth/logout").status_code == 204
    replayed = server.http()
    replayed.cookies.set("dispatch_session", cookie)
    again = replayed.get("/api/v1/auth/me")
    assert again.status_code == 401
    wrong = server.http().post(
        "/api/v1/auth/login", json={"username": "admin", "password": "wrong"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["title"] == "login failed"

    # A session past its expiry is refused by every process (the check is in the database).
    other = server.operator_client()
    token = other.cookies["dispatch_session"]
    engine = sa.create_engine(server.db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE sessions SET expires_at = :t WHERE token_hash = :h"),
            {"t": "2000-01-01 00:00:00", "h": hashlib.sha256(token.encode()).hexdigest()},
        )
    engine.dispose()
    expired = other.get("/api/v1/auth/me")
    assert expired.status_code == 401
    assert expired.json()["title"] == "session expired or invalid"


def test_console_page_is_served_at_the_root(server: DispatchApp) -> None:
    page = server.http().get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/" not in server.http().get("/openapi.json").json()["paths"]  # not an API path
    config = server.operator_client().get("/api/v1/console/config")
    assert config.json() == {
        "timezone": None,
        "priority2_alert_after_s": 60.0,
        "map_tiles": None,
    }


def test_operation_ids_and_tags_are_pinned(server: DispatchApp) -> None:
    """Clients and the console generate calls from these: a refactoring must not move them."""
    spec = server.http().get("/openapi.json").json()
    served = sorted(
        f"{method.upper()} {path} {op['operationId']} {','.join(op.get('tags', []))}"
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    )
    pinned = (Path(__file__).parent / "openapi_operations.txt").read_text().splitlines()
    assert served == pinned
