"""The console's HTTP hardening: cross-site requests refused, the cookie Secure over TLS, the
browser told not to frame, sniff or run foreign scripts, and no page loading a public CDN."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dispatch.settings import Settings
from tests.dispatch.conftest import app_server, new_operator
from tests.fixtures.dispatch_app import DispatchApp

CROSS_SITE = "https://evil.example"


def test_a_cross_site_origin_cannot_use_the_cookie_session(server: DispatchApp) -> None:
    _name, client = new_operator(server)
    for headers in (
        {"Origin": CROSS_SITE},
        {"Origin": "null"},
        {"Referer": CROSS_SITE + "/form.html"},
        {"Origin": CROSS_SITE, "Referer": server.url + "/"},
    ):
        refused = client.post("/api/v1/incidents/1/acknowledge", headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "cross-site request refused"
        assert client.post("/api/v1/auth/logout", headers=headers).status_code == 403
    # Reading is not state-changing; the session is still there.
    assert client.get("/api/v1/auth/me", headers={"Origin": CROSS_SITE}).status_code == 200


def test_same_origin_and_cookieless_requests_pass(server: DispatchApp) -> None:
    _name, client = new_operator(server)
    token = client.cookies["dispatch_session"]
    bearer = server.http()
    reply = bearer.post(
        "/api/v1/incidents/999999999/acknowledge",
        headers={"Authorization": f"Bearer {token}", "Origin": CROSS_SITE},
    )
    assert reply.status_code == 404, reply.text  # not a cookie session: no CSRF to fear
    login = server.http().post(
        "/api/v1/auth/login",
        json={"username": "nobody", "password": "x"},
        headers={"Origin": CROSS_SITE},
    )
    assert login.status_code == 401
    same = client.post("/api/v1/auth/logout", headers={"Origin": server.url})
    assert same.status_code == 204


def test_security_headers_on_page_assets_and_api(server: DispatchApp) -> None:
    client = server.http()
    for path in ("/", "/console/app.js", "/api/v1/auth/me", "/healthz"):
        reply = client.get(path)
        csp = reply.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert "default-src 'self'" in csp, path
        assert reply.headers.get("x-content-type-options") == "nosniff", path
        assert reply.headers.get("referrer-policy") == "same-origin", path
        assert reply.headers.get("x-frame-options") == "DENY", path


def test_no_docs_page_loading_a_public_cdn(server: DispatchApp) -> None:
    client = server.http()
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert "cdn" not in reply.text, path
    assert client.get("/openapi.json").status_code == 200


def session_cookie(reply: httpx.Response) -> str:
    return next(v for k, v in reply.headers.multi_items() if k == "set-cookie")


def test_cookie_is_secure_only_over_tls(server: DispatchApp) -> None:
    server.operator_client()  # the admin exists
    login = {"username": "admin", "password": "admin-password-123"}
    plain = server.http().post("/api/v1/auth/login", json=login)
    assert "secure" not in session_cookie(plain).lower()
    tls = httpx.Client(base_url="https://dispatch.test", transport=server.transport)
    with tls:
        secure = tls.post("/api/v1/auth/login", json=login)
    assert "; secure" in session_cookie(secure).lower()
    # An untrusted X-Forwarded-Proto changes nothing.
    forged = server.http().post(
        "/api/v1/auth/login", json=login, headers={"X-Forwarded-Proto": "https"}
    )
    assert "secure" not in session_cookie(forged).lower()


@pytest.fixture(scope="module")
def behind_proxy() -> Iterator[DispatchApp]:
    yield from app_server("sqlite", Settings(trust_proxy_headers=True))


def test_cookie_is_secure_behind_a_trusted_tls_proxy(behind_proxy: DispatchApp) -> None:
    behind_proxy.operator_client()
    login = {"username": "admin", "password": "admin-password-123"}
    proxied = behind_proxy.http().post(
        "/api/v1/auth/login", json=login, headers={"X-Forwarded-Proto": "https"}
    )
    assert "; secure" in session_cookie(proxied).lower()
    direct = behind_proxy.http().post("/api/v1/auth/login", json=login)
    assert "secure" not in session_cookie(direct).lower()
