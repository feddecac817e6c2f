"""Presence streams on a real realtime server: WebSocket and SSE clients follow vehicles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import redis
from websockets.sync.client import ClientConnection, connect

from common.auth_events import AuthEvent
from common.fleet import demo_fleet, registered
from common.keys import Keys
from common.presence import Presence
from common.redis_client import async_client
from common.settings import Settings
from common.users import Role
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore
from tests.component.realtime_support import (
    World,
    close_of,
    realtime_server,
    receive,
    running_service,
    service_of,
    until,
    with_settings,
)
from tests.support import RedisServer, ServerThread, timeout, wait_for

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FLEET = [registered(v) for v in demo_fleet()[:3]]


def store(settings: Settings, *vehicles: Vehicle) -> None:
    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            for vehicle in vehicles:
                await VehicleStore(client, Keys(settings.key_prefix)).put(vehicle)
        finally:
            await client.aclose()

    asyncio.run(go())


def report(settings: Settings, vehicle_id: str, kind: str, at: datetime) -> None:
    async def go() -> None:
        client = async_client(settings.effective_redis_url)
        try:
            presence = Presence(client, Keys(settings.key_prefix), settings)
            if kind == "connected":
                await presence.connected(vehicle_id, at=at)
            else:
                await presence.disconnected(vehicle_id, reason=kind, at=at)
        finally:
            await client.aclose()

    asyncio.run(go())


@contextlib.contextmanager
def watch(server: ServerThread, token: str, vehicle_id: str | None = None) -> Iterator[Any]:
    """A presence WebSocket past its welcome; yields (client, snapshot vehicles by id)."""
    path = "/ws/vehicles" + (f"/{vehicle_id}" if vehicle_id else "")
    with connect(f"{server.ws_base}{path}?token={token}", open_timeout=timeout(5)) as ws:
        welcome, snapshot = receive(ws, 2)
        assert welcome["event"] == "welcome"
        assert snapshot["event"] == "presence_snapshot"
        assert snapshot["last"] is True
        yield ws, {v["vehicle_id"]: v for v in snapshot["vehicles"]}


def presence_events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    got = receive(ws, count)
    assert all(e["event"] == "presence" for e in got), got
    return got


def test_two_websocket_clients_get_the_snapshot_then_each_change(
    server: ServerThread, world: World, settings: Settings
) -> None:
    store(settings, *FLEET)
    viewer = world.user("vera", Role.VIEWER)
    first = FLEET[0]
    with (
        watch(server, world.token(viewer)) as (a, snap_a),
        watch(server, world.token(viewer)) as (b, _),
    ):
        assert set(snap_a) == {v.vehicle_id for v in FLEET}
        assert {v["connection_status"] for v in snap_a.values()} == {"disconnected"}
        report(settings, first.vehicle_id, "connected", T0)
        report(settings, first.vehicle_id, "last_will", T0 + timedelta(seconds=1))
        for ws in (a, b):
            connected, gone = presence_events(ws, 2)
            assert (connected["vehicle_id"], connected["vin"]) == (first.vehicle_id, first.vin)
            assert (connected["connection_status"], connected["previous_status"]) == (
                "connected",
                "disconnected",
            )
            assert connected["last_seen_at"] == "2026-06-01T12:00:00Z"
            assert (gone["connection_status"], gone["reason"]) == ("disconnected", "last_will")


def test_a_stream_for_one_vehicle_gets_only_that_vehicles_changes(
    server: ServerThread, world: World, settings: Settings
) -> None:
    store(settings, *FLEET)
    mine, other = FLEET[0], FLEET[1]
    engineer = world.user("erin")
    with watch(server, world.token(engineer), mine.vehicle_id) as (ws, snapshot):
        assert list(snapshot) == [mine.vehicle_id]
        report(settings, other.vehicle_id, "connected", T0)
        report(settings, mine.vehicle_id, "connected", T0)
        (event,) = presence_events(ws, 1)
        assert event["vehicle_id"] == mine.vehicle_id


def test_a_change_made_before_the_stream_opens_is_in_its_snapshot(
    server: ServerThread, world: World, settings: Settings
) -> None:
    store(settings, *FLEET)
    token = world.token(world.user("vic", Role.VIEWER))
    report(settings, FLEET[0].vehicle_id, "connected", T0)
    with watch(server, token) as (_ws, snapshot):
        assert snapshot[FLEET[0].vehicle_id]["connection_status"] == "connected"
        assert snapshot[FLEET[0].vehicle_id]["last_seen_at"] == "2026-06-01T12:00:00Z"


def test_presence_streams_are_refused_like_command_streams(
    server: ServerThread, world: World, settings: Settings
) -> None:
    store(settings, *FLEET)
    token = world.token(world.user("rita", Role.VIEWER))
    cases = [
        ("/ws/vehicles", (1008, "Missing token")),
        (f"/ws/vehicles/{uuid.uuid4()}?token={token}", (4404, "Vehicle not found")),
        (f"/ws/vehicles/not-a-uuid?token={token}", (4404, "Vehicle not found")),
        ("/ws/vehicles?token=forged", (1008, "Invalid token")),
    ]
    for path, expected in cases:
        with connect(f"{server.ws_base}{path}", open_timeout=timeout(5)) as ws:
            code, reason = close_of(ws)
            assert (code, reason.split(":")[0]) == expected, path


def test_sse_clients_follow_presence_with_a_bearer_token(
    server: ServerThread, world: World, settings: Settings
) -> None:
    store(settings, *FLEET)
    token = world.token(world.user("sam", Role.VIEWER))
    target = FLEET[2]
    unauthenticated = httpx.get(f"{server.http_base}/sse/vehicles", timeout=timeout(5))
    assert unauthenticated.status_code == 401
    unknown = httpx.get(
        f"{server.http_base}/sse/vehicles/{uuid.uuid4()}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout(5),
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "vehicle_not_found")
    with httpx.stream(
        "GET",
        f"{server.http_base}/sse/vehicles/{target.vehicle_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(timeout(5)),
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = (line[6:] for line in response.iter_lines() if line.startswith("data: "))
        welcome, snapshot = json.loads(next(data)), json.loads(next(data))
        assert (welcome["event"], snapshot["event"]) == ("welcome", "presence_snapshot")
        assert [v["vehicle_id"] for v in snapshot["vehicles"]] == [target.vehicle_id]
        report(settings, target.vehicle_id, "connected", T0)
        change = json.loads(next(data))
        assert (change["event"], change["connection_status"]) == ("presence", "connected")


def test_a_relay_reconnect_sends_a_fresh_snapshot_with_what_was_missed(
    settings: Settings,
) -> None:
    own = RedisServer()
    own.start()
    try:
        isolated = with_settings(settings, redis_url=own.url)
        store(isolated, *FLEET)
        world = World(isolated)
        token = world.token(world.user("ray", Role.VIEWER))
        with realtime_server(isolated) as server, watch(server, token) as (ws, _):
            relay = service_of(server).relay
            reconnects = relay.reconnects
            admin = redis.Redis.from_url(own.url, decode_responses=True)
            # A change whose push this relay never hears (written, not published).
            online = FLEET[1].model_copy(update={"connection_status": ConnectionStatus.CONNECTED})
            store(isolated, online)
            admin.client_kill_filter(_type="pubsub")
            wait_for(lambda: relay.reconnects > reconnects and relay.connected, what="reconnect")
            (message,) = receive(ws, 1)
            assert message["event"] == "presence_snapshot"
            statuses = {v["vehicle_id"]: v["connection_status"] for v in message["vehicles"]}
            assert statuses[FLEET[1].vehicle_id] == "connected"
            admin.close()
    finally:
        own.stop()


def test_a_deactivated_user_loses_its_presence_stream_at_once(
    server: ServerThread, world: World, settings: Settings, sync_redis: redis.Redis
) -> None:
    store(settings, *FLEET)
    user = world.user("dora", Role.VIEWER)
    with watch(server, world.token(user)) as (ws, _):
        event = AuthEvent(kind="user_deactivated", user_id=user.user_id)
        sync_redis.publish(Keys(settings.key_prefix).auth_events, event.model_dump_json())
        assert close_of(ws) == (4403, "Session revoked")
    wait_for(lambda: len(service_of(server).presence.feed) == 0, what="the follower to go")


def test_a_snapshot_begun_by_a_relay_reconnect_supersedes_the_one_being_read(
    settings: Settings, world: World
) -> None:
    """A relay reconnect while a follower's first snapshot is read begins a second one.
    The first must send nothing more: otherwise it goes live, a change is sent, and the
    second snapshot, read before that change, lands after it and leaves the client
    showing an old state. The reads are real; a gate holds each one back."""
    viewer = world.user("vera", Role.VIEWER)
    token = world.token(viewer)
    vehicle = registered(demo_fleet()[0])
    keys = Keys(settings.key_prefix)

    async def scenario() -> None:
        holder: dict[str, Any] = {}
        async with running_service(
            settings,
            presence_channel=keys.presence_events,
            on_presence_event=lambda data: holder["service"].presence.on_event(data),
        ) as service:
            holder["service"] = service
            vehicles = VehicleStore(service.client, keys)
            await vehicles.put(vehicle)
            connection = await service.admit_presence(
                token=token, vehicle_id=vehicle.vehicle_id, transport="sse"
            )
            streams = service.presence
            real_get = streams._vehicles.get
            first_go, second_read, second_go = asyncio.Event(), asyncio.Event(), asyncio.Event()
            reads = 0

            async def gated_get(vehicle_id: str) -> Any:
                nonlocal reads
                reads += 1
                if reads == 1:  # the first snapshot: slow to read
                    await first_go.wait()
                    return await real_get(vehicle_id)
                value = await real_get(vehicle_id)  # the second: read, then slow to go on
                second_read.set()
                await second_go.wait()
                return value

            streams._vehicles.get = gated_get  # type: ignore[method-assign]
            first = asyncio.create_task(streams.follow(connection, vehicle.vehicle_id))
            await until(lambda: reads == 1, "the first snapshot's read")
            streams.resnapshot_all()  # what a relay reconnect does
            await second_read.wait()
            first_go.set()
            await first
            assert await Presence(service.client, keys, settings).connected(vehicle.vehicle_id)
            follower = streams.feed.followers()[0]
            await until(
                lambda: streams.feed.delivered >= 1 or bool(follower.buffer),
                "the change to reach the follower (sent live, or held for the snapshot)",
            )
            second_go.set()
            await until(lambda: not streams._tasks, "the second snapshot")
            await until(lambda: streams.feed.followers()[0].buffer is None, "the follower live")
            shown: dict[str, str] = {}
            while (item := connection.outbox.take()) is not None:
                event = json.loads(item[0])
                if event["event"] == "presence_snapshot":
                    shown.update(
                        {v["vehicle_id"]: v["connection_status"] for v in event["vehicles"]}
                    )
                elif event["event"] == "presence":
                    shown[event["vehicle_id"]] = event["connection_status"]
            stored = await vehicles.get(vehicle.vehicle_id)
            assert stored is not None
            assert shown[vehicle.vehicle_id] == stored.connection_status.value == "connected"
            service.close_connection(connection)

    asyncio.run(scenario())
