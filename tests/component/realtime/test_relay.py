"""The realtime relay served by a real uvicorn, with real WebSocket clients."""

from __future__ import annotations

import json
import uuid

import redis
from freezegun import freeze_time

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import ErrorEvent, StatusEvent
from common.keys import Keys
from common.settings import Settings
from common.timeutil import utcnow
from common.tokens import issue_token
from common.users import Role
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    publish_run,
    receive,
    service_of,
    subscribers,
)
from tests.support import ServerThread, wait_for

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


def test_refused_subscriptions_are_audited(
    server: ServerThread, world: World, sync_redis: redis.Redis, keys: Keys
) -> None:
    command_id = world.command(world.user("alice"))
    bob = world.user("bob")
    with open_ws(server, command_id, world.token(bob)) as ws:
        close_of(ws)
    with open_ws(server, command_id, "not.a.jwt") as ws:
        close_of(ws)
    entries = [fields for _, fields in sync_redis.xrange(keys.audit)]
    refused = [e for e in entries if e["action"] == "subscription_refused"]
    assert [(e.get("username"), e.get("command_id"), e["outcome"]) for e in refused] == [
        ("bob", command_id, "denied"),
        (None, None, "denied"),
    ]
    assert json.loads(refused[1]["details"]) == {"reason": "Invalid token"}


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
        with follow(server, command_id, world.token(world.user(name, role))) as ws:
            assert receive(ws, 1)[0]["status"] == "in_progress"


# -- delivery ----------------------------------------------------------------------------


def test_two_clients_receive_every_live_event_in_order_and_disconnect_unsubscribes(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    hub = service_of(server).hub
    with (
        follow(server, command_id, world.token(alice)) as a,
        follow(server, command_id, world.token(alice)) as b,
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
    with follow(server, command_id, world.token(alice)) as ws:
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
    with follow(server, command_id, world.token(alice), since=4) as ws:
        assert [e["seq"] for e in receive(ws, 2)] == [5, 6]


def test_a_failure_is_an_error_event_then_one_failed_status(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with follow(server, command_id, world.token(alice)) as ws:
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
    with follow(server, first, world.token(alice)) as ws:
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
    with follow(server, world.command(alice), world.token(alice)) as ws:
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
    relay = service_of(server).relay
    with follow(server, command_id, world.token(alice)) as ws:
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
