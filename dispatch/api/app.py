"""The FastAPI application: routers, problem handlers, body limits, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from dispatch import __version__, operators, stream
from dispatch.api import gateway, operator
from dispatch.api import stream as stream_api
from dispatch.api.browser_security import BrowserSecurityMiddleware
from dispatch.api.deps import Services
from dispatch.api.openapi import document_problems
from dispatch.api.problems import BodyLimitMiddleware, install_problem_handlers
from dispatch.api.slow_requests import SlowRequestLog
from dispatch.console import mount_console
from dispatch.db import Database
from dispatch.dc09.server import start_dc09
from dispatch.errors import StorageError
from dispatch.gateway_cache import GatewayCache
from dispatch.heartbeats import HeartbeatBatcher
from dispatch.jt808.server import Jt808Server
from dispatch.sealing import load_secret_box, seal_plaintext_secrets
from dispatch.settings import Settings, tile_origin
from dispatch.supervision import Supervisor

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


class Health(BaseModel):
    status: str
    version: str
    database: str


def create_app(db: Database, settings: Settings, *, supervise: bool = True) -> FastAPI:
    """The application over an already migrated database."""
    services = Services(db=db, settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.stopping.clear()
        operators.warm_up()
        services.box = await load_secret_box(db, settings)
        await seal_plaintext_secrets(db, services.box)
        services.gateway_cache = GatewayCache(services.box)
        services.heartbeats = HeartbeatBatcher(db, settings, services.feed, services.gateway_cache)
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(services.heartbeats.run())]
        if supervise:
            supervisor = Supervisor(db, settings, services.feed, heartbeats=services.heartbeats)
            tasks.append(asyncio.create_task(supervisor.run()))
        receiver = services.dc09 = await start_dc09(db, settings, services.feed)
        if not db.is_sqlite:
            conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            tasks.append(
                asyncio.create_task(
                    stream.listen_postgres(conninfo, services.feed, services.stopping)
                )
            )
        if settings.jt808_port:
            services.jt808 = Jt808Server(db, settings, services.feed)
            await services.jt808.start(settings.jt808_host, settings.jt808_port)
        try:
            yield
        finally:
            if services.jt808 is not None:
                await services.jt808.close()
            services.stopping.set()
            services.feed.wake()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # What was answered is written before the database closes.
            with contextlib.suppress(StorageError):
                await services.heartbeats.flush()
            if receiver is not None:
                await receiver.aclose()
            await db.dispose()

    app = FastAPI(
        title="dispatchd",
        version=__version__,
        description="The dispatch centre: gateway ingest, incidents, operators, live stream.",
        lifespan=lifespan,
        # FastAPI's docs pages load their code from a public CDN: a centre's LAN may have no
        # Internet, and the console's pages run no foreign code. The document is /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_problem_handlers(app)
    # Innermost of ours: inside the body limit and the security headers.
    app.add_middleware(gateway.HeartbeatFastPath, services=services, fastapi=app)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        limits={"/api/v1/gateway/events": settings.max_ingest_bytes},
    )
    # Outermost but the timing: its headers go on every answer, the body limit's refusals too.
    tiles = tile_origin(settings.map_tile_url_template)
    app.add_middleware(
        BrowserSecurityMiddleware,
        trust_forwarded_host=settings.trust_proxy_headers,
        image_sources=(tiles,) if tiles else (),
    )
    app.add_middleware(SlowRequestLog, threshold_s=settings.slow_request_s)
    app.include_router(gateway.router)
    app.include_router(operator.router)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Readiness: the database answers."""
        try:
            await db.check()
        except StorageError as exc:
            from dispatch.errors import Problem

            raise Problem("database unavailable", detail=str(exc), status=503) from exc
        return Health(status="ok", version=__version__, database=db.dialect)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (*gateway.BODY_MODELS, *stream_api.CHANGE_MODELS):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in model_schema.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components[model.__name__] = model_schema
        document_problems(doc, app.routes)
        app.openapi_schema = doc
        return doc

    app.openapi = custom_openapi  # type: ignore[method-assign]
    # The operator console: the page at / and its assets under /console/.
    mount_console(app)
    return app
