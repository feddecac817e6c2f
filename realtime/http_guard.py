"""Bounds on a request head: its size (431) and the time a client may take to send it (408).

Every WebSocket and SSE client starts with an HTTP request head. Left alone, a head
larger than the WebSocket handshake parser takes (8 KiB a line) got no answer and held
its socket, and a client that sends its head slowly (or never) held one for as long as
it liked. ``guarded_protocol`` wraps uvicorn's httptools protocol: from the first byte
of a request (or the connection's opening) until its headers are complete, at most
``max_head_bytes`` are read and at most ``timeout_s`` pass, else the client is answered
and the connection closed.

No realtime route takes a request body, so what a client sends while a response is
under way (an event stream never completes) is the head of a pipelined next request:
it is bounded the same way, and a connection that sends more is closed (there is no
answering it in the middle of a stream).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]


def _answer(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class _GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 8192
    timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        #: Bytes received since the current request's head was complete.
        self._pipelined = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            self._pipelined += len(data)
            if self._pipelined > self.max_head_bytes:
                self._disarm()
                self.transport.close()
                return
        else:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(b"431 Request Header Fields Too Large", "Request head too large")
                return
            if self._head_timer is None:
                self._arm()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        if self._in_head:  # this request's head; a pipelined one keeps counting
            self._pipelined = 0
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # The next request on a kept-alive connection has a head of its own to bound;
        # its timer starts with its first byte (uvicorn's keep-alive timeout covers idle).
        self._in_head, self._head_bytes, self._pipelined = True, self._pipelined, 0
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(b"408 Request Timeout", "Request head not received in time")

    def _refuse(self, status: bytes, message: str) -> None:
        self._disarm()
        self._in_head = False
        transport = self.transport
        if not transport.is_closing():
            transport.write(_answer(status, message))
            transport.close()


def guarded_protocol(*, max_head_bytes: int, timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two bounds (pass it as ``http=``)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_GuardedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "timeout_s": timeout_s},
    )
