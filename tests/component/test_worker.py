"""Commands executed by a real Dramatiq worker on the Redis broker."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import redis
from fastapi.testclient import TestClient

from common.commands import CommandStatus
from common.events import StatusEvent
from common.keys import Keys
from common.settings import Settings
from common.timeutil import utcnow
from common.vehicles import ConnectionStatus
from tests.component.conftest import login, report_presence, vehicle
from tests.support import wait_for
from workers import runtime
from workers.build import WorkerParts
from workers.connector import DiagnosticRequest
from workers.executor import _record_response, execute_command


def run(api: TestClient, sync_redis: redis.Redis, keys: Keys, name: str, params: dict[str, str],
        vehicle_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """Submit over REST, wait for the terminal status, return the id and the event log."""
    response = api.post(
        "/api/v1/commands",
        headers=login(api, "admin"),
        json={
            "vehicle_id": vehicle_id or vehicle().vehicle_id,
            "command_name": name,
            "command_params": params,
        },
    )
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") in ("completed", "failed"),
        what=f"{name} to finish",
    )
    entries = sync_redis.xrange(keys.command_events(command_id))
    return command_id, [json.loads(fields["event"]) for _, fields in entries]  # type: ignore[union-attr]


def test_read_dtc_streams_dtc_chunks_then_a_final_summary_and_completes(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    command_id, events = run(api, sync_redis, keys, "ReadDTC", {"ecuAddress": "0x10"})
    kinds = [e["event"] for e in events]
    assert (kinds[0], events[0]["status"]) == ("status", "in_progress")
    assert (kinds[-1], events[-1]["status"]) == ("status", "completed")
    responses = [e for e in events if e["event"] == "response"]
    assert len(responses) >= 2
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [r["sequence_number"] for r in responses] == list(range(1, len(responses) + 1))
    assert all(r["response"]["response_payload"]["type"] == "dtc" for r in responses[:-1])
    final = responses[-1]["response"]
    assert final["is_final"] is True
    assert final["response_payload"]["dtc_count"] == len(responses) - 1
    listed = api.get(f"/api/v1/commands/{command_id}/responses", headers=login(api, "admin")).json()
    assert [r["response_id"] for r in listed] == [r["response"]["response_id"] for r in responses]
    command = api.get(f"/api/v1/commands/{command_id}", headers=login(api, "admin")).json()
    assert command["status"] == "completed"
    assert command["started_at"] is not None
    assert command["completed_at"] is not None


def test_clear_dtc_reports_the_cleared_count_and_a_later_read_finds_none(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    _, before = run(api, sync_redis, keys, "ReadDTC", {"ecuAddress": "0x28"})
    stored = [e for e in before if e["event"] == "response"][-1]["response"]["response_payload"]
    _, cleared = run(api, sync_redis, keys, "ClearDTC", {"ecuAddress": "0x28"})
    payload = next(e for e in cleared if e["event"] == "response")["response"]["response_payload"]
    assert payload["type"] == "dtc_cleared"
    assert payload["cleared_count"] == stored["dtc_count"]
    _, after = run(api, sync_redis, keys, "ReadDTC", {"ecuAddress": "0x28"})
    summary = [e for e in after if e["event"] == "response"][-1]["response"]["response_payload"]
    assert summary["dtc_count"] == 0


def test_read_data_by_id_returns_the_vin(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    _, events = run(
        api, sync_redis, keys, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}
    )
    (response,) = [e for e in events if e["event"] == "response"]
    assert response["response"]["response_payload"]["value"] == vehicle().vin
    assert response["response"]["response_payload"]["name"] == "VIN"
    assert events[-1]["status"] == "completed"


def test_an_unknown_data_identifier_is_a_negative_response_then_error_then_failed(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    command_id, events = run(
        api, sync_redis, keys, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0x1234"}
    )
    assert [e["event"] for e in events] == ["status", "response", "error", "status"]
    assert events[1]["response"]["response_payload"]["nrc"] == "0x31"
    assert events[2]["error_code"] == "negative_response"
    assert events[3]["status"] == "failed"
    assert sync_redis.hget(keys.command(command_id), "error_message") == events[2]["error_message"]


def test_a_vehicle_that_went_offline_after_submit_fails_with_a_clear_error(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, rt: runtime.Runtime, settings: Settings
) -> None:
    target = vehicle()
    response = api.post(
        "/api/v1/commands",
        headers=login(api, "engineer"),
        json={
            "vehicle_id": target.vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )
    command_id = response.json()["command_id"]
    report_presence(settings, target.vehicle_id, ConnectionStatus.DISCONNECTED)
    assert execute_command(rt, command_id, command_name="ReadDTC") == CommandStatus.FAILED
    entries = sync_redis.xrange(keys.command_events(command_id))
    events = [json.loads(fields["event"]) for _, fields in entries]
    # Never started: the pre-flight ends it before any exchange.
    assert [e["event"] for e in events] == ["error", "status"]
    assert events[0]["error_message"] == (
        f"Vehicle {target.vehicle_id} is offline; the command was ended"
    )
    assert events[0]["error_code"] == "vehicle_offline"
    assert events[1]["status"] == "failed"


def test_executing_a_command_again_adds_no_event(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys,
    worker_parts: WorkerParts,
) -> None:  # fmt: skip
    command_id, events = run(api, sync_redis, keys, "ReadDTC", {"ecuAddress": "0x10"})
    execute_command(worker_parts.runtime, command_id, command_name="ReadDTC")
    assert sync_redis.xlen(keys.command_events(command_id)) == len(events)


def test_a_redelivered_message_mid_command_does_not_duplicate_responses(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, rt: runtime.Runtime
) -> None:
    """A crash after some responses: re-running publishes only what is missing."""
    response = api.post(
        "/api/v1/commands",
        headers=login(api, "engineer"),
        json={
            "vehicle_id": vehicle().vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )
    command_id = response.json()["command_id"]
    # The first delivery started and recorded one part, then its worker died.
    rt.events.append(
        StatusEvent(command_id=command_id, status=CommandStatus.IN_PROGRESS, started_at=utcnow())
    )
    request = DiagnosticRequest(command_id, "ReadDTC", {"ecuAddress": "0x10"}, vehicle())
    first_part = next(iter(rt.connector.execute(request)))
    _record_response(rt, command_id, 1, first_part.payload, is_final=False)
    execute_command(rt, command_id, command_name="ReadDTC")
    entries = sync_redis.xrange(keys.command_events(command_id))
    events = [json.loads(fields["event"]) for _, fields in entries]  # type: ignore[union-attr]
    numbers = [e["sequence_number"] for e in events if e["event"] == "response"]
    assert numbers == list(range(1, len(numbers) + 1))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["status"] for e in events if e["event"] == "status"] == ["in_progress", "completed"]
