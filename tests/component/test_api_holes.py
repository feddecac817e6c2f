"""Holes found by attacking the api: each test states what an attacker tried and what stops it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from common.settings import Settings
from tests.component.conftest import PASSWORDS, login
from tests.support import ServerThread, timeout


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


def test_reusing_a_rotated_refresh_token_revokes_the_whole_chain_with_an_audit_entry(
    api: TestClient,
) -> None:
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


def test_a_reuse_leaves_other_sessions_of_the_same_user_alone(api: TestClient) -> None:
    credentials = {"username": "engineer", "password": PASSWORDS["engineer"]}
    laptop = api.post("/api/v1/auth/login", json=credentials).json()
    phone = api.post("/api/v1/auth/login", json=credentials).json()
    _refresh(api, laptop["refresh_token"])
    assert _refresh(api, laptop["refresh_token"]).status_code == 401
    assert _me(api, phone["access_token"]) == 200
    assert _refresh(api, phone["refresh_token"]).status_code == 200


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
