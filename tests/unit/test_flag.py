"""``Flag``: asyncio.Event's semantics without its per-instance deque; ``wait_any``."""

from __future__ import annotations

import asyncio

from realtime.flag import Flag, wait_any

WAIT_S = 5.0


def _waiting(flag: Flag) -> int:
    """Futures the flag holds (0 when it holds no list at all)."""
    return -1 if flag._waiters == [] else len(flag._waiters or ())


def test_waiting_on_a_set_flag_returns_at_once_and_makes_no_future() -> None:
    async def scenario() -> None:
        flag = Flag()
        flag.set()
        await asyncio.wait_for(flag.wait(), WAIT_S)
        assert flag.is_set() is True
        assert _waiting(flag) == 0

    asyncio.run(scenario())


def test_set_wakes_every_waiter_and_forgets_them() -> None:
    async def scenario() -> None:
        flag = Flag()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        await asyncio.sleep(0)  # let each waiter register
        assert _waiting(flag) == 3
        flag.set()
        await asyncio.wait_for(asyncio.gather(*waiters), WAIT_S)
        assert _waiting(flag) == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    async def scenario() -> None:
        flag = Flag()
        cancelled = asyncio.create_task(flag.wait())
        kept = asyncio.create_task(flag.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert cancelled.cancelled() is True
        assert kept.done() is False
        assert _waiting(flag) == 1
        flag.set()
        await asyncio.wait_for(kept, WAIT_S)
        assert _waiting(flag) == 0

    asyncio.run(scenario())


def test_clear_makes_the_next_wait_block_until_set_again() -> None:
    async def scenario() -> None:
        flag = Flag()
        flag.set()
        flag.clear()
        waiter = asyncio.create_task(flag.wait())
        await asyncio.sleep(0)
        assert waiter.done() is False
        flag.set()
        await asyncio.wait_for(waiter, WAIT_S)

    asyncio.run(scenario())


def test_wait_any_returns_when_either_flag_is_set_and_unregisters_from_both() -> None:
    async def scenario() -> None:
        first, second = Flag(), Flag()
        waiter = asyncio.create_task(wait_any(first, second))
        await asyncio.sleep(0)
        assert _waiting(first) == 1
        assert _waiting(second) == 1
        second.set()
        await asyncio.wait_for(waiter, WAIT_S)
        assert first.is_set() is False
        assert _waiting(first) == 0
        assert _waiting(second) == 0

    asyncio.run(scenario())
