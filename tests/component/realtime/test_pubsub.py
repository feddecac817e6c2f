"""The relay's own Pub/Sub connection against a real server: messages in order, AUTH,
a Unix socket, and every way a connection ends."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.pubsub import PubSubConnection, open_pubsub
from tests.support import RedisServer

PASSWORD = "pubsub-test-password"


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Inbox:
    def __init__(self) -> None:
        self.replies: list[tuple[str, str, str | None]] = []
        self.changed = asyncio.Event()

    def __call__(self, kind: str, channel: str, data: str | None) -> None:
        self.replies.append((kind, channel, data))
        self.changed.set()

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.replies) < count:
                self.changed.clear()
                await self.changed.wait()


async def _open(url: str, inbox: Inbox) -> PubSubConnection:
    return await open_pubsub(url, inbox, connect_timeout_s=2.0, client_name="sovd-test")


def _publish(url: str, channel: str, messages: list[str]) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for message in messages:
            pipe.publish(channel, message)
        pipe.execute()
    finally:
        client.close()


@in_loop
async def test_a_burst_arrives_whole_and_in_order_after_the_confirmation(redis_url: str) -> None:
    inbox = Inbox()
    connection = await _open(redis_url, inbox)
    channel = f"test-pubsub:{uuid.uuid4().hex}"
    try:
        connection.subscribe(channel)
        await inbox.wait_for(1)
        assert inbox.replies == [("subscribe", channel, None)]
        # Multi-byte text, and payloads split across reads (64 KiB and more).
        messages = [f"{i}:é✓:" + "x" * (i % 7 * 10_000) for i in range(3_000)]
        await asyncio.to_thread(_publish, redis_url, channel, messages)
        await inbox.wait_for(1 + len(messages))
        assert inbox.replies[1:] == [("message", channel, m) for m in messages]
        connection.unsubscribe(channel)
        await inbox.wait_for(2 + len(messages))
        assert inbox.replies[-1] == ("unsubscribe", channel, None)
    finally:
        connection.close()


@in_loop
async def test_a_ping_in_subscribed_mode_refreshes_last_seen_and_is_no_message(
    redis_url: str,
) -> None:
    inbox = Inbox()
    connection = await _open(redis_url, inbox)
    try:
        connection.subscribe(f"test-pubsub:{uuid.uuid4().hex}")
        await inbox.wait_for(1)
        before = connection.last_seen
        connection.ping()
        second = f"test-pubsub:{uuid.uuid4().hex}"
        connection.subscribe(second)  # answered after the pong: replies come in order
        await inbox.wait_for(2)
        assert inbox.replies[1] == ("subscribe", second, None)
        assert len(inbox.replies) == 2
        assert connection.last_seen > before
        assert not connection.closed.done()
    finally:
        connection.close()


@in_loop
async def test_credentials_from_the_url_over_tcp_and_a_unix_socket(
    locked_server: RedisServer,
) -> None:
    for url in (locked_server.url, locked_server.unix_url):
        inbox = Inbox()
        connection = await _open(url, inbox)
        channel = f"test-pubsub:{uuid.uuid4().hex}"
        try:
            connection.subscribe(channel)
            await inbox.wait_for(1)
            await asyncio.to_thread(_publish, locked_server.url, channel, ["hello"])
            await inbox.wait_for(2)
            assert inbox.replies[1] == ("message", channel, "hello")
        finally:
            connection.close()


@in_loop
async def test_wrong_or_missing_credentials_are_refused_as_such(
    locked_server: RedisServer,
) -> None:
    wrong = locked_server.url.replace(PASSWORD, "not-the-password")
    with pytest.raises(AuthenticationError):
        await _open(wrong, Inbox())
    missing = locked_server.url.replace(f":{PASSWORD}@", "")
    inbox = Inbox()
    connection = await _open(missing, inbox)  # Redis refuses the first command instead
    connection.subscribe("test-pubsub:refused")
    with pytest.raises(RedisConnectionError, match="NOAUTH"):
        async with asyncio.timeout(5):
            await connection.closed
    assert inbox.replies == []


@in_loop
async def test_an_unreachable_server_fails_fast() -> None:
    from tests.support import free_port

    with pytest.raises((RedisConnectionError, OSError)):
        await _open(f"redis://127.0.0.1:{free_port()}/0", Inbox())


@in_loop
async def test_a_connection_killed_by_the_server_says_so(redis_url: str) -> None:
    inbox = Inbox()
    name = f"sovd-test-{uuid.uuid4().hex[:8]}"
    connection = await open_pubsub(redis_url, inbox, connect_timeout_s=2.0, client_name=name)
    connection.subscribe(f"test-pubsub:{uuid.uuid4().hex}")
    await inbox.wait_for(1)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # Its name is how an operator finds the connection; here, the one to kill.
        (target,) = [c["id"] for c in client.client_list() if c["name"] == name]
        assert client.client_kill_filter(_id=target) == 1
    finally:
        client.close()
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(5):
            await connection.closed
    with pytest.raises(RedisConnectionError):
        connection.subscribe("test-pubsub:after")


@in_loop
async def test_the_connection_carries_its_name(redis_url: str) -> None:
    inbox = Inbox()
    name = f"sovd-test-{uuid.uuid4().hex[:8]}"
    connection = await open_pubsub(redis_url, inbox, connect_timeout_s=2.0, client_name=name)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert any(c["name"] == name for c in client.client_list())
    finally:
        client.close()
        connection.close()
