"""The WebSocket transport: ``/ws/responses/{command_id}`` and the presence streams
``/ws/vehicles[/{vehicle_id}]``. I/O only; rules live elsewhere.

Handshake: accept first (a close before accept reaches browsers only as 1006), then
``RealtimeService.admit`` (a ``Refusal`` becomes the close code and reason), subscribe. After
that two tasks run per client: the handshake's own task drains the queue and sends
the close, a reader handles client actions; a loop timer closes the connection when
its token expires (``Connection.watch_expiry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

from common.events import ClientMessage, SubscribedEvent, UnsubscribedEvent
from common.protocol import BEARER_PREFIX, SUBPROTOCOL, CloseCode
from realtime.connection import Connection
from realtime.flag import wait_any
from realtime.limits import TokenBucket
from realtime.refusals import Refusal
from realtime.service import RealtimeService
from realtime.subscriptions import protocol_error
from realtime.ws_protocol import writable_flag

__all__ = [
    "BEARER_PREFIX",
    "SUBPROTOCOL",
    "credentials",
    "serve_presence_websocket",
    "serve_websocket",
]

log = structlog.get_logger(__name__)

#: Seconds to wait for a client to take our close frame before giving up on it.
CLOSE_TIMEOUT_S = 5.0


def credentials(query_token: str | None, offered: Sequence[str]) -> tuple[str | None, str | None]:
    """The token (query parameter first, else a ``bearer.`` subprotocol) and the
    subprotocol to accept (``SUBPROTOCOL`` when the client offered it)."""
    token = query_token or next(
        (p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)), None
    )
    return token or None, SUBPROTOCOL if SUBPROTOCOL in offered else None


async def _refuse(websocket: WebSocket, service: RealtimeService, refusal: Refusal) -> None:
    service.record_close(refusal.close_code)
    # A client that left while it was being admitted has nobody to take the close.
    with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):
        await websocket.close(refusal.close_code, refusal.message)


async def serve_websocket(websocket: WebSocket, command_id: str, service: RealtimeService) -> None:
    """Stream one command's events (replay first, then live); see docs/protocol.md."""

    async def admit(token: str | None) -> tuple[Connection, Coroutine[Any, Any, None]]:
        connection, since = await service.admit(
            token=token,
            command_id=command_id,
            since=websocket.query_params.get("since"),
            transport="websocket",
        )
        return connection, service.streams.follow(connection, connection.primary_command_id, since)

    await _serve(websocket, service, admit, command_id=command_id)


async def serve_presence_websocket(
    websocket: WebSocket, vehicle_id: str | None, service: RealtimeService
) -> None:
    """Follow the presence of every vehicle (or one): a snapshot, then each change. The
    client actions are those of a command stream (ping, refresh, subscribe...)."""

    async def admit(token: str | None) -> tuple[Connection, Coroutine[Any, Any, None]]:
        connection = await service.admit_presence(
            token=token, vehicle_id=vehicle_id, transport="websocket"
        )
        return connection, service.presence.follow(connection, vehicle_id)

    await _serve(websocket, service, admit, vehicle_id=vehicle_id or "*")


async def _serve(
    websocket: WebSocket,
    service: RealtimeService,
    admit: Callable[[str | None], Awaitable[tuple[Connection, Coroutine[Any, Any, None]]]],
    **context: str,
) -> None:
    """One WebSocket stream: accept, ``admit`` with the client's token (a refusal is
    rendered as its close code), then run the connection with the ``follow`` coroutine
    ``admit`` returned, and close it. ``context`` is bound to the connection's logs."""
    token, subprotocol = credentials(
        websocket.query_params.get("token"), websocket.scope.get("subprotocols", [])
    )
    await websocket.accept(subprotocol=subprotocol)
    try:
        connection, follow = await admit(token)
    except Refusal as refusal:
        await _refuse(websocket, service, refusal)
        return
    except Exception:
        log.exception("ws_admission_failed")
        await _refuse(websocket, service, Refusal.internal())
        return
    structlog.contextvars.bind_contextvars(
        user_id=connection.user.user_id, connection_id=connection.connection_id, **context
    )
    try:
        await _run(websocket, service, connection, follow)
    finally:
        service.close_connection(connection)
        log.info("ws_closed", code=int(connection.close_code))


