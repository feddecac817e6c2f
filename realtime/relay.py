"""The process's one Redis Pub/Sub connection: subscribe on demand, reconnect, resync.

Channels are subscribed when the first local client of a command arrives and
unsubscribed when the last one leaves (reference counts). ``acquire`` returns only
once Redis has confirmed the subscription, so a log read that follows it cannot
miss an event. After a dropped connection the relay reconnects with back-off,
resubscribes every active channel and has every subscription re-read the log
after its last position, so events published during the outage still arrive.
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

from common.events import EventEnvelope
from common.keys import response_channel
from realtime.hub import Hub, Subscription

__all__ = ["Relay", "RelayUnavailable"]

log = structlog.get_logger(__name__)

_CHANNEL_PREFIX = response_channel("")
#: Seconds without any message before the relay pings Redis, and before it gives up on it.
IDLE_PING_S = 5.0
DEAD_AFTER_S = 15.0
MAX_BACKOFF_S = 5.0

Resync = Callable[[Subscription], Awaitable[None]]


class RelayUnavailable(Exception):
    """Redis did not confirm a subscription in time."""


class Relay:
    def __init__(self, url: str, hub: Hub, resync: Resync, *, confirm_timeout_s: float = 5.0):
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
        self._counts: dict[str, int] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._unconfirmed: dict[str, int] = {}
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
        return len(self._counts)

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

    async def acquire(self, command_id: str) -> None:
        """Hold the command's channel; return once Redis has confirmed the subscription."""
        channel = response_channel(command_id)
        self._counts[channel] = self._counts.get(channel, 0) + 1
        if self._counts[channel] == 1:
            self._confirmed[channel] = asyncio.get_running_loop().create_future()
            await self._send_subscribe(channel)
        try:
            await asyncio.wait_for(
                asyncio.shield(self._confirmed[channel]), self._confirm_timeout_s
            )
        except TimeoutError:
            await self.release(command_id)
            raise RelayUnavailable("Redis did not confirm the subscription in time") from None

    async def release(self, command_id: str) -> None:
        """Drop one hold on the channel; the last one unsubscribes."""
        channel = response_channel(command_id)
        count = self._counts.get(channel, 0) - 1
        if count > 0:
            self._counts[channel] = count
            return
        self._counts.pop(channel, None)
        future = self._confirmed.pop(channel, None)
        if future and not future.done():
            future.cancel()
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await pubsub.unsubscribe(channel)

    async def _send_subscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reconnect loop subscribes every held channel
        self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
            await pubsub.subscribe(channel)

    # -- the connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        first = True
        while True:
            try:
                await self._connect(resync=not first)
                first = False
                backoff = 0.05
                self.retry_delay_s = 0.0
                await self._read_loop()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                was_connected = self._connected.is_set()
                self._connected.clear()
                await self._close_pubsub()
                if was_connected:
                    self.reconnects += 1
                    log.warning("relay_disconnected", error=str(exc))
                self.retry_delay_s = backoff
                await asyncio.sleep(backoff)  # back-off before reconnecting
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _connect(self, *, resync: bool) -> None:
        pubsub = self._client.pubsub()
        await pubsub.subscribe(self._control)
        self._pubsub = pubsub
        self._unconfirmed.clear()
        for channel in list(self._counts):
            future = self._confirmed.get(channel)
            if future is None or future.done():
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
            self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
            await pubsub.subscribe(channel)
        self._resync_pending = set(self._counts) if resync else set()
        self._connected.set()
        if resync:
            log.info("relay_reconnected", channels=len(self._counts))

    async def _read_loop(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None  # set by _connect
        loop = asyncio.get_running_loop()
        last_seen = loop.time()
        pinged = False
        while True:
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
        if kind == "message" and isinstance(channel, str):
            self._dispatch(channel, message["data"])
        elif kind == "subscribe" and isinstance(channel, str) and channel in self._counts:
            remaining = self._unconfirmed.get(channel, 1) - 1
            self._unconfirmed[channel] = max(remaining, 0)
            future = self._confirmed.get(channel)
            if remaining <= 0 and future is not None and not future.done():
                future.set_result(None)
                if channel in self._resync_pending:
                    self._resync_pending.discard(channel)
                    for sub in self._hub.subscriptions(channel[len(_CHANNEL_PREFIX) :]):
                        self._hub.begin_replay(sub)
                        self._spawn(self._resync(sub))

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
