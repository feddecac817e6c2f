"""The vehicle registry over REST: admins register, change and remove vehicles; audited."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from api.app import create_app
from common.registry import MAX_METADATA_BYTES
from common.settings import Settings
from common.vehicles import ConnectionStatus
from common.vin import with_check_digit
from tests.component.conftest import login, report_presence
from workers import runtime
from workers.executor import execute_command

VIN = with_check_digit("1HGCM826_3A004352")
ECUS = [{"address": "0x10", "name": "Engine Control Module"}]


def spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "vin": VIN,
        "make": "Honda",
        "model": "Accord",
        "year": 2003,
        "metadata": {"ecus": ECUS},
    }
    return {**body, **changes}


def register(api: TestClient, **changes: Any) -> Any:
    return api.post("/api/v1/vehicles", json=spec(**changes), headers=login(api, "admin"))


def audit(api: TestClient, **query: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/audit", params=query, headers=login(api, "admin"))
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_an_admin_registers_a_vehicle_201_with_its_location_disconnected(
    api: TestClient,
) -> None:
    response = register(api, vin=VIN.lower())
    assert response.status_code == 201
    body = response.json()
    assert response.headers["Location"] == f"/api/v1/vehicles/{body['vehicle_id']}"
    assert body["vin"] == VIN
    assert (body["connection_status"], body["last_seen_at"]) == ("disconnected", None)
    assert body["metadata"] == {"ecus": ECUS}
    fetched = api.get(response.headers["Location"], headers=login(api, "viewer"))
    assert fetched.json() == body
    entry = audit(api, action="vehicle_registered", vehicle_id=body["vehicle_id"])[0]
    assert entry["username"] == "admin"
    assert entry["details"]["vin"] == VIN


def test_a_duplicate_vin_is_409_naming_the_registered_vehicle(api: TestClient) -> None:
    first = register(api).json()
    again = register(api, make="Other")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["message"] == f"A vehicle with VIN {VIN} is already registered"
    assert error["details"]["vehicle_id"] == first["vehicle_id"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"vin": VIN[:8] + ("0" if VIN[8] != "0" else "1") + VIN[9:]}, "vin"),  # check digit
        ({"vin": "IHGCM82633A004352"}, "vin"),  # I is not in the VIN alphabet
        ({"vin": VIN[:16]}, "vin"),
        ({"year": 1885}, "year"),
        ({"year": 2101}, "year"),
        ({"make": ""}, "make"),
        ({"model": "x" * 65}, "model"),
        ({"model": "bad\nname"}, "model"),
        ({"metadata": {"ecus": [{"address": "sixteen", "name": "ECM"}]}}, "metadata"),
        ({"metadata": {"ecus": [{"address": "0x10", "name": "A"}] * 2}}, "metadata"),
        (
            {"metadata": {"ecus": [{"address": f"0x{i:X}", "name": "E"} for i in range(65)]}},
            "metadata",
        ),
        ({"metadata": {"blob": "x" * MAX_METADATA_BYTES}}, "metadata"),
        ({"metadata": {"simulated": "yes"}}, "metadata"),
        ({"connection_status": "connected"}, "connection_status"),
    ],
)
def test_an_invalid_registration_is_422_naming_the_field_and_stores_nothing(
    api: TestClient, changes: dict[str, Any], field: str
) -> None:
    response = register(api, **changes)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["loc"][:2] == ["body", field]
    listed = api.get("/api/v1/vehicles?search=" + VIN[:6], headers=login(api, "viewer")).json()
    assert listed == []


@pytest.mark.parametrize("role", ["engineer", "viewer"])
def test_engineers_and_viewers_may_not_change_the_fleet(api: TestClient, role: str) -> None:
    vehicle_id = register(api).json()["vehicle_id"]
    headers = login(api, role)
    other = spec(vin=with_check_digit("2HGCM826_3A004352"))
    assert api.post("/api/v1/vehicles", json=other, headers=headers).status_code == 403
    patched = api.patch(f"/api/v1/vehicles/{vehicle_id}", json={"make": "X"}, headers=headers)
    assert patched.status_code == 403
    assert api.delete(f"/api/v1/vehicles/{vehicle_id}", headers=headers).status_code == 403
    assert api.get(f"/api/v1/vehicles/{vehicle_id}", headers=headers).json()["make"] == "Honda"
    denied = audit(api, action="access_denied")
    assert {(e["username"], e["details"]["method"]) for e in denied} >= {
        (role, "POST"), (role, "PATCH"), (role, "DELETE"),
    }  # fmt: skip


def test_a_patch_changes_registry_fields_and_keeps_presence(
    api: TestClient, settings: Settings
) -> None:
    vehicle_id = register(api).json()["vehicle_id"]
    report_presence(settings, vehicle_id, ConnectionStatus.CONNECTED)
    response = api.patch(
        f"/api/v1/vehicles/{vehicle_id}",
        json={"model": "Accord Tourer", "year": 2004},
        headers=login(api, "admin"),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["make"], body["model"], body["year"]) == ("Honda", "Accord Tourer", 2004)
    assert body["connection_status"] == "connected"
    assert body["metadata"] == {"ecus": ECUS}
    entry = audit(api, action="vehicle_updated", vehicle_id=vehicle_id)[0]
    assert entry["details"]["changed"] == {
        "model": {"from": "Accord", "to": "Accord Tourer"},
        "year": {"from": 2003, "to": 2004},
    }


def test_a_patch_may_not_change_the_vin_or_presence(api: TestClient) -> None:
    vehicle_id = register(api).json()["vehicle_id"]
    headers = login(api, "admin")
    for body in ({"vin": VIN}, {"connection_status": "connected"}, {"year": 1800}):
        response = api.patch(f"/api/v1/vehicles/{vehicle_id}", json=body, headers=headers)
        assert response.status_code == 422, body
    missing = api.patch(
        "/api/v1/vehicles/00000000-0000-4000-8000-000000000000", json={}, headers=headers
    )
    assert missing.status_code == 404


def test_delete_is_409_while_a_command_is_active_then_204_and_history_stays(
    api: TestClient, settings: Settings, rt: runtime.Runtime
) -> None:
    vehicle_id = register(api).json()["vehicle_id"]
    report_presence(settings, vehicle_id, ConnectionStatus.CONNECTED)
    admin = login(api, "admin")
    submitted = api.post(
        "/api/v1/commands",
        json={
            "vehicle_id": vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
        headers=login(api, "engineer"),
    )
    assert submitted.status_code == 202
    command_id = submitted.json()["command_id"]
    busy = api.delete(f"/api/v1/vehicles/{vehicle_id}", headers=admin)
    assert busy.status_code == 409
    assert busy.json()["error"]["details"]["active_command_ids"] == [command_id]
    assert execute_command(rt, command_id, command_name="ReadDTC") == "completed"
    removed = api.delete(f"/api/v1/vehicles/{vehicle_id}", headers=admin)
    assert removed.status_code == 204
    assert api.get(f"/api/v1/vehicles/{vehicle_id}", headers=admin).status_code == 404
    record = api.get(f"/api/v1/commands/{command_id}", headers=admin)
    assert record.json()["status"] == "completed"
    history = api.get(f"/api/v1/commands?vehicle_id={vehicle_id}", headers=admin).json()
    assert [c["command_id"] for c in history["commands"]] == [command_id]
    assert audit(api, action="vehicle_removed", vehicle_id=vehicle_id)[0]["details"] == {"vin": VIN}
    # The VIN is free again: the same car can be registered anew.
    assert register(api).status_code == 201


def test_delete_of_an_unknown_vehicle_is_404(api: TestClient) -> None:
    response = api.delete(
        "/api/v1/vehicles/00000000-0000-4000-8000-000000000000", headers=login(api, "admin")
    )
    assert response.status_code == 404


def test_production_starts_with_an_empty_fleet_and_says_how_to_fill_it(
    settings: Settings,
) -> None:
    production = settings.model_copy(update={"env": "production"})
    with capture_logs() as logs, TestClient(create_app(production)) as client:
        assert client.get("/health/live").status_code == 200
    empty = [entry for entry in logs if entry["event"] == "fleet_empty"]
    assert len(empty) == 1
    assert "POST /api/v1/vehicles" in empty[0]["hint"]
    assert "sovd-admin import-fleet" in empty[0]["hint"]