async def _run(
    websocket: WebSocket,
    service: RealtimeService,
    connection: Connection,
    follow: Coroutine[Any, Any, None],
) -> None:
    """Two tasks per client: this one writes (and closes), a reader handles client
    actions; the token's expiry is a timer, subscribing a task only while it replays."""
    connection.watch_expiry()
    # Subscribing runs beside the writer: a long replay waits for the client to read. It
    # starts first, so the subscription exists before any client action is handled.
    subscriber = asyncio.create_task(follow, name="ws-subscribe")
    reader = asyncio.create_task(_read(websocket, service, connection), name="ws-reader")
    try:
        await _write(websocket, service, connection)
        await _close(websocket, service, connection)
    except (WebSocketDisconnect, WebSocketDisconnected):
        pass  # a client that vanished mid-send is not a server failure
    finally:
        connection.disarm()
        reader.cancel()
        subscriber.cancel()


async def _close(websocket: WebSocket, service: RealtimeService, connection: Connection) -> None:
    """Close as requested: unsubscribe, then the close frame (unless the client left)."""
    service.streams.unsubscribe_all(connection)
    if connection.peer_gone:
        return
    service.record_close(connection.close_code)
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await websocket.close(connection.close_code, connection.close_reason)


async def _write(websocket: WebSocket, service: RealtimeService, connection: Connection) -> None:
    """Send queued events until a close is requested; a draining close (shutdown) sends
    what is left first, for at most ``ws_shutdown_drain_s``."""
    lag = service.metrics.send_lag
    writable = writable_flag(websocket.scope)
    while (item := await connection.next_message()) is not None:
        if connection.close_requested.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(service.settings.ws_shutdown_drain_s):
                    while item is not None:
                        await websocket.send_text(item[0])
                        lag.observe(time.monotonic() - item[1])
                        item = await connection.next_message()
            return
        if writable is not None and not writable.is_set():
            # The client is not reading: wait for it, unless it is to be closed meanwhile.
            await wait_any(writable, connection.close_requested)
            if not writable.is_set():
                return
        await websocket.send_text(item[0])
        lag.observe(time.monotonic() - item[1])


async def _read(websocket: WebSocket, service: RealtimeService, connection: Connection) -> None:
    """Handle client actions until it disconnects; bad messages get an error event. A
    fault closes the client with 1011 (the writer sends the close)."""
    try:
        await _read_actions(websocket, service, connection)
    except (WebSocketDisconnect, WebSocketDisconnected):
        connection.peer_left()
    except Exception:
        log.exception("ws_reader_failed")
        refusal = Refusal.internal()
        connection.request_close(refusal.close_code, refusal.message)


async def _read_actions(
    websocket: WebSocket, service: RealtimeService, connection: Connection
) -> None:
    settings = service.settings
    bucket = TokenBucket(
        settings.ws_client_rate_per_s, settings.ws_client_burst, now=time.monotonic()
    )
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            connection.peer_left()
            return
        if not bucket.allow(time.monotonic()):
            connection.request_close(CloseCode.RATE_LIMITED, "Too many messages: slow down")
            return
        text = message.get("text")
        if text is None:
            connection.push(protocol_error("invalid_message", "Binary messages are not supported"))
            continue
        try:
            action = ClientMessage.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "message"
            connection.push(
                protocol_error("invalid_message", f"Invalid message: {where}: {first['msg']}")
            )
            continue
        await _act(service, connection, action)


async def _act(service: RealtimeService, connection: Connection, message: ClientMessage) -> None:
    if message.action == "ping":
        connection.push('{"event":"pong"}')
        return
    if message.action == "refresh":
        if not message.token:
            connection.push(protocol_error("invalid_message", "refresh needs token"))
            return
        try:
            connection.push(await service.refresh(connection, message.token))
        except Refusal as unavailable:  # Redis away or slow: reconnect, admission checks it
            connection.request_close(unavailable.close_code, unavailable.message)
        return
    command_id = message.command_id
    if not command_id:
        connection.push(protocol_error("invalid_message", f"{message.action} needs command_id"))
        return
    if message.action == "unsubscribe":
        service.streams.unsubscribe(connection, command_id)
        connection.push(UnsubscribedEvent(command_id=command_id).model_dump_json())
        return
    followed = connection.subscriptions.get(command_id)
    if followed is not None:  # already followed: say so, change nothing (since is ignored)
        connection.push(
            SubscribedEvent(command_id=command_id, since=followed.last_seq).model_dump_json()
        )
        return
    try:
        since = await service.admit_subscription(connection, command_id, message.since)
    except Refusal as refusal:  # one error event; the connection stays open
        connection.push(protocol_error(refusal.code, refusal.message, command_id, refusal))
        return

    def announce() -> None:
        # "subscribed" once the position is accepted, before the first replayed event.
        connection.push(SubscribedEvent(command_id=command_id, since=since).model_dump_json())

    await service.streams.follow(connection, command_id, since, announce=announce)
