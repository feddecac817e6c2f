"""End to end over gRPC: REST submit -> worker (SOVD_CONNECTOR=grpc) -> the test gateway
process -> worker -> Redis -> realtime -> two WebSocket clients."""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.conftest import TEST_JWT_SECRET
from tests.grpc_support import GatewayProcess, gateway_process
from tests.support import Stack, running_stack, timeout, wait_for
from workers.simulator import SimulatedFleet

pytestmark = pytest.mark.e2e

CONNECTED = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
TERMINAL = {"completed", "failed", "timeout", "cancelled"}


class Gateway:
    """The gateway process of the stack, restartable on its port."""

    def __init__(self, stack: Stack, port: int, logs: Path) -> None:
        self._stack, self.port, self._logs = stack, port, logs
        self._runs = 0
        self._context: Any = None
        self.process: GatewayProcess | None = None

    def start(self) -> None:
        self._runs += 1
        self._context = gateway_process(
            self._stack.env, self._logs / f"gateway-{self._runs}.log", port=self.port
        )
        self.process = self._context.__enter__()

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    def ended(self, command_id: str) -> str | None:
        return self.process.ended(command_id) if self.process else None


@pytest.fixture(scope="module")
def grpc_stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Gateway]]:
    # Hold the gateway's port until the gateway starts, so the stack's ports differ from it.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = int(reserved.getsockname()[1])
    logs = tmp_path_factory.mktemp("e2e-grpc-logs")
    env = {
        "SOVD_CONNECTOR": "grpc",
        "SOVD_GRPC_TARGET": f"127.0.0.1:{port}",
        "SOVD_SIM_DELAY_SCALE": "0.02",
        "SOVD_SIM_SEED": "7",
        # The gateway reports its vehicles' presence; a silent one is offline quickly.
        "SOVD_PRESENCE_SIM_HEARTBEAT_S": "0.5",
        "SOVD_PRESENCE_TIMEOUT_S": "2",
        "SOVD_PRESENCE_SWEEP_INTERVAL_S": "0.5",
    }
    with running_stack(redis_url, logs, jwt_secret=TEST_JWT_SECRET, env=env) as stack:
        reserved.close()
        gateway = Gateway(stack, port, logs)
        gateway.start()
        try:
            yield stack, gateway
        finally:
            gateway.stop()


@pytest.fixture
def simulator(grpc_stack: tuple[Stack, Gateway], redis_url: str) -> Iterator[SimulatedFleet]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield SimulatedFleet(client, Keys(grpc_stack[0].settings.key_prefix))
    client.close()


