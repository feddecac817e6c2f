"""Helpers for the realtime tests: a real server, users and commands, WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.eventlog import EventLog
from common.events import Response, ResponseEvent, StatusEvent
from common.keys import Keys, response_channel
from common.redis_client import async_client
from common.settings import Settings
from common.timeutil import utcnow
from common.tokens import issue_token
from common.users import Role, User, UserStore
from realtime.app import create_app
from realtime.hub import Hub, Subscription
from realtime.metrics import RealtimeMetrics
from realtime.relay import Relay
from realtime.server import RealtimeServer, uvicorn_options
from realtime.service import RealtimeService
from tests.support import ServerThread, timeout

RECV_TIMEOUT_S = 5.0


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some values changed (validated like the environment would be)."""
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})


@contextlib.contextmanager
def realtime_server(settings: Settings) -> Iterator[ServerThread]:
    """The realtime app on a real uvicorn, with the options ``python -m realtime`` uses."""
    thread = ServerThread(
        create_app(settings), server_class=RealtimeServer, **uvicorn_options(settings)
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def service_of(server: ServerThread) -> Any:
    """The running app's ``RealtimeService`` (hub, relay, connections, metrics)."""
    return server.server.config.app.state.service


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, **relay_options: Any
) -> AsyncIterator[RealtimeService]:
    """The realtime service with a real Redis and a started relay, in the caller's
    loop and without a server: its connections (``service._open``) have no socket, so
    nothing drains their queues, as for a client that stopped reading."""
    client = async_client(settings.effective_redis_url)
    hub = Hub()
    service: RealtimeService

    async def resync(subscription: Subscription) -> None:
        await service.streams.resync(subscription)

    relay = Relay(settings.effective_redis_url, hub, resync, **relay_options)
    service = RealtimeService(settings, client, hub, relay, RealtimeMetrics())
    await relay.start()
    try:
        await relay.wait_connected(10)
        yield service
    finally:
        await relay.stop()
        await client.aclose()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Wait, in the running loop, for a condition of that loop's own state."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 # no event to wait on: the loop's state
            await asyncio.sleep(0.005)
    assert condition(), what


class World:
    """Users and commands written straight into the test's Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)

    def _run(self, coro: Any) -> Any:
        async def go() -> Any:
            client = async_client(self.settings.effective_redis_url)
            try:
                return await coro(client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def user(self, name: str, role: Role = Role.ENGINEER, *, active: bool = True) -> User:
        return self._run(  # type: ignore[no-any-return]
            lambda c: UserStore(c, self.keys).create(
                username=name, password="password-123", role=role, active=active
            )
        )

    def token(self, user: User, **settings_changes: Any) -> str:
        settings = with_settings(self.settings, **settings_changes) if settings_changes else None
        return issue_token(settings or self.settings, user, "access")[0]

    def command(self, owner: User) -> str:
        record = CommandRecord(
            command_id=str(uuid.uuid4()),
            user_id=owner.user_id,
            vehicle_id=str(uuid.uuid4()),
            command_name="ReadDTC",
            command_params={"ecuAddress": "0x10"},
            status=CommandStatus.PENDING,
            submitted_at=utcnow(),
        )
        self._run(lambda c: CommandStore(c, self.keys).create(record))
        return record.command_id


def ws_url(server: ServerThread, command_id: str, token: str | None, **query: Any) -> str:
    params = {**({"token": token} if token else {}), **query}
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{server.ws_base}/ws/responses/{command_id}?{qs}"


def open_ws(
    server: ServerThread, command_id: str, token: str | None, **query: Any
) -> ClientConnection:
    """A connected client; the server's first message (welcome or close) is still unread."""
    return connect(ws_url(server, command_id, token, **query), open_timeout=timeout(5))


@contextlib.contextmanager
def follow(
    server: ServerThread, command_id: str, token: str, **query: Any
) -> Iterator[ClientConnection]:
    """A connected client past its ``welcome`` event."""
    with open_ws(server, command_id, token, **query) as ws:
        welcome = receive(ws, 1)[0]
        assert welcome["event"] == "welcome", welcome
        yield ws


def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout(RECV_TIMEOUT_S))) for _ in range(count)]


def read_until_close(
    ws: ClientConnection, *, timeout_s: float = RECV_TIMEOUT_S
) -> tuple[list[dict[str, Any]], int, str]:
    """Every message until the server's close, and that close's code and reason."""
    got: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - reads until the close
        while True:
            got.append(json.loads(ws.recv(timeout=timeout(timeout_s))))
    assert closed.value.rcvd is not None, "the server closed without a close frame"
    return got, closed.value.rcvd.code, closed.value.rcvd.reason


def close_of(ws: ClientConnection, *, timeout_s: float = RECV_TIMEOUT_S) -> tuple[int, str]:
    """The close code and reason the server sent (messages before it are skipped)."""
    _, code, reason = read_until_close(ws, timeout_s=timeout_s)
    return code, reason


def subscribers(sync_redis: redis.Redis, command_id: str) -> int:
    ((_, count),) = sync_redis.pubsub_numsub(response_channel(command_id))
    return int(count)


def response_event(
    command_id: str, n: int, *, final: bool = False, **payload: Any
) -> ResponseEvent:
    return ResponseEvent(
        command_id=command_id,
        sequence_number=n,
        response=Response(
            response_id=str(uuid.uuid4()),
            response_payload={"n": n, **payload},
            sequence_number=n,
            is_final=final,
            received_at=utcnow(),
        ),
    )


def publish_run(events: EventLog, command_id: str, chunks: int) -> None:
    """in_progress, ``chunks`` responses, completed."""
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    for n in range(1, chunks + 1):
        events.append(response_event(command_id, n, final=n == chunks))
    events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED, completed_at=utcnow())
    )
