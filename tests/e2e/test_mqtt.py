"""End to end over MQTT: api -> worker -> Mosquitto -> agent -> worker -> realtime.

A private Mosquitto with the vehicles' accounts and the ACL, the api, worker and
realtime processes with ``SOVD_CONNECTOR=mqtt``, the vehicle bridge and the agent
(simulating the demo fleet's online vehicles) as real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from websockets.sync.client import connect

from common.fleet import demo_fleet, is_simulated
from common.keys import Keys
from common.settings import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_command_path import login, until_terminal
from tests.mqtt_support import MosquittoServer
from tests.support import ROOT, Stack, running_stack, timeout, wait_for
from workers.simulator import SimulatedFleet

pytestmark = pytest.mark.e2e

CAR = next(v for v in demo_fleet() if is_simulated(v))


class Mqtt:
    def __init__(self, stack: Stack, broker: MosquittoServer, log_dir: Path) -> None:
        self.stack = stack
        self.broker = broker
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, module: str) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env=self.stack.env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self, name: str, *, kill: bool = False) -> None:
        process = self.processes.pop(name)
        process.kill() if kill else process.terminate()
        try:
            process.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def mqtt(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mqtt]:
    log_dir = tmp_path_factory.mktemp("e2e-mqtt-logs")
    broker = MosquittoServer(
        Settings(_env_file=None, jwt_secret=TEST_JWT_SECRET), [v.vin for v in demo_fleet()]
    )
    broker.start()
    env = {
        "SOVD_CONNECTOR": "mqtt",
        "SOVD_MQTT_PORT": str(broker.port),
        "SOVD_MQTT_HEARTBEAT_INTERVAL_S": "1",
        "SOVD_PRESENCE_TIMEOUT_S": "5",
        "SOVD_PRESENCE_SWEEP_INTERVAL_S": "1",
        "SOVD_SIM_DELAY_SCALE": "0.05",
    }
    try:
        with running_stack(redis_url, log_dir, jwt_secret=TEST_JWT_SECRET, env=env) as stack:
            running = Mqtt(stack, broker, log_dir)
            running.start("bridge", "workers.vehicle_bridge")
            running.start("agent", "agent")
            try:
                yield running
            finally:
                for name in list(running.processes):
                    running.stop(name)
    finally:
        broker.stop()


def vehicle(stack: Stack, token: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api_url}/api/v1/vehicles/{CAR.vehicle_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(stack: Stack, token: str, name: str, params: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={"vehicle_id": CAR.vehicle_id, "command_name": name, "command_params": params},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_read_dtc_over_mqtt_streams_the_same_events_to_two_websocket_clients(mqtt: Mqtt) -> None:
    stack = mqtt.stack
    token = login(stack)["access_token"]
    wait_for(lambda: vehicle(stack, token)["connection_status"] == "connected", timeout_s=30,
             what="the agent's vehicle to come online")  # fmt: skip
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})
    url = f"{command['websocket_url']}?token={token}"
    with connect(url, open_timeout=timeout(5)) as a, connect(url, open_timeout=timeout(5)) as b:
        got_a, got_b = until_terminal(a), until_terminal(b)
    assert got_a == got_b
    assert got_a[-1]["status"] == "completed"
    responses = [e["response"] for e in got_a if e["event"] == "response"]
    assert [r["sequence_number"] for r in responses] == list(range(1, len(responses) + 1))
    assert responses[-1]["is_final"] is True
    assert responses[-1]["response_payload"]["type"] == "dtc_summary"
    assert all(r["response_payload"]["ecu"]["address"] == "0x10" for r in responses)
    assert "mqtt_connected" in (mqtt.log_dir / "worker.log").read_text()


def test_agent_killed_mid_command_fails_it_clearly_and_the_vehicle_goes_offline(
    mqtt: Mqtt, sync_redis: redis.Redis
) -> None:
    stack = mqtt.stack
    token = login(stack)["access_token"]
    wait_for(lambda: vehicle(stack, token)["connection_status"] == "connected", timeout_s=30,
             what="the agent's vehicle to come online")  # fmt: skip
    SimulatedFleet(sync_redis, Keys(stack.settings.key_prefix)).inject_fault(
        CAR.vehicle_id, "slow:3"
    )
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})
    with connect(f"{command['websocket_url']}?token={token}", open_timeout=timeout(5)) as client:
        welcome = json.loads(client.recv(timeout=timeout(10)))
        assert welcome["event"] == "welcome"
        event = json.loads(client.recv(timeout=timeout(10)))
        assert (event["event"], event["status"]) == ("status", "in_progress")
        mqtt.stop("agent", kill=True)
        events = until_terminal_after(client)
    assert events[-1]["status"] == "failed"
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1
    assert errors[0]["error_code"] == "vehicle_offline"
    assert f"Vehicle {CAR.vin} went offline (last_will)" in errors[0]["error_message"]
    assert vehicle(stack, token)["connection_status"] == "disconnected"
    mqtt.start("agent", "agent")


def test_broker_restart_mid_command_ends_it_once_without_duplicate_responses(
    mqtt: Mqtt, sync_redis: redis.Redis
) -> None:
    stack = mqtt.stack
    token = login(stack)["access_token"]
    wait_for(lambda: vehicle(stack, token)["connection_status"] == "connected", timeout_s=30,
             what="the agent's vehicle to come online")  # fmt: skip
    SimulatedFleet(sync_redis, Keys(stack.settings.key_prefix)).inject_fault(
        CAR.vehicle_id, "slow:1"
    )
    command = submit(stack, token, "ReadDTC", {"ecuAddress": "0x10"})
    with connect(f"{command['websocket_url']}?token={token}", open_timeout=timeout(5)) as client:
        events: list[dict[str, Any]] = []
        while not any(e["event"] == "response" for e in events):
            events.append(json.loads(client.recv(timeout=timeout(10))))
        mqtt.broker.halt()
        mqtt.broker.start()
        events += until_terminal_after(client)
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] in ("completed", "failed")
    assert len([s for s in statuses if s in ("completed", "failed")]) == 1
    numbers = [e["sequence_number"] for e in events if e["event"] == "response"]
    assert numbers == list(range(1, len(numbers) + 1))  # each part once, in order
    stored = httpx.get(
        f"{stack.api_url}/api/v1/commands/{command['command_id']}/responses",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert [r["sequence_number"] for r in stored] == numbers


def until_terminal_after(client: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not (events and events[-1]["event"] == "status"
               and events[-1]["status"] in {"completed", "failed", "timeout"}):  # fmt: skip
        events.append(json.loads(client.recv(timeout=timeout(30))))
    return events
