"""The Server-Sent Events transport: ``GET /api/v1/commands/{command_id}/events``.

The same events as the WebSocket, one per SSE message: ``id:`` is the event's
``seq`` (control events have none), ``data:`` its JSON. A client resumes with the
standard ``Last-Event-ID`` header (or ``?since=``). Authorized with a Bearer header;
refusals (``realtime.refusals``) are HTTP statuses, and a stream the server ends
carries a last ``close`` event with the code a WebSocket would get (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from common.events import CloseEvent
from common.http_errors import error_response
from realtime.connection import Connection
from realtime.refusals import Refusal, as_refusal
from realtime.service import RealtimeService

__all__ = ["open_event_stream", "open_presence_stream", "render_refusal", "sse_message"]

log = structlog.get_logger(__name__)

#: Reconnection delay suggested to EventSource clients, in ms.
RETRY_MS = 2000


def sse_message(data: str) -> str:
    """One SSE message: ``id: <seq>`` for command events, then the JSON as ``data:``."""
    seq = json.loads(data).get("seq")
    prefix = f"id: {seq}\n" if isinstance(seq, int) else ""
    return f"{prefix}data: {data}\n\n"


def render_refusal(refusal: Refusal) -> JSONResponse:
    """A refusal as an HTTP answer in the error shape of every route (common.http_errors)."""
    headers: dict[str, str] = {}
    if refusal.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if refusal.status_code == 503:
        headers["Retry-After"] = "2"
    return error_response(
        refusal.status_code, refusal.code, refusal.message, refusal.details, headers or None
    )


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
    service: RealtimeService, request: Request, command_id: str, since: str | None
) -> Response:
    """Admit, check the position, then stream; or answer the refusal's HTTP status."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    try:
        connection, position = await service.admit(
            token=token, command_id=command_id, since=since, transport="sse"
        )
    except Refusal as refused:
        return render_refusal(refused)
    try:
        await service.streams.check_position(command_id, position)
    except Exception as exc:
        service.close_connection(connection)
        refusal = as_refusal(exc)
        if refusal is None:
            raise
        return render_refusal(refusal)
    structlog.contextvars.bind_contextvars(
        user_id=connection.user.user_id,
        command_id=command_id,
        connection_id=connection.connection_id,
    )

    async def closed() -> None:
        service.close_connection(connection)

    def follow() -> Coroutine[Any, Any, None]:
        return service.streams.follow(connection, connection.primary_command_id, position)

    return _EventStream(_stream(service, connection, follow), closed)


async def open_presence_stream(
    service: RealtimeService, request: Request, vehicle_id: str | None
) -> Response:
    """``/sse/vehicles[/{vehicle_id}]``: admit, then a presence snapshot and each change."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    try:
        connection = await service.admit_presence(
            token=token, vehicle_id=vehicle_id, transport="sse"
        )
    except Refusal as refused:
        return render_refusal(refused)

    async def closed() -> None:
        service.close_connection(connection)

    def follow() -> Coroutine[Any, Any, None]:
        return service.presence.follow(connection, vehicle_id)

    return _EventStream(_stream(service, connection, follow), closed)


async def _stream(
    service: RealtimeService,
    connection: Connection,
    follow: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[str]:
    keepalive_s = service.settings.ws_ping_interval_s
    lag = service.metrics.send_lag
    # Subscribing runs beside the stream: a long replay waits for the client to read.
    connection.watch_expiry()
    tasks = [
        asyncio.create_task(follow(), name="sse-subscribe"),
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
