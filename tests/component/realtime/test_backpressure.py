"""A client that stops reading is closed with 4008 and resumes without loss; memory is bounded."""

from __future__ import annotations

import socket
from typing import Any

import httpx2 as httpx
import redis
from websockets.sync.client import connect

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from common.keys import Keys
from common.settings import Settings
from tests.component.realtime_support import (
    World,
    follow,
    read_until_close,
    realtime_server,
    receive,
    response_event,
    service_of,
    with_settings,
    ws_url,
)
from tests.support import timeout, wait_for

MAX_EVENTS = 20
MAX_BYTES = 32 * 1024
PADDING = "x" * 2048  # each response event is a little over 2 KiB
ROUND = 10  # events per round: the reading client never has more than this queued


def _slow_closes(service: Any) -> float:
    value = service.metrics.registry.get_sample_value("sovd_realtime_slow_consumer_closes_total")
    return float(value or 0)


def test_a_client_that_stops_reading_is_closed_with_4008_and_resumes_without_loss(
    settings: Settings, world: World, sync_redis: redis.Redis, keys: Keys
) -> None:
    limited = with_settings(settings, ws_queue_max_events=MAX_EVENTS, ws_queue_max_bytes=MAX_BYTES)
    events = EventLog(sync_redis, keys, maxlen=100_000, ttl_s=60)
    alice = world.user("alice")
    command_id = world.command(alice)
    token = world.token(alice)
    with realtime_server(limited) as server:
        service = service_of(server)
        # A small receive buffer, and a client library that stops reading from the socket
        # once one message waits unread: the server's writes back up quickly.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        with (
            connect(ws_url(server, command_id, token), sock=sock, max_queue=1) as slow,
            follow(server, command_id, token) as reader,
        ):
            wait_for(lambda: len(service.hub) == 2, what="both clients subscribed")
            events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
            assert receive(reader, 1)[0]["seq"] == 1
            published = 1
            # The reader keeps up round by round while the slow client falls behind.
            while _slow_closes(service) == 0 and published < 4000:
                for _ in range(ROUND):
                    events.append(response_event(command_id, published, padding=PADDING))
                    published += 1
                got = receive(reader, ROUND)
                assert [e["seq"] for e in got] == list(range(published - ROUND + 1, published + 1))
            assert _slow_closes(service) == 1
            assert len(service.hub) == 1, "the slow client's subscription is gone at once"
            # Only now does the slow client read: what reached it, then the close.
            got, code, reason = read_until_close(slow, timeout_s=10)
            assert (code, reason) == (4008, "Slow consumer: reconnect with since")
            assert got[0]["event"] == "welcome"
            seen = [e["seq"] for e in got[1:]]
            assert seen == list(range(1, len(seen) + 1))
            assert len(seen) < published
            # Resuming from the last event it saw brings it up to date, with no duplicate.
            events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
            published += 1
            with follow(server, command_id, token, since=seen[-1]) as resumed:
                rest = [e["seq"] for e in receive(resumed, published - len(seen))]
            assert seen + rest == list(range(1, published + 1))
        wait_for(lambda: not service.connections, what="every connection to close")
        assert 0 < service.peak_queued_events <= MAX_EVENTS
        assert 0 < service.peak_queued_bytes <= MAX_BYTES


def test_a_backlog_larger_than_the_queue_is_replayed_in_full_over_sse(
    settings: Settings, world: World, sync_redis: redis.Redis, keys: Keys
) -> None:
    limited = with_settings(settings, ws_queue_max_events=MAX_EVENTS, ws_queue_max_bytes=MAX_BYTES)
    events = EventLog(sync_redis, keys, maxlen=100_000, ttl_s=60)
    alice = world.user("alice")
    command_id = world.command(alice)
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    for n in range(1, 300):
        events.append(response_event(command_id, n, padding=PADDING))
    with (
        realtime_server(limited) as server,
        httpx.stream(
            "GET",
            f"{server.http_base}/api/v1/commands/{command_id}/events",
            headers={"Authorization": f"Bearer {world.token(alice)}"},
            timeout=timeout(10),
        ) as response,
    ):
        ids = []
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
                if len(ids) == 300:
                    break
        assert ids == list(range(1, 301))
    assert _slow_closes(service_of(server)) == 0


def test_a_client_that_vanishes_during_a_long_replay_is_cleaned_up(
    settings: Settings, world: World, sync_redis: redis.Redis, keys: Keys
) -> None:
    limited = with_settings(settings, ws_queue_max_events=4, ws_queue_max_bytes=MAX_BYTES)
    events = EventLog(sync_redis, keys, maxlen=100_000, ttl_s=60)
    alice = world.user("alice")
    command_id = world.command(alice)
    events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
    for n in range(1, 2000):
        events.append(response_event(command_id, n, padding=PADDING))
    with realtime_server(limited) as server:
        service = service_of(server)
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with connect(ws_url(server, command_id, world.token(alice)), sock=sock, max_queue=1):
            # The replay is under way and waiting for this client, who reads nothing.
            wait_for(
                lambda: service.hub.stats.replayed >= 4 and len(service.connections) == 1,
                what="the replay to start",
            )
            sock.shutdown(socket.SHUT_RDWR)  # gone without a close frame
        wait_for(lambda: not service.connections, what="the connection to be forgotten")
        wait_for(lambda: len(service.hub) == 0, what="its subscription to be dropped")
