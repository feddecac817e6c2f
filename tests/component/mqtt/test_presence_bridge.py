"""Presence from MQTT: the vehicle bridge turns status and heartbeats into ``Presence``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus, Vehicle
from tests.component.mqtt.conftest import AgentProcess, connected_fleet
from tests.support import timeout, wait_for

StartAgent = Callable[..., AgentProcess]
CAR = connected_fleet()[0]


def stored(sync_redis: redis.Redis, keys: Keys, vehicle: Vehicle) -> Vehicle:
    return Vehicle.model_validate_json(sync_redis.get(keys.vehicle(vehicle.vehicle_id)))


@pytest.fixture
def presence_events(sync_redis: redis.Redis, keys: Keys) -> Iterator[Callable[[], dict[str, Any]]]:
    pubsub = sync_redis.pubsub()
    pubsub.subscribe(keys.presence_events)
    pubsub.get_message(timeout=timeout(5))  # the subscribe confirmation

    def next_event() -> dict[str, Any]:
        message = pubsub.get_message(timeout=timeout(15), ignore_subscribe_messages=True)
        assert message is not None, "no presence event"
        return dict(json.loads(message["data"]))

    yield next_event
    pubsub.close()


def test_a_vehicle_comes_online_heartbeats_and_its_last_will_disconnects_it(
    bridge: AgentProcess,
    start_agent: StartAgent,
    sync_redis: redis.Redis,
    keys: Keys,
    presence_events: Callable[[], dict[str, Any]],
) -> None:
    assert stored(sync_redis, keys, CAR).connection_status == ConnectionStatus.DISCONNECTED
    agent = start_agent("--vin", CAR.vin)
    event = presence_events()
    assert (event["vin"], event["connection_status"], event["reason"]) == (
        CAR.vin, "connected", "connected",
    )  # fmt: skip
    first_seen = stored(sync_redis, keys, CAR).last_seen_at
    assert first_seen is not None
    wait_for(lambda: (stored(sync_redis, keys, CAR).last_seen_at or first_seen) > first_seen,
             what="a heartbeat to move last_seen_at")  # fmt: skip
    agent.kill()  # no goodbye: the broker publishes the last will
    event = presence_events()
    assert (event["vin"], event["connection_status"], event["reason"]) == (
        CAR.vin, "disconnected", "last_will",
    )  # fmt: skip
    assert stored(sync_redis, keys, CAR).connection_status == ConnectionStatus.DISCONNECTED


def test_a_clean_stop_is_a_clean_disconnect_and_unknown_vins_change_nothing(
    bridge: AgentProcess,
    start_agent: StartAgent,
    mqtt_settings: Settings,
    sync_redis: redis.Redis,
    keys: Keys,
    presence_events: Callable[[], dict[str, Any]],
    tmp_path: Any,
) -> None:
    stranger = CAR.model_copy(update={"vehicle_id": "not-registered", "vin": "1HGCM82633A004352"})
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps([stranger.model_dump(mode="json")]))
    start_agent("--fleet", str(fleet_file))  # a car the registry does not know
    agent = start_agent("--vin", CAR.vin)
    event = presence_events()
    assert (event["vin"], event["connection_status"]) == (CAR.vin, "connected")
    agent.stop()
    event = presence_events()
    assert (event["vin"], event["connection_status"], event["reason"]) == (
        CAR.vin, "disconnected", "clean_disconnect",
    )  # fmt: skip
    assert sync_redis.get(keys.vehicle("not-registered")) is None
