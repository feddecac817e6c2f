"""The replay loop against a real log: live events lost while the relay was away during
a replay's own log read are read from the log before the subscription goes live."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.users import Role, User
from realtime.channels import Hold
from realtime.connection import Connection
from realtime.hub import Hub
from realtime.lifetime import TokenLifetime
from realtime.outbox import Outbox
from realtime.subscriptions import Subscriptions
from tests.component.realtime_support import World, response_event


class HeldChannels:
    """The relay's part in a subscription, without Pub/Sub: every channel is confirmed at
    once and nothing live arrives (what Pub/Sub would have sent is lost)."""

    def __init__(self) -> None:
        self.held: list[Hold] = []

    async def acquire(self, command_id: str) -> Hold:
        hold = Hold(f"response:{command_id}", len(self.held))
        self.held.append(hold)
        return hold

    def release(self, hold: Hold) -> None:
        self.held.remove(hold)


def _connection() -> Connection:
    user = User(user_id="u1", username="alice", password_hash="x", role=Role.ENGINEER)
    return Connection(
        user,
        TokenLifetime("u1", time.time() + 3600, grace_s=0.0, token_id="j1"),
        Outbox(max_events=100, max_bytes=1_000_000),
        transport="websocket",
        primary_command_id="c1",
    )


def test_events_lost_during_the_first_log_read_are_read_before_going_live(
    settings: Settings, world: World, events: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    command_id = world.command(world.user("alice"))
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    events.append(response_event(command_id, 1))  # seq 1, 2

    async def scenario() -> list[int]:
        client = async_client(settings.effective_redis_url)
        hub = Hub()
        streams = Subscriptions(client, Keys(settings.key_prefix), hub, HeldChannels())  # type: ignore[arg-type]
        real = streams._last_seq_and_page

        async def read_then_lose(*args: Any) -> Any:
            answer = await real(*args)
            # While that read was in flight the relay was away: the terminal status is
            # published to nobody, then the relay is back and marks the channel stale.
            events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
            for subscription in hub.subscriptions(command_id):
                assert hub.mark_stale(subscription) is False  # its replay covers it
            return answer

        monkeypatch.setattr(streams, "_last_seq_and_page", read_then_lose)
        connection = _connection()
        try:
            await asyncio.wait_for(streams.subscribe(connection, command_id, 0), 10)
            seqs = []
            while (item := connection.outbox.take()) is not None:
                seqs.append(json.loads(item[0])["seq"])
            assert [s.replaying for s in hub.subscriptions(command_id)] == [False]  # live
            return seqs
        finally:
            streams.unsubscribe_all(connection)
            await client.aclose()

    assert asyncio.run(scenario()) == [1, 2, 3]
