"""A one-bit ``asyncio.Event`` that costs nothing until someone waits on it.

Every open connection holds a few of these. ``asyncio.Event`` allocates a waiter
``deque`` (about 760 bytes) when it is made; a ``Flag`` is two slots and makes a
future only for a waiter, dropped again once the flag is set. Same semantics as
``asyncio.Event``: ``wait`` returns at once when set, else when ``set`` is called;
a cancelled waiter leaves the others waiting.
"""

from __future__ import annotations

import asyncio

__all__ = ["Flag", "wait_any"]


class Flag:
    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Until the flag is set (at once when it is)."""
        await wait_any(self)

    def _add(self, future: asyncio.Future[None]) -> None:
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)

    def _discard(self, future: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                self._waiters = None


async def wait_any(*flags: Flag) -> None:
    """Until one of ``flags`` is set (at once when one is), with one future, no task."""
    if any(flag.is_set() for flag in flags):
        return
    future = asyncio.get_running_loop().create_future()
    for flag in flags:
        flag._add(future)
    try:
        await future
    finally:
        for flag in flags:
            flag._discard(future)
