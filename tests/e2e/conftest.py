"""The three processes (api, worker, realtime) started as separate OS processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pytest

from common.settings import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.support import free_port, timeout, wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: Settings
    api_url: str
    ws_url: str
    realtime_url: str
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log_lines(self) -> dict[str, list[str]]:
        return {name: path.read_text().splitlines() for name, path in self.logs.items()}


def _start(name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    api_port, realtime_port = free_port(), free_port()
    prefix = f"e2e-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "SOVD_ENV": "dev",
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": prefix,
        "SOVD_JWT_SECRET": TEST_JWT_SECRET,
        "SOVD_API_PORT": str(api_port),
        "SOVD_REALTIME_PORT": str(realtime_port),
        "SOVD_SIM_DELAY_SCALE": "0.02",
        "SOVD_SIM_SEED": "7",
        "SOVD_LOG_FORMAT": "json",
        "SOVD_LOG_LEVEL": "INFO",
        "dramatiq_worker_timeout": "100",
        "PYTHONUNBUFFERED": "1",
    }
    settings = Settings(
        _env_file=None, redis_url=redis_url, key_prefix=prefix, jwt_secret=TEST_JWT_SECRET,
        api_port=api_port, realtime_port=realtime_port,
    )  # fmt: skip
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    logs = {name: log_dir / f"{name}.log" for name in ("api", "worker", "realtime")}
    stack = Stack(
        settings=settings,
        api_url=f"http://127.0.0.1:{api_port}",
        ws_url=f"ws://127.0.0.1:{realtime_port}",
        realtime_url=f"http://127.0.0.1:{realtime_port}",
        logs=logs,
    )
    py = sys.executable
    commands = {
        "api": [py, "-m", "api"],
        "worker": [py, "-m", "dramatiq", "workers.main:setup", "--skip-logging",
                   "--processes", "1", "--threads", "4", "--worker-shutdown-timeout", "4000"],
        "realtime": [py, "-m", "realtime"],
    }  # fmt: skip
    try:
        for name, argv in commands.items():
            stack.processes[name] = _start(name, argv, env, logs[name])
        for url in (stack.api_url, stack.realtime_url):
            wait_for(lambda url=url: _ready(url), timeout_s=30, what=f"{url} to be ready")
        wait_for(
            lambda: "Worker process is ready" in logs["worker"].read_text(),
            timeout_s=30,
            what="the worker to be ready",
        )
        yield stack
    finally:
        for process in stack.processes.values():
            process.terminate()
        for process in stack.processes.values():
            try:
                process.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                process.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
