"""The API application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.routes import auth, command_types, commands, health, vehicles
from api.state import AppState
from common.broker import build_broker
from common.fleet import seed_demo
from common.http_errors import install_error_handlers
from common.redis_client import async_client
from common.request_id import RequestIdMiddleware
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
        try:
            yield
        finally:
            broker.close()
            await client.aclose()

    app = FastAPI(
        title="SOVD remote diagnostics command service",
        version="0.1.0",
        summary="Submit diagnostic commands to vehicles and read their answers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Location"],
        )
    app.add_middleware(RequestIdMiddleware)
    for router in (
        auth.router,
        vehicles.router,
        commands.router,
        command_types.router,
        health.router,
    ):
        app.include_router(router)
    return app
