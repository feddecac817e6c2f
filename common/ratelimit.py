"""Fixed-window rate limits in Redis, shared by every api process."""

from __future__ import annotations

import time

import redis.asyncio

from common.errors import RateLimitedError

__all__ = ["RateLimiter"]

_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""


class RateLimiter:
    """At most ``limit`` hits per ``window_s`` for one subject; over that, 429."""

    def __init__(
        self, client: redis.asyncio.Redis, key_prefix: str, *, limit: int, window_s: int
    ) -> None:
        self._key_prefix = key_prefix
        self._limit = limit
        self._window_s = window_s
        self._hit = client.register_script(_HIT_SCRIPT)

    async def hit(self, subject: str, *, message: str) -> None:
        """Count one hit for ``subject``; raise ``RateLimitedError`` past the limit."""
        window = int(time.time() // self._window_s)
        key = f"{self._key_prefix}:{subject}:{window}"
        count, ttl = await self._hit(keys=[key], args=[self._window_s])
        if int(count) > self._limit:
            raise RateLimitedError(message, retry_after_s=max(int(ttl), 1))
