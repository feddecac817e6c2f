"""Redis restarts, two realtime processes on one Redis, and a draining shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
import redis
from websockets.sync.client import connect

from common.commands import CommandStatus
from common.eventlog import EventLog
from common.events import StatusEvent
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.tokens import decode_token
from common.users import User, UserStore
from realtime import revocation as revocation_module
from realtime.refusals import Refusal
from tests.component.realtime_support import (
    World,
    close_of,
    follow,
    open_ws,
    read_until_close,
    realtime_server,
    receive,
    response_event,
    running_service,
    service_of,
    subscribers,
    with_settings,
)
from tests.support import RedisServer, ServerThread, timeout, wait_for


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for one test, persisting to an append-only file so it can be restarted."""
    server = RedisServer(appendonly=True)
    server.start()
    yield server
    server.stop()


@dataclass
class Private:
    """A realtime world on this test's own Redis (``own_redis``): a user, one of their
    commands, and an admin client to break that Redis with."""

    settings: Settings
    world: World
    keys: Keys
    admin: redis.Redis
    alice: User
    command_id: str


@pytest.fixture
def private(settings: Settings, own_redis: RedisServer) -> Iterator[Private]:
    isolated = with_settings(settings, redis_url=own_redis.url)
    world = World(isolated)
    alice = world.user("alice")
    admin = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        yield Private(
            isolated, world, Keys(isolated.key_prefix), admin, alice, world.command(alice)
        )
    finally:
        admin.close()


def _ready(server: ServerThread) -> int:
    return httpx.get(f"{server.http_base}/health/ready", timeout=timeout(5)).status_code


def test_after_a_redis_restart_clients_get_the_events_logged_before_the_relay_is_back(
    private: Private, own_redis: RedisServer
) -> None:
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, private.world.token(private.alice)) as ws,
    ):
        relay = service_of(server).relay
        events = EventLog(private.admin, private.keys, maxlen=1000, ttl_s=60)
        events.append(StatusEvent(command_id=private.command_id, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["seq"] == 1
        assert _ready(server) == 200

        own_redis.halt()
        wait_for(lambda: _ready(server) == 503, what="readiness to report the outage")
        with open_ws(server, private.command_id, private.world.token(private.alice)) as refused:
            assert close_of(refused, timeout_s=15) == (1013, "Event stream unavailable")
        # Let the relay's back-off grow so the restart is not noticed at once.
        wait_for(lambda: relay.retry_delay_s >= 1.6, what="the relay to back off")
        own_redis.start()
        replayed_before = service_of(server).hub.stats.replayed
        assert not relay.connected
        # Published while nobody listens.
        events.append(response_event(private.command_id, 1))
        events.append(response_event(private.command_id, 2, final=True))

        got = receive(ws, 2)
        assert [(e["seq"], e["sequence_number"]) for e in got] == [(2, 1), (3, 2)]
        assert service_of(server).hub.stats.replayed == replayed_before + 2, "read from the log"
        wait_for(lambda: relay.connected, what="the relay to reconnect")
        events.append(StatusEvent(command_id=private.command_id, status=CommandStatus.COMPLETED))
        assert [(e["seq"], e["status"]) for e in receive(ws, 1)] == [(4, "completed")]
        wait_for(lambda: _ready(server) == 200, what="readiness to recover")
        assert relay.reconnects >= 1


def test_clients_of_two_realtime_processes_each_get_every_event_and_each_subscribes_only_its_own(
    settings: Settings, world: World, events: EventLog, sync_redis: redis.Redis
) -> None:
    alice = world.user("alice")
    shared, only_first, only_second = (world.command(alice) for _ in range(3))
    token = world.token(alice)
    with (
        realtime_server(settings) as first,
        realtime_server(settings) as second,
        follow(first, shared, token) as a,
        follow(second, shared, token) as b,
        follow(first, only_first, token) as c,
        follow(second, only_second, token) as d,
    ):
        hub_1, hub_2 = service_of(first).hub, service_of(second).hub
        wait_for(lambda: len(hub_1) == 2 and len(hub_2) == 2, what="every subscription")
        assert sorted(hub_1.commands()) == sorted([shared, only_first])
        assert sorted(hub_2.commands()) == sorted([shared, only_second])
        assert subscribers(sync_redis, shared) == 2
        assert subscribers(sync_redis, only_first) == 1
        assert subscribers(sync_redis, only_second) == 1
        for command_id in (shared, only_first, only_second):
            events.append(StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS))
            events.append(StatusEvent(command_id=command_id, status=CommandStatus.COMPLETED))
        for client, command_id in ((a, shared), (b, shared), (c, only_first), (d, only_second)):
            got = receive(client, 2)
            assert [(e["command_id"], e["seq"]) for e in got] == [(command_id, 1), (command_id, 2)]


def test_stopping_the_server_closes_clients_with_1001_after_sending_what_was_queued(
    settings: Settings, world: World, events: EventLog
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    with realtime_server(settings) as server:
        with open_ws(server, command_id, world.token(alice)) as ws:
            service = service_of(server)
            wait_for(lambda: len(service.hub) == 1, what="the subscription")
            for n in range(1, 21):
                events.append(response_event(command_id, n))
            stats = service.hub.stats  # live, or replayed when published before the subscribe
            wait_for(lambda: stats.delivered + stats.replayed == 20, what="the events queued")
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            got, code, reason = read_until_close(ws, timeout_s=10)
            stopper.join(timeout(20))
        assert (code, reason) == (1001, "Server shutting down: reconnect")
        assert got[0]["event"] == "welcome"
        assert [e["seq"] for e in got[1:]] == list(range(1, 21))
        with pytest.raises(ConnectionRefusedError), open_ws(server, command_id, world.token(alice)):
            pass  # nothing listens any more


def test_an_unexpected_failure_while_admitting_a_client_closes_with_1011(
    server: ServerThread, world: World, sync_redis: redis.Redis, keys: Keys
) -> None:
    alice = world.user("alice")
    command_id = world.command(alice)
    sync_redis.hset(keys.command(command_id), "status", "not-a-status")  # a corrupt record

    with open_ws(server, command_id, world.token(alice)) as ws:
        assert close_of(ws) == (1011, "Internal error")


def test_a_revocation_pushed_while_the_relay_was_away_closes_the_stream_once_it_is_back(
    private: Private,
) -> None:
    token = private.world.token(private.alice)
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, token) as ws,
    ):
        relay = service_of(server).relay
        reconnects = relay.reconnects
        # The revocation is written, but its push never reached this relay.
        jti = decode_token(private.settings, token, "access").jti
        private.admin.set(private.keys.revoked_access_token(jti), "1", ex=600)
        private.admin.client_kill_filter(_type="pubsub")
        wait_for(lambda: relay.reconnects > reconnects and relay.connected, what="a reconnect")
        assert close_of(ws, timeout_s=10) == (4403, "Session revoked")


