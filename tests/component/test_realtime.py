"""The realtime relay served by a real uvicorn, with real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from freezegun import freeze_time
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common.command_store import CommandStore
from common.commands import CommandRecord, CommandStatus
from common.eventlog import EventLog
from common.events import ErrorEvent, Response, ResponseEvent, StatusEvent
from common.keys import Keys, response_channel
from common.redis_client import async_client
from common.settings import Settings
from common.timeutil import utcnow
from common.tokens import issue_token
from common.users import Role, User, UserStore
from realtime.app import create_app
from tests.support import ServerThread, timeout, wait_for

RECV_TIMEOUT_S = 5.0


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    thread = ServerThread(create_app(settings))
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def events(sync_redis: redis.Redis, keys: Keys, settings: Settings) -> EventLog:
    return EventLog(sync_redis, keys, maxlen=settings.event_log_maxlen, ttl_s=60)


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

    def token(self, user: User) -> str:
        return issue_token(self.settings, user, "access")[0]

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


@pytest.fixture
def world(settings: Settings) -> World:
    return World(settings)


def open_ws(
    server: ServerThread, command_id: str, token: str | None, **query: Any
) -> ClientConnection:
    params = {**({"token": token} if token else {}), **query}
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return connect(f"{server.ws_base}/ws/responses/{command_id}?{qs}", open_timeout=timeout(5))


def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout(RECV_TIMEOUT_S))) for _ in range(count)]


def close_of(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=timeout(RECV_TIMEOUT_S))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def subscribers(sync_redis: redis.Redis, command_id: str) -> int:
    ((_, count),) = sync_redis.pubsub_numsub(response_channel(command_id))
    return int(count)


def publish_run(events: EventLog, command_id: str, chunks: int) -> None:
    """in_progress, ``chunks`` responses, completed."""
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    for n in range(1, chunks + 1):
        events.append(
            ResponseEvent(
                command_id=command_id,
                sequence_number=n,
                response=Response(
                    response_id=str(uuid.uuid4()),
                    response_payload={"n": n},
                    sequence_number=n,
                    is_final=n == chunks,
                    received_at=utcnow(),
                ),
            )
        )
    events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED, completed_at=utcnow())
    )


# -- authentication and authorization ----------------------------------------------------


def test_a_missing_token_closes_with_1008(server: ServerThread, world: World) -> None:
    command_id = world.command(world.user("alice"))
    with open_ws(server, command_id, None) as ws:
        assert close_of(ws) == (1008, "Missing token")


def test_an_invalid_token_closes_with_1008(server: ServerThread, world: World) -> None:
    command_id = world.command(world.user("alice"))
    with open_ws(server, command_id, "not.a.jwt") as ws:
        assert close_of(ws) == (1008, "Invalid token")


def test_an_expired_token_closes_with_1008(
    server: ServerThread, world: World, settings: Settings
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with freeze_time("2020-01-01T00:00:00Z"):
        token = issue_token(settings, alice, "access")[0]
    with open_ws(server, command_id, token) as ws:
        assert close_of(ws) == (1008, "Token expired")


def test_an_inactive_user_closes_with_1008(server: ServerThread, world: World) -> None:
    owner = world.user("alice")
    token = world.token(world.user("bob", active=False))
    with open_ws(server, world.command(owner), token) as ws:
        assert close_of(ws) == (1008, "User inactive or unknown")


def test_another_engineers_command_closes_with_4404(server: ServerThread, world: World) -> None:
    command_id = world.command(world.user("alice"))
    with open_ws(server, command_id, world.token(world.user("bob"))) as ws:
        assert close_of(ws) == (4404, "Command not found")


def test_an_unknown_or_malformed_command_id_closes_with_4404(
    server: ServerThread, world: World
) -> None:
    token = world.token(world.user("alice", Role.ADMIN))
    for command_id in (str(uuid.uuid4()), "not-a-uuid"):
        with open_ws(server, command_id, token) as ws:
            assert close_of(ws) == (4404, "Command not found")


def test_viewers_and_admins_may_follow_any_command(
    server: ServerThread, world: World, events: EventLog
) -> None:
    command_id = world.command(world.user("alice"))
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    for name, role in (("vera", Role.VIEWER), ("adam", Role.ADMIN)):
        with open_ws(server, command_id, world.token(world.user(name, role))) as ws:
            assert receive(ws, 1)[0]["status"] == "in_progress"


# -- delivery ----------------------------------------------------------------------------


def test_two_clients_receive_every_live_event_in_order_and_disconnect_unsubscribes(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    hub = server.server.config.app.state.service.hub  # type: ignore[attr-defined]
    with (
        open_ws(server, command_id, world.token(alice)) as a,
        open_ws(server, command_id, world.token(alice)) as b,
    ):
        wait_for(lambda: len(hub) == 2, what="both clients registered")
        wait_for(lambda: subscribers(sync_redis, command_id) == 1, what="one Redis subscription")
        publish_run(events, command_id, chunks=3)
        got_a, got_b = receive(a, 5), receive(b, 5)
        assert got_a == got_b
        assert [e["seq"] for e in got_a] == [1, 2, 3, 4, 5]
        assert [e["event"] for e in got_a] == [
            "status",
            "response",
            "response",
            "response",
            "status",
        ]
        assert [e["sequence_number"] for e in got_a[1:4]] == [1, 2, 3]
        assert got_a[-1]["status"] == "completed"
    wait_for(lambda: len(hub) == 0, what="the registry to empty")
    wait_for(lambda: subscribers(sync_redis, command_id) == 0, what="the Redis unsubscribe")


def test_a_client_that_connects_after_the_end_receives_the_full_replay_and_stays_open(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=4)
    with open_ws(server, command_id, world.token(alice)) as ws:
        got = receive(ws, 6)
        assert [e["seq"] for e in got] == [1, 2, 3, 4, 5, 6]
        assert got[-1]["status"] == "completed"
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]


def test_since_resumes_after_the_given_position(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=4)
    with open_ws(server, command_id, world.token(alice), since=4) as ws:
        assert [e["seq"] for e in receive(ws, 2)] == [5, 6]


def test_a_failure_is_an_error_event_then_one_failed_status(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with open_ws(server, command_id, world.token(alice)) as ws:
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
        events.append(ErrorEvent(command_id=command_id, error_message="boom", error_code="x"))
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.FAILED))
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
        got = receive(ws, 3)
        assert [(e["event"], e.get("status")) for e in got] == [
            ("status", "in_progress"), ("error", None), ("status", "failed"),
        ]  # fmt: skip
        assert got[1]["error_message"] == "boom"


def test_a_second_command_can_be_followed_on_the_same_socket(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    first, second = world.command(alice), world.command(alice)
    publish_run(events, second, chunks=1)
    with open_ws(server, first, world.token(alice)) as ws:
        ws.send(json.dumps({"action": "subscribe", "command_id": second}))
        got = receive(ws, 4)
        assert got[0] == {"event": "subscribed", "command_id": second, "since": 0}
        assert {e["command_id"] for e in got[1:]} == {second}
        assert [e["seq"] for e in got[1:]] == [1, 2, 3]
        ws.send(json.dumps({"action": "subscribe", "command_id": world.command(world.user("bob"))}))
        refused = receive(ws, 1)[0]
        assert (refused["event"], refused["error_code"]) == ("error", "command_not_found")


def test_malformed_client_messages_get_an_error_event_and_the_socket_stays_open(
    server: ServerThread, world: World
) -> None:
    alice = world.user("alice")
    with open_ws(server, world.command(alice), world.token(alice)) as ws:
        for bad in (
            "not json",
            json.dumps({"action": "dance"}),
            json.dumps({"action": "subscribe"}),
        ):
            ws.send(bad)
            answer = receive(ws, 1)[0]
            assert answer["event"] == "error"
            assert answer["error_code"] == "invalid_message"
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]


def test_events_published_while_the_pubsub_connection_is_down_still_arrive(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    relay = server.server.config.app.state.service.relay  # type: ignore[attr-defined]
    with open_ws(server, command_id, world.token(alice)) as ws:
        wait_for(lambda: subscribers(sync_redis, command_id) == 1, what="the subscription")
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["seq"] == 1
        sync_redis.client_kill_filter(_type="pubsub")
        publish_run_tail = [
            StatusEvent(
                command_id=command_id, status=CommandStatus.COMPLETED, completed_at=utcnow()
            )
        ]
        for event in publish_run_tail:
            events.append(event)
        got = receive(ws, 1)
        assert (got[0]["seq"], got[0]["status"]) == (2, "completed")
        wait_for(lambda: relay.reconnects >= 1, what="the relay to count the reconnect")
