"""``SOVD_CONNECTOR=mqtt`` under honcho: the local Mosquitto, the bridge and the agent
join the Procfile's processes, and a command runs over MQTT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from websockets.sync.client import connect

from common.fleet import demo_fleet, is_simulated
from tests.e2e.test_procfile import _listening, _ready
from tests.support import ROOT, free_port, timeout, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def honcho(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    data_dir = tmp_path_factory.mktemp("procfile-mqtt-data")
    ports = {"redis": free_port(), "api": free_port(), "realtime": free_port(),
             "mqtt": free_port()}  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOVD_")} | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SOVD_CONNECTOR": "mqtt",
        "SOVD_DATA_DIR": str(data_dir),
        "SOVD_EMBEDDED_REDIS_PORT": str(ports["redis"]),
        "SOVD_MQTT_PORT": str(ports["mqtt"]),
        "SOVD_API_PORT": str(ports["api"]),
        "SOVD_API_METRICS_PORT": str(free_port()),
        "SOVD_REALTIME_PORT": str(ports["realtime"]),
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    log = (data_dir / "honcho.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_for(lambda: _ready(api), timeout_s=60, what="honcho's processes")
        yield {"process": process, "api": api, "ports": ports, "data_dir": data_dir}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_one_setting_runs_commands_over_the_local_mosquitto(honcho: dict[str, object]) -> None:
    api = str(honcho["api"])
    token = httpx.post(
        f"{api}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    car = next(v for v in demo_fleet() if is_simulated(v))

    def online() -> bool:
        answer = httpx.get(f"{api}/api/v1/vehicles/{car.vehicle_id}", headers=headers)
        return bool(answer.json()["connection_status"] == "connected")

    wait_for(online, timeout_s=40, what="the agent's vehicle to come online through the broker")
    command = httpx.post(
        f"{api}/api/v1/commands",
        headers=headers,
        json={"vehicle_id": car.vehicle_id, "command_name": "ReadDTC",
              "command_params": {"ecuAddress": "0x10"}},
    ).json()  # fmt: skip
    with connect(f"{command['websocket_url']}?token={token}") as ws:
        while True:
            event = json.loads(ws.recv(timeout=timeout(15)))
            if event["event"] == "status" and event["status"] in ("completed", "failed"):
                break
    assert event["status"] == "completed"
    text = (Path(str(honcho["data_dir"])) / "honcho.log").read_text()
    assert "Mosquitto on 127.0.0.1" in text
    assert '"event": "mqtt_connected"' in text


def test_sigterm_stops_the_broker_with_everything_else(honcho: dict[str, object]) -> None:
    process = honcho["process"]
    assert isinstance(process, subprocess.Popen)
    ports = honcho["ports"]
    assert isinstance(ports, dict)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=timeout(15)) is not None
    wait_for(lambda: not any(_listening(port) for port in ports.values()), timeout_s=10,
             what="every port to close, the broker's too")  # fmt: skip
