from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contract.signing import (
    HEADER_NONCE,
    HEADER_REPLY_SIGNATURE,
    HEADER_SIGNATURE,
    parse_headers,
    sign_reply,
    verify_request,
)
from contract.wire import Heartbeat, IngestBatch, Lane
from forwarder.client import (
    Credential,
    CredentialError,
    DispatchAuthRejected,
    DispatchClient,
    DispatchError,
    DispatchProtocolError,
    DispatchRejected,
    DispatchUnreachable,
    EnrollmentRefused,
    ssl_context,
)
from forwarder.delivery import HeartbeatSender
from tests.buffer.fake_dispatch import CREDENTIAL, SECRET, FakeDispatch, problem, signed


def heartbeat() -> Heartbeat:
    return Heartbeat(
        gateway_id="gw-1",
        sent_at=dt.datetime.now(dt.UTC),
        uptime_s=12.5,
        version="0.1.0",
        buffer_depth={Lane.ALARM: 0, Lane.TROUBLE: 1, Lane.TELEMETRY: 7},
        oldest_unsent_age_s=3.0,
    )


async def test_requests_are_signed_over_the_full_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        verify_request(
            parse_headers(request.headers),
            secret=SECRET,
            method="POST",
            path=request.url.path,
            body=request.content,
        )
        reply = httpx.Response(200, json={"v": 1, "server_time": "2026-11-29T08:30:00Z"})
        return signed(request, reply)

    async with DispatchClient(
        "https://dispatch.test/centre/",
        credential=CREDENTIAL,
        transport=httpx.MockTransport(handler),
    ) as client:
        reply = await client.send_heartbeat(heartbeat())
    assert reply.acknowledged_events == []
    assert seen[0].url.path == "/centre/api/v1/gateway/heartbeat"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["user-agent"].startswith("gatewayd/")
    assert Heartbeat.model_validate_json(seen[0].content).buffer_depth[Lane.TELEMETRY] == 7


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (problem(401, "Bad signature", "signature does not match"), DispatchAuthRejected, "401"),
        (problem(403, "Gateway revoked"), DispatchAuthRejected, "revoked"),
        (problem(422, "Invalid batch", "events[0].kind"), DispatchRejected, r"events\[0\]\.kind"),
        (httpx.Response(413, text="too big"), DispatchRejected, "413"),
        (problem(503, "Unavailable"), DispatchUnreachable, "503"),
        (httpx.Response(429, headers={"Retry-After": "7"}), DispatchUnreachable, "429"),
        (httpx.Response(200, text="<html>proxy login</html>"), DispatchProtocolError, "not"),
        (httpx.Response(200, json={"v": 2, "acks": []}), DispatchProtocolError, "version 2"),
        (httpx.Response(302, headers={"location": "/login"}), DispatchUnreachable, "redirect"),
    ],
)
async def test_answers_map_to_errors(
    response: httpx.Response, error: type[DispatchError], text: str
) -> None:
    async with DispatchClient(
        "https://dispatch.test",
        credential=CREDENTIAL,
        transport=httpx.MockTransport(lambda request: response),
    ) as client:
        with pytest.raises(error, match=text) as info:
            await client.send_events(
                IngestBatch.model_validate_json(
                    json.dumps({"v": 1, "gateway_id": "gw-1", "events": [_event()]})
                )
            )
    if response.status_code == 429:
        assert isinstance(info.value, DispatchUnreachable)
        assert info.value.retry_after == 7.0
    if isinstance(info.value, DispatchRejected):
        assert info.value.status == response.status_code


def _event() -> dict[str, object]:
    return {
        "id": "01M8K6SXT0812JFE47KCTDY1TM",
        "gateway_id": "gw-1",
        "seq": 1,
        "kind": "smoke",
        "priority": 1,
        "at": "2026-11-29T08:30:05Z",
    }


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
async def test_transport_failures_are_unreachable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(DispatchUnreachable):
            await client.send_heartbeat(heartbeat())


async def test_overall_deadline_bounds_a_hanging_server() -> None:
    class Hang(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(60)
            raise AssertionError("unreachable")

    started = time.monotonic()
    async with DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, timeout=0.05, transport=Hang()
    ) as client:
        with pytest.raises(DispatchUnreachable, match="did not answer"):
            await client.send_heartbeat(heartbeat())
    assert time.monotonic() - started < 2


def test_bad_url_and_missing_ca_are_clear() -> None:
    with pytest.raises(DispatchError, match="http"):
        DispatchClient("dispatch.test", credential=CREDENTIAL)
    with pytest.raises(DispatchError, match="CA file"):
        ssl_context(Path("/nonexistent/ca.pem"))


