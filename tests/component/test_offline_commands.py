"""A vehicle that goes offline ends its queued and running commands at once."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import redis
from fastapi.testclient import TestClient

from common.fleet import demo_fleet
from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus
from tests.component.conftest import login, report_presence, vehicle
from tests.support import timeout, wait_for
from workers.build import WorkerParts
from workers.offline import OfflineCommands, fail_stranded
from workers.runtime import build_runtime
from workers.simulator import SimulatedFleet


def submit(api: TestClient, vehicle_id: str) -> str:
    response = api.post(
        "/api/v1/commands",
        headers=login(api, "engineer"),
        json={
            "vehicle_id": vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )
    assert response.status_code == 202, response.text
    command_id: str = response.json()["command_id"]
    return command_id


def events_of(sync_redis: redis.Redis, keys: Keys, command_id: str) -> list[dict[str, Any]]:
    return [json.loads(f["event"]) for _, f in sync_redis.xrange(keys.command_events(command_id))]


def test_a_running_command_ends_with_vehicle_offline_when_its_vehicle_disconnects(
    worker: dramatiq.Worker,
    worker_parts: WorkerParts,
    api: TestClient,
    sync_redis: redis.Redis,
    keys: Keys,
    settings: Settings,
) -> None:
    target = vehicle()
    assert worker_parts.offline.subscribed.wait(timeout(10))
    fleet = worker_parts.runtime.connector
    assert isinstance(fleet, SimulatedFleet)
    fleet.inject_fault(target.vehicle_id, "hang")  # would wait out the deadline
    command_id = submit(api, target.vehicle_id)
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") == "in_progress",
        what="the command to start",
    )
    report_presence(settings, target.vehicle_id, ConnectionStatus.DISCONNECTED)
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") == "failed",
        timeout_s=5,
        what="the command to end when its vehicle went offline",
    )
    error = sync_redis.hgetall(keys.command(command_id))
    assert error["error_code"] == "vehicle_offline"
    assert error["error_message"].startswith(f"Vehicle {target.vin} went offline")
    # The exchange stops too; exactly one terminal status is recorded.
    wait_for(
        lambda: not sync_redis.hlen(keys.vehicle_active(target.vehicle_id)),
        what="the vehicle's place to be released",
    )
    statuses = [e.get("status") for e in events_of(sync_redis, keys, command_id)]
    assert statuses == ["in_progress", None, "failed"]


def test_queued_commands_end_at_once_and_a_missed_change_is_caught_up(
    api: TestClient,
    sync_redis: redis.Redis,
    keys: Keys,
    settings: Settings,
    worker_parts: WorkerParts,
) -> None:
    """No worker runs: the commands wait in the queue. The follower handles the change
    when it hears it; one that was missed is ended when the follower (re)subscribes."""
    first, second = [v for v in demo_fleet() if v.connection_status == "connected"][:2]
    queued = submit(api, first.vehicle_id)
    stranded = submit(api, second.vehicle_id)
    report_presence(settings, first.vehicle_id, ConnectionStatus.DISCONNECTED)
    change = {
        "vehicle_id": first.vehicle_id, "vin": first.vin, "connection_status": "disconnected",
        "previous_status": "connected", "last_seen_at": None, "reason": "last_will",
        "at": "2026-06-01T12:00:00Z",
    }  # fmt: skip
    assert worker_parts.offline.handle(json.dumps(change)) == [queued]
    assert worker_parts.offline.handle(json.dumps(change)) == []  # already ended
    assert worker_parts.offline.handle("not json") == []
    report_presence(settings, second.vehicle_id, ConnectionStatus.DISCONNECTED)
    assert fail_stranded(worker_parts.runtime) == 1
    for command_id in (queued, stranded):
        events = events_of(sync_redis, keys, command_id)
        assert [(e["event"], e.get("error_code")) for e in events] == [
            ("error", "vehicle_offline"),
            ("status", None),
        ]
        assert events[1]["status"] == "failed"


def test_with_a_grace_a_vehicle_that_comes_back_keeps_its_commands(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, settings: Settings
) -> None:
    """A last will waits out SOVD_PRESENCE_OFFLINE_GRACE_S; a clean disconnect does not."""
    graced = build_runtime(settings.model_copy(update={"presence_offline_grace_s": 3.0}))
    follower = OfflineCommands(graced)
    back, gone, clean = [v for v in demo_fleet() if v.connection_status == "connected"][:3]
    ids = {v.vehicle_id: submit(api, v.vehicle_id) for v in (back, gone, clean)}
    try:
        for v in (back, gone, clean):
            report_presence(settings, v.vehicle_id, ConnectionStatus.DISCONNECTED)
        reasons = {back.vehicle_id: "last_will", gone.vehicle_id: "last_will",
                   clean.vehicle_id: "clean_disconnect"}  # fmt: skip
        for v in (back, gone, clean):
            change = {
                "vehicle_id": v.vehicle_id, "vin": v.vin, "connection_status": "disconnected",
                "previous_status": "connected", "last_seen_at": None,
                "reason": reasons[v.vehicle_id], "at": "2026-06-01T12:00:00Z",
            }  # fmt: skip
            follower.handle(json.dumps(change))
        assert sync_redis.hget(keys.command(ids[clean.vehicle_id]), "status") == "failed"
        assert sync_redis.hget(keys.command(ids[gone.vehicle_id]), "status") == "pending"
        report_presence(settings, back.vehicle_id, ConnectionStatus.CONNECTED)
        wait_for(
            lambda: sync_redis.hget(keys.command(ids[gone.vehicle_id]), "status") == "failed",
            what="the command of the vehicle still offline after the grace to end",
        )
        wait_for(lambda: follower.pending_checks == 0, what="every grace check to run")
        assert sync_redis.hget(keys.command(ids[back.vehicle_id]), "status") == "pending"
    finally:
        graced.close()
