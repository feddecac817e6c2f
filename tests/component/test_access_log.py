"""The api's request log: off by default, one line per request without the query string."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from api.app import create_app
from api.server import uvicorn_config
from common.settings import Settings


def _request_lines(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in logs if line["event"] == "http_request"]


def test_no_request_line_by_default(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client, capture_logs() as logs:
        assert client.get("/health/live").status_code == 200
    assert _request_lines(logs) == []


def test_with_access_log_each_request_logs_its_route_status_and_path_without_query(
    settings: Settings,
) -> None:
    enabled = settings.model_copy(update={"access_log": True})
    with TestClient(create_app(enabled)) as client, capture_logs() as logs:
        assert client.get("/health/live?token=secret-value").status_code == 200
        assert client.get("/api/v1/vehicles/not-a-uuid").status_code == 401
    lines = _request_lines(logs)
    assert [(line["method"], line["path"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/health/live", "/health/live", 200),
        ("GET", "/api/v1/vehicles/not-a-uuid", "/api/v1/vehicles/{vehicle_id}", 401),
    ]
    assert all("secret-value" not in str(line) for line in lines)


def test_uvicorn_runs_without_its_access_log_on_httptools_and_uvloop(settings: Settings) -> None:
    config = uvicorn_config(settings, FastAPI())
    assert (config.access_log, config.http, config.loop) == (False, "httptools", "uvloop")
