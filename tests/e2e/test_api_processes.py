"""``SOVD_API_PROCESSES``: one port served by several api processes, as operators scale it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.support import ROOT, free_port, http_ready, wait_for

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,args="],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "multiprocessing.spawn" in line]


@pytest.fixture
def api_url(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "SOVD_ENV": "dev",
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": key_prefix,
        "SOVD_JWT_SECRET": TEST_JWT_SECRET,
        "SOVD_API_PORT": str(port),
        "SOVD_API_METRICS_PORT": "0",
        "SOVD_API_PROCESSES": "2",
        "SOVD_LOG_FORMAT": "json",
    }
    with (tmp_path / "api.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ready(url), timeout_s=30, what="the api processes")
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_two_processes_serve_the_port_and_stop_with_the_parent(
    api_url: tuple[str, int],
) -> None:
    url, pid = api_url
    wait_for(lambda: len(_children(pid)) == 2, timeout_s=20, what="two serving processes")
    token = httpx.post(
        f"{url}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(20):  # fresh connections: the kernel spreads them over both processes
        assert httpx.get(f"{url}/api/v1/vehicles", headers=headers).status_code == 200


def test_a_logout_takes_effect_on_every_process_within_a_second(
    api_url: tuple[str, int],
) -> None:
    url, pid = api_url
    wait_for(lambda: len(_children(pid)) == 2, timeout_s=20, what="two serving processes")
    token = httpx.post(
        f"{url}/api/v1/auth/login",
        json={"username": "engineer", "password": "engineer-demo-pass"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(20):  # both processes now remember the token as valid
        assert httpx.get(f"{url}/api/v1/vehicles", headers=headers).status_code == 200
    assert httpx.post(f"{url}/api/v1/auth/logout", headers=headers).status_code in (200, 204)
    wait_for(
        lambda: all(
            httpx.get(f"{url}/api/v1/vehicles", headers=headers).status_code == 401
            for _ in range(20)
        ),
        timeout_s=5,
        what="every process to refuse the token",
    )
