"""Authentication over REST, against a real Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

from common.settings import Settings
from common.users import Role
from tests.component.conftest import create_user, login


def test_login_returns_a_token_pair_that_authenticates_me(api: TestClient) -> None:
    response = api.post(
        "/api/v1/auth/login", json={"username": "engineer", "password": "engineer-demo-pass"}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert set(me.json()) == {"user_id", "username", "role", "email"}
    assert me.json()["username"] == "engineer"
    assert me.json()["role"] == "engineer"
    assert me.json()["email"] == "engineer@example.com"


def test_wrong_password_unknown_user_and_inactive_user_get_the_same_401(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "dormant", Role.ENGINEER, active=False)
    attempts = [
        {"username": "engineer", "password": "wrong"},
        {"username": "nobody", "password": "whatever"},
        {"username": "dormant", "password": "dormant-password"},
    ]
    answers = [api.post("/api/v1/auth/login", json=a) for a in attempts]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert {a.json()["error"]["message"] for a in answers} == {"Invalid username or password"}


def test_login_rejects_a_malformed_body_with_422(api: TestClient) -> None:
    response = api.post("/api/v1/auth/login", json={"username": "engineer"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["loc"] == ["body", "password"]


def test_refresh_rotates_and_the_new_refresh_token_rotates_again(api: TestClient) -> None:
    first = api.post(
        "/api/v1/auth/login", json={"username": "viewer", "password": "viewer-demo-pass"}
    ).json()
    rotated = api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != first["refresh_token"]
    again = api.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert again.status_code == 200
    headers = {"Authorization": f"Bearer {again.json()['access_token']}"}
    assert api.get("/api/v1/auth/me", headers=headers).json()["username"] == "viewer"


def test_an_access_token_is_not_accepted_as_a_refresh_token(api: TestClient) -> None:
    pair = api.post(
        "/api/v1/auth/login", json={"username": "viewer", "password": "viewer-demo-pass"}
    ).json()
    response = api.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert response.status_code == 401


def test_logout_revokes_the_access_and_the_refresh_token(api: TestClient) -> None:
    pair = api.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "admin-demo-pass"}
    ).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert api.get("/api/v1/auth/me", headers=headers).status_code == 200
    out = api.post(
        "/api/v1/auth/logout", headers=headers, json={"refresh_token": pair["refresh_token"]}
    )
    assert out.status_code == 204
    after = api.get("/api/v1/auth/me", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "Token revoked"
    refreshed = api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401


def test_requests_without_or_with_a_bad_token_are_401_with_a_bearer_challenge(
    api: TestClient,
) -> None:
    missing = api.get("/api/v1/vehicles")
    garbage = api.get("/api/v1/vehicles", headers={"Authorization": "Bearer not-a-jwt"})
    assert (missing.status_code, garbage.status_code) == (401, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["message"] == "Not authenticated"
    assert garbage.json()["error"]["message"] == "Invalid token"


def test_a_deactivated_user_loses_access_with_a_valid_token(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "leaver", Role.ENGINEER)
    headers = login(api, "leaver", "leaver-password")
    assert api.get("/api/v1/auth/me", headers=headers).status_code == 200
    create_user_inactive = api.app.state.sovd.users  # the app's own store, same Redis
    api.portal.call(create_user_inactive.set_active, "leaver", False)  # type: ignore[union-attr]
    assert api.get("/api/v1/auth/me", headers=headers).status_code == 401
