"""One client's WebSocket: a bounded outgoing queue drained by its own writer task."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from common.users import User
from realtime.close_codes import CloseCode
from realtime.hub import Subscription

__all__ = ["ClientConnection"]


class ClientConnection:
    """The relay pushes without awaiting; a client that falls behind is closed, not waited on."""

    def __init__(self, websocket: WebSocket, user: User, *, max_queue: int) -> None:
        self.websocket = websocket
        self.user = user
        self.subscriptions: dict[str, Subscription] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max_queue)
        self.close_requested = asyncio.Event()
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""

    def push(self, data: str) -> bool:
        """Queue one event for the client; on overflow ask for a slow-consumer close."""
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.request_close(CloseCode.SLOW_CONSUMER, "Slow consumer: reconnect with since")
            return False
        return True

    def request_close(self, code: CloseCode, reason: str) -> None:
        if not self.close_requested.is_set():
            self.close_code, self.close_reason = code, reason
            self.close_requested.set()

    async def write_forever(self) -> None:
        while True:
            data = await self._queue.get()
            await self.websocket.send_text(data)
