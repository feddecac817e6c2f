"""Holes found by attacking the api: each test states what an attacker tried and what stops it."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import uuid
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from api.server import listeners, uvicorn_config
from common.settings import Settings
from common.users import Role
from tests.component.conftest import PASSWORDS, create_user, login, vehicle
from tests.support import ServerThread, free_port, timeout, wait_for


@pytest.fixture
def served(settings: Settings) -> Iterator[ServerThread]:
    """The api on a real uvicorn (HTTP/1.1, chunked bodies as a client sends them)."""
    server = ServerThread(create_app(settings))
    server.start()
    yield server
    server.stop()


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/commands"])
def test_a_chunked_10_mb_body_is_413_not_400(served: ServerThread, path: str) -> None:
    response = httpx.post(
        f"{served.http_base}{path}",
        content=_chunks(10 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        timeout=timeout(30),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_under_the_limit_still_reaches_the_route(served: ServerThread) -> None:
    body = b'{"username": "engineer", "password": "%s"}' % PASSWORDS["engineer"].encode()
    response = httpx.post(
        f"{served.http_base}/api/v1/auth/login",
        content=iter([body[:10], body[10:]]),
        headers={"Content-Type": "application/json"},
        timeout=timeout(10),
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"


# -- refresh-token reuse ---------------------------------------------------------------------


def _refresh(api: TestClient, token: str) -> Response:
    return api.post("/api/v1/auth/refresh", json={"refresh_token": token})


def _me(api: TestClient, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return api.get("/api/v1/auth/me", headers=headers).status_code


@pytest.fixture
def strict_refresh(settings: Settings) -> Iterator[TestClient]:
    """The api with no reuse grace: a second use of a refresh token is a theft at once."""
    with TestClient(create_app(settings.model_copy(update={"refresh_reuse_grace_s": 0}))) as api:
        yield api


def test_reusing_a_rotated_refresh_token_revokes_the_whole_chain_with_an_audit_entry(
    strict_refresh: TestClient,
) -> None:
    api = strict_refresh
    first = api.post(
        "/api/v1/auth/login", json={"username": "engineer", "password": PASSWORDS["engineer"]}
    ).json()
    second = _refresh(api, first["refresh_token"]).json()
    third = _refresh(api, second["refresh_token"]).json()
    assert _me(api, third["access_token"]) == 200
    # An attacker replays the first refresh token, rotated long ago.
    stolen = _refresh(api, first["refresh_token"])
    assert stolen.status_code == 401
    assert stolen.json()["error"]["message"] == "Refresh token revoked or already used"
    # Every token issued from it is dead: the successor refresh token and the access tokens.
    assert _refresh(api, third["refresh_token"]).status_code == 401
    assert _me(api, third["access_token"]) == 401
    assert _me(api, second["access_token"]) == 401
    assert _me(api, first["access_token"]) == 401
    entries = api.get(
        "/api/v1/audit?action=refresh_token_reused", headers=login(api, "admin")
    ).json()["entries"]
    assert len(entries) == 1
    assert entries[0]["outcome"] == "denied"
    assert entries[0]["details"]["revoked_tokens"] == 6  # three refresh, three access


def test_a_reuse_leaves_other_sessions_of_the_same_user_alone(
    strict_refresh: TestClient,
) -> None:
    api = strict_refresh
    credentials = {"username": "engineer", "password": PASSWORDS["engineer"]}
    laptop = api.post("/api/v1/auth/login", json=credentials).json()
    phone = api.post("/api/v1/auth/login", json=credentials).json()
    _refresh(api, laptop["refresh_token"])
    assert _refresh(api, laptop["refresh_token"]).status_code == 401
    assert _me(api, phone["access_token"]) == 200
    assert _refresh(api, phone["refresh_token"]).status_code == 200


def test_a_second_use_within_the_grace_is_refused_but_ends_nothing(api: TestClient) -> None:
    """Two tabs refreshing with one stored token at once: one wins, the other adopts."""
    credentials = {"username": "engineer", "password": PASSWORDS["engineer"]}
    first = api.post("/api/v1/auth/login", json=credentials).json()
    winner = _refresh(api, first["refresh_token"])
    assert winner.status_code == 200
    loser = _refresh(api, first["refresh_token"])
    assert loser.status_code == 401
    assert _me(api, winner.json()["access_token"]) == 200
    assert _refresh(api, winner.json()["refresh_token"]).status_code == 200


def test_logout_with_the_refresh_token_ends_its_chain(api: TestClient) -> None:
    credentials = {"username": "engineer", "password": PASSWORDS["engineer"]}
    first = api.post("/api/v1/auth/login", json=credentials).json()
    second = _refresh(api, first["refresh_token"]).json()
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    response = api.post(
        "/api/v1/auth/logout", headers=headers, json={"refresh_token": second["refresh_token"]}
    )
    assert response.status_code == 204
    assert _refresh(api, second["refresh_token"]).status_code == 401
    assert _me(api, first["access_token"]) == 401


# -- the entry point: forwarded headers, login limits, metrics --------------------------------


@dataclasses.dataclass(frozen=True)
class Running:
    api: str
    metrics: str


@contextlib.contextmanager
def entry_point(settings: Settings, **overrides: object) -> Iterator[Running]:
    """The api as ``python -m api`` runs it (its uvicorn config and listeners), on free ports."""
    settings = settings.model_copy(
        update={"api_port": free_port(), "api_metrics_port": free_port(), **overrides}
    )
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings)))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": listeners(settings)}, daemon=True
    )
    thread.start()
    wait_for(lambda: server.started, timeout_s=15, what="the api to start")
    try:
        yield Running(
            api=f"http://127.0.0.1:{settings.api_port}",
            metrics=f"http://127.0.0.1:{settings.api_metrics_port}",
        )
    finally:
        server.should_exit = True
        thread.join(timeout=timeout(15))


def _login_codes(base: str, username: str, forwarded: list[str]) -> list[int]:
    codes = []
    for address in forwarded:
        response = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": username, "password": "wrong-password"},
            headers={"X-Forwarded-For": address},
            timeout=timeout(10),
        )
        codes.append(response.status_code)
    return codes


def _audit_addresses(base: str) -> set[str | None]:
    credentials = {"username": "admin", "password": PASSWORDS["admin"]}
    token = httpx.post(f"{base}/api/v1/auth/login", json=credentials).json()["access_token"]
    entries = httpx.get(
        f"{base}/api/v1/audit?action=login_failed",
        headers={"Authorization": f"Bearer {token}"},
    ).json()["entries"]
    return {entry["ip"] for entry in entries}


def test_rotating_x_forwarded_for_from_loopback_does_not_reset_the_login_limit(
    settings: Settings,
) -> None:
    addresses = [f"203.0.113.{n}" for n in range(1, 6)]
    with entry_point(settings, login_rate_per_minute=3) as running:
        assert _login_codes(running.api, "engineer", addresses) == [401, 401, 401, 429, 429]
        # Nobody forwarded: the audit trail names the real peer, not the forged header.
        assert _audit_addresses(running.api) == {"127.0.0.1"}


def test_behind_a_trusted_proxy_each_client_counts_and_one_username_is_limited_overall(
    settings: Settings,
) -> None:
    addresses = [f"203.0.113.{n}" for n in range(1, 8)]
    with entry_point(
        settings,
        trusted_proxies=["127.0.0.1/32"],
        login_rate_per_minute=3,
        login_rate_per_username_per_minute=5,
    ) as running:
        codes = _login_codes(running.api, "engineer", addresses)
        assert codes == [401] * 5 + [429] * 2
        assert _audit_addresses(running.api) == set(addresses[:5])
        # Another username is not locked out by the first one's attempts.
        assert _login_codes(running.api, "viewer", ["198.51.100.1"]) == [401]


def test_metrics_are_served_on_the_loopback_metrics_listener_only(settings: Settings) -> None:
    with entry_point(settings) as running:
        public = httpx.get(f"{running.api}/metrics", timeout=timeout(5))
        assert public.status_code == 404
        scraped = httpx.get(f"{running.metrics}/metrics", timeout=timeout(5))
        assert scraped.status_code == 200
        assert "sovd_http_requests_total" in scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        # The metrics listener is no back door to the api.
        assert httpx.get(f"{running.metrics}/api/v1/vehicles").status_code == 404
        assert httpx.get(f"{running.metrics}/health/live").status_code == 404


def test_with_a_metrics_token_the_api_port_serves_metrics_to_its_bearer_only(
    settings: Settings,
) -> None:
    token = "metrics-token-0123456789"
    with entry_point(settings, metrics_token=token, api_metrics_port=0) as running:
        url = f"{running.api}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_client_that_never_finishes_its_body_cannot_hold_the_api_past_its_shutdown_bound(
    settings: Settings,
) -> None:
    """A POST that announces a body and never sends it is a request in flight: uvicorn
    waits for those on SIGTERM, without a bound for ever. The api cancels it after
    ``SOVD_API_SHUTDOWN_TIMEOUT_S`` and exits."""
    settings = settings.model_copy(
        update={"api_port": free_port(), "api_metrics_port": 0, "api_shutdown_timeout_s": 1}
    )
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings)))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": listeners(settings)}, daemon=True
    )
    thread.start()
    wait_for(lambda: server.started, timeout_s=15, what="the api to start")
    with socket.create_connection(("127.0.0.1", settings.api_port), timeout=timeout(10)) as conn:
        conn.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: api\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        wait_for(lambda: len(server.server_state.tasks) == 1, timeout_s=10, what="the request")
        server.should_exit = True
        thread.join(timeout=timeout(15))
        assert not thread.is_alive(), "the api still waits for the unfinished request"


def test_trusted_proxies_must_be_addresses_or_networks(settings: Settings) -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        Settings(**{**settings.model_dump(), "trusted_proxies": ["*"]})


def test_trusted_proxies_read_from_the_environment_as_a_list_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOVD_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    assert Settings(_env_file=None).trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    monkeypatch.setenv("SOVD_TRUSTED_PROXIES", '["10.0.0.1"]')
    assert Settings(_env_file=None).trusted_proxies == ["10.0.0.1"]
    monkeypatch.delenv("SOVD_TRUSTED_PROXIES")
    assert Settings(_env_file=None).trusted_proxies == []


# -- who may learn which command blocks a vehicle ---------------------------------------------


def _submit(api: TestClient, headers: dict[str, str], name: str = "ReadDTC") -> Response:
    params = {"ecuAddress": "0x10"}
    body = {"vehicle_id": vehicle().vehicle_id, "command_name": name, "command_params": params}
    return api.post("/api/v1/commands", headers=headers, json=body)


def test_a_busy_vehicle_names_the_blocking_command_only_to_who_may_see_it(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "other", Role.ENGINEER)
    theirs = _submit(api, login(api, "other", "other-password"))
    assert theirs.status_code == 202
    blocker = theirs.json()["command_id"]
    # An engineer sees only their own commands: the refusal must not leak the other's id.
    refused = _submit(api, login(api, "engineer"), "ClearDTC")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert blocker not in refused.text
    assert "blocking_command_id" not in (error.get("details") or {})
    assert error["message"].startswith(f"Vehicle {vehicle().vehicle_id} is busy")
    # The owner and an admin may read that command, so they are told which one it is.
    for headers in (login(api, "other", "other-password"), login(api, "admin")):
        named = _submit(api, headers, "ClearDTC")
        assert named.status_code == 409
        assert named.json()["error"]["details"]["blocking_command_id"] == blocker


# -- the OpenAPI document tells the truth --------------------------------------------------------


def test_the_openapi_document_lists_what_the_api_really_answers(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    assert schemas["CommandCreate"]["properties"]["command_name"]["enum"] == [
        "ClearDTC", "ReadDTC", "ReadDataByID",
    ]  # fmt: skip
    assert set(schemas["ErrorResponse"]["properties"]) == {"error", "detail"}
    assert "detail" in schemas["ErrorResponse"]["required"]
    assert {"401", "429", "400", "413"} <= set(paths["/api/v1/auth/login"]["post"]["responses"])
    assert "401" in paths["/api/v1/auth/refresh"]["post"]["responses"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if "{" in path:
                assert "404" in codes, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= codes, (method, path)
            if path.startswith("/api/"):
                assert "503" in codes, (method, path)
    listing = {p["name"] for p in paths["/api/v1/commands"]["get"]["parameters"]}
    assert {"start_date", "end_date", "user_id", "limit", "offset"} <= listing


def test_an_error_body_carries_detail_beside_the_error_object(api: TestClient) -> None:
    response = api.get(f"/api/v1/commands/{uuid.uuid4()}", headers=login(api, "viewer"))
    assert response.status_code == 404
    body = response.json()
    assert body["detail"] == body["error"]["message"]
    assert body["error"]["code"] == "not_found"
