"""Gateway endpoints: enroll (unsigned, with a one-time code), events and heartbeat (signed)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.signing import HEADER_NONCE, HEADER_REPLY_SIGNATURE, sign_reply
from contract.wire import (
    ContractError,
    Heartbeat,
    HeartbeatReply,
    IngestBatch,
    IngestReply,
    UnsupportedVersion,
    parse_message,
)
from dispatch import enrollment, gateways, ingest
from dispatch.api.deps import Services, ServicesDep
from dispatch.errors import BadRequest, Conflict, Unauthorized
from dispatch.models import EnrollReply, EnrollRequest
from dispatch.timing import Stages
from dispatch.tx import transaction

__all__ = ["BODY_MODELS", "HEARTBEAT_PATH", "HeartbeatFastPath", "router"]

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/gateway", tags=["gateway"])
HEARTBEAT_PATH = "/api/v1/gateway/heartbeat"
M = TypeVar("M", bound=BaseModel)

#: Models whose schemas the OpenAPI document must carry (bodies are parsed by hand, after the
#: signature check, so FastAPI cannot discover them).
BODY_MODELS: tuple[type[BaseModel], ...] = (IngestBatch, Heartbeat)

_SIGNED = (
    "Signed request: headers X-Gateway-Id, X-Gateway-Timestamp, X-Gateway-Nonce and "
    "X-Gateway-Signature (HMAC-SHA256 over method, path, timestamp, nonce and the body's "
    "SHA-256, with the secret from enrollment). The 200 reply carries X-Dispatch-Signature: "
    "HMAC-SHA256 with the same secret over DISPATCH-REPLY/1, the path, the request's nonce, the "
    "status and the reply body's SHA-256."
)
_GATEWAY_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            HEADER_REPLY_SIGNATURE: {
                "description": "dispatch's signature over this reply (see the description)",
                "schema": {"type": "string"},
                "required": True,
            }
        }
    },
    401: {"description": "unsigned, unknown gateway, bad signature or stale timestamp"},
    403: {"description": "revoked gateway, or a body naming another gateway"},
    409: {"description": "replayed nonce"},
    413: {"description": "body too large"},
    422: {"description": "body does not satisfy the contract"},
}


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def _parse(model: type[M], body: bytes) -> M | BadRequest:
    try:
        return parse_message(model, body)
    except UnsupportedVersion as exc:
        return BadRequest("unsupported contract version", detail=str(exc), status=422)
    except ContractError as exc:
        return BadRequest(f"invalid {model.__name__}", detail=str(exc)[:2000], status=422)


@router.post(
    "/enroll",
    response_model=EnrollReply,
    responses={
        401: {"description": "unknown, used or expired code"},
        409: {
            "description": "the gateway id is enrolled to another household, or enrolled "
            "already without a supervisor's permission to enroll it again"
        },
        429: {"description": "too many failed enrollments from this address or with this code"},
    },
)
async def enroll(request: Request, body: EnrollRequest, services: ServicesDep) -> EnrollReply:
    """Exchange a one-time enrollment code for the gateway's signing secret (unsigned).

    An existing gateway id (revoked or not) is enrolled again, with a new secret, only after a
    supervisor allowed it (POST /api/v1/gateways/{id}/allow-reenroll). Failures are audited and
    throttled per address and per code.
    """
    address = request.client.host if request.client else "unknown"
    code_hash = gateways.hash_code(body.code)
    async with transaction(services.db, feed=services.feed) as tx:
        await enrollment.check_throttle(tx, services.settings, address=address, code_hash=code_hash)
    try:
        async with transaction(services.db, feed=services.feed) as tx:
            reply = await gateways.enroll(
                tx,
                services.settings,
                services.secret_box,
                code=body.code,
                gateway_id=body.gateway_id,
                version=body.version,
            )
        services.forget_gateway(body.gateway_id)  # re-enrolled: the old secret is dead here
        return reply
    except (Unauthorized, Conflict) as refused:
        # Counted and audited in a transaction of its own: the refused one rolled back.
        async with transaction(services.db, feed=services.feed) as tx:
            await enrollment.record_failure(
                tx,
                address=address,
                code_hash=code_hash,
                gateway_id=body.gateway_id,
                reason=refused.title,
            )
        raise


@router.post(
    "/events",
    response_model=IngestReply,
    openapi_extra=_body_doc(IngestBatch),
    responses=_GATEWAY_ERRORS,
    description=_SIGNED,
)
async def events(request: Request, services: ServicesDep) -> Response:
    """Store a batch of events (idempotent by event id) and report each one's incident.

    The reply's ``Server-Timing`` header says where the request's time went: parse, lock
    (waiting for the write transaction), auth, ingest (dedupe, routing, the rows), changes (the
    live stream's rows), commit, reply."""
    stages = Stages()
    body = await request.body()
    parsed = _parse(IngestBatch, body)
    stages.mark("parse")
    alarms = not isinstance(parsed, BadRequest) and any(ev.kind.is_alarm for ev in parsed.events)
    async with transaction(services.db, feed=services.feed, urgent=alarms) as tx:
        stages.mark("lock")
        gateway, secret = await gateways.authenticate(
            tx,
            services.secret_box,
            headers=request.headers,
            method=request.method,
            path=request.url.path,
            body=body,
            cache=services.gateway_cache,
        )
        stages.mark("auth")
        if isinstance(parsed, BadRequest):
            raise parsed
        gateways.require_same_gateway(gateway, parsed.gateway_id)
        ingested = await ingest.ingest_events(tx, services.settings, gateway, parsed)
        stages.mark("ingest")
        await tx.flush()
        stages.mark("changes")
    stages.mark("commit")
    if alarms:
        # The live streams were woken by the commit: one turn of the loop lets them send the
        # alarm to the operators before this reply is made.
        await asyncio.sleep(0)
    response = _signed_reply(request, secret, ingested.reply_json())
    stages.mark("reply")
    response.headers["Server-Timing"] = stages.header()
    return response


@router.post(
    "/heartbeat",
    response_model=HeartbeatReply,
    openapi_extra=_body_doc(Heartbeat),
    responses=_GATEWAY_ERRORS,
    description=_SIGNED,
)
async def heartbeat(request: Request, services: ServicesDep) -> Response:
    """Record the gateway's health; answer with the alarms dispatch has acknowledged and, while
    the household is away or in hospital, until when (``away_until``)."""
    # Served by HeartbeatFastPath ahead of the router; this route documents it (and serves
    # it should the fast path not be installed).
    body, headers = await heartbeat_reply(
        services, request.headers, request.url.path, await request.body()
    )
    return Response(body, media_type="application/json", headers=headers)


async def heartbeat_reply(
    services: Services, headers: Mapping[str, str], path: str, body: bytes
) -> tuple[bytes, dict[str, str]]:
    """The signed reply to one heartbeat (its body and signature header), or its Problem."""
    assert services.heartbeats is not None, "the application's lifespan did not run"
    answer = await services.heartbeats.submit(
        headers=headers, path=path, body=body, parsed=_parse(Heartbeat, body)
    )
    reply = HeartbeatReply(
        server_time=datetime.now(UTC),
        acknowledged_events=answer.acknowledged_events,
        away_until=answer.away_until,
    )
    # away_until is left out when unset: a gateway older than the field refuses unknown fields.
    content = reply.model_dump_json(exclude_none=True).encode()
    signature = sign_reply(
        secret=answer.secret,
        path=path,
        request_nonce=headers[HEADER_NONCE],
        status=200,
        body=content,
    )
    return content, {HEADER_REPLY_SIGNATURE: signature}


class HeartbeatFastPath:
    """Heartbeats straight to their handler, past the router and its dependency machinery.

    Thousands of gateways heartbeat every 30 s, each request the same few microseconds of work:
    the framework around it was most of its cost. Installed inside the body limit and the
    security headers; errors answer through the application's own problem handlers, so a
    heartbeat's answers are the documented route's, byte for byte."""

    def __init__(self, app: ASGIApp, *, services: Services, fastapi: Any) -> None:
        self.app = app
        self.services = services
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != HEARTBEAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = Headers(scope=scope)
        response: Response
        try:
            content, extra = await heartbeat_reply(self.services, headers, HEARTBEAT_PATH, body)
        except Exception as exc:
            response = await self._problem(scope, exc)
        else:
            response = Response(content, media_type="application/json", headers=extra)
        await response(scope, receive, send)

    async def _problem(self, scope: Scope, exc: Exception) -> Response:
        handlers = self.fastapi.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                answer: Response = await handlers[cls](Request(scope), exc)
                return answer
        raise exc


def _signed_reply(request: Request, secret: str, body: bytes) -> Response:
    """The reply, signed with the gateway's secret for the request it answers: the gateway
    deletes events only on an acknowledgement that verifies."""
    signature = sign_reply(
        secret=secret,
        path=request.url.path,
        request_nonce=request.headers[HEADER_NONCE],
        status=200,
        body=body,
    )
    return Response(
        body, media_type="application/json", headers={HEADER_REPLY_SIGNATURE: signature}
    )
