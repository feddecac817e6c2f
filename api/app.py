"""The API application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from redis.exceptions import RedisError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.console import install_console
from api.deps import client_info
from api.docs_ui import install_docs
from api.metrics import ApiMetrics, HttpMetrics, MetricsListener, metrics_endpoint
from api.middleware import BodySizeLimit, SecurityHeaders
from api.openapi import install_openapi
from api.presence import PresenceDuties
from api.routes import audit, auth, command_types, commands, health, vehicles
from api.state import AppState
from common.audit import AuditAction
from common.audit import backfill_indexes as backfill_audit_indexes
from common.broker import build_broker
from common.errors import ForbiddenError
from common.fleet import seed_demo
from common.history import backfill_indexes
from common.http_errors import error_response, install_error_handlers
from common.keys import Keys
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
        backfill = asyncio.create_task(
            _backfill_indexes(client, state.keys, settings), name="backfill"
        )
        presence = PresenceDuties(settings, state.presence, state.vehicles)
        await presence.start()
        await _announce_fleet(state)
        auth_events = asyncio.create_task(state.auth.run(), name="auth-events")
        try:
            yield
        finally:
            for task in (auth_events, backfill):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await retention.stop()
            await presence.stop()
            broker.close()
            await client.aclose()

    app = FastAPI(
        title="SOVD remote diagnostics command service",
        version="0.1.0",
        summary="Submit diagnostic commands to vehicles and read their answers.",
        lifespan=lifespan,
        docs_url=None,  # api/docs_ui.py serves Swagger UI without a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_exception_handler(ForbiddenError, _audited_forbidden)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
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
    install_console(app, realtime_url=settings.effective_realtime_url)
    install_openapi(app)
    install_docs(app)
    return app


async def _announce_fleet(state: AppState) -> None:
    """Say at start when the fleet is empty, and how to fill it."""
    if await state.vehicles.count() == 0:
        log.warning(
            "fleet_empty",
            hint="register vehicles with POST /api/v1/vehicles (admin) or "
            "`sovd-admin import-fleet FILE`; see docs/vehicles.md",
        )


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


async def _backfill_indexes(client: Any, keys: Keys, settings: Settings) -> None:
    """Index commands and audit entries stored by an earlier version (once per store);
    Redis away: at the next start."""
    try:
        commands = await backfill_indexes(client, keys)
        entries = await backfill_audit_indexes(client, keys, settings)
    except (OSError, RedisError) as exc:
        log.warning("index_backfill_failed", error=repr(exc))
        return
    if commands is not None or entries is not None:
        log.info("indexes_backfilled", commands=commands, audit_entries=entries)
