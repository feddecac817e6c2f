"""The full command lifecycle with a real worker: retries, timeouts, cancel, admission."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
import redis
from fastapi.testclient import TestClient
from freezegun import freeze_time

from api.app import create_app
from common.fleet import demo_fleet
from common.keys import Keys
from common.settings import Settings
from common.users import Role
from common.vehicles import ConnectionStatus
from tests.component.conftest import create_user, login, report_presence, vehicle
from tests.support import ROOT, wait_for
from workers import runtime
from workers.background import sweep_expired
from workers.executor import execute_command
from workers.simulator import SimulatedFleet

TERMINAL = ("completed", "failed", "timeout", "cancelled", "rejected")
#: The admin-only ClearDTC policy that docs/operations.md shows.
ADMIN_ONLY_CLEAR = ROOT / "deploy" / "policies" / "clear-dtc-admin-only.toml"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast policies: short back-offs and a short time limit for ReadDataByID."""
    return settings.model_copy(
        update={
            "policies": {
                "ReadDTC": {"min_backoff_ms": 10, "max_backoff_ms": 20},
                "ReadDataByID": {"time_limit_ms": 300, "min_backoff_ms": 10, "max_backoff_ms": 20},
            }
        }
    )


def inject(rt: runtime.Runtime, fault: str, vehicle_id: str | None = None) -> None:
    assert isinstance(rt.connector, SimulatedFleet)
    rt.connector.inject_fault(vehicle_id or vehicle().vehicle_id, fault)


def post(api: TestClient, user: str, name: str = "ReadDTC", params: dict[str, str] | None = None,
         vehicle_id: str | None = None, headers: dict[str, str] | None = None) -> Any:  # fmt: skip
    return api.post(
        "/api/v1/commands",
        headers={**login(api, user), **(headers or {})},
        json={
            "vehicle_id": vehicle_id or vehicle().vehicle_id,
            "command_name": name,
            "command_params": params or {"ecuAddress": "0x10"},
        },
    )


def events_of(sync_redis: redis.Redis, keys: Keys, command_id: str) -> list[dict[str, Any]]:
    entries = sync_redis.xrange(keys.command_events(command_id))
    return [json.loads(fields["event"]) for _, fields in entries]


def finished(sync_redis: redis.Redis, keys: Keys, command_id: str) -> list[dict[str, Any]]:
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") in TERMINAL,
        what="the command to end",
    )
    return events_of(sync_redis, keys, command_id)


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in events if e["event"] == "status"]


