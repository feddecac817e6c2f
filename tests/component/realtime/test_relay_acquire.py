"""``Relay.acquire`` against a real server: cancelled at any await or timed out, it
gives its hold back, and the channel is unsubscribed once nobody needs it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio

from common.keys import response_channel
from realtime.hub import Hub, Subscription
from realtime.relay import Relay, RelayUnavailable
from tests.component.realtime_support import until


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def _no_resync(_subscription: Subscription) -> None:
    return None


async def _until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10
) -> None:
    for _ in range(int(timeout_s / 0.01)):  # polling Redis for the state asked for
        if await condition():
            return
        await asyncio.sleep(0.01)
    assert await condition(), what


async def _started(url: str, **options: Any) -> Relay:
    relay = Relay(url, Hub(), _no_resync, **options)
    await relay.start()
    await relay.wait_connected(10)
    return relay


def _idle(relay: Relay, probe: redis.asyncio.Redis, channel: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        subscribed = dict(await probe.pubsub_numsub(channel))
        return (
            relay.channel_count() == 0
            and relay.waiter_count() == 0
            and subscribed.get(channel.encode(), 0) == 0
        )

    return check


@pytest.mark.parametrize("kept", [False, True], ids=["alone", "beside-a-kept-hold"])
@in_loop
async def test_an_acquire_cancelled_at_any_await_gives_its_hold_back(
    redis_url: str, kept: bool
) -> None:
    relay = await _started(redis_url)
    probe = redis.asyncio.Redis.from_url(redis_url)
    command_id = str(uuid.uuid4())
    channel = response_channel(command_id)
    try:
        held = await relay.acquire(command_id) if kept else None
        for turns in range(12):  # the cancellation lands at a different point each time
            task = asyncio.create_task(relay.acquire(command_id))
            for _ in range(turns):
                await asyncio.sleep(0)  # one loop turn: lets the acquire go further
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                relay.release(await task)  # it won the race: give it back as a caller would
        assert relay.waiter_count() == 0
        if held is not None:
            assert relay.channel_count() == 1  # the kept hold still needs the channel
            relay.release(held)
        await _until(_idle(relay, probe, channel), "nothing held, nothing subscribed")
    finally:
        await relay.stop()
        await probe.aclose()


@in_loop
async def test_an_acquire_that_times_out_gives_its_hold_back(redis_url: str) -> None:
    relay = await _started(redis_url, confirm_timeout_s=1e-6)  # no confirmation is that fast
    probe = redis.asyncio.Redis.from_url(redis_url)
    command_id = str(uuid.uuid4())
    try:
        with pytest.raises(RelayUnavailable):
            await relay.acquire(command_id)
        await _until(
            _idle(relay, probe, response_channel(command_id)), "the late confirmation undone"
        )
    finally:
        await relay.stop()
        await probe.aclose()


@in_loop
async def test_the_first_connection_too_reports_itself_once_redis_confirmed_the_auth_channel(
    redis_url: str,
) -> None:
    """Clients may be admitted before the relay first listens: the revocation check that
    ``on_reconnected`` starts must run on the first connection too, and only once a
    push on the auth channel can no longer be missed."""
    auth_channel = f"test-auth:{uuid.uuid4()}"
    probe = redis.asyncio.Redis.from_url(redis_url)
    checks: list[asyncio.Task[int]] = []

    def on_reconnected() -> None:
        # Whoever publishes now reaches the relay (PUBLISH counts the receivers).
        checks.append(asyncio.create_task(probe.publish(auth_channel, "{}")))

    relay = await _started(redis_url, auth_channel=auth_channel, on_reconnected=on_reconnected)
    try:
        await until(lambda: bool(checks), "on_reconnected on the first connection")
        assert await checks[0] == 1
    finally:
        await relay.stop()
        await probe.aclose()
