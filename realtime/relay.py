"""The process's one Redis Pub/Sub connection: subscribe on demand, reconnect, resync.

Which channels Redis must hold is decided by ``realtime.channels.ChannelBook`` (pure,
and where its invariant is stated); this module only moves commands and answers.
``acquire`` returns a ``Hold`` once Redis has confirmed the subscription, so a log
read that follows it cannot miss an event; ``release`` is synchronous, so a client
that leaves, or an acquire that is cancelled at its one await, gives its hold back
in the same step. One sender task sends what the book asks for, in order.

After a dropped connection the relay reconnects with back-off, resubscribes every
held channel and has every subscription re-read the log after its last position,
so events published during the outage still arrive.

The relay also follows ``Keys.auth_events`` (revocations and deactivations) and
hands each event to ``on_auth_event``, and ``Keys.presence_events`` (vehicles'
connection changes) for ``on_presence_event``; on every connection, the first
included (pushes sent before it listened are lost), it calls ``on_reconnected`` once
Redis has confirmed the auth channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.auth_events import AuthEvent
from common.events import EventEnvelope
from common.keys import response_channel
from realtime.channels import ChannelBook, Hold
from realtime.hub import Hub, Subscription
from realtime.pubsub import PubSubConnection, open_pubsub

__all__ = ["Relay", "RelayUnavailable"]

log = structlog.get_logger(__name__)

_CHANNEL_PREFIX = response_channel("")
#: Seconds without any message before the relay pings Redis, and before it gives up on it.
IDLE_PING_S = 5.0
DEAD_AFTER_S = 15.0
MAX_BACKOFF_S = 5.0
CONNECT_TIMEOUT_S = 2.0
#: How the relay's connection shows in ``CLIENT LIST``.
CLIENT_NAME = "sovd-realtime-relay"

Resync = Callable[[Subscription], Awaitable[None]]
OnAuthEvent = Callable[[AuthEvent], None]


class RelayUnavailable(TimeoutError):
    """Redis did not confirm a subscription in time."""


class Relay:
    def __init__(
        self,
        url: str,
        hub: Hub,
        resync: Resync,
        *,
        auth_channel: str | None = None,
        on_auth_event: OnAuthEvent | None = None,
        on_reconnected: Callable[[], None] | None = None,
        presence_channel: str | None = None,
        on_presence_event: Callable[[str], None] | None = None,
        confirm_timeout_s: float = 5.0,
    ):
        self._url = url  # reconnects are ours: we must know, to resync
        self._hub = hub
        self._resync = resync
        self._confirm_timeout_s = confirm_timeout_s
        self._control = f"realtime-control:{uuid.uuid4().hex}"
        self._auth_channel = auth_channel
        self._on_auth_event = on_auth_event
        self._on_reconnected = on_reconnected
        self._presence_channel = presence_channel
        self._on_presence_event = on_presence_event
        self._book = ChannelBook()
        self._waiters: dict[Hold, asyncio.Future[None]] = {}
        self._send_wanted = asyncio.Event()
        self._pubsub: PubSubConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self._resync_pending: set[str] = set()
        #: This connection's subscription to the auth channel is not confirmed yet.
        self._auth_pending = False
        self.reconnects = 0
        #: The current wait before the next connection attempt (0 while connected).
        self.retry_delay_s = 0.0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def channel_count(self) -> int:
        """Channels the relay still has business with (0 once every client has left)."""
        return len(self._book)

    def waiter_count(self) -> int:
        return len(self._waiters)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay")

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task:
                task.cancel()
        for task in [self._task, *self._tasks]:
            if task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._close_pubsub()

    # -- subscriptions -------------------------------------------------------------------

    async def acquire(self, command_id: str) -> Hold:
        """Hold the command's channel; return once Redis has confirmed the subscription.

        Raises ``RelayUnavailable`` after ``confirm_timeout_s``. On any exit but a
        return (timeout, cancellation) the hold is already given back.
        """
        hold, ready = self._book.acquire(response_channel(command_id))
        if ready:
            return hold
        future = asyncio.get_running_loop().create_future()
        self._waiters[hold] = future
        self._send_wanted.set()
        try:
            await asyncio.wait_for(future, self._confirm_timeout_s)
        except BaseException as exc:
            self.release(hold)
            if isinstance(exc, TimeoutError):
                raise RelayUnavailable("Redis did not confirm the subscription in time") from None
            raise
        return hold

    def release(self, hold: Hold) -> None:
        """Give a hold back (idempotent); the last one unsubscribes the channel."""
        self._book.release(hold)
        future = self._waiters.pop(hold, None)
        if future is not None and not future.done():
            future.cancel()
        if self._book.has_sends():
            self._send_wanted.set()

    # -- the connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        first = True
        while True:
            sender: asyncio.Task[None] | None = None
            try:
                pubsub = await self._connect(resync=not first)
                first = False
                backoff = 0.05
                self.retry_delay_s = 0.0
                sender = asyncio.create_task(self._send_loop(pubsub), name="relay-sender")
                await self._read_loop(pubsub, sender)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                was_connected = self._connected.is_set()
                self._connected.clear()
                self._book.disconnected()
                self._close_pubsub()
                if was_connected:
                    self.reconnects += 1
                    log.warning("relay_disconnected", error=str(exc))
                self.retry_delay_s = backoff
                await asyncio.sleep(backoff)  # back-off before reconnecting
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                if sender is not None:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender

    async def _connect(self, *, resync: bool) -> PubSubConnection:
        pubsub = await open_pubsub(
            self._url, self._handle, connect_timeout_s=CONNECT_TIMEOUT_S, client_name=CLIENT_NAME
        )
        fixed = [self._control] + [
            c for c in (self._auth_channel, self._presence_channel) if c is not None
        ]
        pubsub.subscribe(*fixed)
        self._pubsub = pubsub
        held = self._book.reconnected()
        self._resync_pending = set(held) if resync else set()
        self._send_wanted.set()
        self._connected.set()
        if resync:
            log.info("relay_reconnected", channels=len(held))
        # Pushes sent before this connection listened are lost (the first one included:
        # clients may be admitted before it): ``on_reconnected`` runs once Redis has
        # confirmed the auth channel, so a check it starts misses nothing in between.
        self._auth_pending = self._auth_channel is not None
        if not self._auth_pending:
            self._reconnected()
        return pubsub

    def _reconnected(self) -> None:
        if self._on_reconnected is not None:
            self._on_reconnected()

    async def _send_loop(self, pubsub: PubSubConnection) -> None:
        """Send what the book asks for, in order, one command for all the channels that
        asked since the last turn; a failed send fails the connection."""
        while True:
            await self._send_wanted.wait()
            self._send_wanted.clear()
            sends = self._book.take_sends()
            pubsub.subscribe(*sends.subscribe)
            pubsub.unsubscribe(*sends.unsubscribe)

    async def _read_loop(self, pubsub: PubSubConnection, sender: asyncio.Task[None]) -> None:
        """Messages are handled as they are read (``_handle``); this only watches the
        connection: a failed send, a lost socket, or Redis silent for too long."""
        loop = asyncio.get_running_loop()
        pinged_at = 0.0
        while True:
            if sender.done():
                sender.result()  # raises the send's connection error
                raise RedisConnectionError("the Pub/Sub sender stopped")
            done, _ = await asyncio.wait([pubsub.closed, sender], timeout=1.0)
            if pubsub.closed in done:
                pubsub.closed.result()  # raises why it ended
            silent = loop.time() - pubsub.last_seen
            if silent > DEAD_AFTER_S:
                raise RedisTimeoutError("no answer from Redis on the Pub/Sub connection")
            if silent > IDLE_PING_S and pinged_at < pubsub.last_seen:
                pubsub.ping()
                pinged_at = loop.time()

    def _handle(self, kind: str, channel: str, data: str | None) -> None:
        """One Pub/Sub reply, straight from the socket's read callback."""
        try:
            self._handle_reply(kind, channel, data)
        except Exception:  # a fault here must not end the connection for everyone
            log.exception("relay_message_failed", kind=kind, channel=channel)

    def _handle_reply(self, kind: str, channel: str, data: str | None) -> None:
        if kind == "message" and data is not None:
            if channel == self._auth_channel:
                self._auth_event(data)
            elif channel == self._presence_channel:
                if self._on_presence_event is not None:
                    self._on_presence_event(data)
            else:
                self._dispatch(channel, data)
        elif kind == "subscribe" and channel == self._auth_channel:
            if self._auth_pending:
                self._auth_pending = False
                self._reconnected()
        elif kind in ("subscribe", "unsubscribe"):
            answer = self._book.answered(
                channel, "subscribe" if kind == "subscribe" else "unsubscribe"
            )
            for hold in answer.woken:
                future = self._waiters.pop(hold, None)
                if future is not None and not future.done():
                    future.set_result(None)
            if answer.confirmed and channel in self._resync_pending:
                self._resync_pending.discard(channel)
                for sub in self._hub.subscriptions(channel[len(_CHANNEL_PREFIX) :]):
                    if self._hub.mark_stale(sub):
                        self._spawn(self._resync(sub))

    def _auth_event(self, data: str) -> None:
        try:
            event = AuthEvent.model_validate_json(data)
        except ValidationError:
            log.warning("relay_bad_auth_event")
            return
        if self._on_auth_event is not None:
            self._on_auth_event(event)

    def _dispatch(self, channel: str, data: str) -> None:
        if not channel.startswith(_CHANNEL_PREFIX):
            return
        try:
            envelope = EventEnvelope.model_validate_json(data)
        except ValidationError:
            log.warning("relay_bad_event", channel=channel)
            return
        for sub in self._hub.publish(envelope.command_id, envelope.seq, data):
            self._spawn(self._resync(sub))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()
