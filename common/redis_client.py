"""Redis clients built from a URL with the service's timeouts, and a start-up wait."""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio

__all__ = ["async_client", "sync_client", "wait_for_redis"]

#: Seconds a command may take before the client gives up (covers a stalled server).
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


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
    }
    if pool_timeout_s is None:
        return redis.asyncio.Redis.from_url(url, **options)
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, timeout=pool_timeout_s, **options)
    return redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool


def sync_client(url: str) -> redis.Redis:
    """A thread-safe blocking client (decoded strings), shared by one worker process."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
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
