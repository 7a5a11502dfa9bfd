"""The gateway's HTTP client for dispatch, and the gateway's credential.

Every request but enrolment is signed with :mod:`contract.signing` (gateway id, timestamp, nonce,
HMAC-SHA256 over method, path, timestamp, nonce and body hash). HTTPS may use a private CA
(``ca_file``). Every request has connect, read, write and pool timeouts and an overall deadline.

Errors::

    DispatchError
    ├── DispatchUnreachable       no answer we can use: connect error, timeout, 5xx, 408, 429
    │   └── DispatchProtocolError a 2xx whose body is not the contract's reply
    │       └── ReplyNotAuthentic a 2xx without dispatch's valid signature (forged or altered)
    └── DispatchRejected          a 4xx: dispatch understood and refused (title, detail, status)
        ├── DispatchAuthRejected  401/403: the credential is refused or the gateway revoked
        └── EnrollmentRefused     the enrolment code is unknown, used or expired

Unreachable is retried with back-off; rejected is not retried as is. A reply to a signed request
counts only if it carries dispatch's signature over it (:func:`contract.signing.verify_reply`):
anything else that answers on the network cannot make the gateway delete an event.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel

from contract import __version__
from contract.home import INSECURE_FLAG, INSECURE_KEY, insecure_url_problem
from contract.signing import HEADER_REPLY_SIGNATURE, SignatureError, sign_request, verify_reply
from contract.wire import (
    ContractError,
    Heartbeat,
    HeartbeatReply,
    IngestBatch,
    IngestReply,
    parse_message,
)
from runtime import files

__all__ = [
    "CREDENTIAL_FILE",
    "Credential",
    "CredentialError",
    "DispatchAuthRejected",
    "DispatchClient",
    "DispatchError",
    "DispatchProtocolError",
    "DispatchRejected",
    "DispatchUnreachable",
    "EnrollmentRefused",
    "InsecureDispatchURL",
    "ReplyNotAuthentic",
]

log = structlog.get_logger(__name__)

#: Clock disagreement with dispatch tolerated before signing with dispatch's time instead;
#: well inside the server's window (contract.signing.MAX_SKEW_S) and above Date's 1 s resolution.
CLOCK_TOLERANCE_S: Final = 60.0
M = TypeVar("M", bound=BaseModel)

ENROLL_PATH: Final = "/api/v1/gateway/enroll"
EVENTS_PATH: Final = "/api/v1/gateway/events"
HEARTBEAT_PATH: Final = "/api/v1/gateway/heartbeat"
#: The credential's file name inside the gateway's state folder.
CREDENTIAL_FILE: Final = "credential.json"
_USER_AGENT: Final = f"gatewayd/{__version__}"


class DispatchError(Exception):
    """Talking to dispatch did not work."""


class DispatchUnreachable(DispatchError):
    """No usable answer (network, timeout, 5xx): try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DispatchProtocolError(DispatchUnreachable):
    """Dispatch answered 2xx with a body that is not the contract's reply."""


class ReplyNotAuthentic(DispatchProtocolError):
    """A 2xx reply that dispatch did not sign for this request: nothing in it is believed."""


class DispatchRejected(DispatchError):
    """Dispatch refused the request (4xx); ``title`` and ``detail`` are from its problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(
            f"dispatch refused ({status}): {title}" + (f": {detail}" if detail else "")
        )


class DispatchAuthRejected(DispatchRejected):
    """The credential was refused (401) or the gateway is revoked or forbidden (403)."""


class EnrollmentRefused(DispatchRejected):
    """The enrolment code is unknown, already used or expired."""


class InsecureDispatchURL(DispatchError):
    """A plain http:// dispatch URL without the explicit permission to use one."""


