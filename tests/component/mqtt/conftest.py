"""MQTT fixtures: a private Mosquitto per test, the demo fleet registered, agents."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.fleet import demo_fleet, is_simulated, registered
from common.keys import Keys
from common.mqtt import StatusMessage, Topics
from common.mqtt_auth import service_password
from common.redis_client import async_client
from common.settings import Settings
from common.vehicles import Vehicle, VehicleStore
from tests.mqtt_probe import Probe
from tests.mqtt_support import MosquittoServer
from tests.support import ROOT, timeout, wait_for


def connected_fleet() -> list[Vehicle]:
    """The demo vehicles the simulation runs (online once their agent connects)."""
    return [v for v in demo_fleet() if is_simulated(v)]


@pytest.fixture
def fleet(settings: Settings) -> list[Vehicle]:
    """The demo fleet, registered (disconnected, never seen) under the test's prefix."""
    vehicles = demo_fleet()

    async def register() -> None:
        client = async_client(settings.effective_redis_url)
        store = VehicleStore(client, Keys(settings.key_prefix))
        for vehicle in vehicles:
            await store.put(registered(vehicle))
        await client.aclose()

    asyncio.run(register())
    return vehicles


@pytest.fixture
def mosquitto(settings: Settings, fleet: list[Vehicle]) -> Iterator[MosquittoServer]:
    server = MosquittoServer(settings, [v.vin for v in fleet])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mqtt_settings(settings: Settings, mosquitto: MosquittoServer) -> Settings:
    return settings.model_copy(
        update={"connector": "mqtt", "mqtt_port": mosquitto.port, "mqtt_heartbeat_interval_s": 0.5}
    )


def agent_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SOVD_ENV": "dev",
        "SOVD_REDIS_URL": settings.effective_redis_url,
        "SOVD_KEY_PREFIX": settings.key_prefix,
        "SOVD_JWT_SECRET": settings.jwt_secret,
        "SOVD_CONNECTOR": "mqtt",
        "SOVD_MQTT_PORT": str(settings.mqtt_port),
        "SOVD_MQTT_PROTOCOL": settings.mqtt_protocol,
        "SOVD_MQTT_HEARTBEAT_INTERVAL_S": str(settings.mqtt_heartbeat_interval_s),
        "SOVD_SIM_DELAY_SCALE": str(settings.sim_delay_scale),
        "SOVD_DATA_DIR": str(settings.data_dir),
        "SOVD_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


class AgentProcess:
    """``python -m agent`` (or another module: ``module=``) as a real process."""

    def __init__(self, settings: Settings, log: Path, *args: str, module: str = "agent") -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT, env=agent_env(settings), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=timeout(10))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def start_agent(mqtt_settings: Settings, tmp_path: Path) -> Iterator[object]:
    started: list[AgentProcess] = []

    def start(*args: str, settings: Settings | None = None) -> AgentProcess:
        agent = AgentProcess(
            settings or mqtt_settings, tmp_path / f"agent-{len(started)}.log", *args
        )
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def bridge(mqtt_settings: Settings, tmp_path: Path) -> Iterator[AgentProcess]:
    """The vehicle bridge (``python -m workers.vehicle_bridge``), subscribed."""
    process = AgentProcess(mqtt_settings, tmp_path / "bridge.log", module="workers.vehicle_bridge")
    wait_for(lambda: "bridge_started" in process.log.read_text(), timeout_s=20,
             what="the bridge to start")  # fmt: skip
    yield process
    process.stop()


def service_probe(settings: Settings, name: str = "probe-service") -> Probe:
    probe = Probe(settings, f"{name}-{uuid.uuid4().hex[:6]}", username=settings.mqtt_username,
                  password=service_password(settings))  # fmt: skip
    probe.wait_connected()
    return probe


def wait_status(settings: Settings, vin: str, status: str) -> StatusMessage:
    """Block until the vehicle's retained status is ``status``; return it."""
    probe = service_probe(settings, "status-watch")
    try:
        probe.subscribe(Topics(settings.mqtt_topic_prefix).status(vin))
        deadline = time.monotonic() + timeout(20)
        while time.monotonic() < deadline:
            try:
                message = StatusMessage.model_validate_json(probe.next(1).payload)
            except queue.Empty:
                continue
            if message.status == status:
                return message
        raise AssertionError(f"{vin} never became {status}")
    finally:
        probe.close()
