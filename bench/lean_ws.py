"""The least a WebSocket client must do to follow a stream until the server closes it.

For benches that hold thousands of sockets on the machine they measure: a full client
library (``websockets``) spends more CPU per closing handshake than the relay does, so
on two shared cores its own backlog would be counted as the relay's latency. This one
sends the upgrade, reads frames, answers pings, notes when the server's close frame
arrived, echoes it and waits for the server to end the TCP connection (RFC 6455: the
server closes first). Frames it sends are masked with a zero key, which the RFC allows.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from urllib.parse import urlsplit

__all__ = ["LeanClient", "open_lean"]

_CLOSE, _PING, _PONG, _TEXT = 0x8, 0x9, 0xA, 0x1


def _masked(opcode: int, payload: bytes) -> bytes:
    # Control frames only (close, pong): at most 125 bytes of payload.
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class LeanClient(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._request = request
        self._buffer = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        #: The first text message (the server's welcome): admitted.
        self.first_message: asyncio.Future[str] = loop.create_future()
        #: When the TCP connection ended.
        self.ended: asyncio.Future[float] = loop.create_future()
        self.close_frame_at: float | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(ConnectionRefusedError(status.decode("latin-1")))
                return
            del buffer[: end + 4]
            self._upgraded = True
        while len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                (size,), start = struct.unpack_from("!H", buffer, 2), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                (size,), start = struct.unpack_from("!Q", buffer, 2), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        assert self._transport is not None
        if opcode == _CLOSE:
            if self.close_frame_at is None:
                self.close_frame_at = time.time()
                self.close_code = struct.unpack_from("!H", payload)[0] if payload else 1005
                self._transport.write(_masked(_CLOSE, payload[:2]))
        elif opcode == _PING:
            self._transport.write(_masked(_PONG, payload))
        elif opcode == _TEXT and not self.first_message.done():
            self.first_message.set_result(payload.decode())

    def _fail(self, exc: BaseException) -> None:
        if not self.first_message.done():
            self.first_message.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first_message.done():
            self.first_message.set_exception(exc or ConnectionResetError("closed"))
        if not self.ended.done():
            self.ended.set_result(time.time())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_lean(url: str, *, timeout_s: float = 60.0) -> LeanClient:
    """Connect to a ``ws://`` URL and wait for its first text message."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: LeanClient(request), parts.hostname, parts.port or 80
    )
    try:
        await asyncio.wait_for(asyncio.shield(client.first_message), timeout_s)
    except BaseException:
        client.close()
        raise
    return client
