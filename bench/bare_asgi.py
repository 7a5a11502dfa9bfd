"""The limit for dispatch's heartbeat request path: a bare ASGI application under the same server.

It reads the request body and answers with a reply the size and shape of dispatch's signed
heartbeat reply (JSON body, ``X-Dispatch-Signature`` header), doing nothing else: what uvicorn,
the event loop and the load generator cost per request. ``python -m bench.bare_asgi --port N``
serves it the way ``dispatchd serve`` serves dispatch (uvicorn, same event loop and HTTP parser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from contract.signing import HEADER_REPLY_SIGNATURE

__all__ = ["app"]

_BODY = json.dumps(
    {"server_time": datetime.now(UTC).isoformat(), "acknowledged_events": []}
).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (HEADER_REPLY_SIGNATURE.lower().encode(), b"0" * 64),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
    )
    # As dispatchd serves: uvicorn's server inside asyncio.run.
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
