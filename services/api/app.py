"""The ASGI application: gateway (HTTP in) and API (HTTP out) in one process, wired here."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from services import archive
from services.api import alerts, customers, ops, ops_page, value
from services.api.openapi import with_components
from services.config import Settings, get_settings
from services.gateway import routes as gateway
from services.gateway.limits import BodySizeLimit
from services.kafka import producer


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        # a POST waits for its acknowledgement: lingering longer only adds to every answer
        app.state.producer = producer(settings, "touchstream-gateway", linger_ms=1)
        await app.state.producer.start()
        app.state.pool = AsyncConnectionPool(settings.database_url, min_size=2, max_size=10,
                                             open=False)
        await app.state.pool.open(wait=True)
        # as in the workers: start-up objects out of the collector's way, a larger first
        # generation (a batch of 500 events allocates tens of thousands of short-lived objects)
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            # the archive's reader, for reads as of a time: one connection, opened at the first
            with archive.recorder(settings.database_url) as app.state.archive:
                yield
        finally:
            await app.state.alert_hub.stop()
            await app.state.pool.close()
            await app.state.producer.stop()

    app = FastAPI(title="Touchstream", version="0.1.0", lifespan=lifespan,
                  description="Touchpoints in, customer profiles and contact history out.")
    app.include_router(gateway.router)
    app.include_router(value.router)  # before customers: /customers/{id}/value is more specific
    app.include_router(customers.router)
    app.include_router(alerts.router)
    alerts.setup(app, settings)
    app.include_router(ops.router)
    app.include_router(ops_page.router)
    app.openapi = with_components(app)  # type: ignore[method-assign]
    app.add_exception_handler(gateway.Rejected, gateway.rejected_handler)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
                   "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "errors": errors}, status_code=422)

    app.add_middleware(gateway.SingleEventDoor)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)  # outermost: added last
    return app
