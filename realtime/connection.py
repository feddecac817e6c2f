"""One client, whatever its transport: a bounded outgoing queue, its subscriptions, its close.

The relay calls ``push`` and never waits: an event that does not fit the queue asks
for a slow-consumer close instead. The transport (WebSocket or Server-Sent Events)
drains the queue with ``next_message`` in its writer, and closes the client with
``close_code`` / ``close_reason`` once ``close_requested`` is set.

Many thousands of these live in one process, so a connection is lean: ``__slots__``,
``Flag`` instead of ``asyncio.Event``, and its token expiry is a loop timer
(``watch_expiry``) rather than a task of its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Literal

from common.protocol import TOKEN_EXPIRED_REASON, CloseCode
from common.users import User
from realtime.flag import Flag
from realtime.hub import Subscription
from realtime.lifetime import TokenLifetime
from realtime.outbox import Outbox

__all__ = ["Connection", "Transport"]

Transport = Literal["websocket", "sse"]


class Connection:
    __slots__ = (
        "_expiry",
        "_on_slow",
        "_room",
        "_wake",
        "close_code",
        "close_reason",
        "close_requested",
        "connection_id",
        "drain",
        "lifetime",
        "outbox",
        "peer_gone",
        "primary_command_id",
        "subscriptions",
        "transport",
        "user",
    )

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
        self.transport: Transport = transport
        #: The command named in the URL; losing it closes the connection.
        self.primary_command_id = primary_command_id
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox = outbox
        self._on_slow = on_slow
        self._wake = Flag()
        self._room = Flag()
        self.close_requested = Flag()
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""
        #: Send what is queued before closing (shutdown), instead of dropping it.
        self.drain = False
        #: The client went away first: there is nobody to send a close frame to.
        self.peer_gone = False
        self._expiry: asyncio.TimerHandle | None = None

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
        self.disarm()
        self.close_requested.set()
        self._wake.set()
        self._room.set()

    def peer_left(self) -> None:
        """The client closed or vanished: stop, with no close frame to send."""
        self.peer_gone = True
        self.request_close(CloseCode.NORMAL, "")

    # -- token expiry ---------------------------------------------------------------------

    def watch_expiry(self) -> None:
        """Close with 4401 once the token (plus grace) runs out; call on the event loop
        once the connection is open. ``lifetime_moved`` re-arms it after a refresh, a
        close disarms it."""
        self.disarm()
        if self.close_requested.is_set():
            return
        left = self.lifetime.seconds_left(time.time())
        if left <= 0:
            self.request_close(CloseCode.TOKEN_EXPIRED, TOKEN_EXPIRED_REASON)
            return
        # The timer only wakes a check of the wall clock: a loop clock that drifts from
        # it leads to another check, never to a close before the token's time.
        self._expiry = asyncio.get_running_loop().call_later(left, self.watch_expiry)

    def lifetime_moved(self) -> None:
        """The token's expiry changed (a refresh): move the timer."""
        if self._expiry is not None:
            self.watch_expiry()

    def disarm(self) -> None:
        """Stop the expiry timer (idempotent)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    @property
    def expiry_due(self) -> float | None:
        """When (loop time) the expiry timer fires next; None when it is not armed."""
        return self._expiry.when() if self._expiry is not None else None

    # -- the queue ------------------------------------------------------------------------

    def paced_fits(self, data: str) -> bool:
        return self.outbox.paced_fits(data)

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
