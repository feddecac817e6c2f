"""End to end: REST submit -> Dramatiq worker -> simulated vehicle -> Redis -> WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2 as httpx
import pytest
import redis
from freezegun import freeze_time
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common.fleet import demo_fleet
from common.keys import Keys, response_channel
from common.redis_client import async_client
from common.tokens import issue_token
from common.users import UserStore
from common.vehicles import ConnectionStatus
from tests.e2e.conftest import Stack
from tests.support import timeout, wait_for

pytestmark = pytest.mark.e2e

CONNECTED = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
TERMINAL = {"completed", "failed"}
RESPONSE_KEYS = {"response_id", "response_payload", "sequence_number", "is_final", "received_at"}


def login(stack: Stack, username: str = "engineer") -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": username, "password": f"{username}-demo-pass"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(stack: Stack, token: str, name: str, params: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={"vehicle_id": CONNECTED.vehicle_id, "command_name": name, "command_params": params},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def ws(url: str, token: str | None) -> ClientConnection:
    return connect(url + (f"?token={token}" if token else ""), open_timeout=timeout(5))


def until_terminal(client: ClientConnection) -> list[dict[str, Any]]:
    """The command's events after the connection's ``welcome``, up to the terminal status."""
    welcome = json.loads(client.recv(timeout=timeout(10)))
    assert welcome["event"] == "welcome", welcome
    events: list[dict[str, Any]] = []
    while not (events and events[-1]["event"] == "status" and events[-1]["status"] in TERMINAL):
        events.append(json.loads(client.recv(timeout=timeout(10))))
    return events


def close_code(client: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=timeout(5))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


@pytest.mark.parametrize(
    ("name", "params", "status"),
    [
        ("ReadDTC", {"ecuAddress": "0x10"}, "completed"),
        ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xF190"}, "completed"),
        ("ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xBEEF"}, "failed"),
        ("ClearDTC", {"ecuAddress": "0x18"}, "completed"),
    ],
)
def test_each_command_type_streams_the_same_ordered_events_to_two_clients(
    stack: Stack, name: str, params: dict[str, str], status: str
) -> None:
    token = login(stack, "admin" if name == "ClearDTC" else "engineer")["access_token"]
    command = submit(stack, token, name, params)
    assert command["websocket_url"] == f"{stack.ws_url}/ws/responses/{command['command_id']}"
    with ws(command["websocket_url"], token) as a, ws(command["websocket_url"], token) as b:
        got_a, got_b = until_terminal(a), until_terminal(b)
    assert got_a == got_b
    assert [e["seq"] for e in got_a] == list(range(1, len(got_a) + 1))
    assert {e["command_id"] for e in got_a} == {command["command_id"]}
    assert (got_a[0]["event"], got_a[0]["status"]) == ("status", "in_progress")
    assert got_a[-1]["status"] == status
    assert "completed_at" in got_a[-1]
    responses = [e for e in got_a if e["event"] == "response"]
    assert responses, "every command type answers at least once"
    for number, event in enumerate(responses, start=1):
        assert set(event["response"]) == RESPONSE_KEYS
        assert event["sequence_number"] == event["response"]["sequence_number"] == number
    assert responses[-1]["response"]["is_final"] is True
    errors = [e for e in got_a if e["event"] == "error"]
    assert len(errors) == (1 if status == "failed" else 0)
    headers = {"Authorization": f"Bearer {token}"}
    stored = httpx.get(
        f"{stack.api_url}/api/v1/commands/{command['command_id']}/responses", headers=headers
    ).json()
    assert stored == [e["response"] for e in responses]
    record = httpx.get(
        f"{stack.api_url}/api/v1/commands/{command['command_id']}", headers=headers
    ).json()
    assert record["status"] == status


def test_a_late_client_receives_the_full_replay(stack: Stack) -> None:
    token = login(stack)["access_token"]
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x28"})
    with ws(command["websocket_url"], token) as live:
        first = until_terminal(live)
    with ws(command["websocket_url"], token) as late:
        assert until_terminal(late) == first


def test_the_relay_rejects_missing_invalid_and_expired_tokens_with_1008(stack: Stack) -> None:
    token = login(stack)["access_token"]
    url = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})["websocket_url"]
    engineer = _user(stack, "engineer")
    with freeze_time("2021-06-01T12:00:00Z"):
        expired = issue_token(stack.settings, engineer, "access")[0]
    for bad in (None, "garbage", expired):
        with ws(url, bad) as client:
            assert close_code(client) == 1008


def test_another_engineers_command_is_closed_with_4404_but_viewers_may_follow_it(
    stack: Stack,
) -> None:
    token = login(stack)["access_token"]
    url = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})["websocket_url"]
    admin_token = login(stack, "admin")["access_token"]
    viewer_token = login(stack, "viewer")["access_token"]
    with ws(url, viewer_token) as viewer:
        assert until_terminal(viewer)[-1]["status"] == "completed"
    admin_url = submit(stack, admin_token, "ReadDTC", {"ecuAddress": "0x10"})["websocket_url"]
    with ws(admin_url, token) as engineer:
        assert close_code(engineer) == 4404


def test_disconnecting_the_last_client_unsubscribes_the_channel(stack: Stack) -> None:
    token = login(stack)["access_token"]
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})
    channel = response_channel(command["command_id"])
    client = redis.Redis.from_url(stack.settings.effective_redis_url)
    try:
        with ws(command["websocket_url"], token) as a, ws(command["websocket_url"], token) as b:
            until_terminal(a)
            until_terminal(b)
            assert client.pubsub_numsub(channel) == [(channel.encode(), 1)]
            assert _realtime_ready(stack)["subscriptions"] == 2
        wait_for(
            lambda: client.pubsub_numsub(channel) == [(channel.encode(), 0)],
            what="the channel to be unsubscribed",
        )
        wait_for(lambda: _realtime_ready(stack)["subscriptions"] == 0, what="an empty registry")
        assert _realtime_ready(stack)["channels"] == 0
    finally:
        client.close()


def test_subprotocol_token_refresh_and_sse_through_the_real_processes(stack: Stack) -> None:
    """Paths that carry tokens outside the query string; the test below checks the logs."""
    token = login(stack)["access_token"]
    fresh = login(stack)["access_token"]
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})
    with connect(
        command["websocket_url"],
        subprotocols=["sovd.v1", f"bearer.{token}"],  # type: ignore[list-item]
        open_timeout=timeout(5),
    ) as client:
        events = until_terminal(client)
        client.send(json.dumps({"action": "refresh", "token": fresh}))
        assert json.loads(client.recv(timeout=timeout(5)))["event"] == "token_refreshed"
    url = f"{stack.realtime_url}/api/v1/commands/{command['command_id']}/events"
    with httpx.stream(
        "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout(10)
    ) as response:
        assert response.status_code == 200
        ids = []
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if len(ids) == len(events):
                break
    assert ids == [e["seq"] for e in events]


def test_the_processes_logged_no_error_and_no_token(stack: Stack) -> None:
    """Runs last in this module: it reads the logs of everything above."""
    tokens = [login(stack, name)["access_token"] for name in ("viewer", "engineer")]
    for name, lines in stack.log_lines().items():
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records, f"{name} logged nothing"
        errors = [r for r in records if r.get("level") in ("error", "critical")]
        assert errors == [], f"{name} logged errors: {errors}"
        text = "\n".join(lines)
        assert "eyJ" not in text, f"{name} logged a JWT"
        assert all(t not in text for t in tokens)
    realtime = "\n".join(stack.log_lines()["realtime"])
    assert "token=[REDACTED]" in realtime


def _user(stack: Stack, username: str) -> Any:
    async def go() -> Any:
        client = async_client(stack.settings.effective_redis_url)
        try:
            return await UserStore(client, Keys(stack.settings.key_prefix)).get_by_username(
                username
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def _realtime_ready(stack: Stack) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.realtime_url}/health/ready").json())