class CredentialError(Exception):
    """The credential file is missing, unreadable or incomplete."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What enrolment gives a gateway: who it is and the secret it signs requests with."""

    gateway_id: str
    household_id: str
    secret: str = field(repr=False)
    dispatch_url: str

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (temp file, fsync, rename, fsync the folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {
                "gateway_id": self.gateway_id,
                "household_id": self.household_id,
                "secret": self.secret,
                "dispatch_url": self.dispatch_url,
            },
            indent=2,
        ).encode()
        files.write_atomically(path, data, mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Credential:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CredentialError(
                f"{path}: no credential; enrol this gateway with `gatewayd enroll`"
            ) from exc
        except (OSError, ValueError) as exc:
            raise CredentialError(f"{path}: cannot read the credential: {exc}") from exc
        if not isinstance(data, dict):
            raise CredentialError(f"{path}: the credential must be a JSON object")
        missing = [
            k
            for k in ("gateway_id", "household_id", "secret", "dispatch_url")
            if not isinstance(data.get(k), str) or (k != "household_id" and not data.get(k))
        ]
        if missing:
            raise CredentialError(f"{path}: the credential lacks {', '.join(missing)}")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("credential_permissions_open", path=str(path), mode=oct(mode))
        return cls(
            gateway_id=data["gateway_id"],
            household_id=data["household_id"],
            secret=data["secret"],
            dispatch_url=data["dispatch_url"],
        )


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify dispatch against ``ca_file`` when given (a private CA), else the system store."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise DispatchError(f"cannot load the dispatch CA file {ca_file}: {exc}") from exc
    return context


def _make_http(
    url: str,
    *,
    ca_file: Path | None,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    insecure_http: bool,
) -> httpx.AsyncClient:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DispatchError(f"dispatch URL must be http(s)://host[:port][/prefix], got {url!r}")
    problem = insecure_url_problem(
        url, allowed=insecure_http, option=f"{INSECURE_FLAG} (or {INSECURE_KEY})"
    )
    if problem:
        raise InsecureDispatchURL(problem)
    return httpx.AsyncClient(
        base_url=url.rstrip("/"),
        timeout=httpx.Timeout(timeout),
        verify=ssl_context(ca_file) if parts.scheme == "https" else True,
        transport=transport,
        headers={"User-Agent": _USER_AGENT},
        follow_redirects=False,
    )


class DispatchClient:
    """Signed, timed-out requests to one dispatch server. Close with :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        *,
        credential: Credential,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        insecure_http: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self._http = _make_http(
            url, ca_file=ca_file, timeout=timeout, transport=transport, insecure_http=insecure_http
        )
        self._prefix = urlsplit(self.url).path.rstrip("/")
        #: Dispatch's clock minus ours, learnt from its ``Date`` header once they disagree by
        #: more than :data:`CLOCK_TOLERANCE_S`: a gateway that boots with a wrong clock (no
        #: battery-backed RTC, no NTP yet) must still deliver its alarms.
        self.clock_offset_s = 0.0

    async def send_events(self, batch: IngestBatch) -> IngestReply:
        return await self._post(EVENTS_PATH, batch, IngestReply)

    async def send_heartbeat(self, heartbeat: Heartbeat) -> HeartbeatReply:
        return await self._post(HEARTBEAT_PATH, heartbeat, HeartbeatReply)

    async def _post(self, path: str, message: BaseModel, reply: type[M]) -> M:
        body = message.model_dump_json().encode()
        response, nonce = await self._signed_post(path, body)
        if response.status_code == 401 and self._learn_clock(response):
            # Refused for clock skew: sign again with dispatch's time (the nonce is new).
            response, nonce = await self._signed_post(path, body)
        else:
            self._learn_clock(response)
        parsed = _reply(response, reply)
        try:
            verify_reply(
                response.headers.get(HEADER_REPLY_SIGNATURE),
                secret=self.credential.secret,
                path=self._prefix + path,
                request_nonce=nonce,
                status=response.status_code,
                body=response.content,
            )
        except SignatureError as exc:
            raise ReplyNotAuthentic(
                f"dispatch's {reply.__name__} at {self.url}{path} is not authentic: {exc}; "
                "nothing in it is believed (events are kept and sent again)"
            ) from exc
        return parsed

    async def _signed_post(self, path: str, body: bytes) -> tuple[httpx.Response, str]:
        signed = sign_request(
            gateway_id=self.credential.gateway_id,
            secret=self.credential.secret,
            method="POST",
            path=self._prefix + path,
            body=body,
            now=time.time() + self.clock_offset_s,
        )
        headers = {"Content-Type": "application/json", **signed.as_dict()}
        return await _request(self._http, path, body, headers, self.timeout), signed.nonce

    def _learn_clock(self, response: httpx.Response) -> bool:
        """Update the clock offset from the reply's Date header; True if it changed."""
        try:
            server = parsedate_to_datetime(response.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return False
        offset = server - time.time()
        new = offset if abs(offset) > CLOCK_TOLERANCE_S else 0.0
        if abs(new - self.clock_offset_s) <= CLOCK_TOLERANCE_S:
            return False
        log.warning("gateway_clock_off", offset_s=round(offset, 1), signing_with="dispatch time")
        self.clock_offset_s = new
        return True

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> DispatchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    async def enroll(
        cls,
        url: str,
        *,
        code: str,
        gateway_id: str,
        ca_file: Path | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 -- passed on to httpx's per-phase timeouts
        transport: httpx.AsyncBaseTransport | None = None,
        insecure_http: bool = False,
    ) -> Credential:
        """Exchange a one-time enrolment code for this gateway's credential."""
        body = json.dumps({"code": code, "gateway_id": gateway_id, "version": __version__})
        http_client = _make_http(
            url, ca_file=ca_file, timeout=timeout, transport=transport, insecure_http=insecure_http
        )
        async with http_client as http:
            response = await _request(
                http, ENROLL_PATH, body.encode(), {"Content-Type": "application/json"}, timeout
            )
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            title, detail = _problem(response)
            raise EnrollmentRefused(response.status_code, title, detail)
        data = _json_object(response)
        try:
            credential = Credential(
                gateway_id=str(data["gateway_id"]),
                household_id=str(data.get("household_id") or ""),
                secret=str(data["secret"]),
                dispatch_url=url.rstrip("/"),
            )
        except KeyError as exc:
            raise DispatchProtocolError(f"enrolment reply lacks {exc.args[0]!r}") from exc
        if not credential.secret:
            raise DispatchProtocolError("enrolment reply has an empty secret")
        if credential.gateway_id != gateway_id:
            raise DispatchProtocolError(
                f"dispatch enrolled gateway {credential.gateway_id!r}, not {gateway_id!r}"
            )
        return credential


async def _request(
    http: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str], phase_s: float
) -> httpx.Response:
    timeout = phase_s
    try:
        # httpx times each phase; this bounds the whole exchange as well.
        async with asyncio.timeout(timeout * 3):
            response = await http.post(path, content=body, headers=headers)
    except TimeoutError as exc:
        raise DispatchUnreachable(f"dispatch did not answer within {timeout * 3:.0f} s") from exc
    except httpx.TimeoutException as exc:
        raise DispatchUnreachable(f"dispatch timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise DispatchUnreachable(f"cannot reach dispatch: {exc!r}") from exc
    except ssl.SSLError as exc:
        raise DispatchUnreachable(f"TLS with dispatch failed: {exc}") from exc
    status = response.status_code
    if status >= 500 or status in (408, 429):
        title, detail = _problem(response)
        raise DispatchUnreachable(
            f"dispatch answered {status}: {title}" + (f": {detail}" if detail else ""),
            retry_after=_retry_after(response),
        )
    if 300 <= status < 400:
        raise DispatchUnreachable(
            f"dispatch answered {status} (redirect to {response.headers.get('location')!r}); "
            "check the dispatch URL"
        )
    return response


def _reply(response: httpx.Response, model: type[M]) -> M:
    status = response.status_code
    if status in (401, 403):
        title, detail = _problem(response)
        raise DispatchAuthRejected(status, title, detail)
    if 400 <= status < 500:
        title, detail = _problem(response)
        raise DispatchRejected(status, title, detail)
    try:
        return parse_message(model, response.content)
    except ContractError as exc:
        raise DispatchProtocolError(
            f"dispatch's reply is not a {model.__name__}: {str(exc)[:300]}"
        ) from exc


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise DispatchProtocolError(f"dispatch's reply is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DispatchProtocolError("dispatch's reply is not a JSON object")
    return data


def _problem(response: httpx.Response) -> tuple[str, str | None]:
    """Title and detail of a problem+json body, or the status line if there is none."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        title = data.get("title") or data.get("detail") or response.reason_phrase
        detail = data.get("detail") if data.get("title") else None
        return str(title), (str(detail) if detail is not None else None)
    text = response.text.strip()[:200]
    return (response.reason_phrase or f"HTTP {response.status_code}"), (text or None)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
