"""Logout, revocation and deactivation reach open streams on every realtime process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import TEST_JWT_SECRET
from tests.support import ROOT, Stack, free_port, http_ready, running_stack, timeout, wait_for

pytestmark = pytest.mark.e2e

SOVD_ADMIN = str(Path(sys.executable).parent / "sovd-admin")


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        redis_url, tmp_path_factory.mktemp("revocation-logs"), jwt_secret=TEST_JWT_SECRET
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def second_realtime(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second realtime process on the same Redis; yields its ws:// base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("realtime-2") / "realtime.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "realtime"],
            cwd=ROOT,
            env={**stack.env, "SOVD_REALTIME_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: http_ready(f"http://127.0.0.1:{port}"), timeout_s=30, what="realtime 2")
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=timeout(10))


def _login(stack: Stack, username: str) -> str:
    answer = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": username, "password": f"{username}-demo-pass"},
        timeout=timeout(10),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _command(stack: Stack, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    vehicles = httpx.get(
        f"{stack.api_url}/api/v1/vehicles?status=connected", headers=headers, timeout=10
    ).json()
    answer = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers=headers,
        json={
            "vehicle_id": vehicles[0]["vehicle_id"],
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
        timeout=timeout(10),
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["command_id"])


@contextlib.contextmanager
def _ws(base: str, command_id: str, token: str) -> Iterator[ClientConnection]:
    with connect(
        f"{base}/ws/responses/{command_id}",
        subprotocols=["sovd.v1", f"bearer.{token}"],  # type: ignore[list-item] # offered names
        open_timeout=timeout(10),
    ) as ws:
        assert json.loads(ws.recv(timeout=timeout(10)))["event"] == "welcome"
        yield ws


def _close_code(ws: ClientConnection, *, timeout_s: float) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - reads until the close
        while True:
            ws.recv(timeout=timeout(timeout_s))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _still_open(ws: ClientConnection) -> bool:
    ws.send(json.dumps({"action": "ping"}))
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=timeout(10)))
        if event.get("event") == "pong":
            return True


def _sse_close(stack: Stack, command_id: str, token: str) -> Iterator[dict[str, Any]]:
    with httpx.stream(
        "GET",
        f"{stack.realtime_url}/api/v1/commands/{command_id}/events",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout(15),
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def test_logout_closes_that_tokens_streams_on_every_realtime_process(
    stack: Stack, second_realtime: str
) -> None:
    token, other_token = _login(stack, "engineer"), _login(stack, "engineer")
    command_id = _command(stack, token)
    with (
        _ws(stack.ws_url, command_id, token) as first,
        _ws(second_realtime, command_id, token) as second,
        _ws(second_realtime, command_id, other_token) as other_session,
    ):
        sse = _sse_close(stack, command_id, token)
        assert next(sse)["event"] == "welcome"
        answer = httpx.post(
            f"{stack.api_url}/api/v1/auth/logout",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout(10),
        )
        assert answer.status_code == 204
        assert _close_code(first, timeout_s=5) == (4403, "Session revoked")
        assert _close_code(second, timeout_s=5) == (4403, "Session revoked")
        closing = next(event for event in sse if event["event"] == "close")
        assert (closing["code"], closing["reason"]) == (4403, "Session revoked")
        assert _still_open(other_session)  # the same user's other login is not affected


def test_deactivating_a_user_closes_all_its_streams_on_every_realtime_process(
    stack: Stack, second_realtime: str
) -> None:
    token = _login(stack, "admin")
    viewer_token = _login(stack, "viewer")
    command_id = _command(stack, token)
    with (
        _ws(stack.ws_url, command_id, token) as first,
        _ws(second_realtime, command_id, token) as second,
        _ws(second_realtime, command_id, viewer_token) as bystander,
    ):
        deactivated = subprocess.run(
            [SOVD_ADMIN, "deactivate-user", "admin"],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            timeout=timeout(30),
            check=False,
        )
        try:
            assert deactivated.returncode == 0, deactivated.stderr
            assert _close_code(first, timeout_s=5) == (4403, "Session revoked")
            assert _close_code(second, timeout_s=5) == (4403, "Session revoked")
            assert _still_open(bystander)
            refused = httpx.get(
                f"{stack.realtime_url}/api/v1/commands/{command_id}/events",
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout(10),
            )
            assert refused.status_code == 401
        finally:
            subprocess.run(
                [SOVD_ADMIN, "activate-user", "admin"],
                env={**os.environ, **stack.env},
                timeout=timeout(30),
                check=True,
                capture_output=True,
            )
