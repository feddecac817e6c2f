"""Fixed-window rate limits in Redis, shared by every api process."""

from __future__ import annotations

import time

import redis.asyncio

from common.errors import RateLimitedError
from common.lua import lua_script

__all__ = ["RateLimiter"]

#: common/lua/rate_limit_hit.lua
_HIT_SCRIPT = lua_script("rate_limit_hit")


class RateLimiter:
    """At most ``limit`` hits per ``window_s`` for one subject; over that, 429."""

    def __init__(
        self, client: redis.asyncio.Redis, key_prefix: str, *, limit: int, window_s: int
    ) -> None:
        self._key_prefix = key_prefix
        self._limit = limit
        self._window_s = window_s
        self._hit = _HIT_SCRIPT.register_async(client)

    def window(self, subject: str) -> tuple[str, int, int]:
        """``(counter key of the current window, window seconds, limit)`` for ``subject``,
        for a caller that counts the hit in a script of its own."""
        window = int(time.time() // self._window_s)
        return f"{self._key_prefix}:{subject}:{window}", self._window_s, self._limit

    async def hit(self, subject: str, *, message: str) -> None:
        """Count one hit for ``subject``; raise ``RateLimitedError`` past the limit."""
        key, _, _ = self.window(subject)
        count, ttl = await self._hit(keys=[key], args=[self._window_s])
        if int(count) > self._limit:
            raise RateLimitedError(message, retry_after_s=max(int(ttl), 1))
