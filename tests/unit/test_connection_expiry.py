"""A connection's token expiry is a loop timer: it closes with 4401 at the token's time
(never before), a refresh moves it, a close stops it, and it costs no task."""

from __future__ import annotations

import asyncio
import time

from common.protocol import CloseCode
from common.users import Role, User
from realtime.connection import Connection
from realtime.lifetime import TokenLifetime
from realtime.outbox import Outbox

WAIT_S = 5.0
SHORT_S = 0.2


def _connection(expires_in_s: float, *, grace_s: float = 0.0) -> Connection:
    user = User(user_id="u1", username="alice", password_hash="x", role=Role.ENGINEER)
    lifetime = TokenLifetime("u1", time.time() + expires_in_s, grace_s=grace_s, token_id="j1")
    return Connection(
        user,
        lifetime,
        Outbox(max_events=10, max_bytes=10_000),
        transport="websocket",
        primary_command_id="c1",
    )


def test_the_timer_closes_with_4401_once_the_token_and_its_grace_are_over() -> None:
    async def scenario() -> None:
        connection = _connection(SHORT_S, grace_s=SHORT_S)
        tasks_before = len(asyncio.all_tasks())
        connection.watch_expiry()
        assert len(asyncio.all_tasks()) == tasks_before, "expiry costs no task"
        assert connection.expiry_due is not None
        assert connection.close_requested.is_set() is False
        await asyncio.wait_for(connection.close_requested.wait(), WAIT_S)
        assert time.time() >= connection.lifetime.close_at, "never before the token's time"
        assert (connection.close_code, connection.close_reason) == (
            CloseCode.TOKEN_EXPIRED,
            "Token expired",
        )
        assert connection.expiry_due is None

    asyncio.run(scenario())


def test_a_token_already_expired_closes_at_once() -> None:
    async def scenario() -> None:
        connection = _connection(-1.0)
        connection.watch_expiry()
        assert connection.close_requested.is_set() is True
        assert connection.close_code == CloseCode.TOKEN_EXPIRED
        assert connection.expiry_due is None

    asyncio.run(scenario())


def test_a_refresh_moves_the_timer_to_the_new_expiry() -> None:
    async def scenario() -> None:
        connection = _connection(SHORT_S)
        connection.watch_expiry()
        first = connection.expiry_due
        assert first is not None
        connection.lifetime.refresh("u1", time.time() + 3600, "j2")
        connection.lifetime_moved()
        moved = connection.expiry_due
        assert moved is not None
        assert moved - first > 3000
        assert connection.close_requested.is_set() is False

    asyncio.run(scenario())


def test_a_close_disarms_the_timer_and_a_refresh_does_not_rearm_it() -> None:
    async def scenario() -> None:
        connection = _connection(3600)
        connection.watch_expiry()
        connection.request_close(CloseCode.GOING_AWAY, "bye")
        assert connection.expiry_due is None
        connection.lifetime_moved()
        assert connection.expiry_due is None
        assert connection.close_code == CloseCode.GOING_AWAY

    asyncio.run(scenario())


def test_a_connection_that_never_watched_is_not_armed_by_a_refresh() -> None:
    async def scenario() -> None:
        connection = _connection(3600)
        connection.lifetime_moved()
        assert connection.expiry_due is None

    asyncio.run(scenario())
