"""Presence against a real Redis: reports change the vehicle, publish and audit each change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import redis.asyncio

from common.audit import AsyncAuditLog, AuditAction, AuditQuery
from common.fleet import demo_fleet, registered
from common.keys import Keys
from common.presence import Presence, PresenceChange
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle, VehicleStore

T = TypeVar("T")
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VEHICLE = registered(demo_fleet()[0])


@dataclass
class Parts:
    client: redis.asyncio.Redis
    keys: Keys
    presence: Presence
    vehicles: VehicleStore
    audit: AsyncAuditLog


@asynccontextmanager
async def parts(settings: Settings) -> AsyncIterator[Parts]:
    client = async_client(settings.effective_redis_url)
    keys = Keys(settings.key_prefix)
    try:
        store = VehicleStore(client, keys)
        await store.put(VEHICLE)
        yield Parts(
            client, keys, Presence(client, keys, settings), store,
            AsyncAuditLog(client, keys, settings),
        )  # fmt: skip
    finally:
        await client.aclose()


def run(settings: Settings, body: Callable[[Parts], Awaitable[T]]) -> T:
    async def go() -> T:
        async with parts(settings) as p:
            return await body(p)

    return asyncio.run(go())


async def stored(p: Parts) -> Vehicle:
    vehicle = await p.vehicles.get(VEHICLE.vehicle_id)
    assert vehicle is not None
    return vehicle


def test_a_connect_is_a_change_and_sets_last_seen(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[PresenceChange | None, Vehicle]:
        change = await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        return change, await stored(p)

    change, vehicle = run(settings, body)
    assert change is not None
    assert (change.vehicle_id, change.vin) == (VEHICLE.vehicle_id, VEHICLE.vin)
    assert change.connection_status == ConnectionStatus.CONNECTED
    assert change.previous_status == ConnectionStatus.DISCONNECTED
    assert (change.reason, change.at, change.last_seen_at) == ("connected", T0, T0)
    assert vehicle.connection_status == ConnectionStatus.CONNECTED
    assert vehicle.last_seen_at == T0


def test_a_heartbeat_of_a_connected_vehicle_only_moves_last_seen(settings: Settings) -> None:
    later = T0 + timedelta(seconds=10)

    async def body(p: Parts) -> tuple[PresenceChange | None, Vehicle]:
        await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        change = await p.presence.heartbeat(VEHICLE.vehicle_id, at=later)
        return change, await stored(p)

    change, vehicle = run(settings, body)
    assert change is None
    assert vehicle.last_seen_at == later
    assert vehicle.connection_status == ConnectionStatus.CONNECTED


def test_a_heartbeat_from_a_disconnected_vehicle_connects_it(settings: Settings) -> None:
    async def body(p: Parts) -> PresenceChange | None:
        return await p.presence.heartbeat(VEHICLE.vehicle_id, at=T0)

    change = run(settings, body)
    assert change is not None
    assert change.connection_status == ConnectionStatus.CONNECTED
    assert change.reason == "heartbeat"


def test_a_disconnect_keeps_the_time_of_the_last_report(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[PresenceChange | None, PresenceChange | None, Vehicle]:
        await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        first = await p.presence.disconnected(
            VEHICLE.vehicle_id, reason="last_will", at=T0 + timedelta(seconds=5)
        )
        again = await p.presence.disconnected(
            VEHICLE.vehicle_id, reason="clean_disconnect", at=T0 + timedelta(seconds=6)
        )
        return first, again, await stored(p)

    first, again, vehicle = run(settings, body)
    assert first is not None
    assert first.previous_status == ConnectionStatus.CONNECTED
    assert first.reason == "last_will"
    assert first.last_seen_at == T0
    assert again is None
    assert vehicle.connection_status == ConnectionStatus.DISCONNECTED
    assert vehicle.last_seen_at == T0


def test_a_report_older_than_the_last_one_changes_nothing(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[PresenceChange | None, Vehicle]:
        await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        late = await p.presence.disconnected(
            VEHICLE.vehicle_id, reason="last_will", at=T0 - timedelta(seconds=1)
        )
        return late, await stored(p)

    late, vehicle = run(settings, body)
    assert late is None
    assert vehicle.connection_status == ConnectionStatus.CONNECTED


def test_a_report_for_an_unknown_vehicle_changes_nothing(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[PresenceChange | None, bool]:
        change = await p.presence.connected("no-such-vehicle", at=T0)
        return change, bool(await p.client.exists(p.keys.vehicle("no-such-vehicle")))

    assert run(settings, body) == (None, False)


def test_silent_vehicles_expire_after_the_timeout_and_others_stay(settings: Settings) -> None:
    other = registered(demo_fleet()[1])
    timeout_s = settings.presence_timeout_s

    async def body(p: Parts) -> tuple[list[PresenceChange], list[PresenceChange], Vehicle]:
        await p.vehicles.put(other)
        await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        await p.presence.connected(other.vehicle_id, at=T0 + timedelta(seconds=timeout_s / 2))
        early = await p.presence.expire_silent(now=T0 + timedelta(seconds=timeout_s - 1))
        due = await p.presence.expire_silent(now=T0 + timedelta(seconds=timeout_s + 1))
        return early, due, await stored(p)

    early, due, vehicle = run(settings, body)
    assert early == []
    assert [(c.vehicle_id, c.reason) for c in due] == [(VEHICLE.vehicle_id, "heartbeat_timeout")]
    assert vehicle.connection_status == ConnectionStatus.DISCONNECTED
    assert vehicle.last_seen_at == T0


def test_each_change_is_published_and_audited_once(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[list[PresenceChange], list[AuditAction]]:
        pubsub = p.client.pubsub()
        await pubsub.subscribe(p.keys.presence_events)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        await p.presence.connected(VEHICLE.vehicle_id, at=T0)
        await p.presence.heartbeat(VEHICLE.vehicle_id, at=T0 + timedelta(seconds=1))
        await p.presence.disconnected(
            VEHICLE.vehicle_id, reason="clean_disconnect", at=T0 + timedelta(seconds=2)
        )
        received: list[PresenceChange] = []
        while len(received) < 2:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert message is not None, "a presence event did not arrive"
            received.append(PresenceChange.model_validate(json.loads(message["data"])))
        extra = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        assert extra is None
        await pubsub.aclose()
        entries, _ = await p.audit.query(AuditQuery(vehicle_id=VEHICLE.vehicle_id))
        return received, [e.action for e in reversed(entries)]

    received, actions = run(settings, body)
    assert [(c.connection_status, c.reason) for c in received] == [
        (ConnectionStatus.CONNECTED, "connected"),
        (ConnectionStatus.DISCONNECTED, "clean_disconnect"),
    ]
    assert actions == [AuditAction.VEHICLE_CONNECTED, AuditAction.VEHICLE_DISCONNECTED]


def test_concurrent_reports_record_each_transition_once(settings: Settings) -> None:
    """Many processes' sweeps and reports racing: one change per transition."""

    async def body(p: Parts) -> tuple[list[PresenceChange | None], list[PresenceChange]]:
        others = [Presence(p.client, p.keys, settings) for _ in range(8)]
        connects = await asyncio.gather(*(o.connected(VEHICLE.vehicle_id, at=T0) for o in others))
        late = T0 + timedelta(seconds=settings.presence_timeout_s + 1)
        sweeps = await asyncio.gather(*(o.expire_silent(now=late) for o in others))
        return list(connects), [c for sweep in sweeps for c in sweep]

    connects, sweeps = run(settings, body)
    assert sum(c is not None for c in connects) == 1
    assert len(sweeps) == 1


def test_by_vin_finds_a_vehicle_in_any_case(settings: Settings) -> None:
    async def body(p: Parts) -> tuple[Vehicle | None, Vehicle | None]:
        return await p.vehicles.by_vin(VEHICLE.vin.lower()), await p.vehicles.by_vin("X" * 17)

    found, missing = run(settings, body)
    assert found is not None
    assert found.vehicle_id == VEHICLE.vehicle_id
    assert missing is None
