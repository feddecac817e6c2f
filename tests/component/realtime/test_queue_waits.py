"""A replay to a client that reads slowly waits for its queue: it leaves room for what
the client asks meanwhile, and it ends with the connection.

The service runs here with a real Redis and a real relay, and its connections have no
socket: nothing drains their queue, as for a client that stopped reading once its
kernel buffers were full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from common.eventlog import EventLog
from common.protocol import CloseCode
from common.settings import Settings
from common.tokens import decode_token
from realtime.connection import Connection
from realtime.service import RealtimeService
from tests.component.realtime_support import (
    World,
    response_event,
    running_service,
    until,
    with_settings,
)

#: A small queue, so a replay of a few dozen events fills it.
QUEUE_EVENTS = 8
WAIT_S = 10.0


def _parked(connection: Connection) -> bool:
    """A producer waits for room in the connection's queue."""
    return connection._room._waiters is not None


Scenario = Callable[[RealtimeService, Connection, "asyncio.Task[None]"], Awaitable[None]]


def _while_replaying(
    settings: Settings, world: World, events: EventLog, scenario: Scenario
) -> None:
    """Run ``scenario`` with a connection that follows a command of 40 logged events
    from the start, its replay parked on a full queue."""
    settings = with_settings(settings, ws_queue_max_events=QUEUE_EVENTS)
    alice = world.user("alice")
    command_id = world.command(alice)
    for n in range(1, 41):
        events.append(response_event(command_id, n))
    claims = decode_token(settings, world.token(alice), "access")

    async def run() -> None:
        async with running_service(settings) as service:
            connection = service._open(alice, claims, transport="websocket", command_id=command_id)
            replay = asyncio.create_task(service.streams.follow(connection, command_id, 0))
            await until(lambda: _parked(connection), "the replay to wait for room")
            await scenario(service, connection, replay)

    asyncio.run(run())


def test_a_replay_leaves_room_for_the_answer_to_a_client_action(
    settings: Settings, world: World, events: EventLog
) -> None:
    """A ping (or a refresh) during a long replay to a slow reader is answered; its
    answer does not overflow the queue into 4008."""

    async def scenario(
        service: RealtimeService, connection: Connection, replay: asyncio.Task[None]
    ) -> None:
        assert connection.push('{"event":"pong"}'), "the answer overflowed the queue"
        assert not connection.close_requested.is_set()
        service.close_connection(connection)
        await asyncio.wait_for(replay, WAIT_S)

    _while_replaying(settings, world, events, scenario)


def test_a_replay_waiting_for_room_ends_when_the_connection_is_closed(
    settings: Settings, world: World, events: EventLog
) -> None:
    """An SSE client that leaves is only forgotten (``close_connection``): a replay or
    resync parked on its full queue must end too, not hold the queue forever."""

    async def scenario(
        service: RealtimeService, connection: Connection, replay: asyncio.Task[None]
    ) -> None:
        service.close_connection(connection)
        await asyncio.wait_for(replay, WAIT_S)
        assert connection.close_requested.is_set()
        assert connection.close_code == CloseCode.NORMAL
        assert not connection.subscriptions
        await until(lambda: service.relay.channel_count() == 0, "the channel given back")

    _while_replaying(settings, world, events, scenario)
