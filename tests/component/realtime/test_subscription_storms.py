"""A subscription never outlives its client: open-and-close storms, then a real follower."""

from __future__ import annotations

import asyncio
import socket

import redis
from websockets.asyncio.client import connect

from common.eventlog import EventLog
from common.users import Role
from tests.component.realtime_support import (
    World,
    follow,
    publish_run,
    receive,
    service_of,
    subscribers,
    ws_url,
)
from tests.support import ServerThread, timeout, wait_for

STORM_ROUNDS = 3
CLIENTS_PER_ROUND = 25


async def _storm(url: str) -> None:
    """Clients that open the stream and leave at once, before the subscription is confirmed:
    some close cleanly, some drop the TCP connection without a close frame."""

    async def open_and_leave(index: int) -> None:
        ws = await connect(url, open_timeout=timeout(10))
        if index % 2:
            await ws.close()
        else:
            ws.transport.abort()

    for _ in range(STORM_ROUNDS):
        await asyncio.gather(*(open_and_leave(i) for i in range(CLIENTS_PER_ROUND)))


def _raw_half_handshakes(server: ServerThread, command_id: str, token: str, count: int) -> None:
    """Upgrade requests whose sender vanishes as soon as the request is written."""
    request = (
        f"GET /ws/responses/{command_id}?token={token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", server.port), timeout=timeout(5)) as sock:
            sock.sendall(request.encode())


def _relay_is_idle(server: ServerThread, sync_redis: redis.Redis, command_id: str) -> bool:
    service = service_of(server)
    return (
        subscribers(sync_redis, command_id) == 0
        and service.relay.channel_count() == 0
        and service.relay.waiter_count() == 0
        and len(service.hub) == 0
        and not service.connections
        and service.revocations.users == 0  # no user left with an empty entry
    )


def test_after_a_viewers_open_and_close_storm_the_owner_receives_every_event(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    owner = world.user("owner")
    viewer = world.user("viewer", Role.VIEWER)
    command_id = world.command(owner)
    viewer_token = world.token(viewer)
    asyncio.run(_storm(ws_url(server, command_id, viewer_token)))
    _raw_half_handshakes(server, command_id, viewer_token, 10)
    wait_for(
        lambda: _relay_is_idle(server, sync_redis, command_id),
        what="the storm's subscriptions to be released",
    )

    with follow(server, command_id, world.token(owner)) as ws:
        wait_for(lambda: subscribers(sync_redis, command_id) == 1, what="the owner's subscription")
        publish_run(events, command_id, chunks=3)
        got = receive(ws, 5)
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
    assert [e["event"] for e in got] == ["status", "response", "response", "response", "status"]
    assert got[-1]["status"] == "completed"
    wait_for(
        lambda: _relay_is_idle(server, sync_redis, command_id),
        what="the owner's subscription to be released",
    )


def test_a_storm_beside_a_live_follower_keeps_its_stream_and_every_count_returns_to_zero(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    owner = world.user("owner")
    viewer = world.user("viewer", Role.VIEWER)
    command_id = world.command(owner)
    with follow(server, command_id, world.token(owner)) as ws:
        wait_for(lambda: subscribers(sync_redis, command_id) == 1, what="the owner's subscription")
        asyncio.run(_storm(ws_url(server, command_id, world.token(viewer))))
        wait_for(
            lambda: (
                service_of(server).relay.waiter_count() == 0
                and len(service_of(server).connections) == 1
            ),
            what="the storm's clients to be gone",
        )
        assert subscribers(sync_redis, command_id) == 1
        publish_run(events, command_id, chunks=2)
        assert [e["seq"] for e in receive(ws, 4)] == [1, 2, 3, 4]
    wait_for(
        lambda: _relay_is_idle(server, sync_redis, command_id),
        what="every subscription to be released",
    )