# -- credential -----------------------------------------------------------------------------


def test_credential_saved_0600_atomically_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "state" / "credential.json"
    CREDENTIAL.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credential.load(path) == CREDENTIAL
    assert [p.name for p in path.parent.iterdir()] == ["credential.json"]
    assert SECRET not in repr(CREDENTIAL)
    replacement = Credential("gw-1", "hh-2", "other-secret", "https://d2.test")
    replacement.save(path)
    assert Credential.load(path).household_id == "hh-2"


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "gatewayd enroll"), ("{not json", "cannot read"), ('{"gateway_id": "g"}', "lacks")],
)
def test_credential_problems_are_named(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "credential.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CredentialError, match=match):
        Credential.load(path)


# -- enrolment ------------------------------------------------------------------------------


async def test_enroll_exchanges_the_code() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/gateway/enroll"
        assert HEADER_SIGNATURE not in request.headers
        bodies.append(json.loads(request.content))
        return httpx.Response(
            201, json={"gateway_id": "gw-9", "household_id": "hh-3", "secret": "s3cret"}
        )

    credential = await DispatchClient.enroll(
        "https://dispatch.test/",
        code="ABCD-1234",
        gateway_id="gw-9",
        transport=httpx.MockTransport(handler),
    )
    assert credential == Credential("gw-9", "hh-3", "s3cret", "https://dispatch.test")
    assert bodies[0]["code"] == "ABCD-1234"
    assert bodies[0]["gateway_id"] == "gw-9"
    assert bodies[0]["version"]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (problem(410, "Code expired", "made 3 days ago"), EnrollmentRefused),
        (problem(404, "Unknown code"), EnrollmentRefused),
        (problem(500, "Internal error"), DispatchUnreachable),
        (httpx.Response(200, json={"gateway_id": "gw-9"}), DispatchProtocolError),
        (httpx.Response(200, json={"gateway_id": "other", "secret": "x"}), DispatchProtocolError),
    ],
)
async def test_enroll_failures(response: httpx.Response, error: type[Exception]) -> None:
    with pytest.raises(error):
        await DispatchClient.enroll(
            "https://dispatch.test",
            code="c",
            gateway_id="gw-9",
            transport=httpx.MockTransport(lambda request: response),
        )


# -- heartbeats -----------------------------------------------------------------------------


async def test_heartbeats_flow_at_the_interval_and_pass_on_acknowledgements() -> None:
    dispatch = FakeDispatch(acknowledged_events=["01M8K6SXT0812JFE47KCTDY1TM"])
    taken: list[list[str]] = []
    async with DispatchClient(
        "https://dispatch.test", credential=CREDENTIAL, transport=dispatch.transport()
    ) as client:
        sender = HeartbeatSender(
            client, make_heartbeat=heartbeat, interval=0.05, on_acknowledged=taken.append
        )
        task = asyncio.create_task(sender.run())
        await asyncio.sleep(0.28)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 4 <= len(dispatch.heartbeats) <= 7
        assert taken[0] == ["01M8K6SXT0812JFE47KCTDY1TM"]
        assert sender.status.clock_offset_s is not None
        assert abs(sender.status.clock_offset_s) < 5
        dispatch.fault = lambda request: problem(503, "down")
        with pytest.raises(DispatchUnreachable):
            await sender.send_now()
        assert sender.status.consecutive_failures == 1


# -- TLS with a private CA ------------------------------------------------------------------


def _make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Dispatch CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    import ssl

    ca_file, cert_file, key_file = _make_ca_and_server_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            body = json.dumps({"v": 1, "server_time": "2026-11-29T08:30:00Z"}).encode()
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            nonce = next(
                line.split(":", 1)[1].strip()
                for line in lines
                if line.lower().startswith(HEADER_NONCE.lower() + ":")
            )
            signature = sign_reply(
                secret=SECRET, path=path, request_nonce=nonce, status=200, body=body
            )
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"{HEADER_REPLY_SIGNATURE}: {signature}\r\n".encode()
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", ca_file
    finally:
        server.close()
        await server.wait_closed()


async def test_https_with_a_private_ca(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server
    async with DispatchClient(url, credential=CREDENTIAL, ca_file=ca_file, timeout=5) as client:
        reply = await client.send_heartbeat(heartbeat())
    assert reply.server_time.year == 2026
    async with DispatchClient(url, credential=CREDENTIAL, timeout=5) as client:
        with pytest.raises(DispatchUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await client.send_heartbeat(heartbeat())
