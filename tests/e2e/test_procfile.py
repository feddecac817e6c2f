"""The Procfile under honcho: embedded Valkey, every process, two workers, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from websockets.sync.client import connect

from common.fleet import demo_fleet
from common.vehicles import ConnectionStatus
from tests.support import ROOT, free_port, timeout, wait_for

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def honcho(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    data_dir = tmp_path_factory.mktemp("procfile-data")
    ports = {"redis": free_port(), "api": free_port(), "realtime": free_port()}
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOVD_")} | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SOVD_DATA_DIR": str(data_dir),
        "SOVD_EMBEDDED_REDIS_PORT": str(ports["redis"]),
        "SOVD_API_PORT": str(ports["api"]),
        "SOVD_API_METRICS_PORT": str(free_port()),
        "SOVD_REALTIME_PORT": str(ports["realtime"]),
        "SOVD_SIM_DELAY_SCALE": "0",
        "SOVD_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    log = (data_dir / "honcho.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start", "-c", "worker=2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{ports['api']}"
    realtime = f"http://127.0.0.1:{ports['realtime']}"
    try:
        wait_for(lambda: _ready(api) and _ready(realtime), timeout_s=60, what="honcho's processes")
        wait_for(
            lambda: (data_dir / "honcho.log").read_text().count("Worker process is ready") >= 2,
            timeout_s=30,
            what="both workers",
        )
        yield {"process": process, "api": api, "ports": ports, "data_dir": data_dir}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_honcho_runs_every_process_against_the_embedded_valkey(honcho: dict[str, object]) -> None:
    api = str(honcho["api"])
    token = httpx.post(
        f"{api}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    vehicle = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
    statuses = []
    for _ in range(4):  # more than one, so both workers can take some
        command = httpx.post(
            f"{api}/api/v1/commands",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "vehicle_id": vehicle.vehicle_id,
                "command_name": "ReadDTC",
                "command_params": {"ecuAddress": "0x10"},
            },
        ).json()
        with connect(f"{command['websocket_url']}?token={token}") as ws:
            while True:
                event = json.loads(ws.recv(timeout=timeout(10)))
                if event["event"] == "status" and event["status"] in ("completed", "failed"):
                    statuses.append(event["status"])
                    break
    assert statuses == ["completed"] * 4
    data_dir = Path(str(honcho["data_dir"]))
    assert any((data_dir / "valkey").rglob("*.aof")), "the embedded server persists with AOF"


def test_sigterm_stops_every_process_including_the_embedded_server(
    honcho: dict[str, object],
) -> None:
    process = honcho["process"]
    assert isinstance(process, subprocess.Popen)
    ports = honcho["ports"]
    assert isinstance(ports, dict)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=timeout(15)) is not None
    wait_for(
        lambda: not any(_listening(port) for port in ports.values()),
        timeout_s=10,
        what="every port to close",
    )
