"""The Server-Sent Events transport: ``GET /api/v1/commands/{command_id}/events``.

The same events as the WebSocket, one per SSE message: ``id:`` is the event's
``seq`` (control events have none), ``data:`` its JSON. A client resumes with the
standard ``Last-Event-ID`` header (or ``?since=``). Authorized with a Bearer header;
refusals are HTTP statuses, and a stream the server ends carries a last ``close``
event with the code a WebSocket would get (see docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from common.errors import AuthError
from common.events import CloseEvent
from common.http_errors import error_response
from realtime.connection import Connection, close_when_token_expires
from realtime.service import CannotRecover, PositionAhead, RealtimeService, TooManyConnections
from realtime.websocket import valid_command_id

__all__ = ["open_event_stream", "sse_message"]

log = structlog.get_logger(__name__)

#: Reconnection delay suggested to EventSource clients, in ms.
RETRY_MS = 2000


def sse_message(data: str) -> str:
    """One SSE message: ``id: <seq>`` for command events, then the JSON as ``data:``."""
    seq = json.loads(data).get("seq")
    prefix = f"id: {seq}\n" if isinstance(seq, int) else ""
    return f"{prefix}data: {data}\n\n"


def _problem(
    status: int, code: str, message: str, details: dict[str, object] | None = None
) -> JSONResponse:
    """The error shape of every HTTP route (common.http_errors)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, code, message, details, headers)


class _EventStream(StreamingResponse):
    """A streaming response that always runs ``on_close``, even when the client leaves."""

    def __init__(
        self, content: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def open_event_stream(
    service: RealtimeService, request: Request, command_id: str, since: int
) -> Response:
    """Authenticate, authorize, subscribe, then stream; or answer 401/404/410/429/503."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _problem(401, "unauthorized", "Not authenticated")
    if service.closing:
        return _problem(503, "unavailable", "Server shutting down: reconnect")
    try:
        user, claims = await service.authenticate(token.strip())
        visible = valid_command_id(command_id) and await service.can_view(user, command_id)
    except AuthError as exc:
        return _problem(401, "unauthorized", exc.message)
    except RedisError:
        return _problem(503, "unavailable", "Event stream unavailable")
    if not visible:
        return _problem(404, "not_found", "Command not found")
    try:
        connection = service.open_connection(user, claims, transport="sse", command_id=command_id)
    except TooManyConnections:
        return _problem(429, "too_many_connections", "Too many connections for this user")
    try:
        await service.check_position(command_id, since)
    except BaseException as exc:
        service.close_connection(connection)
        if isinstance(exc, CannotRecover):
            return _problem(
                410,
                "cannot_recover",
                "Cannot recover: fetch state over REST",
                {"last_seq": exc.last_seq},
            )
        if isinstance(exc, PositionAhead):
            return _problem(400, "bad_request", "since is beyond the command's last event")
        if isinstance(exc, RedisError):
            return _problem(503, "unavailable", "Event stream unavailable")
        raise
    structlog.contextvars.bind_contextvars(
        user_id=user.user_id, command_id=command_id, connection_id=connection.connection_id
    )

    async def closed() -> None:
        service.close_connection(connection)

    return _EventStream(_stream(service, connection, since), closed)


async def _stream(
    service: RealtimeService, connection: Connection, since: int
) -> AsyncIterator[str]:
    keepalive_s = service.settings.ws_ping_interval_s
    lag = service.metrics.send_lag
    # Subscribing runs beside the stream: a long replay waits for the client to read.
    tasks = [
        asyncio.create_task(close_when_token_expires(connection), name="sse-expiry"),
        asyncio.create_task(
            service.follow(connection, connection.primary_command_id, since), name="sse-subscribe"
        ),
    ]
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            try:
                item = await asyncio.wait_for(connection.next_message(), keepalive_s)
            except TimeoutError:
                yield ": keep-alive\n\n"  # a comment: keeps proxies from timing out
                continue
            if item is None:
                break
            data, queued_at = item
            yield sse_message(data)
            lag.observe(time.monotonic() - queued_at)
        code = connection.close_code
        service.record_close(code)
        yield sse_message(CloseEvent(code=code, reason=connection.close_reason).model_dump_json())
        log.info("sse_closed", code=int(code))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