def assert_consistent(events: list[dict[str, Any]]) -> None:
    """Positions strictly increasing, each response once, exactly one terminal status."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    numbers = [e["sequence_number"] for e in events if e["event"] == "response"]
    assert numbers == list(range(1, len(numbers) + 1))
    assert sum(1 for s in statuses(events) if s in TERMINAL) == 1
    assert statuses(events)[-1] in TERMINAL


# -- retries -----------------------------------------------------------------------------


def test_a_dropped_link_is_retried_and_the_command_completes_without_duplicates(
    worker: dramatiq.Worker, api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis,
    keys: Keys,
) -> None:  # fmt: skip
    inject(rt, "drop:2")
    command_id = post(api, "engineer").json()["command_id"]
    events = finished(sync_redis, keys, command_id)
    assert_consistent(events)
    assert statuses(events) == ["in_progress", "retrying", "completed"]
    retrying = next(e for e in events if e.get("status") == "retrying")
    assert retrying["attempt"] == 1
    assert retrying["reason"].startswith("Connection to vehicle")
    assert "retry_at" in retrying
    kinds = [e["event"] for e in events]
    assert kinds.index("status", 1) == 3, "two responses of attempt 1 came before the retry"
    assert sync_redis.hget(keys.command(command_id), "attempts") == "2"


def test_retries_stop_at_the_policys_limit_and_the_command_fails(
    worker: dramatiq.Worker, api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis,
    keys: Keys,
) -> None:  # fmt: skip
    for _ in range(4):  # max_retries 3: four attempts, all dropped
        inject(rt, "drop:0")
    command_id = post(api, "engineer").json()["command_id"]
    events = finished(sync_redis, keys, command_id)
    assert_consistent(events)
    assert statuses(events) == ["in_progress", "retrying", "retrying", "retrying", "failed"]
    assert [e["attempt"] for e in events if e.get("status") == "retrying"] == [1, 2, 3]
    error = next(e for e in events if e["event"] == "error")
    assert error["error_code"] == "connection_lost"
    assert sync_redis.hget(keys.command(command_id), "attempts") == "4"


def test_clear_dtc_is_never_retried(
    worker: dramatiq.Worker, api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis,
    keys: Keys,
) -> None:  # fmt: skip
    inject(rt, "drop:0")
    command_id = post(api, "admin", "ClearDTC").json()["command_id"]
    events = finished(sync_redis, keys, command_id)
    assert statuses(events) == ["in_progress", "failed"]
    assert [e["event"] for e in events] == ["status", "error", "status"]
    assert sync_redis.hget(keys.command(command_id), "attempts") == "1"


# -- timeouts ----------------------------------------------------------------------------


def test_a_vehicle_that_stops_answering_ends_as_timeout_at_the_types_time_limit(
    worker: dramatiq.Worker, api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis,
    keys: Keys,
) -> None:  # fmt: skip
    inject(rt, "hang")
    started = time.monotonic()
    command_id = post(
        api, "engineer", "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}
    ).json()["command_id"]
    events = finished(sync_redis, keys, command_id)
    assert statuses(events) == ["in_progress", "timeout"]
    error = next(e for e in events if e["event"] == "error")
    assert error["error_code"] == "timeout"
    assert "did not answer within the time limit" in error["error_message"]
    assert time.monotonic() - started < 5, "ended by the 300 ms connector deadline"


def test_the_sweeper_times_out_a_command_no_worker_finished(
    api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis, keys: Keys
) -> None:
    with freeze_time("2026-11-26T10:00:00Z") as frozen:
        command_id = post(api, "engineer").json()["command_id"]
        assert sweep_expired(rt) == []
        frozen.tick(59)
        assert sweep_expired(rt) == []
        frozen.tick(60 + rt.settings.deadline_grace_s)
        assert sweep_expired(rt) == [command_id]
        assert sweep_expired(rt) == []
    events = events_of(sync_redis, keys, command_id)
    assert [e["event"] for e in events] == ["error", "status"]
    assert events[1]["status"] == "timeout"
    assert events[0]["error_code"] == "deadline_exceeded"
    assert sync_redis.hlen(keys.vehicle_active(vehicle().vehicle_id)) == 0


# -- cancel ------------------------------------------------------------------------------


def test_cancelling_a_pending_command_ends_it_without_running_it(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, rt: runtime.Runtime
) -> None:
    command_id = post(api, "engineer").json()["command_id"]
    response = api.post(f"/api/v1/commands/{command_id}/cancel", headers=login(api, "engineer"))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["completed_at"] is not None
    # A worker that now receives the message does not run it.
    assert execute_command(rt, command_id, command_name="ReadDTC") == "cancelled"
    assert statuses(events_of(sync_redis, keys, command_id)) == ["cancelled"]


def test_cancelling_a_running_command_stops_it_at_the_next_step(
    worker: dramatiq.Worker, api: TestClient, rt: runtime.Runtime, sync_redis: redis.Redis,
    keys: Keys,
) -> None:  # fmt: skip
    inject(rt, "slow:0.3")
    command_id = post(api, "engineer").json()["command_id"]
    wait_for(
        lambda: sync_redis.hlen(keys.command_responses(command_id)) >= 1,
        what="the first response",
    )
    response = api.post(f"/api/v1/commands/{command_id}/cancel", headers=login(api, "engineer"))
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    events = finished(sync_redis, keys, command_id)
    assert_consistent(events)
    assert statuses(events) == ["in_progress", "cancelled"]
    assert len([e for e in events if e["event"] == "response"]) < 5


def test_cancel_rules_terminal_409_other_engineer_404_viewer_403(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "other", Role.ENGINEER)
    command_id = post(api, "engineer").json()["command_id"]
    url = f"/api/v1/commands/{command_id}/cancel"
    assert api.post(url, headers=login(api, "other", "other-password")).status_code == 404
    assert api.post(url, headers=login(api, "viewer")).status_code == 403
    assert api.post(url, headers=login(api, "admin")).status_code == 200
    again = api.post(url, headers=login(api, "engineer"))
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["message"]) == ("conflict", "Command already ended (cancelled)")
    assert error["details"] == {"status": "cancelled"}


# -- admission ---------------------------------------------------------------------------


def test_an_offline_vehicle_rejects_the_command_with_409_and_its_last_seen_time(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, settings: Settings
) -> None:
    offline = vehicle(ConnectionStatus.DISCONNECTED)
    seen = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    report_presence(settings, offline.vehicle_id, ConnectionStatus.CONNECTED, at=seen)
    report_presence(settings, offline.vehicle_id, ConnectionStatus.DISCONNECTED, at=seen)
    response = post(api, "engineer", vehicle_id=offline.vehicle_id)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["message"] == f"Vehicle {offline.vin} is offline; the command was rejected"
    body = error["details"]
    assert body["vehicle_id"] == offline.vehicle_id
    assert body["last_seen_at"] == "2026-06-01T12:00:00.000000Z"
    record = api.get(f"/api/v1/commands/{body['command_id']}", headers=login(api, "engineer"))
    assert record.json()["status"] == "rejected"
    events = events_of(sync_redis, keys, body["command_id"])
    assert [(e["event"], e.get("status")) for e in events] == [
        ("error", None),
        ("status", "rejected"),
    ]
    assert events[0]["error_code"] == "vehicle_offline"


def test_a_destructive_command_runs_alone_and_the_refusal_names_the_blocking_command(
    api: TestClient,
) -> None:
    reading = post(api, "engineer").json()["command_id"]
    refused = post(api, "admin", "ClearDTC")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["blocking_command_id"] == reading
    assert reading in refused.json()["error"]["message"]
    # Once the read is over, the clear is admitted; while it is active nothing else is.
    api.post(f"/api/v1/commands/{reading}/cancel", headers=login(api, "engineer"))
    clearing = post(api, "admin", "ClearDTC")
    assert clearing.status_code == 202
    blocked = post(api, "admin")
    assert blocked.status_code == 409
    assert (
        blocked.json()["error"]["details"]["blocking_command_id"] == clearing.json()["command_id"]
    )


def test_at_most_max_concurrent_commands_are_admitted_per_vehicle(api: TestClient) -> None:
    limit = 4  # the default for reads
    admitted = [post(api, "engineer").status_code for _ in range(limit)]
    assert admitted == [202] * limit
    assert post(api, "engineer").status_code == 409
    other = next(
        v
        for v in demo_fleet()
        if v.connection_status == ConnectionStatus.CONNECTED
        and v.vehicle_id != vehicle().vehicle_id
    )
    assert post(api, "engineer", vehicle_id=other.vehicle_id).status_code == 202


def test_the_same_idempotency_key_returns_the_same_command_once(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = post(api, "engineer", headers=headers)
    second = post(api, "engineer", headers=headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["command_id"] == first.json()["command_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert sync_redis.zcard(keys.commands) == 1
    queue = f"{keys.broker_namespace}:sovd.read_dtc.msgs"
    assert sync_redis.hlen(queue) == 1
    different = post(api, "engineer", "ReadDTC", {"ecuAddress": "0x18"}, headers=headers)
    assert different.status_code == 422
    assert different.json()["error"]["details"]["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    other_key = post(api, "engineer", headers={"Idempotency-Key": "order-43"})
    assert other_key.json()["command_id"] != first.json()["command_id"]


# -- roles and catalog -------------------------------------------------------------------


def test_engineers_and_admins_clear_dtcs_and_viewers_submit_nothing(api: TestClient) -> None:
    engineer = post(api, "engineer", "ClearDTC")
    assert engineer.status_code == 202, engineer.text
    assert post(api, "viewer", "ClearDTC").status_code == 403
    assert post(api, "viewer").status_code == 403
    api.post(
        f"/api/v1/commands/{engineer.json()['command_id']}/cancel", headers=login(api, "admin")
    )
    assert post(api, "admin", "ClearDTC").status_code == 202


def test_the_documented_admin_only_policy_keeps_clear_dtc_from_engineers(
    settings: Settings,
) -> None:
    admin_only = settings.model_copy(update={"policy_file": ADMIN_ONLY_CLEAR})
    with TestClient(create_app(admin_only)) as api:
        engineer = post(api, "engineer", "ClearDTC")
        assert engineer.status_code == 403
        assert engineer.json()["error"]["message"] == "ClearDTC requires the role admin"
        assert post(api, "admin", "ClearDTC").status_code == 202


def test_the_catalog_publishes_schema_policy_and_roles_per_type(api: TestClient) -> None:
    response = api.get("/api/v1/command-types", headers=login(api, "viewer"))
    assert response.status_code == 200
    catalog = {entry["name"]: entry for entry in response.json()}
    assert set(catalog) == {"ReadDTC", "ClearDTC", "ReadDataByID"}
    clear = catalog["ClearDTC"]
    assert clear["destructive"] is True
    assert clear["retry"] == {
        "retry_safe": False, "max_retries": 0, "min_backoff_ms": 0, "max_backoff_ms": 0,
    }  # fmt: skip
    assert clear["roles_allowed"] == ["engineer", "admin"]
    assert clear["max_concurrent_per_vehicle"] == 1
    assert clear["parameters"]["required"] == ["ecuAddress"]
    assert set(clear["parameters"]["properties"]) == {"ecuAddress", "dtcCode"}
    read = catalog["ReadDataByID"]
    assert read["timeout_ms"] == 300  # this module's override
    assert read["retry"]["max_retries"] == 3
    assert read["roles_allowed"] == ["engineer", "admin"]
    assert read["parameters"]["required"] == ["ecuAddress", "dataId"]
