"""Audit trail, rate limits, HTTP hygiene, metrics and correlation ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
import redis
from fastapi.testclient import TestClient
from freezegun import freeze_time

from api.app import create_app
from common.keys import Keys
from common.settings import Settings
from common.vehicles import ConnectionStatus
from tests.component.conftest import login, vehicle
from tests.support import wait_for

UA = {"User-Agent": "diag-console/1.0"}


def submit(api: TestClient, user: str = "engineer", **headers: str) -> Any:
    return api.post(
        "/api/v1/commands",
        headers={**login(api, user), **headers},
        json={
            "vehicle_id": vehicle().vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )


def audit(api: TestClient, **query: str) -> dict[str, Any]:
    response = api.get("/api/v1/audit", headers=login(api, "admin"), params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- audit trail -------------------------------------------------------------------------


def test_logins_logouts_and_refreshes_are_audited_with_address_and_user_agent(
    api: TestClient,
) -> None:
    api.post("/api/v1/auth/login", json={"username": "engineer", "password": "nope"}, headers=UA)
    pair = api.post(
        "/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
        headers=UA,
    ).json()
    api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}, headers=UA)
    api.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
    entries = audit(api, since="2000-01-01T00:00:00Z")["entries"]
    mine = [e for e in entries if e.get("username") == "engineer"]
    assert [e["action"] for e in reversed(mine)] == [
        "login_failed", "login", "token_refreshed", "logout",
    ]  # fmt: skip
    failed = mine[-1]
    assert (failed["outcome"], failed["ip"], failed["user_agent"]) == (
        "failure", "testclient", "diag-console/1.0",
    )  # fmt: skip


def test_a_command_is_audited_from_submission_to_its_end(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    command_id = submit(api).json()["command_id"]
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") == "completed",
        what="the command to complete",
    )
    page = audit(api, command_id=command_id)
    assert [e["action"] for e in reversed(page["entries"])] == [
        "command_submitted", "command_started", "command_completed",
    ]  # fmt: skip
    assert {e["vehicle_id"] for e in page["entries"]} == {vehicle().vehicle_id}
    assert page["total"] == 3


def test_denied_access_and_rejected_commands_are_audited(api: TestClient) -> None:
    assert submit(api, "viewer").status_code == 403
    offline = vehicle(ConnectionStatus.DISCONNECTED)
    rejected = api.post(
        "/api/v1/commands",
        headers=login(api, "engineer"),
        json={"vehicle_id": offline.vehicle_id, "command_name": "ReadDTC",
              "command_params": {"ecuAddress": "0x10"}},
    )  # fmt: skip
    assert rejected.status_code == 409
    denied = audit(api, action="access_denied")["entries"]
    assert denied[0]["username"] == "viewer"
    assert denied[0]["outcome"] == "denied"
    assert denied[0]["details"]["path"] == "/api/v1/commands"
    refused = audit(api, action="command_rejected", vehicle_id=offline.vehicle_id)["entries"]
    assert refused[0]["details"]["reason"] == "vehicle_offline"


def test_the_audit_trail_is_for_admins_and_filters_by_user_and_time(api: TestClient) -> None:
    assert api.get("/api/v1/audit", headers=login(api, "engineer")).status_code == 403
    engineer_id = api.get("/api/v1/auth/me", headers=login(api, "engineer")).json()["user_id"]
    by_user = audit(api, user_id=engineer_id)["entries"]
    assert by_user
    assert {e["user_id"] for e in by_user} == {engineer_id}
    assert audit(api, until="2000-01-01T00:00:00Z")["entries"] == []
    page = audit(api, limit="1", offset="1")
    assert len(page["entries"]) == 1
    assert page["total"] >= 2


def test_audit_entries_older_than_the_retention_are_dropped(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, settings: Settings
) -> None:
    login(api, "engineer")
    assert sync_redis.xlen(keys.audit) >= 1
    with freeze_time("2199-01-01T00:00:00Z"):  # far beyond the retention
        login(api, "viewer")
    entries = sync_redis.xrange(keys.audit)
    cutoff_ms = int(datetime(2199, 1, 1, tzinfo=UTC).timestamp() * 1000) - (
        settings.audit_retention_days * 86400 * 1000
    )
    # Only entries written at the frozen time survive the trim (the api's presence duties
    # may write some too); the engineer's login is gone.
    assert all(int(entry_id.split("-")[0]) >= cutoff_ms for entry_id, _ in entries)
    assert [fields["action"] for _, fields in entries].count("login") == 1


# -- abuse and hygiene ---------------------------------------------------------------------


@pytest.fixture
def strict_api(settings: Settings) -> Iterator[TestClient]:
    tight = settings.model_copy(
        update={
            "login_rate_per_minute": 3,
            "submit_rate_per_minute": 2,
            "cors_origins": ["https://console.example"],
            "max_request_body_bytes": 1024,
        }
    )
    with TestClient(create_app(tight)) as client:
        yield client


def test_login_attempts_are_rate_limited_with_retry_after(strict_api: TestClient) -> None:
    body = {"username": "engineer", "password": "wrong"}
    codes = [strict_api.post("/api/v1/auth/login", json=body).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    limited = strict_api.post("/api/v1/auth/login", json=body)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_command_submissions_are_rate_limited_per_user(strict_api: TestClient) -> None:
    headers = login(strict_api, "engineer")
    body = {"vehicle_id": vehicle().vehicle_id, "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"}}  # fmt: skip
    codes = [
        strict_api.post("/api/v1/commands", headers=headers, json=body).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]


def test_security_headers_on_api_and_html_responses(api: TestClient) -> None:
    for path in ("/health/live", "/api/v1/vehicles"):
        headers = api.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in headers["content-security-policy"]
    docs = api.get("/docs")
    assert docs.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_oversized_bodies_are_refused_with_413(strict_api: TestClient) -> None:
    response = strict_api.post(
        "/api/v1/auth/login",
        content=json.dumps({"username": "x" * 5000, "password": "y"}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_cors_allows_only_the_configured_origins(strict_api: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = strict_api.options(
        "/api/v1/commands", headers={"Origin": "https://console.example", **preflight}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://console.example"
    other = strict_api.options(
        "/api/v1/commands", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


# -- metrics and correlation ---------------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = re.match(r"^[^{ ]+(?:\{([^}]*)\})? (\S+)$", line)
            assert found is not None
            label_text = ",".join(sorted((found.group(1) or "").split(",")))
            if label_text == wanted:
                return float(found.group(2))
    return 0.0


def test_metrics_count_commands_by_type_and_status_with_durations_and_queue_depth(
    worker: dramatiq.Worker,
    api: TestClient,
    sync_redis: redis.Redis,
    keys: Keys,
    settings: Settings,
) -> None:
    command_id = submit(api).json()["command_id"]
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") == "completed",
        what="the command to complete",
    )
    # As received on the metrics listener (the test client puts the URL's port in the scope).
    text = api.get(f"http://testserver:{settings.api_metrics_port}/metrics").text
    assert _metric(text, "sovd_commands_total", type="ReadDTC", status="completed") == 1
    assert _metric(text, "sovd_command_duration_seconds_count", type="ReadDTC") == 1
    assert _metric(text, "sovd_command_duration_seconds_bucket", type="ReadDTC", le="+Inf") == 1
    assert _metric(text, "sovd_queue_depth", queue="sovd.read_dtc") == 0
    assert (
        _metric(
            text, "sovd_http_requests_total", method="POST", route="/api/v1/commands", status="202"
        )
        == 1
    )


def test_the_request_id_travels_into_the_command_and_its_events(
    worker: dramatiq.Worker, api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    response = submit(api, **{"X-Request-ID": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    command_id = response.json()["command_id"]
    assert response.json()["request_id"] == "trace-abc-123"
    wait_for(
        lambda: sync_redis.hget(keys.command(command_id), "status") == "completed",
        what="the command to complete",
    )
    events = [json.loads(f["event"]) for _, f in sync_redis.xrange(keys.command_events(command_id))]
    assert {e["request_id"] for e in events} == {"trace-abc-123"}
