"""Every API error has one JSON shape: {"error": {code, message, details?, request_id}}."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.component.conftest import login


def test_an_unknown_route_and_a_wrong_method_use_the_error_shape(api: TestClient) -> None:
    missing = api.get("/api/v1/nothing-here", headers={"X-Request-ID": "trace-1"})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": "not_found",
            "message": "Not Found",
            "request_id": "trace-1",
        },
        "detail": "Not Found",
    }
    posted = api.post("/api/v1/nope")
    assert posted.status_code == 404
    assert posted.json()["error"]["code"] == "not_found"
    wrong = api.delete("/api/v1/vehicles")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    # Allow names every method of the path, though each method is its own route.
    assert api.delete("/api/v1/commands").headers["allow"] == "GET, POST"


def test_application_errors_carry_their_code_and_details(api: TestClient) -> None:
    unauthorized = api.get("/api/v1/auth/me")
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    forbidden = api.post(
        "/api/v1/commands",
        headers=login(api, "viewer"),
        json={"vehicle_id": "0fc4277d-f1a4-5aec-a0e9-3c34cc681f46", "command_name": "ReadDTC"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    assert "details" not in forbidden.json()["error"]


def test_validation_errors_name_the_field_in_message_and_details(api: TestClient) -> None:
    response = api.get("/api/v1/vehicles?limit=0", headers=login(api, "viewer"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith("limit: ")
    assert error["details"]["errors"][0]["loc"] == ["query", "limit"]
    assert error["request_id"] == response.headers["x-request-id"]
