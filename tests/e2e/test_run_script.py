"""``bash scripts/run.sh`` as a newcomer meets it: at a terminal, piped into tee, offline.

Two starts on one data folder. The first runs at a terminal (a pseudo-terminal): the
banner, readable log lines, worker metrics on loopback, then Ctrl-C (SIGINT to the
foreground process group) with a command in flight. The second runs with no package
index and its output piped into ``tee``: it starts without installing, finishes the
command the first start left behind, and stops on Ctrl-C without hanging.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
import redis

from common.fleet import demo_fleet
from common.keys import Keys
from common.vehicles import ConnectionStatus
from tests.support import ROOT, free_port, listen_addresses, timeout, wait_for

pytestmark = pytest.mark.e2e

VEHICLE = next(v for v in demo_fleet() if v.connection_status == ConnectionStatus.CONNECTED)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Lines that must never appear in a clean stop.
NOISE = ("CRITICAL", "Traceback", "Killing worker process", "sending SIGKILL")


@dataclass
class Ports:
    redis: int
    api: int
    realtime: int
    honcho: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api}"

    @property
    def worker_metrics(self) -> int:
        return self.honcho + 200  # the Procfile's third entry, first copy


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
def ports() -> Ports:
    return Ports(redis=free_port(), api=free_port(), realtime=free_port(), honcho=free_port())


@pytest.fixture(scope="module")
def env(ports: Ports, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # The venv is set up as the first start would (a no-op when it is current).
    subprocess.run(["bash", "-c", "source scripts/_venv.sh && ensure_venv"], cwd=ROOT, check=True)
    data = tmp_path_factory.mktemp("run-script-data")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SOVD_", "PIP_"))}
    clean.pop("dramatiq_prom_host", None)
    return clean | {
        "SOVD_DATA_DIR": str(data),
        "SOVD_EMBEDDED_REDIS_PORT": str(ports.redis),
        "SOVD_API_PORT": str(ports.api),
        "SOVD_API_METRICS_PORT": str(free_port()),
        "SOVD_REALTIME_PORT": str(ports.realtime),
        "PORT": str(ports.honcho),
        "TMPDIR": str(data),
        "PYTHONUNBUFFERED": "1",
        # No package index: a start that tried to install would fail.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
    }


class Output:
    """Everything a start printed, collected from a pipe or a terminal by a thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # the terminal's last writer closed it
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def _stop_with_ctrl_c(process: subprocess.Popen[bytes], ports: Ports) -> None:
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    try:
        process.wait(timeout=timeout(30))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("run.sh did not stop on Ctrl-C") from None
    wait_for(
        lambda: not any(_listening(p) for p in (ports.redis, ports.api, ports.realtime)),
        timeout_s=10,
        what="every port to close",
    )


def _wait_started(output: Output, ports: Ports) -> None:
    wait_for(lambda: _ready(ports.api_url), timeout_s=90, interval_s=0.2, what="the api")
    wait_for(lambda: "Worker process is ready" in output.text, timeout_s=60, what="the worker")


@pytest.fixture(scope="module")
def first_start(env: dict[str, str], ports: Ports) -> Iterator[dict[str, str]]:
    """At a terminal: start, submit a slow command, Ctrl-C while it runs."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=ROOT, env=env,
        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    output = Output(controller)
    try:
        _wait_started(output, ports)
        metrics_addresses = listen_addresses(ports.worker_metrics)
        token = httpx.post(
            f"{ports.api_url}/api/v1/auth/login",
            json={"username": "engineer", "password": "engineer-demo-pass"},
        ).json()["access_token"]
        client = redis.Redis(port=ports.redis, decode_responses=True)
        keys = Keys()
        client.rpush(keys.sim_faults(VEHICLE.vehicle_id), "slow:2")  # 5 parts, 10 s
        command = httpx.post(
            f"{ports.api_url}/api/v1/commands",
            headers={"Authorization": f"Bearer {token}"},
            json={"vehicle_id": VEHICLE.vehicle_id, "command_name": "ReadDTC",
                  "command_params": {"ecuAddress": "0x10"}},
        ).json()  # fmt: skip
        key = keys.command(command["command_id"])
        wait_for(lambda: client.hget(key, "status") == "in_progress", what="the command to start")
        client.close()
        _stop_with_ctrl_c(process, ports)
        wait_for(lambda: "redis.1 stopped" in output.text, what="honcho's last line")
        yield {
            "output": output.text,
            "command_id": command["command_id"],
            "metrics_addresses": json.dumps(sorted(metrics_addresses)),
        }
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        os.close(controller)


def test_the_banner_names_the_console_the_demo_logins_the_cli_and_the_worker_metrics(
    first_start: dict[str, str], ports: Ports
) -> None:
    output = first_start["output"]
    assert f"Web console:  {ports.api_url}/" in output
    assert "engineer  username=engineer  password=engineer-demo-pass" in output
    assert f"sovd login --api-url {ports.api_url} --username engineer" in output
    assert f"Worker metrics: http://127.0.0.1:{ports.worker_metrics}/" in output


def test_at_a_terminal_the_logs_are_readable_lines_not_json(first_start: dict[str, str]) -> None:
    api_lines = [line for line in first_start["output"].splitlines() if "api.1" in line]
    started = next(line for line in api_lines if "Application startup complete" in line)
    message = ANSI.sub("", started.split("| ", 1)[1])
    assert not message.startswith("{"), message
    assert "[info     ] Application startup complete." in message


def test_worker_metrics_listen_on_loopback_only(first_start: dict[str, str]) -> None:
    assert json.loads(first_start["metrics_addresses"]) == ["127.0.0.1"]


def test_ctrl_c_stops_the_store_last_and_quietly(first_start: dict[str, str]) -> None:
    lines = first_start["output"].splitlines()
    stopped = [line.split("| ", 1)[1].split()[0] for line in lines if " stopped (rc=" in line]
    entries = [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines()]
    assert sorted(stopped) == sorted(f"{name}.1" for name in entries if name)
    worker_done = next(i for i, line in enumerate(lines) if "Worker has been shut down" in line)
    store_stop = next(i for i, line in enumerate(lines) if "Received SIGTERM" in line)
    assert worker_done < store_stop, "the store serves the worker's whole shutdown"
    assert [noise for noise in NOISE if noise in first_start["output"]] == []


def test_a_second_start_works_offline_piped_into_tee_and_finishes_the_command_in_flight(
    first_start: dict[str, str], env: dict[str, str], ports: Ports, tmp_path: Path
) -> None:
    tee_log = tmp_path / "run.log"
    reader, writer = os.pipe()
    process = subprocess.Popen(
        ["bash", "-c", f"bash scripts/run.sh | tee {tee_log}"], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, stdout=writer, stderr=writer, start_new_session=True,
    )  # fmt: skip
    os.close(writer)
    output = Output(reader)
    try:
        _wait_started(output, ports)
        assert "ERROR" not in output.text, "nothing was installed (there is no index)"
        client = redis.Redis(port=ports.redis, decode_responses=True)
        key = Keys().command(first_start["command_id"])
        # The unfinished command is redelivered once the stopped worker's heartbeat expires.
        status = wait_for(
            lambda: (s := client.hget(key, "status")) in ("completed", "failed", "timeout") and s,
            timeout_s=45,
            interval_s=0.1,
            what="the command left in flight to end",
        )
        assert (status, client.hget(key, "attempts")) == ("completed", "2")
        client.close()
        _stop_with_ctrl_c(process, ports)
        assert "Web console:" in tee_log.read_text(), "tee got the output until Ctrl-C"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        os.close(reader)
