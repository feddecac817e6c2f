"""Crash, shutdown and outage safety with real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from websockets.sync.client import connect

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.conftest import TEST_JWT_SECRET
from tests.support import (
    ROOT,
    RedisServer,
    Stack,
    running_stack,
    timeout,
    wait_for,
    worker_argv,
)

pytestmark = pytest.mark.e2e

VEHICLE = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
TERMINAL = ("completed", "failed", "timeout", "cancelled", "rejected")
FAST_RECOVERY = {
    "SOVD_BROKER_HEARTBEAT_TIMEOUT_MS": "1500",
    "SOVD_BROKER_MAINTENANCE_CHANCE": "1000000",
    "dramatiq_restart_delay": "200",
}


class Worker:
    """A dramatiq worker process in its own session, so the whole tree can be killed."""

    def __init__(self, stack: Stack, log: Path) -> None:
        env = {**stack.env, "SOVD_SIM_DELAY_SCALE": "0"}
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                worker_argv(processes=1, threads=2),
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(
            lambda: self.log.read_text().count("Worker process is ready") > self._ready_before,
            timeout_s=30,
            what="the worker to be ready",
        )

    _ready_before = 0

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=timeout(10))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path, jwt_secret=TEST_JWT_SECRET, env=FAST_RECOVERY) as s:
        s.processes["worker"].terminate()  # each test runs the workers it needs
        s.processes["worker"].wait(timeout=timeout(10))
        yield s


def token_for(stack: Stack, username: str = "engineer") -> str:
    response = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": username, "password": f"{username}-demo-pass"},
    )
    return str(response.json()["access_token"])


def submit(stack: Stack, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "vehicle_id": VEHICLE.vehicle_id,
            "command_name": "ReadDTC",
            "command_params": {"ecuAddress": "0x10"},
        },
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def assert_consistent(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    numbers = [e["sequence_number"] for e in events if e["event"] == "response"]
    assert numbers == list(range(1, len(numbers) + 1))
    terminal = [e for e in events if e["event"] == "status" and e["status"] in TERMINAL]
    assert len(terminal) == 1
    assert events[-1] is terminal[0]


def test_a_worker_killed_mid_command_is_replaced_and_the_client_sees_one_clean_stream(
    stack: Stack, tmp_path: Path
) -> None:
    keys = Keys(stack.settings.key_prefix)
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    client.rpush(keys.sim_faults(VEHICLE.vehicle_id), "slow:0.5")
    first = Worker(stack, tmp_path / "worker-1.log")
    token = token_for(stack)
    command = submit(stack, token)
    events: list[dict[str, Any]] = []
    try:
        with connect(f"{command['websocket_url']}?token={token}") as ws:
            while sum(1 for e in events if e["event"] == "response") < 2:
                events.append(json.loads(ws.recv(timeout=timeout(10))))
            first.kill()
            second = Worker(stack, tmp_path / "worker-2.log")
            try:
                while not (events[-1]["event"] == "status" and events[-1]["status"] in TERMINAL):
                    events.append(json.loads(ws.recv(timeout=timeout(30))))
            finally:
                second.stop()
    finally:
        client.close()
    assert_consistent([e for e in events if e["event"] != "welcome"])
    assert events[-1]["status"] == "completed"
    summary = [e for e in events if e["event"] == "response"][-1]["response"]
    assert summary["is_final"] is True
    assert "Retrying" not in (tmp_path / "worker-2.log").read_text()


def test_sigterm_lets_an_in_flight_command_finish_before_the_worker_exits(
    stack: Stack, tmp_path: Path
) -> None:
    keys = Keys(stack.settings.key_prefix)
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    client.rpush(keys.sim_faults(VEHICLE.vehicle_id), "slow:0.3")
    worker = Worker(stack, tmp_path / "worker.log")
    command = submit(stack, token_for(stack))
    key = keys.command(command["command_id"])
    try:
        wait_for(lambda: client.hget(key, "status") == "in_progress", what="the command to start")
        os.killpg(worker.process.pid, signal.SIGTERM)  # as honcho does: the whole group
        assert worker.process.wait(timeout=timeout(10)) == 0
        assert client.hget(key, "status") == "completed"
        assert "Killing worker process" not in worker.log.read_text()
    finally:
        worker.stop()
        client.close()


def test_api_and_workers_recover_by_themselves_after_a_redis_outage(tmp_path: Path) -> None:
    server = RedisServer(appendonly=True)
    server.start()
    try:
        with running_stack(
            server.url, tmp_path, jwt_secret=TEST_JWT_SECRET, env=FAST_RECOVERY
        ) as stack:
            token = token_for(stack)
            server.halt()
            down = httpx.post(
                f"{stack.api_url}/api/v1/commands",
                headers={"Authorization": f"Bearer {token}"},
                json={"vehicle_id": VEHICLE.vehicle_id, "command_name": "ReadDTC",
                      "command_params": {"ecuAddress": "0x10"}},
            )  # fmt: skip
            assert down.status_code == 503
            assert (
                down.json()["error"]["message"]
                == "Storage temporarily unavailable; try again shortly"
            )
            assert httpx.get(f"{stack.api_url}/health/ready").status_code == 503
            server.start()
            for url in (stack.api_url, stack.realtime_url):
                wait_for(
                    lambda url=url: httpx.get(f"{url}/health/ready").status_code == 200,
                    what=f"{url} to be ready again",
                )
            command = submit(stack, token)
            with connect(f"{command['websocket_url']}?token={token}") as ws:
                while True:
                    event = json.loads(ws.recv(timeout=timeout(30)))
                    if event["event"] == "status" and event["status"] in TERMINAL:
                        break
            assert event["status"] == "completed"
    finally:
        server.stop()


def _wait_terminal(client: redis.Redis, key: str, *, timeout_s: float) -> str:
    wait_for(lambda: client.hget(key, "status") in TERMINAL, timeout_s=timeout_s,
             what="the command to end")  # fmt: skip
    return str(client.hget(key, "status"))


def test_a_command_in_flight_across_a_two_second_redis_restart_completes(tmp_path: Path) -> None:
    """Worker event writes retry with bounded back-off; the api answers at once after."""
    server = RedisServer(appendonly=True)
    server.start()
    try:
        with running_stack(server.url, tmp_path, jwt_secret=TEST_JWT_SECRET) as stack:
            keys = Keys(stack.settings.key_prefix)
            client = redis.Redis.from_url(server.url, decode_responses=True)
            client.rpush(keys.sim_faults(VEHICLE.vehicle_id), "slow:0.4")
            client.close()
            token = token_for(stack)
            command = submit(stack, token)
            key = keys.command(command["command_id"])
            client = redis.Redis.from_url(server.url, decode_responses=True)
            wait_for(lambda: client.hget(key, "status") == "in_progress", what="the start")
            client.close()
            server.halt()
            time.sleep(2.0)  # the outage being simulated, not a wait for a condition
            server.start()
            headers = {"Authorization": f"Bearer {token}"}
            read = httpx.get(f"{stack.api_url}/api/v1/vehicles/{VEHICLE.vehicle_id}",
                             headers=headers)  # fmt: skip
            assert read.status_code == 200, read.text
            client = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                assert _wait_terminal(client, key, timeout_s=timeout(30)) == "completed"
                events = [json.loads(f["event"]) for _, f in client.xrange(keys.command_events(
                    command["command_id"]))]  # fmt: skip
                assert_consistent(events)
                after = submit(stack, token)  # 202 (asserted by submit)
                later = keys.command(after["command_id"])
                assert _wait_terminal(client, later, timeout_s=timeout(30)) == "completed"
            finally:
                client.close()
    finally:
        server.stop()


@pytest.mark.parametrize("queue_command", ["ReadDataByID", "ReadDTC"])
def test_a_killed_workers_command_is_redelivered_on_every_queue_and_attempts_count_it(
    stack: Stack, tmp_path: Path, queue_command: str
) -> None:
    """No maintenance by chance here: only the workers' own maintenance can requeue."""
    keys = Keys(stack.settings.key_prefix)
    client = redis.Redis.from_url(stack.settings.effective_redis_url, decode_responses=True)
    client.rpush(keys.sim_faults(VEHICLE.vehicle_id), "slow:1")
    env = {**stack.env, "SOVD_BROKER_MAINTENANCE_CHANCE": "0"}
    first = Worker(Stack(**{**stack.__dict__, "env": env}), tmp_path / "worker-1.log")
    token = token_for(stack)
    params = {"ecuAddress": "0x10"} | ({"dataId": "0xF190"} if queue_command == "ReadDataByID"
                                      else {})  # fmt: skip
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={"vehicle_id": VEHICLE.vehicle_id, "command_name": queue_command,
              "command_params": params},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    key = keys.command(response.json()["command_id"])
    second = None
    try:
        wait_for(lambda: client.hget(key, "status") == "in_progress", what="the start")
        first.kill()
        second = Worker(Stack(**{**stack.__dict__, "env": env}), tmp_path / "worker-2.log")
        bound = 1.5 + 5  # FAST_RECOVERY's heartbeat timeout + 5 s
        assert _wait_terminal(client, key, timeout_s=timeout(bound)) == "completed"
        assert client.hget(key, "attempts") == "2"
    finally:
        if second is not None:
            second.stop()
        client.close()
