"""The realtime ASGI app: WebSocket and Server-Sent Events streams, health, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from common.auth_events import AuthEvent
from common.http_errors import install_error_handlers
from common.keys import Keys
from common.redis_client import async_client
from common.request_id import RequestIdMiddleware, bind_request_id
from common.settings import Settings
from realtime.hub import Hub, Subscription
from realtime.metrics import CONTENT_TYPE, RealtimeMetrics
from realtime.relay import Relay
from realtime.service import RealtimeService
from realtime.sse import open_event_stream, open_presence_stream
from realtime.websocket import CLOSE_TIMEOUT_S, serve_presence_websocket, serve_websocket

__all__ = ["WS_PATH_PREFIX", "RealtimeApp", "create_app", "go_away"]

#: The WebSocket stream's path, followed by the command id.
WS_PATH_PREFIX = "/ws/responses/"

#: Seconds a readiness probe waits for Redis to answer.
READY_TIMEOUT_S = 1.0
#: Redis connections for authentication, authorization and log reads (Pub/Sub has its own).
REDIS_POOL_SIZE = 64
#: Seconds a caller waits for a pooled connection. A reconnect storm queues thousands
#: of handshakes behind the pool; each waits its turn rather than fail with 1013 and
#: come back later to do its handshake again. When Redis stops answering, the callers
#: holding connections fail within the socket timeout (5 s) and those queued behind
#: them within this; the token checks of open connections (refresh, the recheck after
#: a reconnect) have their own shorter bound (``realtime.revocation.CHECK_TIMEOUT_S``).
POOL_WAIT_S = 30.0


def create_app(settings: Settings) -> RealtimeApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A reconnect storm authenticates thousands of clients at once: wait for a pooled
        # connection rather than refuse them with 1013.
        client = async_client(
            settings.effective_redis_url,
            max_connections=REDIS_POOL_SIZE,
            pool_timeout_s=POOL_WAIT_S,
        )
        hub = Hub()
        service: RealtimeService

        async def resync(subscription: Subscription) -> None:
            await service.streams.resync(subscription)

        def on_auth_event(event: AuthEvent) -> None:
            service.on_auth_event(event)

        def on_reconnected() -> None:
            service.on_relay_reconnected()

        def on_presence_event(data: str) -> None:
            service.presence.on_event(data)

        keys = Keys(settings.key_prefix)
        relay = Relay(
            settings.effective_redis_url,
            hub,
            resync,
            auth_channel=keys.auth_events,
            on_auth_event=on_auth_event,
            on_reconnected=on_reconnected,
            presence_channel=keys.presence_events,
            on_presence_event=on_presence_event,
        )
        service = RealtimeService(settings, client, hub, relay, RealtimeMetrics())
        app.state.redis = client
        app.state.service = service
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()
            await client.aclose()

    app = FastAPI(title="SOVD realtime relay", version="0.1.0", lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        """Redis answers and the Pub/Sub connection is up."""
        service: RealtimeService = app.state.service
        try:
            redis_up = bool(await asyncio.wait_for(app.state.redis.ping(), READY_TIMEOUT_S))
        except Exception:
            redis_up = False
        ok = redis_up and service.relay.connected and not service.closing
        body = {
            "status": "ok" if ok else "unavailable",
            "redis": "up" if redis_up else "down",
            "pubsub": "up" if service.relay.connected else "down",
            "connections": len(service.connections),
            "subscriptions": len(service.hub),
            "channels": service.relay.channel_count(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        service: RealtimeService = app.state.service
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/api/v1/commands/{command_id}/events", tags=["events"], response_model=None)
    async def stream_command_events(
        request: Request,
        command_id: str,
        # Unbounded here: parse_position refuses anything but a position (invalid_position),
        # and the request head is bounded (realtime/http_guard.py).
        since: Annotated[str | None, Query()] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Server-Sent Events: the command's events after Last-Event-ID (or since), then live."""
        position = last_event_id if last_event_id is not None else since
        return await open_event_stream(app.state.service, request, command_id, position)

    @app.websocket("/ws/vehicles")
    async def ws_vehicles(websocket: WebSocket) -> None:
        """Follow every vehicle's presence: a snapshot, then each change (docs/protocol.md)."""
        await serve_presence_websocket(websocket, None, app.state.service)

    @app.websocket("/ws/vehicles/{vehicle_id}")
    async def ws_vehicle(websocket: WebSocket, vehicle_id: str) -> None:
        """Follow one vehicle's presence."""
        await serve_presence_websocket(websocket, vehicle_id, app.state.service)

    @app.get("/sse/vehicles", tags=["events"], response_model=None)
    async def sse_vehicles(request: Request) -> Response:
        """Server-Sent Events: every vehicle's presence, a snapshot then each change."""
        return await open_presence_stream(app.state.service, request, None)

    @app.get("/sse/vehicles/{vehicle_id}", tags=["events"], response_model=None)
    async def sse_vehicle(request: Request, vehicle_id: str) -> Response:
        """Server-Sent Events: one vehicle's presence."""
        return await open_presence_stream(app.state.service, request, vehicle_id)

    return RealtimeApp(app)


class RealtimeApp:
    """The process's ASGI app: the command stream on a plain route, the rest FastAPI
    (HTTP, SSE, the presence WebSockets, lifespan).

    A FastAPI WebSocket route keeps, for as long as each socket is open, its exit
    stacks, solved dependencies and exception-handling wrappers (about 8 KiB per
    connection, measured with tracemalloc). ``/ws/responses/{command_id}``, the stream
    most clients hold, is matched here and handed straight to ``serve_websocket``.
    """

    def __init__(self, http: FastAPI) -> None:
        self.http = http

    @property
    def state(self) -> State:
        return self.http.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "websocket" or not path.startswith(WS_PATH_PREFIX):
            await self.http(scope, receive, send)
            return
        command_id = path[len(WS_PATH_PREFIX) :]
        if not command_id or "/" in command_id:
            # No such route: a close before accept is HTTP 403, as Starlette's router does.
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        bind_request_id(scope)
        await serve_websocket(WebSocket(scope, receive, send), command_id, self.state.service)


async def go_away(app: object) -> None:
    """Close every client of a realtime app with 1001 after a short drain (on shutdown)."""
    state = getattr(app, "state", None)
    service = getattr(state, "service", None)
    if isinstance(service, RealtimeService):
        drain_s = service.settings.ws_shutdown_drain_s
        await service.go_away(drain_s=drain_s, timeout_s=drain_s + CLOSE_TIMEOUT_S)