def _denied(admin: redis.Redis, command: str) -> bool:
    """Redis refused ``command`` to someone since the ACL log was last reset."""
    return any(entry.get("object") == command for entry in admin.acl_log())


def test_a_resync_that_meets_redis_errors_tries_again_and_the_client_stays(
    private: Private,
) -> None:
    events = EventLog(private.admin, private.keys, maxlen=1000, ttl_s=60)
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, private.world.token(private.alice)) as ws,
    ):
        events.append(StatusEvent(command_id=private.command_id, status=CommandStatus.IN_PROGRESS))
        assert receive(ws, 1)[0]["seq"] == 1
        # Redis answers the relay's log reads with errors for a while (as under load,
        # or while a replica is promoted): the resync must wait it out, not drop anyone.
        private.admin.acl_log_reset()
        private.admin.execute_command("ACL", "SETUSER", "default", "-xrange")
        private.admin.client_kill_filter(_type="pubsub")
        # Missed by Pub/Sub: only in the log.
        events.append(response_event(private.command_id, 1))
        wait_for(lambda: _denied(private.admin, "xrange"), what="a refused log read")
        private.admin.execute_command("ACL", "SETUSER", "default", "+xrange")
        got = receive(ws, 1)
        assert (got[0]["seq"], got[0]["sequence_number"]) == (2, 1)
        events.append(StatusEvent(command_id=private.command_id, status=CommandStatus.COMPLETED))
        assert [(e["seq"], e["status"]) for e in receive(ws, 1)] == [(3, "completed")]


