"""The API application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.console import install_console
from api.deps import client_info
from api.metrics import ApiMetrics, HttpMetrics, MetricsListener, metrics_endpoint
from api.middleware import BodySizeLimit, SecurityHeaders
from api.openapi import install_openapi
from api.routes import audit, auth, command_types, commands, health, vehicles
from api.state import AppState
from common.audit import AuditAction
from common.broker import build_broker
from common.errors import ForbiddenError
from common.fleet import seed_demo
from common.http_errors import error_response, install_error_handlers
from common.redis_client import async_client
from common.request_id import RequestIdMiddleware
from common.retention import RetentionSweeper
from common.settings import Settings

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings``; clients are opened in the lifespan, once per process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_client(settings.effective_redis_url)
        broker = build_broker(settings)
        state = AppState.build(settings, client, broker)
        app.state.sovd = state
        if settings.env == "dev" and settings.seed_demo:
            created = await seed_demo(client, state.keys)
            if created:
                log.info("demo_users_created", usernames=created)
        retention = RetentionSweeper(
            client,
            state.keys,
            retention_s=settings.command_retention_days * 86400,
            interval_s=settings.retention_sweep_interval_s,
        )
        retention.start()
        auth_events = asyncio.create_task(state.auth.run(), name="auth-events")
        try:
            yield
        finally:
            auth_events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await auth_events
            await retention.stop()
            broker.close()
            await client.aclose()

    app = FastAPI(
        title="SOVD remote diagnostics command service",
        version="0.1.0",
        summary="Submit diagnostic commands to vehicles and read their answers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_exception_handler(ForbiddenError, _audited_forbidden)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Location"],
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics, access_log=settings.access_log)
    app.add_middleware(MetricsListener, port=settings.api_metrics_port)
    app.add_middleware(RequestIdMiddleware)
    if settings.trusted_proxies:
        # Only these peers may say who the client is (X-Forwarded-For / -Proto).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    for router in (
        auth.router,
        vehicles.router,
        commands.router,
        command_types.router,
        audit.router,
        health.router,
    ):
        app.include_router(router)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_console(app)
    install_openapi(app)
    return app


async def _audited_forbidden(request: Request, exc: Exception) -> Response:
    """403s go to the audit trail (who tried what), then to the common error shape."""
    assert isinstance(exc, ForbiddenError)
    user = getattr(request.state, "user", None)
    state = request.app.state.sovd
    await state.audit.record(
        AuditAction.ACCESS_DENIED,
        outcome="denied",
        user_id=user.user_id if user else None,
        username=user.username if user else None,
        details={"method": request.method, "path": request.url.path, "reason": exc.message},
        **client_info(request),
    )
    return error_response(exc.status_code, exc.code, exc.message, exc.details)
