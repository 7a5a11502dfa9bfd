"""Gateway endpoints: enroll (unsigned, with a one-time code), events and heartbeat (signed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

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
from dispatch.api.deps import ServicesDep
from dispatch.errors import BadRequest, Conflict, Unauthorized
from dispatch.models import EnrollReply, EnrollRequest
from dispatch.tx import transaction

__all__ = ["BODY_MODELS", "router"]

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/gateway", tags=["gateway"])
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
            return await gateways.enroll(
                tx,
                services.settings,
                services.secret_box,
                code=body.code,
                gateway_id=body.gateway_id,
                version=body.version,
            )
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
    """Store a batch of events (idempotent by event id) and report each one's incident."""
    body = await request.body()
    parsed = _parse(IngestBatch, body)
    alarms = not isinstance(parsed, BadRequest) and any(ev.kind.is_alarm for ev in parsed.events)
    async with transaction(services.db, feed=services.feed, urgent=alarms) as tx:
        gateway, secret = await gateways.authenticate(
            tx,
            services.secret_box,
            headers=request.headers,
            method=request.method,
            path=request.url.path,
            body=body,
        )
        if isinstance(parsed, BadRequest):
            raise parsed
        gateways.require_same_gateway(gateway, parsed.gateway_id)
        reply = await ingest.ingest_batch(tx, services.settings, gateway, parsed)
    return _signed_reply(request, secret, reply.model_dump_json())


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
    body = await request.body()
    assert services.heartbeats is not None, "the application's lifespan did not run"
    answer = await services.heartbeats.submit(
        headers=request.headers, path=request.url.path, body=body, parsed=_parse(Heartbeat, body)
    )
    reply = HeartbeatReply(
        server_time=datetime.now(UTC),
        acknowledged_events=answer.acknowledged_events,
        away_until=answer.away_until,
    )
    # away_until is left out when unset: a gateway older than the field refuses unknown fields.
    return _signed_reply(request, answer.secret, reply.model_dump_json(exclude_none=True))


def _signed_reply(request: Request, secret: str, content: str) -> Response:
    """The reply, signed with the gateway's secret for the request it answers: the gateway
    deletes events only on an acknowledgement that verifies."""
    body = content.encode()
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
