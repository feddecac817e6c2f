"""The fleet over REST."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from common.fleet import demo_fleet
from tests.component.conftest import login


def test_vehicles_are_a_json_array_with_the_documented_fields(api: TestClient) -> None:
    response = api.get("/api/v1/vehicles", headers=login(api, "viewer"))
    assert response.status_code == 200
    vehicles = response.json()
    assert isinstance(vehicles, list)
    assert len(vehicles) == len(demo_fleet())
    assert set(vehicles[0]) == {
        "vehicle_id", "vin", "make", "model", "year", "connection_status", "last_seen_at",
        "metadata",
    }  # fmt: skip
    assert [v["vin"] for v in vehicles] == sorted(v.vin for v in demo_fleet())
    # Presence comes from reports: the simulated vehicles reported, the others never did.
    seen = {v["vin"]: v["last_seen_at"] for v in vehicles}
    for demo in demo_fleet():
        if demo.metadata["simulated"]:
            assert seen[demo.vin].endswith("Z")
        else:
            assert seen[demo.vin] is None


def test_vehicles_filter_by_status_and_vin_fragment_and_page(api: TestClient) -> None:
    headers = login(api, "viewer")
    disconnected = api.get("/api/v1/vehicles?status=disconnected", headers=headers).json()
    expected = sorted(v.vin for v in demo_fleet() if v.connection_status == "disconnected")
    assert [v["vin"] for v in disconnected] == expected
    tesla = api.get("/api/v1/vehicles?search=5yj3", headers=headers).json()
    assert [v["make"] for v in tesla] == ["Tesla"]
    page = api.get("/api/v1/vehicles?limit=2&offset=1", headers=headers).json()
    assert [v["vin"] for v in page] == sorted(v.vin for v in demo_fleet())[1:3]


def test_a_bad_status_filter_is_422(api: TestClient) -> None:
    response = api.get("/api/v1/vehicles?status=sleeping", headers=login(api, "viewer"))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["loc"] == ["query", "status"]


def test_vehicle_detail_and_status(api: TestClient) -> None:
    headers = login(api, "viewer")
    vehicle = demo_fleet()[0]
    detail = api.get(f"/api/v1/vehicles/{vehicle.vehicle_id}", headers=headers)
    assert detail.status_code == 200
    assert detail.json()["vin"] == vehicle.vin
    status = api.get(f"/api/v1/vehicles/{vehicle.vehicle_id}/status", headers=headers)
    assert status.status_code == 200
    assert set(status.json()) == {"connection_status", "last_seen_at", "health"}
    assert status.json()["connection_status"] == vehicle.connection_status.value


def test_an_unknown_vehicle_is_404_and_a_malformed_id_is_422(api: TestClient) -> None:
    headers = login(api, "viewer")
    unknown = api.get(f"/api/v1/vehicles/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith("Vehicle ")
    assert api.get("/api/v1/vehicles/not-a-uuid", headers=headers).status_code == 422
