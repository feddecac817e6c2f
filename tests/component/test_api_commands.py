"""Submitting and reading commands over REST (queued on the real Redis broker)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from common.fleet import demo_fleet
from common.keys import Keys
from common.lua import lua_script
from common.policy import DEFAULT_POLICIES
from common.redis_client import async_client
from common.settings import Settings
from common.users import Role
from tests.component.conftest import create_user, login, vehicle
from tests.support import free_port


def submit(api: TestClient, headers: dict[str, str], **body: Any) -> Any:
    payload = {
        "vehicle_id": vehicle().vehicle_id,
        "command_name": "ReadDTC",
        "command_params": {"ecuAddress": "0x10"},
        **body,
    }
    return api.post("/api/v1/commands", headers=headers, json=payload)


def queued_messages(sync_redis: redis.Redis, keys: Keys, command_name: str) -> list[dict[str, Any]]:
    queue = DEFAULT_POLICIES[command_name]["queue_name"]
    raw = sync_redis.hvals(f"{keys.broker_namespace}:{queue}.msgs")
    return [json.loads(m) for m in raw]  # type: ignore[union-attr]


def test_submit_answers_202_with_the_pending_command_and_queues_it(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    response = submit(api, login(api, "engineer"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["command_name"] == "ReadDTC"
    assert body["command_params"] == {"ecuAddress": "0x10"}
    assert body["completed_at"] is None
    assert body["error_message"] is None
    assert body["submitted_at"].endswith("Z")
    uuid.UUID(body["command_id"])
    assert body["websocket_url"] == f"ws://127.0.0.1:8001/ws/responses/{body['command_id']}"
    assert response.headers["location"] == f"/api/v1/commands/{body['command_id']}"
    messages = queued_messages(sync_redis, keys, "ReadDTC")
    assert [m["args"] for m in messages] == [[body["command_id"]]]
    assert messages[0]["actor_name"] == "read_dtc"
    assert messages[0]["kwargs"]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("command_name", "params"),
    [
        ("ReadDTC", {"ecuAddress": "0x10"}),
        ("ClearDTC", {"ecuAddress": "0x10"}),
        ("ClearDTC", {"ecuAddress": "0x28", "dtcCode": "C0035"}),
        ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}),
    ],
)
def test_each_command_type_is_accepted_on_its_own_queue(
    api: TestClient, sync_redis: redis.Redis, keys: Keys, command_name: str, params: dict[str, str]
) -> None:
    response = submit(api, login(api, "admin"), command_name=command_name, command_params=params)
    assert response.status_code == 202, response.text
    assert [m["args"][0] for m in queued_messages(sync_redis, keys, command_name)] == [
        response.json()["command_id"]
    ]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"command_name": "FlashECU"}, ["body", "command_name"], "Unknown command 'FlashECU'"),
        ({"command_params": {}}, ["body", "command_params", "ecuAddress"], "Field required"),
        (
            {"command_params": {"ecuAddress": "16"}},
            ["body", "command_params", "ecuAddress"],
            "should match pattern",
        ),
        (
            {"command_params": {"ecuAddress": "0x10", "extra": 1}},
            ["body", "command_params", "extra"],
            "Extra inputs are not permitted",
        ),
        (
            {"command_name": "ClearDTC", "command_params": {"ecuAddress": "0x10", "dtcCode": "X9"}},
            ["body", "command_params", "dtcCode"],
            "should match pattern",
        ),
        (
            {"command_name": "ReadDataByID", "command_params": {"ecuAddress": "0x10"}},
            ["body", "command_params", "dataId"],
            "Field required",
        ),
        ({"vehicle_id": "nope"}, ["body", "vehicle_id"], "UUID"),
        ({"unexpected": True}, ["body", "unexpected"], "Extra inputs are not permitted"),
    ],
)
def test_invalid_commands_are_422_naming_the_field(
    api: TestClient, body: dict[str, Any], loc: list[str], fragment: str
) -> None:
    response = submit(api, login(api, "engineer"), **body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["loc"] == loc
    assert fragment in error["details"]["errors"][0]["msg"]
    assert error["message"].startswith(".".join(loc[1:]))
    assert error["request_id"] == response.headers["x-request-id"]


def test_unknown_vehicle_is_404_and_nothing_is_stored(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    response = submit(api, login(api, "engineer"), vehicle_id=str(uuid.uuid4()))
    assert response.status_code == 404
    assert sync_redis.zcard(keys.commands) == 0


def test_viewers_cannot_submit(api: TestClient) -> None:
    response = submit(api, login(api, "viewer"))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Role 'viewer' may not submit commands"


def test_a_submission_redis_cannot_take_answers_503_and_leaves_nothing(
    api: TestClient, settings: Settings
) -> None:
    """Store, queue and audit are one script: when it cannot run, nothing is half-made."""
    headers = login(api, "engineer")
    dead = async_client(f"redis://127.0.0.1:{free_port()}/0")
    state = api.app.state.sovd  # type: ignore[attr-defined]
    api.app.state.sovd = dataclasses.replace(  # type: ignore[attr-defined]
        state, submit_script=lua_script("submit").register_async(dead)
    )
    response = submit(api, headers)
    api.app.state.sovd = state  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert "could not be stored or queued" in response.json()["error"]["message"]
    assert api.get("/api/v1/commands", headers=headers).json()["commands"] == []


def test_an_accepted_command_is_stored_queued_and_audited_together(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    headers = login(api, "engineer")
    command_id = submit(api, headers).json()["command_id"]
    queue = DEFAULT_POLICIES["ReadDTC"]["queue_name"]
    (message_id,) = sync_redis.lrange(keys.broker_queue(queue), 0, -1)
    message = json.loads(sync_redis.hget(keys.broker_queue_messages(queue), message_id))
    assert message["args"] == [command_id]
    assert message["options"]["redis_message_id"] == message_id
    assert sync_redis.hget(keys.command(command_id), "status") == "pending"
    assert sync_redis.llen(keys.broker_wake(queue)) == 1
    submitted = [f for _, f in sync_redis.xrange(keys.audit) if f["action"] == "command_submitted"]
    assert [f["command_id"] for f in submitted] == [command_id]


def test_engineers_see_their_own_commands_admins_and_viewers_see_all(
    api: TestClient, settings: Settings
) -> None:
    create_user(settings, "other", Role.ENGINEER)
    mine = submit(api, login(api, "engineer")).json()["command_id"]
    theirs = submit(api, login(api, "other", "other-password")).json()["command_id"]
    engineer = login(api, "engineer")
    listed = api.get("/api/v1/commands", headers=engineer).json()
    assert [c["command_id"] for c in listed["commands"]] == [mine]
    assert (listed["total"], listed["limit"], listed["offset"]) == (1, 50, 0)
    hidden = api.get(f"/api/v1/commands/{theirs}", headers=engineer)
    assert hidden.status_code == 404
    assert api.get(f"/api/v1/commands/{theirs}/responses", headers=engineer).status_code == 404
    for role in ("admin", "viewer"):
        everything = api.get("/api/v1/commands", headers=login(api, role)).json()
        assert {c["command_id"] for c in everything["commands"]} == {mine, theirs}
        assert api.get(f"/api/v1/commands/{theirs}", headers=login(api, role)).status_code == 200


def test_command_list_filters_and_pages_newest_first(api: TestClient) -> None:
    headers = login(api, "admin")
    ids = [submit(api, headers).json()["command_id"] for _ in range(3)]
    other_vehicle = next(v for v in demo_fleet() if v.vehicle_id != vehicle().vehicle_id)
    elsewhere = submit(api, headers, vehicle_id=other_vehicle.vehicle_id).json()["command_id"]
    page = api.get("/api/v1/commands?limit=2&offset=1", headers=headers).json()
    assert [c["command_id"] for c in page["commands"]] == [ids[2], ids[1]]
    assert page["total"] == 4
    by_vehicle = api.get(
        f"/api/v1/commands?vehicle_id={other_vehicle.vehicle_id}", headers=headers
    ).json()
    assert [c["command_id"] for c in by_vehicle["commands"]] == [elsewhere]
    pending = api.get("/api/v1/commands?status=pending", headers=headers).json()
    assert pending["total"] == 4
    assert api.get("/api/v1/commands?status=completed", headers=headers).json()["total"] == 0
    assert api.get("/api/v1/commands?status=bogus", headers=headers).status_code == 422


def test_a_new_command_has_no_responses_yet(api: TestClient) -> None:
    headers = login(api, "engineer")
    command_id = submit(api, headers).json()["command_id"]
    assert api.get(f"/api/v1/commands/{command_id}/responses", headers=headers).json() == []
    assert api.get(f"/api/v1/commands/{uuid.uuid4()}", headers=headers).status_code == 404


def test_the_openapi_document_describes_every_route(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/auth/me",
        "/api/v1/vehicles", "/api/v1/vehicles/{vehicle_id}", "/api/v1/vehicles/{vehicle_id}/status",
        "/api/v1/commands", "/api/v1/commands/{command_id}",
        "/api/v1/commands/{command_id}/responses",
    }  # fmt: skip
