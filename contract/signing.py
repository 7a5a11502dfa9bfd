"""Request signing between a gateway and dispatch (both sides import this module).

Every gateway request carries its gateway id, a timestamp, a random nonce and an HMAC-SHA256
signature over the method, path, timestamp, nonce and the SHA-256 of the body. Dispatch refuses a
signature that does not verify, a timestamp outside :data:`MAX_SKEW_S`, and a nonce it has seen
before within that window, so a captured request cannot be replayed.

Dispatch signs its answer to a signed request (ingest acknowledgements, heartbeat replies) with the
same secret in header :data:`HEADER_REPLY_SIGNATURE`: HMAC-SHA256 over a purpose label, the path,
the request's nonce, the status and the SHA-256 of the reply body. The label is not an HTTP method
(it contains ``/``), so no request signature verifies as a reply; the request's nonce ties the
reply to the one request it answers, so an old reply cannot be played back to a new request. The
gateway deletes an event only on a reply that verifies: anything that can merely answer on the
network cannot acknowledge an alarm as stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HEADER_GATEWAY",
    "HEADER_NONCE",
    "HEADER_REPLY_SIGNATURE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "SignatureError",
    "SignedHeaders",
    "new_secret",
    "sign_reply",
    "sign_request",
    "verify_reply",
    "verify_request",
]

HEADER_GATEWAY: Final = "X-Gateway-Id"
HEADER_TIMESTAMP: Final = "X-Gateway-Timestamp"
HEADER_NONCE: Final = "X-Gateway-Nonce"
HEADER_SIGNATURE: Final = "X-Gateway-Signature"
HEADER_REPLY_SIGNATURE: Final = "X-Dispatch-Signature"
#: Domain separation: what a reply signature is for (never a request's first line).
REPLY_PURPOSE: Final = "DISPATCH-REPLY/1"
#: How far a request's timestamp may be from the server's clock, in seconds.
MAX_SKEW_S: Final = 300


class SignatureError(Exception):
    """A request's signature headers are missing, stale or wrong."""


@dataclass(frozen=True)
class SignedHeaders:
    gateway_id: str
    timestamp: int
    nonce: str
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            HEADER_GATEWAY: self.gateway_id,
            HEADER_TIMESTAMP: str(self.timestamp),
            HEADER_NONCE: self.nonce,
            HEADER_SIGNATURE: self.signature,
        }


def new_secret() -> str:
    """A fresh gateway secret: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _message(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("ascii"), message, hashlib.sha256).hexdigest()


def sign_request(
    *,
    gateway_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
    nonce: str | None = None,
) -> SignedHeaders:
    timestamp = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(16)
    signature = _mac(secret, _message(method, path, timestamp, nonce, body))
    return SignedHeaders(gateway_id, timestamp, nonce, signature)


def verify_request(
    headers: SignedHeaders,
    *,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> None:
    """Check signature and freshness. The caller must also check the nonce is unseen."""
    now = time.time() if now is None else now
    if abs(now - headers.timestamp) > MAX_SKEW_S:
        raise SignatureError(
            f"request timestamp is {int(now - headers.timestamp)} s from the server clock; "
            f"at most {MAX_SKEW_S} s is accepted (check the gateway's clock)"
        )
    if not (8 <= len(headers.nonce) <= 128):
        raise SignatureError("nonce must be 8 to 128 characters")
    expected = _mac(secret, _message(method, path, headers.timestamp, headers.nonce, body))
    if not hmac.compare_digest(expected, headers.signature):
        raise SignatureError("signature does not match this gateway's credential")


def _reply_message(path: str, request_nonce: str, status: int, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{REPLY_PURPOSE}\n{path}\n{request_nonce}\n{status}\n{digest}".encode()


def sign_reply(*, secret: str, path: str, request_nonce: str, status: int, body: bytes) -> str:
    """The signature dispatch puts on its answer to the request that carried ``request_nonce``."""
    return _mac(secret, _reply_message(path, request_nonce, status, body))


def verify_reply(
    signature: str | None,
    *,
    secret: str,
    path: str,
    request_nonce: str,
    status: int,
    body: bytes,
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is dispatch's on exactly this reply."""
    if not signature:
        raise SignatureError(f"the reply carries no {HEADER_REPLY_SIGNATURE} header")
    expected = sign_reply(
        secret=secret, path=path, request_nonce=request_nonce, status=status, body=body
    )
    # Compared as bytes: a header may carry any characters, and str comparison wants ASCII.
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        raise SignatureError(
            f"the reply's {HEADER_REPLY_SIGNATURE} does not match this gateway's credential"
        )


def parse_headers(headers: dict[str, str] | object) -> SignedHeaders:
    """Read the signature headers from a mapping (case-insensitive, such as Starlette's)."""
    get = getattr(headers, "get", None)
    if get is None:
        raise SignatureError("no headers")
    values = [get(h) for h in (HEADER_GATEWAY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)]
    missing = [
        h
        for h, v in zip(
            (HEADER_GATEWAY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE), values, strict=True
        )
        if not v
    ]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(values[1])
    except ValueError as exc:
        raise SignatureError(f"{HEADER_TIMESTAMP} must be an integer") from exc
    return SignedHeaders(str(values[0]), timestamp, str(values[2]), str(values[3]))
