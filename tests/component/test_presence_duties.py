"""The api's presence duties: the simulated fleet heartbeats, the sweep disconnects the silent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.fleet import demo_fleet
from common.settings import Settings
from tests.component.conftest import login
from tests.support import wait_for

SIMULATED = [v for v in demo_fleet() if v.metadata["simulated"]]


@pytest.fixture
def quick_api(settings: Settings) -> Iterator[TestClient]:
    """Presence in seconds instead of a minute."""
    quick = settings.model_copy(
        update={
            "presence_timeout_s": 1.0,
            "presence_sweep_interval_s": 0.1,
            "presence_sim_heartbeat_s": 0.2,
        }
    )
    with TestClient(create_app(quick)) as client:
        yield client


def vehicle_of(api: TestClient, vehicle_id: str, headers: dict[str, str]) -> Any:
    return api.get(f"/api/v1/vehicles/{vehicle_id}", headers=headers).json()


def test_simulated_vehicles_stay_online_by_heartbeat_and_leave_when_they_stop(
    quick_api: TestClient,
) -> None:
    admin = login(quick_api, "admin")
    kept, dropped = SIMULATED[0], SIMULATED[1]
    first_seen = vehicle_of(quick_api, kept.vehicle_id, admin)["last_seen_at"]
    assert vehicle_of(quick_api, dropped.vehicle_id, admin)["connection_status"] == "connected"
    patched = quick_api.patch(
        f"/api/v1/vehicles/{dropped.vehicle_id}",
        json={"metadata": {**dropped.metadata, "simulated": False}},
        headers=admin,
    )
    assert patched.status_code == 200
    wait_for(
        lambda: (
            vehicle_of(quick_api, dropped.vehicle_id, admin)["connection_status"] == "disconnected"
        ),
        timeout_s=10,
        what="the silent vehicle to be swept offline",
    )
    kept_now = vehicle_of(quick_api, kept.vehicle_id, admin)
    assert kept_now["connection_status"] == "connected"
    assert kept_now["last_seen_at"] > first_seen  # heartbeats moved it past the timeout
    entries = quick_api.get(
        "/api/v1/audit",
        params={"vehicle_id": dropped.vehicle_id, "action": "vehicle_disconnected"},
        headers=admin,
    ).json()["entries"]
    assert [e["details"]["reason"] for e in entries] == ["heartbeat_timeout"]
