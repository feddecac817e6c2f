"""A client's outgoing queue, bounded by event count and by bytes. Pure, no I/O.

The relay offers events without waiting; when an event would take the queue past
either bound, ``offer`` refuses it and the caller closes the client as a slow
consumer (4008), who then resumes with ``since``. An event is always accepted into
an empty queue, whatever its size, so one large event cannot lock a client out.

An idle client's queue is empty most of the time, so the ``deque`` (about 760 bytes
however few it holds) exists only while something is queued.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Outbox", "encoded_size"]


def encoded_size(data: str) -> int:
    """Bytes ``data`` takes as UTF-8 (cheap for the ASCII JSON most events are)."""
    return len(data) if data.isascii() else len(data.encode())


class Outbox:
    __slots__ = ("_items", "bytes", "max_bytes", "max_events", "peak_bytes", "peak_events")

    def __init__(self, *, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be at least 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: deque[tuple[str, int, float]] | None = None
        self.bytes = 0
        #: The most events and bytes ever held at once.
        self.peak_events = 0
        self.peak_bytes = 0

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def fits(self, data: str) -> bool:
        """Whether ``offer(data)`` would be accepted now."""
        return not self._items or (
            len(self._items) < self.max_events and self.bytes + encoded_size(data) <= self.max_bytes
        )

    def paced_fits(self, data: str) -> bool:
        """Whether a paced producer (a replay) may queue ``data`` now. It fills at most
        three quarters of either bound (an empty queue takes anything), so the live
        events of the client's other commands and the answers to its own actions
        (``pong``, ``token_refreshed``, ``subscribed``, an ``error``) still fit behind a
        long replay to a slow reader."""
        return not self._items or (
            len(self._items) < max(1, self.max_events * 3 // 4)
            and self.bytes + encoded_size(data) <= max(1, self.max_bytes * 3 // 4)
        )

    def half_empty(self) -> bool:
        """At most half full by both bounds: a paced producer may resume."""
        return len(self) <= self.max_events // 2 and self.bytes <= self.max_bytes // 2

    def offer(self, data: str, stamp: float) -> bool:
        """Queue ``data`` (``stamp``: when it was handed over); False when it does not fit."""
        size = encoded_size(data)
        if self._items and (
            len(self._items) >= self.max_events or self.bytes + size > self.max_bytes
        ):
            return False
        if self._items is None:
            self._items = deque()
        self._items.append((data, size, stamp))
        self.bytes += size
        self.peak_events = max(self.peak_events, len(self._items))
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return True

    def take(self) -> tuple[str, float] | None:
        """The oldest event and its stamp, or None when empty."""
        if not self._items:
            return None
        data, size, stamp = self._items.popleft()
        if not self._items:
            self._items = None
        self.bytes -= size
        return data, stamp

    def clear(self) -> None:
        self._items = None
        self.bytes = 0
