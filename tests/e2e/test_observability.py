"""Observability across processes: worker metrics, and one request id through every log."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from websockets.sync.client import connect

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.conftest import TEST_JWT_SECRET
from tests.support import Stack, free_port, running_stack, timeout, wait_for

pytestmark = pytest.mark.e2e

VEHICLE = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, metrics_port: int
) -> Iterator[Stack]:
    env = {
        "SOVD_WORKER_METRICS": "true",
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(metrics_port),
        "dramatiq_prom_db": str(tmp_path_factory.mktemp("prom-db")),
    }
    with running_stack(
        redis_url, tmp_path_factory.mktemp("obs-logs"), jwt_secret=TEST_JWT_SECRET, env=env
    ) as stack:
        yield stack


def run_command(stack: Stack, request_id: str) -> str:
    token = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    command = httpx.post(
        f"{stack.api_url}/api/v1/commands",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        json={"vehicle_id": VEHICLE.vehicle_id, "command_name": "ReadDTC",
              "command_params": {"ecuAddress": "0x10"}},
    ).json()  # fmt: skip
    with connect(f"{command['websocket_url']}?token={token}") as ws:
        while True:
            event = json.loads(ws.recv(timeout=timeout(10)))
            if event.get("event") == "status" and event["status"] == "completed":
                assert event["request_id"] == request_id
                return str(command["command_id"])


def test_the_worker_exposes_dramatiqs_prometheus_metrics(stack: Stack, metrics_port: int) -> None:
    run_command(stack, "metrics-run-1")

    def scraped() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        return text if 'dramatiq_messages_total{actor_name="read_dtc"' in text else None

    text = wait_for(scraped, timeout_s=20, what="the worker's metrics")
    assert "dramatiq_message_duration_milliseconds" in text


def test_one_request_id_follows_a_command_through_api_and_worker_logs(stack: Stack) -> None:
    command_id = run_command(stack, "trace-7f3a9c")
    wait_for(lambda: "command_completed" in stack.logs["worker"].read_text(), what="the worker log")
    for name in ("api", "worker"):
        records = [
            json.loads(line) for line in stack.logs[name].read_text().splitlines()
            if line.startswith("{")
        ]  # fmt: skip
        traced = [r for r in records if r.get("request_id") == "trace-7f3a9c"]
        assert traced, f"{name} logged nothing with the request id"
        assert {r.get("command_id") for r in traced} >= {command_id}


def test_realtime_and_api_health_endpoints_answer(stack: Stack) -> None:
    for base in (stack.api_url, stack.realtime_url):
        assert httpx.get(f"{base}/health/live").json()["status"] == "ok"
        assert httpx.get(f"{base}/health/ready").status_code == 200
