"""uvicorn's sans-I/O WebSocket protocol, trimmed of what each open socket kept for nothing.

The protocol object lives as long as its socket. uvicorn's keeps, per connection:
an ``asyncio.Queue`` for received messages (three deques and an event, ~3 KiB, for
one message at a time: reading pauses while one waits), an ``asyncio.Event`` for
write flow control (~0.8 KiB), and the parsed handshake request and response with
their headers (~2.5 KiB) long after the handshake. ``LeanWebSocketProtocol`` keeps
uvicorn's behaviour and replaces those with an ``Inbox`` and a ``Flag`` and drops the
handshake objects once the response is sent (pass it as ``ws=``).

It also hands the app its write flow-control flag (``scope["extensions"]``, key
``WRITABLE_EXTENSION``): a writer that must close a client which stopped reading can
stop waiting for it instead of blocking in ``send`` until the keepalive gives up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtime.flag import Flag

__all__ = ["WRITABLE_EXTENSION", "Inbox", "LeanWebSocketProtocol", "writable_flag"]

#: The ASGI scope extension that carries the socket's writable ``Flag``.
WRITABLE_EXTENSION = "sovd.writable"


def writable_flag(scope: Any) -> Flag | None:
    """The socket's writable flag when served by ``LeanWebSocketProtocol``, else None."""
    flag = (scope.get("extensions") or {}).get(WRITABLE_EXTENSION)
    return flag if isinstance(flag, Flag) else None


class Inbox:
    """The part of ``asyncio.Queue`` the protocol uses (unbounded, one reader), lazily."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[ASGIReceiveEvent] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get has one reader at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = cast("asyncio.Queue[ASGIReceiveEvent]", Inbox())
        writable = Flag()
        writable.set()
        self._writable = writable
        self.writable = cast(asyncio.Event, writable)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # an upgrade that was accepted: the app runs next
            scope["extensions"][WRITABLE_EXTENSION] = self._writable

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The response went out: the parsed request and response are not used again.
            self.request = None  # type: ignore[assignment] # only read during the handshake
            self.response = None  # type: ignore[assignment] # only read during the handshake
