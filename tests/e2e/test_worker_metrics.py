"""Worker metrics listen on loopback by default, also when the worker is started by hand."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.support import ROOT, free_port, listen_addresses, timeout, wait_for, worker_argv

pytestmark = pytest.mark.e2e


def _serves_metrics(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(("host", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_the_exporter_binds_loopback_unless_dramatiq_prom_host_says_otherwise(
    redis_url: str, tmp_path: Path, host: str | None, expected: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "dramatiq_prom_host"} | {
        "SOVD_REDIS_URL": redis_url,
        "SOVD_KEY_PREFIX": f"metrics-{uuid.uuid4().hex[:8]}",
        "SOVD_JWT_SECRET": TEST_JWT_SECRET,
        "SOVD_WORKER_METRICS": "true",
        "dramatiq_prom_port": str(port),
        "dramatiq_prom_db": str(tmp_path / "prom"),
    }
    if host is not None:
        env["dramatiq_prom_host"] = host
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        worker_argv(processes=1, threads=1), cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: _serves_metrics(port), timeout_s=30, interval_s=0.1, what="metrics")
        assert listen_addresses(port) == {expected}
    finally:
        worker.terminate()
        worker.wait(timeout=timeout(15))
        log.close()
