"""What went wrong with an enrolment, in the installer's words.

The dispatch client says whether dispatch refused, could not be reached or answered something
else; an installer needs to know which of their inputs to fix. A wrong URL (a 404, a web server
that is not dispatch), a TLS mismatch (https to a plain-HTTP port, an untrusted certificate)
and a gateway id dispatch enrolled under another name each get their own message and exit code.
:class:`AnswerWitness` keeps the status and content type of dispatch's answer, so a page that
is not dispatch's JSON is named by its type, not dumped.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from forwarder.client import (
    ENROLL_PATH,
    DispatchError,
    DispatchProtocolError,
    DispatchUnreachable,
    EnrollmentRefused,
    ssl_context,
)
from gatewayd.cli import EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["AnswerWitness", "Failure", "explain"]

_JSON_TYPES = ("application/json", "application/problem+json")
#: OpenSSL's certificate verification codes an installer can act on.
_UNTRUSTED = {18, 19, 20, 21}  # self-signed, self-signed in chain, unknown issuer (local, leaf)
_EXPIRED = 10
_WRONG_HOST = 62


@dataclass(frozen=True)
class Failure:
    message: str
    exit_code: int


class AnswerWitness(httpx.AsyncBaseTransport):
    """The HTTP transport of the enrolment, noting the status and content type of the answer."""

    def __init__(self, url: str, ca_file: Path | None) -> None:
        https = urlsplit(url).scheme == "https"
        self._inner = httpx.AsyncHTTPTransport(verify=ssl_context(ca_file) if https else True)
        self.status: int | None = None
        self.content_type: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.status = response.status_code
        self.content_type = response.headers.get("content-type")
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def answered_json(self) -> bool:
        media = (self.content_type or "").split(";")[0].strip().lower()
        return media in _JSON_TYPES


def explain(exc: DispatchError, url: str, gateway_id: str, witness: AnswerWitness) -> Failure:
    """The message and exit code for a failed enrolment (see the command's exit codes)."""
    endpoint = url.rstrip("/") + ENROLL_PATH
    if isinstance(exc, EnrollmentRefused):
        return _refused(exc, url, endpoint, gateway_id, witness)
    if isinstance(exc, DispatchProtocolError):
        return _not_the_reply(exc, url, gateway_id, witness)
    if isinstance(exc, DispatchUnreachable):
        tls = _ssl_error(exc)
        if tls is not None:
            return Failure(_tls(tls, url), EXIT_CONFIG)
        return Failure(
            f"dispatch at {url} is unreachable: {exc}; check the URL and the network "
            "and run the same command again",
            EXIT_UNREACHABLE,
        )
    return Failure(str(exc), EXIT_CONFIG)


def _refused(
    exc: EnrollmentRefused, url: str, endpoint: str, gateway_id: str, witness: AnswerWitness
) -> Failure:
    if exc.status in (404, 405):
        return Failure(
            f"no dispatch enrollment API at {endpoint} (HTTP {exc.status}): check the URL",
            EXIT_CONFIG,
        )
    if not witness.answered_json:
        return Failure(_not_dispatch(url, exc.status, witness), EXIT_CONFIG)
    said = exc.title + (f" ({exc.detail})" if exc.detail else "")
    if exc.status == 409:
        return Failure(
            f"dispatch refused gateway id {gateway_id!r}: {said}; enrol it with its own id "
            "(--gateway-id or [gateway] id) or ask dispatch to revoke the old one",
            EXIT_USAGE,
        )
    if exc.status in (401, 403):
        return Failure(
            f"dispatch refused the code: {said}; ask dispatch for a new code "
            "(`dispatchd enroll-code`)",
            EXIT_USAGE,
        )
    return Failure(f"dispatch refused the enrolment (HTTP {exc.status}): {said}", EXIT_USAGE)


def _not_the_reply(
    exc: DispatchProtocolError, url: str, gateway_id: str, witness: AnswerWitness
) -> Failure:
    if not witness.answered_json:
        return Failure(_not_dispatch(url, witness.status, witness), EXIT_CONFIG)
    text = str(exc)
    # The client's words for an enrolment under another id; nothing was saved.
    if text.startswith("dispatch enrolled gateway"):
        return Failure(
            f"gateway id mismatch: {text}; nothing was saved. Check the gateway id "
            f"(--gateway-id or [gateway] id, now {gateway_id!r}) and ask for a new code",
            EXIT_CONFIG,
        )
    return Failure(
        f"{url} answered, but not with dispatch's enrolment reply ({text}): check the URL",
        EXIT_CONFIG,
    )


def _not_dispatch(url: str, status: int | None, witness: AnswerWitness) -> str:
    kind = witness.content_type or "no content type"
    return (
        f"{url} is not a dispatch server: it answered HTTP {status or '?'} with {kind}, "
        "not JSON; check the URL"
    )


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls(error: ssl.SSLError, url: str) -> str:
    host = urlsplit(url).hostname or url
    start = f"TLS handshake with {host} failed: "
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code == _WRONG_HOST:
            return start + f"its certificate is not for {host} (check the host name in the URL)"
        if code == _EXPIRED:
            return start + "its certificate has expired (renew it on the dispatch server)"
        if code in _UNTRUSTED:
            return start + (
                f"its certificate is not trusted ({error.verify_message}); pass --ca-file "
                "with the CA that signed it (or set [dispatch] ca_file)"
            )
        return start + f"its certificate was refused ({error.verify_message})"
    reason = (error.reason or "").upper()
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return start + "the server does not speak TLS on this port (is the URL http?)"
    return start + f"{error.reason or error}"
