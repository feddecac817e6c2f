"""Resume with ``since``: no gap, no duplicate; a position the log lost closes with 4410."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

import redis
from websockets.exceptions import ConnectionClosed

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from common.keys import Keys
from common.timeutil import utcnow
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    publish_run,
    receive,
    response_event,
    subscribers,
)
from tests.support import ServerThread, timeout, wait_for


def _drop_abruptly(ws: Any) -> None:
    """Cut the TCP connection without a close frame, as a lost network would."""
    with contextlib.suppress(OSError):
        ws.socket.shutdown(socket.SHUT_RDWR)


def test_forced_disconnects_in_the_middle_of_a_multi_chunk_command_lose_and_repeat_nothing(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    token = world.token(alice)
    chunks = 150
    publisher = threading.Thread(target=publish_run, args=(events, command_id, chunks))
    received: list[dict[str, Any]] = []
    disconnects = 0
    publisher.start()
    try:
        while not (received and received[-1].get("status") == "completed"):
            since = received[-1]["seq"] if received else 0
            with follow(server, command_id, token, since=since) as ws:
                received += receive(ws, 1)
                if received[-1].get("status") == "completed":
                    break
                received += receive(ws, min(6, chunks + 2 - len(received)))
                _drop_abruptly(ws)
                disconnects += 1
    finally:
        publisher.join(timeout(10))
    assert disconnects >= 20
    assert [e["seq"] for e in received] == list(range(1, chunks + 3))
    assert [e["sequence_number"] for e in received[1:-1]] == list(range(1, chunks + 1))
    assert (received[0]["status"], received[-1]["status"]) == ("in_progress", "completed")


def test_events_published_while_a_client_is_away_arrive_when_it_resumes(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    token = world.token(alice)
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    events.append(response_event(command_id, 1))
    with follow(server, command_id, token) as ws:
        assert [e["seq"] for e in receive(ws, 2)] == [1, 2]
        _drop_abruptly(ws)
    for n in range(2, 5):
        events.append(response_event(command_id, n, final=n == 4))
    with follow(server, command_id, token, since=2) as ws:
        assert [e["sequence_number"] for e in receive(ws, 3)] == [2, 3, 4]
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
        assert [(e["seq"], e["status"]) for e in receive(ws, 1)] == [(6, "completed")]


def test_a_position_the_trimmed_log_no_longer_holds_closes_with_4410_and_the_last_seq(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=4)  # seq 1..6
    sync_redis.xtrim(keys.command_events(command_id), maxlen=2, approximate=False)  # keeps 5, 6

    with follow(server, command_id, world.token(alice), since=1) as ws:
        lost = receive(ws, 1)[0]
        assert (lost["event"], lost["error_code"], lost["last_seq"]) == (
            "error",
            "cannot_recover",
            6,
        )
        assert lost["command_id"] == command_id
        assert close_of(ws) == (4410, "Cannot recover: fetch state over REST")
    with follow(server, command_id, world.token(alice), since=4) as ws:
        assert [e["seq"] for e in receive(ws, 2)] == [5, 6]


def test_an_expired_log_closes_a_client_that_is_behind_with_4410_but_not_one_up_to_date(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=1)  # seq 1..3
    sync_redis.delete(keys.command_events(command_id))  # what the log's TTL does

    for since in (0, 2):
        with follow(server, command_id, world.token(alice), since=since) as ws:
            assert receive(ws, 1)[0]["last_seq"] == 3
            assert close_of(ws)[0] == 4410
    with follow(server, command_id, world.token(alice), since=3) as ws:
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]


def test_a_since_past_the_commands_last_event_closes_with_1008(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=1)

    with follow(server, command_id, world.token(alice), since=9) as ws:
        assert close_of(ws) == (1008, "since is beyond the command's last event")


def test_a_gap_the_log_can_no_longer_fill_closes_a_live_client_with_4410(
    server: ServerThread,
    world: World,
    events: EventLog,
    sync_redis: redis.Redis,
    keys: Keys,
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with follow(server, command_id, world.token(alice)) as ws:
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["seq"] == 1
        # Events 2..4 logged but their publishes lost, then trimmed away: a gap nobody can fill.
        for seq in (2, 3, 4):
            sync_redis.hincrby(keys.command(command_id), "event_seq", 1)
            body = {"seq": seq, "command_id": command_id, "event": "status", "status": "x"}
            sync_redis.xadd(
                keys.command_events(command_id), {"event": json.dumps(body)}, f"{seq}-0"
            )
        sync_redis.xtrim(keys.command_events(command_id), maxlen=1, approximate=False)
        events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
        lost = receive(ws, 1)[0]
        assert (lost["error_code"], lost["last_seq"]) == ("cannot_recover", 5)
        assert close_of(ws)[0] == 4410
    wait_for(lambda: subscribers(sync_redis, command_id) == 0, what="the channel to be released")


def test_a_subscribe_action_at_a_lost_position_answers_an_error_and_keeps_the_connection(
    server: ServerThread, world: World, events: EventLog, sync_redis: redis.Redis, keys: Keys
) -> None:
    alice = world.user("alice")
    first, second = world.command(alice), world.command(alice)
    publish_run(events, second, chunks=2)  # seq 1..4
    sync_redis.delete(keys.command_events(second))
    with follow(server, first, world.token(alice)) as ws:
        ws.send(json.dumps({"action": "subscribe", "command_id": second, "since": 1}))
        subscribed, lost = receive(ws, 2)
        assert subscribed["event"] == "subscribed"
        assert (lost["command_id"], lost["error_code"], lost["last_seq"]) == (
            second,
            "cannot_recover",
            4,
        )
        events.append(StatusEvent(command_id=first, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["command_id"] == first
        ws.send(json.dumps({"action": "subscribe", "command_id": second, "since": 4}))
        assert receive(ws, 1)[0]["event"] == "subscribed"
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws, 1) == [{"event": "pong"}]


def test_a_client_without_since_after_the_end_gets_the_whole_log(
    server: ServerThread, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    publish_run(events, command_id, chunks=2)
    events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED, completed_at=utcnow())
    )  # refused: nothing after the terminal status

    with open_ws(server, command_id, world.token(alice)) as ws:
        got = receive(ws, 5)
        assert [e["event"] for e in got] == ["welcome", "status", "response", "response", "status"]
        ws.send(json.dumps({"action": "ping"}))
        try:
            assert receive(ws, 1) == [{"event": "pong"}]
        except ConnectionClosed as exc:  # pragma: no cover - a failure message, not a path
            raise AssertionError(f"closed: {exc}") from None
