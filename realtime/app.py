"""The realtime ASGI app: ``/ws/responses/{command_id}?token=<jwt>`` and health checks."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.auth import authenticate_access_token
from common.command_store import CommandStore
from common.errors import AuthError
from common.eventlog import AsyncEventLog
from common.events import ClientMessage, ProtocolErrorEvent, SubscribedEvent, UnsubscribedEvent
from common.keys import Keys
from common.redis_client import async_client
from common.request_id import RequestIdMiddleware
from common.settings import Settings
from realtime.close_codes import CloseCode
from realtime.connection import ClientConnection
from realtime.hub import Hub, Subscription
from realtime.relay import Relay, RelayUnavailable
from realtime.service import RealtimeService

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


def _valid_command_id(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def create_app(settings: Settings) -> FastAPI:
    keys = Keys(settings.key_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_client(settings.effective_redis_url)
        hub = Hub()
        service: RealtimeService

        async def resync(subscription: Subscription) -> None:
            await service.resync(subscription)

        relay = Relay(settings.effective_redis_url, hub, resync)
        service = RealtimeService(
            hub,
            relay,
            AsyncEventLog(
                client, keys, maxlen=settings.event_log_maxlen, ttl_s=settings.event_log_ttl_s
            ),
            CommandStore(client, keys),
        )
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

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        """Redis answers and the Pub/Sub connection is up."""
        service: RealtimeService = app.state.service
        try:
            await app.state.redis.ping()
            redis_up = True
        except Exception:
            redis_up = False
        ok = redis_up and service.relay.connected
        body = {
            "status": "ok" if ok else "unavailable",
            "redis": "up" if redis_up else "down",
            "pubsub": "up" if service.relay.connected else "down",
            "subscriptions": len(service.hub),
            "channels": service.relay.channel_count(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.websocket("/ws/responses/{command_id}")
    async def ws_responses(websocket: WebSocket, command_id: str) -> None:
        """Stream one command's events (replay first, then live); see docs/protocol.md."""
        service: RealtimeService = app.state.service
        # Accept first: a close before accept reaches browsers only as 1006.
        await websocket.accept()
        token = websocket.query_params.get("token")
        if not token:
            await websocket.close(CloseCode.POLICY_VIOLATION, "Missing token")
            return
        try:
            user, _claims = await authenticate_access_token(settings, app.state.redis, keys, token)
        except AuthError as exc:
            await websocket.close(CloseCode.POLICY_VIOLATION, exc.message)
            return
        structlog.contextvars.bind_contextvars(user_id=user.user_id, command_id=command_id)
        connection = ClientConnection(websocket, user, max_queue=settings.ws_queue_max_events)
        try:
            since = int(websocket.query_params.get("since", "0"))
            if since < 0:
                raise ValueError
        except ValueError:
            await websocket.close(
                CloseCode.POLICY_VIOLATION, "since must be a non-negative integer"
            )
            return
        if not _valid_command_id(command_id) or not await service.can_view(connection, command_id):
            await websocket.close(CloseCode.COMMAND_NOT_FOUND, "Command not found")
            return
        writer = asyncio.create_task(connection.write_forever(), name="ws-writer")
        reader = asyncio.create_task(_read_client(service, connection), name="ws-reader")
        closer = asyncio.create_task(connection.close_requested.wait(), name="ws-closer")
        try:
            try:
                await service.subscribe(connection, command_id, since)
            except RelayUnavailable:
                connection.request_close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")
            log.info("ws_subscribed", since=since)
            done, _ = await asyncio.wait(
                {writer, reader, closer}, return_when=asyncio.FIRST_COMPLETED
            )
            if closer in done and websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close(connection.close_code, connection.close_reason)
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None and not isinstance(
                    failure, WebSocketDisconnect | RuntimeError
                ):
                    log.error("ws_task_failed", error=repr(failure))
        finally:
            for task in (writer, reader, closer):
                task.cancel()
            await service.unsubscribe_all(connection)
            log.info("ws_closed")

    return app


async def _read_client(service: RealtimeService, connection: ClientConnection) -> None:
    """Handle client actions until it disconnects; bad messages get an error event."""
    websocket = connection.websocket
    while True:
        text = await websocket.receive_text()
        try:
            message = ClientMessage.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "message"
            connection.push(
                ProtocolErrorEvent(
                    error_message=f"Invalid message: {where}: {first['msg']}",
                    error_code="invalid_message",
                ).model_dump_json(exclude_none=True)
            )
            continue
        await _act(service, connection, message)


async def _act(
    service: RealtimeService, connection: ClientConnection, message: ClientMessage
) -> None:
    if message.action == "ping":
        connection.push('{"event":"pong"}')
        return
    command_id = message.command_id
    if not command_id:
        connection.push(
            ProtocolErrorEvent(
                error_message=f"{message.action} needs command_id", error_code="invalid_message"
            ).model_dump_json(exclude_none=True)
        )
        return
    if message.action == "unsubscribe":
        await service.unsubscribe(connection, command_id)
        connection.push(UnsubscribedEvent(command_id=command_id).model_dump_json())
        return
    if not _valid_command_id(command_id) or not await service.can_view(connection, command_id):
        connection.push(
            ProtocolErrorEvent(
                command_id=command_id,
                error_message="Command not found",
                error_code="command_not_found",
            ).model_dump_json(exclude_none=True)
        )
        return
    # Acknowledge first so the client sees "subscribed" before the replayed events.
    connection.push(SubscribedEvent(command_id=command_id, since=message.since).model_dump_json())
    try:
        await service.subscribe(connection, command_id, message.since)
    except RelayUnavailable:
        connection.request_close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")
