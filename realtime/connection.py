"""One client, whatever its transport: a bounded outgoing queue, its subscriptions, its close.

The relay calls ``push`` and never waits: an event that does not fit the queue asks
for a slow-consumer close instead. The transport (WebSocket or Server-Sent Events)
drains the queue with ``next_message`` in its own writer task, and closes the
client with ``close_code`` / ``close_reason`` once ``close_requested`` is set.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Literal

from common.protocol import CloseCode
from common.users import User
from realtime.hub import Subscription
from realtime.lifetime import TokenLifetime
from realtime.outbox import Outbox

__all__ = ["Connection", "Transport", "close_when_token_expires"]

Transport = Literal["websocket", "sse"]


class Connection:
    def __init__(
        self,
        user: User,
        lifetime: TokenLifetime,
        outbox: Outbox,
        *,
        transport: Transport,
        primary_command_id: str,
        on_slow: Callable[[Connection], None] | None = None,
    ) -> None:
        self.connection_id = uuid.uuid4().hex
        self.user = user
        self.lifetime = lifetime
        self.transport = transport
        #: The command named in the URL; losing it closes the connection.
        self.primary_command_id = primary_command_id
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox = outbox
        self._on_slow = on_slow
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self.close_requested = asyncio.Event()
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""
        #: Send what is queued before closing (shutdown), instead of dropping it.
        self.drain = False
        #: Set whenever the token's expiry moves (a refresh).
        self.lifetime_changed = asyncio.Event()

    def push(self, data: str) -> bool:
        """Queue one event; False when the client cannot keep up (it is then being closed)."""
        if self.close_requested.is_set():
            return False
        if not self.outbox.offer(data, time.monotonic()):
            self.request_close(CloseCode.SLOW_CONSUMER, "Slow consumer: reconnect with since")
            if self._on_slow is not None:
                self._on_slow(self)
            return False
        self._wake.set()
        return True

    def request_close(self, code: CloseCode, reason: str, *, drain: bool = False) -> None:
        """Ask the transport to close the client; the first request wins."""
        if self.close_requested.is_set():
            return
        self.close_code, self.close_reason, self.drain = code, reason, drain
        if not drain:
            self.outbox.clear()
        self.close_requested.set()
        self._wake.set()
        self._room.set()

    def fits(self, data: str) -> bool:
        return self.outbox.fits(data)

    async def wait_for_room(self) -> None:
        """Until the queue is at most half full, or the connection is closing.

        For producers that may wait (a replay from the log), never for the Redis reader.
        """
        while not (self.outbox.half_empty() or self.close_requested.is_set()):
            self._room.clear()
            await self._room.wait()

    async def next_message(self) -> tuple[str, float] | None:
        """The next event to send and when it was queued; None once the client is closing
        (after the queue is empty when draining)."""
        while True:
            if self.close_requested.is_set() and not self.drain:
                return None
            item = self.outbox.take()
            if item is not None:
                if self.outbox.half_empty():
                    self._room.set()
                return item
            if self.close_requested.is_set():
                return None
            self._wake.clear()
            await self._wake.wait()


async def close_when_token_expires(connection: Connection) -> None:
    """Request a 4401 close once the token (plus grace) runs out; a refresh moves the moment."""
    while True:
        left = connection.lifetime.seconds_left(time.time())
        if left <= 0:
            connection.request_close(CloseCode.TOKEN_EXPIRED, "Token expired")
            return
        connection.lifetime_changed.clear()
        try:
            await asyncio.wait_for(connection.lifetime_changed.wait(), left)
        except TimeoutError:
            continue
