"""Limits on what one client may do: message rate, connections per user. Pure, no I/O.

Callers pass the time in (``time.monotonic()``), so every decision is testable
without a clock or a socket.
"""

from __future__ import annotations

__all__ = ["ConnectionCounter", "TokenBucket"]


class TokenBucket:
    """Allow ``burst`` messages at once and ``rate_per_s`` sustained.

    ``allow`` takes one token; when none is left the message is over the limit and
    the caller closes the connection (4029).
    """

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, *, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    @property
    def tokens(self) -> float:
        return self._tokens

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ConnectionCounter:
    """Open connections per user, capped at ``limit`` (one process's view)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, user_id: str) -> int:
        return self._open.get(user_id, 0)

    def acquire(self, user_id: str) -> bool:
        """Count one more connection for ``user_id``; False (nothing counted) at the limit."""
        current = self._open.get(user_id, 0)
        if current >= self.limit:
            return False
        self._open[user_id] = current + 1
        return True

    def release(self, user_id: str) -> None:
        current = self._open.get(user_id, 0) - 1
        if current > 0:
            self._open[user_id] = current
        else:
            self._open.pop(user_id, None)