def test_a_revocation_check_that_meets_redis_errors_tries_again(private: Private) -> None:
    token = private.world.token(private.alice)
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, token) as ws,
    ):
        relay = service_of(server).relay
        reconnects = relay.reconnects
        # Revoked while the relay was away (the push is lost), and the first checks after
        # the reconnect meet errors: the check must be tried again until it tells.
        jti = decode_token(private.settings, token, "access").jti
        private.admin.set(private.keys.revoked_access_token(jti), "1", ex=600)
        private.admin.acl_log_reset()
        private.admin.execute_command("ACL", "SETUSER", "default", "-get")
        private.admin.client_kill_filter(_type="pubsub")
        wait_for(lambda: relay.reconnects > reconnects, what="a reconnect")
        wait_for(lambda: _denied(private.admin, "get"), what="a refused check")
        private.admin.execute_command("ACL", "SETUSER", "default", "+get")
        assert close_of(ws, timeout_s=15) == (4403, "Session revoked")


def test_when_revocations_cannot_be_checked_every_client_is_asked_to_reconnect(
    private: Private,
) -> None:
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, private.world.token(private.alice)) as ws,
    ):
        relay = service_of(server).relay
        reconnects = relay.reconnects
        private.admin.execute_command("ACL", "SETUSER", "default", "-get")
        try:
            private.admin.client_kill_filter(_type="pubsub")
            wait_for(lambda: relay.reconnects > reconnects, what="a reconnect")
            # A process that cannot tell who was revoked keeps nobody on trust: 1013 says
            # reconnect, and admission checks the token again.
            assert close_of(ws, timeout_s=30) == (1013, "Event stream unavailable")
        finally:
            private.admin.execute_command("ACL", "SETUSER", "default", "+get")


def test_a_refresh_that_redis_cannot_check_asks_the_client_to_reconnect(private: Private) -> None:
    first, fresh = private.world.token(private.alice), private.world.token(private.alice)
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, first) as ws,
    ):
        # Redis refuses the revocation check.
        private.admin.execute_command("ACL", "SETUSER", "default", "-exists")
        try:
            ws.send(json.dumps({"action": "refresh", "token": fresh}))
            # Not a fault of the server (1011): Redis is away, so reconnect and be checked.
            assert close_of(ws) == (1013, "Event stream unavailable")
        finally:
            private.admin.execute_command("ACL", "SETUSER", "default", "+exists")


@contextlib.contextmanager
def _pool_exhausted(server: ServerThread) -> Iterator[None]:
    """Every pooled Redis connection of the running app held, as a reconnect storm's
    queued handshakes hold them."""
    service = service_of(server)
    loop = service.relay._task.get_loop()
    pool = service.client.connection_pool

    async def take() -> list[Any]:
        return [await pool.get_connection() for _ in range(pool.max_connections)]

    async def give(held: list[Any]) -> None:
        for connection in held:
            await pool.release(connection)

    held = asyncio.run_coroutine_threadsafe(take(), loop).result(timeout(30))
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(give(held), loop).result(timeout(30))


