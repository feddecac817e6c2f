"""A Redis Pub/Sub connection read straight off its socket.

redis-py's asyncio ``PubSub`` costs 15-25 µs of CPU per message (an await chain, the
RESP3 push handler, a dict per message); on one relay process that is a quarter of
the CPU while it fans events out to 10,000 sockets, and a reader that falls behind
gets its connection closed by Redis once the output buffer passes
``client-output-buffer-limit pubsub`` (32 MB by default). Here a plain
``asyncio.Protocol`` feeds the bytes to hiredis's reader and hands each message to a
synchronous callback as it is parsed: about 1 µs per message, and reading never
waits on anything the relay does with a message.

Only what a subscriber needs: connect (TCP, TLS or a Unix socket, from a
``redis://``, ``rediss://`` or ``unix://`` URL), ``AUTH``, ``CLIENT SETNAME``,
``SUBSCRIBE``, ``UNSUBSCRIBE`` and ``PING``, in RESP2. Writes never wait; an error
from Redis or a lost socket ends the connection, and ``closed`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["OnPubSub", "PubSubConnection", "open_pubsub"]

#: ``(kind, channel, data)``: kind is ``message``, ``subscribe`` or ``unsubscribe``;
#: data is the message's payload (``None`` for a subscription's confirmation).
OnPubSub = Callable[[str, str, str | None], None]

_PUBSUB_KINDS = frozenset({"message", "subscribe", "unsubscribe"})


def _command(*args: str) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class PubSubConnection(asyncio.Protocol):
    """One subscriber connection. ``on_message`` runs for every Pub/Sub reply, in order,
    from the event loop's read callback (it must not block)."""

    def __init__(self, on_message: OnPubSub) -> None:
        self._on_message = on_message
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        #: Answers awaited by ``request`` (only before the first subscription).
        self._replies: deque[asyncio.Future[Any]] = deque()
        #: Resolves (with the reason as its exception) when the connection has ended.
        self.closed: asyncio.Future[None] = self._loop.create_future()
        #: Loop time of the last bytes from Redis.
        self.last_seen = self._loop.time()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self.last_seen = self._loop.time()
        reader = self._reader
        reader.feed(data)
        while not self.closed.done():
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            self._reply(reply)

    def eof_received(self) -> bool | None:
        self.fail(RedisConnectionError("Connection closed by server."))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"Connection lost: {exc}" if exc else "Connection closed by server."
        self.fail(RedisConnectionError(reason))

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, reply: Any) -> None:
        if type(reply) is list and len(reply) == 3 and reply[0] in _PUBSUB_KINDS:
            kind, channel, data = reply
            self._on_message(kind, channel, data if kind == "message" else None)
            return
        if type(reply) is list and reply and reply[0] == "pong":
            return  # a PING in subscribed mode: ``last_seen`` is what it was for
        if self._replies:
            future = self._replies.popleft()
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
            return
        if isinstance(reply, hiredis.ReplyError):
            self.fail(RedisConnectionError(f"Redis refused a Pub/Sub command: {reply}"))

    def fail(self, exc: Exception) -> None:
        """End the connection (idempotent); ``closed`` raises ``exc``."""
        if not self.closed.done():
            self.closed.set_exception(exc)
            self.closed.exception()  # retrieved: no "never retrieved" warning if unawaited
        while self._replies:
            future = self._replies.popleft()
            if not future.done():
                future.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    # -- commands ----------------------------------------------------------------------

    def _write(self, *args: str) -> None:
        if self.closed.done() or self._transport is None:
            raise RedisConnectionError("the Pub/Sub connection is closed")
        self._transport.write(_command(*args))

    async def request(self, *args: str) -> Any:
        """Send one command and wait for its answer (before subscribing only)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._write(*args)
        self._replies.append(future)
        return await future

    def subscribe(self, *channels: str) -> None:
        if channels:
            self._write("SUBSCRIBE", *channels)

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._write("UNSUBSCRIBE", *channels)

    def ping(self) -> None:
        self._write("PING")

    def close(self) -> None:
        self.fail(RedisConnectionError("the Pub/Sub connection was closed"))


def _ssl_context(params: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if str(params.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    return context


async def open_pubsub(
    url: str, on_message: OnPubSub, *, connect_timeout_s: float, client_name: str
) -> PubSubConnection:
    """Connect and authenticate; raises a redis-py ``ConnectionError`` (or
    ``TimeoutError``) when Redis cannot be reached or refuses the credentials."""
    params: dict[str, Any] = dict(parse_url(url))
    loop = asyncio.get_running_loop()
    connection: PubSubConnection | None = None

    def factory() -> PubSubConnection:
        return PubSubConnection(on_message)

    try:
        async with asyncio.timeout(connect_timeout_s):
            if "path" in params:
                _, connection = await loop.create_unix_connection(factory, params["path"])
            else:
                tls = params.get("connection_class") is SSLConnection
                _, connection = await loop.create_connection(
                    factory,
                    params.get("host", "localhost"),
                    params.get("port", 6379),
                    ssl=_ssl_context(params) if tls else None,
                )
            password, username = params.get("password"), params.get("username")
            if password:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                await connection.request(*auth)
            with contextlib.suppress(hiredis.ReplyError):  # named where the ACL allows it
                await connection.request("CLIENT", "SETNAME", client_name)
    except hiredis.ReplyError as exc:
        if connection is not None:
            connection.close()
        if "AUTH" in str(exc) or "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
            raise AuthenticationError(str(exc)) from None
        raise RedisConnectionError(f"Redis refused the Pub/Sub connection: {exc}") from None
    except BaseException:
        if connection is not None:
            connection.close()
        raise
    return connection