@functools.cache
def _login(api_url: str, username: str) -> str:
    response = httpx.post(
        f"{api_url}/api/v1/auth/login",
        json={"username": username, "password": f"{username}-demo-pass"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def token(stack: Stack, username: str) -> str:
    """One login per user for the module (logins are rate limited)."""
    return _login(stack.api_url, username)


def submit(stack: Stack, bearer: str, name: str, params: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {bearer}"},
        json={"vehicle_id": CONNECTED.vehicle_id, "command_name": name, "command_params": params},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def ws(url: str, bearer: str) -> ClientConnection:
    return connect(f"{url}?token={bearer}", open_timeout=timeout(5))


def until_terminal(client: ClientConnection) -> list[dict[str, Any]]:
    welcome = json.loads(client.recv(timeout=timeout(10)))
    assert welcome["event"] == "welcome", welcome
    events: list[dict[str, Any]] = []
    while not (events and events[-1]["event"] == "status" and events[-1]["status"] in TERMINAL):
        events.append(json.loads(client.recv(timeout=timeout(15))))
    return events


def status_of(stack: Stack, vehicle_id: str = CONNECTED.vehicle_id) -> str:
    response = httpx.get(
        f"{stack.api_url}/api/v1/vehicles/{vehicle_id}",
        headers={"Authorization": f"Bearer {token(stack, 'viewer')}"},
    )
    return str(response.json()["connection_status"])


def online(stack: Stack) -> bool:
    return status_of(stack) == "connected"


def record(stack: Stack, bearer: str, command_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api_url}/api/v1/commands/{command_id}",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    return dict(response.json())


def test_the_gateways_vehicles_come_online_when_it_starts_and_only_those(
    grpc_stack: tuple[Stack, Gateway],
) -> None:
    stack, _ = grpc_stack
    wait_for(lambda: online(stack), what="the simulated vehicle to come online")
    assert {v.vehicle_id: status_of(stack, v.vehicle_id) for v in demo_fleet()} == {
        v.vehicle_id: v.connection_status.value for v in demo_fleet()
    }


def test_read_dtc_runs_on_the_gateway_and_streams_to_two_clients(
    grpc_stack: tuple[Stack, Gateway],
) -> None:
    stack, gateway = grpc_stack
    wait_for(lambda: online(stack), what="the vehicle online")
    bearer = token(stack, "engineer")
    command = submit(stack, bearer, "ReadDTC", {"ecuAddress": "0x10"})
    with ws(command["websocket_url"], bearer) as a, ws(command["websocket_url"], bearer) as b:
        got_a, got_b = until_terminal(a), until_terminal(b)
    assert got_a == got_b
    assert [(e["event"], e.get("status")) for e in (got_a[0], got_a[-1])] == [
        ("status", "in_progress"),
        ("status", "completed"),
    ]
    responses = [e["response"] for e in got_a if e["event"] == "response"]
    assert [r["sequence_number"] for r in responses] == list(range(1, len(responses) + 1))
    assert [r["response_payload"]["type"] for r in responses] == ["dtc"] * (len(responses) - 1) + [
        "dtc_summary"
    ]
    assert responses[-1]["is_final"] is True
    assert responses[-1]["response_payload"]["dtc_count"] == len(responses) - 1
    assert wait_for(lambda: gateway.ended(command["command_id"])) == "completed"


def test_a_negative_response_from_the_gateway_fails_the_command_with_its_answer(
    grpc_stack: tuple[Stack, Gateway],
) -> None:
    stack, _ = grpc_stack
    bearer = token(stack, "engineer")
    command = submit(stack, bearer, "ReadDataByID", {"ecuAddress": "0x10", "dataId": "0xBEEF"})
    with ws(command["websocket_url"], bearer) as client:
        events = until_terminal(client)
    assert [e["event"] for e in events] == ["status", "response", "error", "status"]
    assert events[1]["response"]["response_payload"]["nrc_name"] == "requestOutOfRange"
    assert (events[2]["error_code"], events[3]["status"]) == ("negative_response", "failed")


def test_a_cancel_over_rest_reaches_the_gateway(
    grpc_stack: tuple[Stack, Gateway], simulator: SimulatedFleet
) -> None:
    stack, gateway = grpc_stack
    bearer = token(stack, "engineer")
    simulator.inject_fault(CONNECTED.vehicle_id, "hang")
    command = submit(stack, bearer, "ReadDTC", {"ecuAddress": "0x10"})
    command_id = command["command_id"]
    wait_for(
        lambda: record(stack, bearer, command_id)["status"] == "in_progress",
        what="the command to start",
    )
    response = httpx.post(
        f"{stack.api_url}/api/v1/commands/{command_id}/cancel",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 202, response.text
    assert wait_for(lambda: gateway.ended(command_id), what="the gateway's end") == "cancelled"
    final = wait_for(
        lambda: (r := record(stack, bearer, command_id))["status"] in TERMINAL and r,
        what="the command to end",
    )
    assert final["status"] == "cancelled"


def test_a_gateway_killed_mid_command_ends_it_with_a_clear_error(
    grpc_stack: tuple[Stack, Gateway], simulator: SimulatedFleet
) -> None:
    """ClearDTC is never retried, so the lost connection is its end."""
    stack, gateway = grpc_stack
    bearer = token(stack, "admin")
    simulator.inject_fault(CONNECTED.vehicle_id, "slow:2")
    command = submit(stack, bearer, "ClearDTC", {"ecuAddress": "0x18"})
    command_id = command["command_id"]
    try:
        wait_for(
            lambda: simulator._client.llen(simulator._keys.sim_faults(CONNECTED.vehicle_id)) == 0,
            what="the gateway to take the exchange",
        )
        assert gateway.process is not None
        gateway.process.kill()
        final = wait_for(
            lambda: (r := record(stack, bearer, command_id))["status"] in TERMINAL and r,
            what="the command to end",
        )
        # Its vehicles stop heartbeating: the api's sweep takes them offline.
        wait_for(lambda: status_of(stack) == "disconnected", what="the vehicle to go offline")
    finally:
        gateway.stop()
        gateway.start()
    assert final["status"] == "failed"
    assert (final["error_code"], final["error_message"]) == (
        "connection_lost",
        "The vehicle gateway is unreachable",
    )
    wait_for(lambda: online(stack), what="the vehicle back online with the new gateway")


def test_a_gateway_that_stops_takes_its_vehicles_offline_at_once(
    grpc_stack: tuple[Stack, Gateway],
) -> None:
    stack, gateway = grpc_stack
    wait_for(lambda: online(stack), what="the vehicle online")
    try:
        assert gateway.process is not None
        gateway.process.process.terminate()
        assert gateway.process.process.wait(timeout=timeout(10)) == 0
        assert status_of(stack) == "disconnected"
        events = gateway.process.events()
        stopping = [e["event"] for e in events].index("gateway_stopping")
        said = [
            (e["vehicle_id"], e["status"])
            for e in events[stopping:]
            if e["event"] == "presence_changed" and e["reason"] == "clean_disconnect"
        ]
        assert (CONNECTED.vehicle_id, "disconnected") in said
    finally:
        gateway.stop()
        gateway.start()
    wait_for(lambda: online(stack), what="the vehicle back online")
