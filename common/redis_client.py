"""Redis clients built from a URL with the service's timeouts, and a start-up wait."""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

__all__ = ["API_RETRIES", "async_client", "sync_client", "wait_for_redis"]

#: Seconds a command may take before the client gives up (covers a stalled server).
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
#: A worker's writes ride out a Redis restart: back-off from 50 ms doubling to 1 s, for
#: about 8 s in all (a command's deadline is longer), then the error surfaces.
WORKER_RETRY_BASE_S, WORKER_RETRY_CAP_S, WORKER_RETRIES = 0.05, 1.0, 10
#: The api answers fast or not at all: one immediate retry on a dropped connection.
API_RETRIES = 1
_RETRY_ON = [redis.ConnectionError, redis.TimeoutError]


def async_client(
    url: str, *, max_connections: int = 200, pool_timeout_s: float | None = None
) -> redis.asyncio.Redis:
    """An asyncio client (decoded strings), shared by one process.

    With ``pool_timeout_s``, a caller finding every pooled connection busy waits up to
    that long for one instead of failing at once (bursts of many concurrent callers).
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 30,
        "max_connections": max_connections,
        "retry": AsyncRetry(NoBackoff(), API_RETRIES),
        "retry_on_error": _RETRY_ON,
    }
    if pool_timeout_s is None:
        return redis.asyncio.Redis.from_url(url, **options)
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, timeout=pool_timeout_s, **options)
    return redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool


def sync_client(url: str) -> redis.Redis:
    """A thread-safe blocking client (decoded strings), shared by one worker process.

    A dropped connection or a refused reconnect is retried with bounded back-off (a
    Redis restart of a few seconds passes unnoticed). Every write a worker makes is
    safe to repeat: the event script refuses a response or status it already holds.
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(WORKER_RETRY_CAP_S, WORKER_RETRY_BASE_S), WORKER_RETRIES),
        # Not timeouts: a stalled server would hold a thread SOCKET_TIMEOUT_S per try.
        retry_on_error=[redis.ConnectionError],
    )


def wait_for_redis(url: str, *, timeout_s: float = 30.0) -> None:
    """Block until Redis answers PING (processes may start before the server); raise on timeout."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)  # back-off between connection attempts
                delay = min(delay * 2, 1.0)
    finally:
        client.close()