def test_a_refresh_waits_for_a_pooled_connection_no_longer_than_its_check_bound(
    settings: Settings, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without its own bound the refresh would queue for the pool's 30 s wait, its reader
    # answering nothing meanwhile.
    monkeypatch.setattr(revocation_module, "CHECK_TIMEOUT_S", 0.5)
    alice = world.user("alice")
    command_id = world.command(alice)
    first, fresh = world.token(alice), world.token(alice)
    with (
        realtime_server(settings) as server,
        follow(server, command_id, first) as ws,
        _pool_exhausted(server),
    ):
        ws.send(json.dumps({"action": "refresh", "token": fresh}))
        assert close_of(ws, timeout_s=10) == (1013, "Event stream unavailable")


def test_a_recheck_after_a_reconnect_waits_for_the_pool_no_longer_than_its_check_bound(
    private: Private, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revocation_module, "CHECK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(revocation_module, "RECHECK_TRIES", 2)
    with (
        realtime_server(private.settings) as server,
        follow(server, private.command_id, private.world.token(private.alice)) as ws,
    ):
        relay = service_of(server).relay
        reconnects = relay.reconnects
        with _pool_exhausted(server):
            private.admin.client_kill_filter(_type="pubsub")
            wait_for(lambda: relay.reconnects > reconnects, what="a reconnect")
            assert close_of(ws, timeout_s=10) == (1013, "Event stream unavailable")


def test_an_idle_time_that_ran_out_during_a_refused_subscribe_still_closes_with_4408(
    private: Private, own_redis: RedisServer
) -> None:
    """Left empty, the connection subscribes again; that subscribe is still being set up
    when the idle time runs out, and then it is refused (Redis went away): the
    connection is idle, and must not be left open until its token expires."""
    settings = with_settings(private.settings, ws_idle_timeout_s=0.3)
    other = private.world.command(private.alice)
    claims = decode_token(settings, private.world.token(private.alice), "access")

    async def scenario() -> None:
        async with running_service(settings, confirm_timeout_s=1.5) as service:
            connection = service._open(
                private.alice, claims, transport="websocket", command_id=private.command_id
            )
            await service.streams.follow(connection, private.command_id, 0)
            service.streams.unsubscribe(connection, private.command_id)  # the time counts
            own_redis.halt()
            # Unconfirmed for 1.5 s, then refused; the idle time ran out at 0.3 s.
            await service.streams.follow(connection, other, 0)
            assert connection.close_requested.is_set(), "left open though idle"
            idle = Refusal.idle()
            assert (connection.close_code, connection.close_reason) == (
                idle.close_code,
                idle.message,
            )

    asyncio.run(scenario())


@pytest.mark.parametrize("stream", ["command", "presence"])
def test_a_client_admitted_while_the_process_begins_to_shut_down_is_refused_with_1001(
    private: Private, stream: str
) -> None:
    """The shutdown closes the open connections once; one whose checks were still
    waiting on Redis then must not be registered after it, where nothing closes it."""
    token = private.world.token(private.alice)

    async def scenario() -> None:
        async with running_service(private.settings) as service:
            private.admin.client_pause(1000)  # every Redis read waits a second
            admission = asyncio.create_task(
                service.admit(
                    token=token, command_id=private.command_id, since=None, transport="sse"
                )
                if stream == "command"
                else service.admit_presence(token=token, vehicle_id=None, transport="sse")
            )
            await asyncio.sleep(0)  # the admission runs up to its first wait on Redis
            assert not admission.done()
            await service.go_away(drain_s=0, timeout_s=0.1)
            with pytest.raises(Refusal) as refused:
                await admission
            assert refused.value.close_code == Refusal.going_away().close_code
            assert not service.connections

    asyncio.run(scenario())


def test_a_deactivation_pushed_before_the_relay_first_listened_closes_the_stream(
    private: Private, own_redis: RedisServer
) -> None:
    """A presence stream needs no channel of its own, so it is admitted while the relay
    cannot subscribe yet (Redis refuses it the auth channel). A deactivation pushed then
    reaches nobody; once the relay listens, its check ends the stream."""
    keys = private.keys
    admin = private.admin
    # The service's Redis user may use every channel but the auth channel; the writes
    # of this test go through a user of their own, allowed everything.
    admin.execute_command("ACL", "SETUSER", "writer", "on", ">secret", "~*", "&*", "+@all")
    admin.execute_command(
        "ACL", "SETUSER", "default", "resetchannels",
        f"&{keys.presence_events}", "&realtime-control:*", "&response:*",
    )  # fmt: skip
    writer_url = own_redis.url.replace("redis://", "redis://writer:secret@")
    with realtime_server(private.settings) as server:
        service = service_of(server)
        token = private.world.token(private.alice)
        with connect(f"{server.ws_base}/ws/vehicles?token={token}", open_timeout=timeout(5)) as ws:
            assert [e["event"] for e in receive(ws, 2)] == ["welcome", "presence_snapshot"]
            asyncio.run(_deactivate(writer_url, keys, private.alice.username))
            assert service.revocations.seen == 0  # neither the push nor a connection yet
            admin.execute_command("ACL", "SETUSER", "default", "allchannels")
            assert close_of(ws, timeout_s=15) == (4403, "Session revoked")


async def _deactivate(url: str, keys: Keys, username: str) -> None:
    client = async_client(url)
    try:
        await UserStore(client, keys).set_active(username, False)
    finally:
        await client.aclose()


def test_a_presence_snapshot_that_redis_cannot_read_closes_the_stream_with_1013(
    private: Private,
) -> None:
    """Not a silent stream that sends nothing until its token expires: reconnect."""
    token = private.world.token(private.alice)
    with realtime_server(private.settings) as server:
        # The fleet's pages are sorted-set reads; nothing else of the stream uses one.
        private.admin.execute_command("ACL", "SETUSER", "default", "-@sortedset")
        try:
            with connect(
                f"{server.ws_base}/ws/vehicles?token={token}", open_timeout=timeout(5)
            ) as ws:
                assert receive(ws, 1)[0]["event"] == "welcome"
                assert close_of(ws, timeout_s=10) == (1013, "Event stream unavailable")
        finally:
            private.admin.execute_command("ACL", "SETUSER", "default", "+@sortedset")
