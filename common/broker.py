"""The Dramatiq Redis broker, with a wake-up for idle consumers, and command messages.

Dramatiq's Redis consumer polls: with an empty queue it sleeps with back-off up to the
worker timeout, so the first command after a quiet spell waits up to that long. Here
every enqueue also pushes a token on the queue's wake-up list, and an idle consumer
blocks on that list (``BLPOP``) instead of sleeping: it wakes as soon as a message is
enqueued, and otherwise after the worker timeout, exactly as before. Fetching, acks
and redelivery are Dramatiq's own scripts, unchanged, so its delivery guarantees hold;
a lost or spurious token only costs one extra fetch.

The api sends messages by actor and queue name; it never imports actor code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer, _scripts
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from common.commands import CommandType
from common.keys import Keys
from common.policy import CommandPolicy
from common.settings import Settings

__all__ = ["WakingRedisBroker", "build_broker", "command_message"]

#: Tokens kept on a wake-up list at most (more would only cause empty fetches).
WAKE_LIST_MAX = 64
#: Pause of a consumer whose prefetch window is full, before it looks again (seconds).
BUSY_PAUSE_S = 0.002
#: Messages each consumer may hold (fetched, not yet acknowledged) at least, above
#: Dramatiq's 2 x threads. Measured (docs/benchmarks.md): 32 added 1.6 ms to the pickup
#: back to back and no drain rate here, so the default keeps Dramatiq's window.
MIN_PREFETCH = 0
#: Dramatiq's own dispatch script (fetch, ack, requeue and enqueue), run as it ships.
_DISPATCH_SOURCE: str = (
    _scripts["dispatch"].decode()
    if isinstance(_scripts["dispatch"], bytes)
    else _scripts["dispatch"]
)


class _WakingConsumer(_RedisConsumer):
    def __init__(self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call] # unannotated in dramatiq
        self._wake_key = broker.wake_key(queue_name)

    def __next__(self) -> Any:
        """Dramatiq's ``_RedisConsumer.__next__`` with the idle sleep replaced by a wait."""
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count >= self.prefetch:
                    # Busy: nothing may be fetched, so do not take a wake-up token either.
                    # A short fixed pause, not Dramatiq's growing back-off: the window
                    # frees as soon as a thread acks, and the caller handles acks between
                    # calls, so a long sleep here would leave threads idle.
                    time.sleep(BUSY_PAUSE_S)
                    return None
                self.message_cache = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not self.message_cache:
                    self.broker.client.blpop([self._wake_key], timeout=self.timeout / 1000)
                    return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call] # unannotated in dramatiq


class WakingRedisBroker(RedisBroker):
    """``RedisBroker`` whose idle consumers block on a wake-up list instead of polling."""

    def __init__(self, *, url: str, keys: Keys | None = None, **kwargs: Any) -> None:
        keys = keys or Keys()
        kwargs.setdefault("namespace", keys.broker_namespace)
        super().__init__(url=url, **kwargs)  # type: ignore[no-untyped-call] # unannotated in dramatiq
        self._keys = keys
        self._url = url
        self.min_prefetch = MIN_PREFETCH

    def close(self) -> None:
        """Close the broker and its connections (Dramatiq's close leaves the pool open)."""
        super().close()
        self.client.connection_pool.disconnect()

    def wake_key(self, queue_name: str) -> str:
        return self._keys.broker_wake(queue_name)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakingConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """Dramatiq's ``consume`` with a prefetch of at least ``min_prefetch``."""
        return super().consume(queue_name, max(prefetch, self.min_prefetch), timeout)

    def _dispatch_args(self, command: str, queue_name: str, *args: Any, maintain: int) -> list[Any]:
        """The dispatch script's arguments, as ``RedisBroker._dispatch`` builds them (2.2)."""
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            maintain,
            self._max_unpack_size(),  # type: ignore[no-untyped-call] # unannotated in dramatiq
            *args,
        ]

    def _enqueue_args(self, queue_name: str, message_id: str, data: bytes) -> list[Any]:
        maintain = self._should_do_maintenance("enqueue")
        return self._dispatch_args("enqueue", queue_name, message_id, data, maintain=maintain)

    def maintain(self, queue_names: Iterable[str]) -> None:
        """Run Dramatiq's maintenance for every queue in ``queue_names`` (and its delay
        queue) now, in one round trip: a dead worker's unacknowledged messages go back
        on their queue once its heartbeat is older than ``heartbeat_timeout``. Dramatiq
        runs it only by chance, and only for the queue of the call that drew it."""
        names = sorted({n for q in queue_names for n in (q, dq_name(q))})
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                args = self._dispatch_args("qsize", name, maintain=1)
                pipe.eval(_DISPATCH_SOURCE, 1, self.namespace, *args)
            pipe.execute()

    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> Any:
        """Dramatiq's enqueue script and the wake-up push, in one round trip."""
        args = self._enqueue_args(queue_name, message_id, data)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.eval(_DISPATCH_SOURCE, 1, self.namespace, *args)
            pipe.lpush(self.wake_key(queue_name), b"1")
            pipe.ltrim(self.wake_key(queue_name), 0, WAKE_LIST_MAX - 1)
            return pipe.execute()[0]

    def prepare_enqueue(
        self, message: dramatiq.Message[Any]
    ) -> tuple[dramatiq.Message[Any], bytes]:
        """``message`` with its Redis message id, and its encoding, for a caller that
        queues it itself (``common/lua/submit.lua``, in the same step as the command's
        store); the enqueue middleware hooks run before. Call ``enqueued`` after."""
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        self.emit_before("enqueue", message, None)
        return message, message.encode()

    def enqueued(self, message: dramatiq.Message[Any]) -> None:
        """The after-enqueue hooks for a message ``prepare_enqueue`` prepared."""
        self.emit_after("enqueue", message, None)


class PollingRedisBroker(WakingRedisBroker):
    """Dramatiq's own polling consumer (``SOVD_BROKER_WAKEUP=false``), for comparison."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _RedisConsumer


def build_broker(settings: Settings) -> WakingRedisBroker:
    """The Redis broker for ``settings``, with Dramatiq's default middleware."""
    broker_class = WakingRedisBroker if settings.broker_wakeup else PollingRedisBroker
    return broker_class(
        url=settings.effective_redis_url,
        keys=Keys(settings.key_prefix),
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
    )


def command_message(
    command_type: CommandType,
    policy: CommandPolicy,
    command_id: str,
    *,
    request_id: str | None,
    vehicle_id: str | None = None,
) -> dramatiq.Message[None]:
    """The message that asks the command type's actor to execute ``command_id``.

    It carries no retry, age or time-limit options: each has one source, the command
    type's policy, read where it is used (the deadline by the api when it stores the
    command; retries, back-off and time limits by the worker, ``workers.actors``).
    """
    return dramatiq.Message(
        queue_name=policy.queue_name,
        actor_name=command_type.actor_name,
        args=(command_id,),
        kwargs={"request_id": request_id, "vehicle_id": vehicle_id},
        options={},
    )
