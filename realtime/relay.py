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
connection changes) for ``on_presence_event``; after a reconnect (pushes may have
been missed) it calls ``on_reconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
import structlog
from pydantic import ValidationError
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from common.auth_events import AuthEvent
from common.events import EventEnvelope
from common.keys import response_channel
from realtime.channels import ChannelBook, Hold
from realtime.hub import Hub, Subscription

__all__ = ["Relay", "RelayUnavailable"]

log = structlog.get_logger(__name__)

_CHANNEL_PREFIX = response_channel("")
#: Seconds without any message before the relay pings Redis, and before it gives up on it.
IDLE_PING_S = 5.0
DEAD_AFTER_S = 15.0
MAX_BACKOFF_S = 5.0

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
        self._client = redis.asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),  # reconnects are ours: we must know, to resync
        )
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
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self._resync_pending: set[str] = set()
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
        await self._close_pubsub()
        await self._client.aclose()

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
                await self._close_pubsub()
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

    async def _connect(self, *, resync: bool) -> PubSub:
        pubsub = self._client.pubsub()
        fixed = [self._control] + [
            c for c in (self._auth_channel, self._presence_channel) if c is not None
        ]
        await pubsub.subscribe(*fixed)
        self._pubsub = pubsub
        held = self._book.reconnected()
        self._resync_pending = set(held) if resync else set()
        self._send_wanted.set()
        self._connected.set()
        if resync:
            log.info("relay_reconnected", channels=len(held))
            if self._on_reconnected is not None:
                self._on_reconnected()
        return pubsub

    async def _send_loop(self, pubsub: PubSub) -> None:
        """Send what the book asks for, in order; a failed send fails the connection."""
        while True:
            await self._send_wanted.wait()
            self._send_wanted.clear()
            sends = self._book.take_sends()
            if sends.subscribe:
                await pubsub.subscribe(*sends.subscribe)
            if sends.unsubscribe:
                await pubsub.unsubscribe(*sends.unsubscribe)

    async def _read_loop(self, pubsub: PubSub, sender: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        last_seen = loop.time()
        pinged = False
        while True:
            if sender.done():
                sender.result()  # raises the send's connection error
                raise RedisConnectionError("the Pub/Sub sender stopped")
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is None:
                if now - last_seen > DEAD_AFTER_S:
                    raise RedisTimeoutError("no answer from Redis on the Pub/Sub connection")
                if now - last_seen > IDLE_PING_S and not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            last_seen, pinged = now, False
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message.get("channel")
        if not isinstance(channel, str):
            return
        if kind == "message":
            if channel == self._auth_channel:
                self._auth_event(message["data"])
            elif channel == self._presence_channel:
                if self._on_presence_event is not None:
                    self._on_presence_event(message["data"])
            else:
                self._dispatch(channel, message["data"])
        elif kind in ("subscribe", "unsubscribe"):
            answer = self._book.answered(channel, kind)
            for hold in answer.woken:
                future = self._waiters.pop(hold, None)
                if future is not None and not future.done():
                    future.set_result(None)
            if answer.confirmed and channel in self._resync_pending:
                self._resync_pending.discard(channel)
                for sub in self._hub.subscriptions(channel[len(_CHANNEL_PREFIX) :]):
                    self._hub.begin_replay(sub)
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

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call] # unannotated in redis-py
